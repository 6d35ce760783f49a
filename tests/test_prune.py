"""`python -m prunerec_utils.prune`: one command from a CSV log and a model folder to a pruned,
stock-loadable model and a report; a re-run does no work; bad input gets one line."""

import json
import shutil

import pandas as pd
import pytest

from prunerec_utils import prune
from prunerec_utils.own_log import synthetic_log
from tests.cli_checks import one_line_error

SHAPES = ["--keep-heads", "2", "--mlp", "64", "--layers", "2"]


def _args(log, items, out, model, *extra):
    return ["--model", str(model), "--interactions", str(log), "--items", str(items), "--out", str(out),
            "--profile", "ci", "--category", "book", *extra]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, tiny_model_dir):
    """One end-to-end run of the CLI on a synthetic log with the tiny model (ci budgets)."""
    root = tmp_path_factory.mktemp("prune")
    log, items = synthetic_log(root / "log", users=80, items=48, per_user=10)
    out = root / "out"
    args = _args(log, items, out, tiny_model_dir, *SHAPES)
    assert prune.main(args) == 0
    return {"args": args, "out": out, "log": log, "items": items}


def test_the_output_folder_loads_with_stock_transformers_and_matches_the_report(pruned, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prunerec_utils.method.surgery import param_counts

    out = pruned["out"]
    rep = json.loads((out / "report.json").read_text())
    model, tok = AutoModelForCausalLM.from_pretrained(out / "model"), AutoTokenizer.from_pretrained(out / "model")
    final = rep["stages"]["final (vocabulary pruned)"]
    assert param_counts(model)["total"] == final["params"]["total"]
    assert len(tok) <= model.config.vocab_size
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.intermediate_size,
            model.config.num_hidden_layers) == (32, 2, 64, 2)
    assert f"{final['params']['non_embedding']:,}" in rep["shapes"]  # the count printed before the long steps
    assert set(rep["stages"]) == {"teacher", "stage I", "stage II", "stage III", "final (vocabulary pruned)",
                                  "most popular"}
    md = (out / "report.md").read_text()
    assert "| final (vocabulary pruned) |" in md and (out / "figure4.png").stat().st_size > 0


def test_the_reported_metrics_equal_a_re_evaluation_of_the_saved_folder(pruned):
    from prunerec_utils.data import read_items
    from prunerec_utils.pipeline.evaluate import evaluate_model, fixed_test_rows, model_for_eval
    from prunerec_utils.pipeline.run import Run
    from prunerec_utils.profiles import Profile
    from prunerec_utils.assets import load_tokenizer
    from prunerec_utils.own_log import LogConfig

    out = pruned["out"]
    rep = json.loads((out / "report.json").read_text())
    cfg = LogConfig(**rep["settings"]["recipe"])
    run = Run("log", Profile(**rep["settings"]["profile"]), out / "run", cfg)
    test = fixed_test_rows(run)
    prof = run.prof
    res = evaluate_model(model_for_eval(out / "model"), load_tokenizer(out / "model"), test, cfg,
                         read_items(run.splits)["item_title"].tolist(), prof.num_beams, prof.length_penalty,
                         prof.eval_batch, prof.cutoff_len, progress=False)
    for k, v in rep["stages"]["final (vocabulary pruned)"]["metrics"].items():
        assert res.metrics[k] == pytest.approx(v, abs=1e-12)


def test_the_same_command_again_does_no_work(pruned, monkeypatch):
    from prunerec_utils.pipeline import evaluate, stages

    def boom(*a, **k):
        raise AssertionError("a finished step ran again")

    for mod, name in ((stages, "finetune"), (stages, "distill"), (evaluate, "evaluate_model")):
        monkeypatch.setattr(mod, name, boom)
    before = (pruned["out"] / "report.json").read_text()
    assert prune.main(pruned["args"]) == 0
    assert json.loads((pruned["out"] / "report.json").read_text())["stages"] == json.loads(before)["stages"]


def test_an_output_folder_of_another_run_is_refused(pruned, tiny_model_dir, capsys):
    args = _args(pruned["log"], pruned["items"], pruned["out"], tiny_model_dir, "--keep-heads", "1", "--mlp", "64",
                 "--layers", "2")
    assert prune.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "holds another run" in err and "kept_heads" in err and len(err.splitlines()) == 1


def _one_line(capsys, args, *words):
    return one_line_error(prune.main, capsys, args, *words)


def test_bad_input_gets_one_line(tmp_path, tiny_model_dir, capsys):
    log, items = synthetic_log(tmp_path / "log", users=80, items=48, per_user=10)
    pd.read_csv(log).rename(columns={"timestamp": "when"}).to_csv(tmp_path / "renamed.csv", index=False)
    out = tmp_path / "out"
    _one_line(capsys, _args(tmp_path / "renamed.csv", items, out, tiny_model_dir, *SHAPES),
              "renamed.csv", "timestamp", "--time-col")
    assert not out.exists() or not any(out.iterdir())  # nothing half-made left behind
    assert prune.main(_args(tmp_path / "renamed.csv", items, out, tiny_model_dir, *SHAPES, "--time-col", "when",
                            "--profile", "nope")) == 2  # (an unknown profile, before any data step)
    capsys.readouterr()
    small, small_items = synthetic_log(tmp_path / "small", users=3, items=48, per_user=6)
    _one_line(capsys, _args(small, small_items, tmp_path / "o2", tiny_model_dir, *SHAPES), "core")
    _one_line(capsys, _args(log, items, tmp_path / "o3", tiny_model_dir, "--target-share", "0.0001"),
              "leaves no layer")
    _one_line(capsys, _args(log, items, tmp_path / "o4", tiny_model_dir, "--keep-heads", "9", "--mlp", "64",
                            "--layers", "2"), "--keep-heads 9", "the teacher has 4")
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    from transformers import GPT2Config

    GPT2Config(n_layer=2, n_embd=32, n_head=2).save_pretrained(gpt2)
    _one_line(capsys, _args(log, items, tmp_path / "o5", gpt2, *SHAPES), "cannot prune a 'gpt2'", "llama")
    _one_line(capsys, _args(tmp_path / "missing.csv", items, tmp_path / "o6", tiny_model_dir, *SHAPES),
              "missing.csv", "no such file")
    (tmp_path / "o7").mkdir()
    (tmp_path / "o7" / "notes.txt").write_text("mine")
    _one_line(capsys, _args(log, items, tmp_path / "o7", tiny_model_dir, *SHAPES), "notes.txt", "did not make")
    with pytest.raises(SystemExit):
        prune.parse(_args(log, items, tmp_path / "o8", tiny_model_dir, "--keep-heads", "2"))  # sizes incomplete
    shutil.rmtree(tmp_path / "o7")


def _leaves_nothing(out):
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.rglob("*"))


def test_output_paths_and_bad_files_are_one_line_and_claim_nothing(tmp_path, tiny_model_dir, capsys):
    log, items = synthetic_log(tmp_path / "log", users=80, items=48, per_user=10)
    (tmp_path / "a-file").write_text("x")
    _one_line(capsys, _args(log, items, tmp_path / "a-file", tiny_model_dir, *SHAPES), "a-file", "is a file")
    _one_line(capsys, _args(log, items, tmp_path / "a-file" / "out", tiny_model_dir, *SHAPES), "is a file")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = tmp_path / "out"
    _one_line(capsys, _args(empty, items, out, tiny_model_dir, *SHAPES), "empty.csv", "is empty")
    _leaves_nothing(out)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text("{not json")
    _one_line(capsys, _args(log, items, out, broken, *SHAPES), "config.json", "cannot be read")
    _leaves_nothing(out)


def test_a_model_that_does_not_load_claims_nothing_and_the_fixed_one_is_taken(tmp_path, tiny_model_dir, capsys,
                                                                              monkeypatch):
    log, items = synthetic_log(tmp_path / "log", users=80, items=48, per_user=10)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # cut off mid-copy
    out = tmp_path / "out"
    _one_line(capsys, _args(log, items, out, model, *SHAPES), "cannot load model")
    _leaves_nothing(out)
    weights.write_bytes(good)  # fixed: the same --out is taken; stop after the claim (the run itself is tested above)
    from prunerec_utils import data

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "prepare", stop)
    assert prune.main(_args(log, items, out, model, *SHAPES)) == 130
    assert capsys.readouterr().err.strip() == "interrupted; the same command continues: every finished step is kept"
    _leaves_nothing(out)  # nothing of the run was made yet: the folder is as it was


def test_paths_are_relative_to_the_current_folder(tmp_path, tiny_model_dir, monkeypatch):
    from prunerec_utils.assets import resolve_model

    shutil.copytree(tiny_model_dir, tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("my-model") == tmp_path / "my-model"
