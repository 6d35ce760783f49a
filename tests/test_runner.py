"""The papermill driver stops on a failing cell and leaves no complete-looking output."""

import nbformat
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.paths import REPO_ROOT
from prunerec_utils.runner import notebook_paths, run_notebook, stale_copies


def test_failing_notebook_raises_and_leaves_nothing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    src = tmp_path / "99_fail.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "out"
    with pytest.raises(PruneRecError, match="99_fail.ipynb failed in cell .*ValueError: boom"):
        run_notebook(src, out, {"dataset": "ml-100k", "profile": "ci", "seed": 0})
    assert list(out.iterdir()) == []


def test_notebook_selection():
    assert [p.name[:2] for p in notebook_paths(["01"])] == ["01"]
    with pytest.raises(PruneRecError):
        notebook_paths(["42"])


def test_extra_papermill_parameters_parse_as_json_or_text():
    from prunerec_utils.runner import parse_params

    assert parse_params(["max_train=16384", "note=big run", "x=null"]) == {"max_train": 16384, "note": "big run",
                                                                             "x": None}
    with pytest.raises(PruneRecError, match="NAME=VALUE"):
        parse_params(["max_train"])


def test_nbval_copies_are_executions_of_the_current_notebooks():
    # nbval replays tests/notebooks: a notebook edited without regenerating its ci copy
    # (make ci-notebooks) would leave CI testing old code.
    assert stale_copies(REPO_ROOT / "tests" / "notebooks") == []


def test_an_edited_notebook_makes_its_copy_stale(tmp_path):
    import shutil

    for src in notebook_paths():
        shutil.copy(REPO_ROOT / "tests" / "notebooks" / src.name, tmp_path / src.name)
    nb = nbformat.read(tmp_path / "03_stage1_heads.ipynb", as_version=4)
    nb.cells[-1].source += "\n# edited"
    nbformat.write(nb, tmp_path / "03_stage1_heads.ipynb")
    (tmp_path / "08_baselines.ipynb").unlink()
    assert stale_copies(tmp_path) == ["03_stage1_heads.ipynb", "08_baselines.ipynb"]
