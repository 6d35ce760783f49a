"""The papermill driver stops on a failing cell and leaves no complete-looking output."""

import nbformat
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.runner import notebook_paths, run_notebook


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
