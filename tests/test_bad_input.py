"""Issue #22: numeric CLI arguments are checked by argparse and fail in one line, before any work."""

import pytest


@pytest.mark.parametrize("limit", ["0", "-5", "ten", "2.5"])
def test_evaluate_limit_must_be_a_positive_integer(limit, capsys, monkeypatch, tmp_path):
    from prunerec_utils.pipeline import evaluate

    calls = []
    monkeypatch.setattr(evaluate, "read_split", lambda *a, **k: calls.append(a))  # nothing may be read
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--model", str(tmp_path), "--dataset", "ml-100k", "--splits", str(tmp_path),
                       "--limit", limit])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and calls == []
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m prunerec_utils.pipeline.evaluate: error: argument --limit:") and limit in last, err
    assert "Traceback" not in err


def test_positive_int_type():
    import argparse

    from prunerec_utils.cli_args import positive_int

    assert positive_int("3") == 3 and positive_int(" 16384 ") == 16384
    for bad, why in (("0", "is not positive"), ("-5", "is not positive"), ("x", "is not a whole number"),
                     ("1.5", "is not a whole number"), ("", "is not a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            positive_int(bad)


def test_path_flags_are_read_from_the_current_folder(capsys, monkeypatch, tmp_path):
    """Issue #35: `--splits here` names ./here, as every shell tool would, not a folder of the repository."""
    from prunerec_utils.pipeline import evaluate
    from prunerec_utils.runner import main as runner_main

    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--model", "tiny-qwen2", "--dataset", "ml-100k", "--splits", "here"]) == 2
    assert str(tmp_path / "here" / "test.csv") in capsys.readouterr().err
    ran = []
    monkeypatch.setattr("prunerec_utils.runner.run_notebook", lambda nb, out, params, facts=None: ran.append(
        (out, params["runs_root"])) or 0.0)
    assert runner_main(["--profile", "ci", "--notebooks", "00", "--out", "copies", "--runs-root", "runs-here"]) == 0
    assert ran == [(tmp_path / "copies", str(tmp_path / "runs-here"))]
