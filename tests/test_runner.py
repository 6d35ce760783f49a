"""The papermill driver stops on a failing cell and leaves no complete-looking output."""

from pathlib import Path

import nbformat
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.paths import REPO_ROOT
from prunerec_utils.pipeline.banners import source_cells
from prunerec_utils.runner import notebook_paths, run_notebook


def stale_copies(out_dir: Path) -> list[str]:
    """Names of the executed copies in ``out_dir`` whose cells differ from ``notebooks/`` (or
    that are missing): they were not re-executed after the notebook changed."""
    return [src.name for src in notebook_paths()
            if not (out_dir / src.name).exists() or source_cells(out_dir / src.name) != source_cells(src)]



def test_failing_notebook_raises_and_leaves_nothing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    src = tmp_path / "99_fail.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "out"
    with pytest.raises(PruneRecError, match="99_fail.ipynb failed in cell .*ValueError: boom"):
        run_notebook(src, out, {"dataset": "ml-100k", "profile": "ci", "seed": 0})
    assert [p.name for p in out.iterdir()] == ["99_fail.failed.ipynb"]  # no complete-looking copy


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


# ---------------------------------------------------------------- bad input (issue #22)

@pytest.fixture
def executed(monkeypatch):
    """The notebooks ``runner.main`` would execute (nothing is executed)."""
    from prunerec_utils import runner

    calls = []
    monkeypatch.setattr(runner, "run_notebook", lambda src, out, params, facts=None: calls.append((src.name, params)) or 0.0)
    return calls


def run_main(args, tmp_path):
    from prunerec_utils import runner

    return runner.main(["--profile", "ci", "--out", str(tmp_path / "out"), *args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path, capsys, executed):
    assert run_main(["--notebooks", "00", "01", "--param", "raw_dri=/x"], tmp_path) == 2
    err = one_error_line(capsys)
    assert "raw_dri" in err and "00_preprocess.ipynb" in err and "01_bigrec_finetune.ipynb" in err
    assert "raw_dir" in err  # the close match is suggested
    assert executed == []


def test_parameter_of_some_selected_notebooks_is_accepted(tmp_path, executed):
    # raw_dir is a parameter of 00 only; papermill merely warns for the others
    assert run_main(["--notebooks", "00", "01", "--param", "raw_dir=/x", "--param", "max_train=64"], tmp_path) == 0
    assert [name for name, _ in executed] == ["00_preprocess.ipynb", "01_bigrec_finetune.ipynb"]
    assert executed[0][1]["raw_dir"] == "/x" and executed[0][1]["max_train"] == 64
    assert executed[0][1]["profile"] == "ci"


@pytest.mark.parametrize("param, flag", [
    ("profile=default", "--profile"), ("dataset=ml-1m", "--dataset"), ("seed=1", "--seed"),
    ("runs_root=/tmp/r", "--runs-root"), ("progress=true", "progress"),
])
def test_parameters_the_runner_sets_are_refused(tmp_path, capsys, executed, param, flag):
    assert run_main(["--notebooks", "00", "--param", param], tmp_path) == 2
    err = one_error_line(capsys)
    assert param.split("=")[0] in err and flag in err and "set by the runner" in err
    assert executed == []


@pytest.mark.parametrize("value", ['[0.1, 0.3', '{"a": 1', '"unclosed', '1e-3x', '1.2.3', '0x10', '-5 6'])
def test_values_that_look_like_json_must_parse(value):
    from prunerec_utils.runner import parse_params

    with pytest.raises(PruneRecError, match=r"--param sparsities=.* looks like JSON but does not parse"):
        parse_params([f"sparsities={value}"])


def test_plain_words_stay_text_and_json_values_parse():
    from prunerec_utils.runner import parse_params

    assert parse_params(["a=[0.1, 0.3]", "b=1e-3", "c=-5", "d=all", "e=true", "f=null", 'g="x y"', "h=",
                         "i=big run", "j=teacher.v2"]) == {
        "a": [0.1, 0.3], "b": 0.001, "c": -5, "d": "all", "e": True, "f": None, "g": "x y", "h": "",
        "i": "big run", "j": "teacher.v2"}
    with pytest.raises(PruneRecError, match="given twice"):
        parse_params(["a=1", "a=2"])


def test_malformed_json_parameter_fails_the_cli_in_one_line(tmp_path, capsys, executed):
    assert run_main(["--notebooks", "02", "--param", "sparsities=[0.1, 0.3"], tmp_path) == 2
    assert "sparsities" in one_error_line(capsys) and executed == []


def test_notebooks_flag_without_numbers_is_an_error(tmp_path, capsys, executed):
    with pytest.raises(SystemExit) as exc:
        run_main(["--notebooks"], tmp_path)
    assert exc.value.code == 2 and executed == []
    assert "argument --notebooks: expected at least one argument" in capsys.readouterr().err


def test_notebook_parameters_are_read_from_the_tagged_cell(tmp_path):
    from prunerec_utils.runner import notebook_parameters

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("# papermill parameters\na = 1\nb: int = 2\nc, d = 3, 4\n"
                                       "e = f = None\nprint('not a parameter')")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), params, nbformat.v4.new_code_cell("y = 2")]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert notebook_parameters(tmp_path / "nb.ipynb") == {"a", "b", "c", "d", "e", "f"}
    assert "raw_dir" in notebook_parameters(notebook_paths(["00"])[0])


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# title")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def test_failed_notebook_keeps_its_traceback_as_a_failed_copy(tmp_path):
    flag = tmp_path / "fail-now"
    flag.touch()
    src = _notebook(tmp_path / "98_flaky.ipynb", "import os", f"assert not os.path.exists({str(flag)!r}), 'flaky'")
    out = tmp_path / "out"
    params = {"dataset": "ml-100k", "profile": "ci", "seed": 0}
    with pytest.raises(PruneRecError) as err:
        run_notebook(src, out, params)
    flag.unlink()
    failed = out / "98_flaky.failed.ipynb"
    assert f"executed copy with the traceback: {failed}" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["98_flaky.failed.ipynb"]  # never the complete name
    outputs = [o for c in nbformat.read(failed, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.get("ename") == "AssertionError" and o.get("evalue") == "flaky" for o in outputs)
    run_notebook(src, out, params)  # succeeds now: the stale failed copy goes
    assert sorted(p.name for p in out.iterdir()) == ["98_flaky.ipynb"]
