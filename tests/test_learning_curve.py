"""Learning curve: rows per budget, resume by budget, verdict against most-popular."""

import json
from collections import Counter

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.method.metrics import metrics_from_ranks
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies import learning_curve as lc


def _row(n, hr, lo, hi):
    return {"samples": n, "steps": n // 16, "train_seconds": 1.0, "eval_seconds": 1.0, "best_eval_loss": 1.0,
            "hr@20": hr, "ndcg@20": hr / 3, "distinct_top10": n // 100, "modal_top1_share": 0.5,
            "ci95": {"hr@20": [lo, hi], "ndcg@20": [lo / 3, hi / 3]}}


def test_first_budget_beating_popularity_needs_disjoint_intervals():
    doc = {"most_popular": {"ci95": {"hr@20": [0.06, 0.09], "ndcg@20": [0.02, 0.03]}},
           "rows": [_row(4096, 0.08, 0.065, 0.1), _row(1024, 0.05, 0.03, 0.07), _row(16384, 0.12, 0.1, 0.14)]}
    assert lc.first_budget_beating_popularity(doc) == 16384  # 4096 overlaps, so does 1024
    doc["rows"][0]["ci95"] = {"hr@20": [0.095, 0.1], "ndcg@20": [0.031, 0.04]}
    assert lc.first_budget_beating_popularity(doc) == 4096
    doc["rows"] = doc["rows"][1:2]
    assert lc.first_budget_beating_popularity(doc) is None
    assert list(lc.curve_table({"rows": [_row(8, .1, 0, .2), _row(2, .1, 0, .2)]}).index) == [2, 8]


def test_run_curve_trains_each_budget_once_and_keeps_order(tmp_path, monkeypatch):
    calls = []

    def fake_point(run, n, progress=False, drop_model=False):
        calls.append(n)
        return _row(n, 0.01 * len(calls), 0.0, 0.05)

    monkeypatch.setattr(lc, "curve_point", fake_point)
    prof = get_profile("ci")
    out = tmp_path / "curve.json"
    lc.run_curve(Run("ml-100k", prof, tmp_path), [64, 32], out)
    doc = json.loads(out.read_text())
    assert calls == [64, 32] and [r["samples"] for r in doc["rows"]] == [32, 64]
    assert doc["profile"] == "ci" and doc["most_popular"]["n"] == prof.max_test and doc["device"]
    lc.run_curve(Run("ml-100k", prof, tmp_path), [32, 64, 128], out)  # resumes: only the new budget runs
    assert calls == [64, 32, 128] and len(json.loads(out.read_text())["rows"]) == 3
    with pytest.raises(PruneRecError, match="curve.json was made with other settings: profile 'ci' .asked 'default'.*choose another --out"):
        lc.run_curve(Run("ml-100k", get_profile("default"), tmp_path), [32], out)


def test_curve_point_fine_tunes_and_evaluates_the_budget(tmp_path, ml100k_splits):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_test=8, epochs=1)
    row = lc.curve_point(Run("ml-100k", prof, tmp_path), 32, drop_model=True)
    assert row["samples"] == 32 and row["steps"] == 2 and row["n"] == 8  # 32 samples / batch 16, 1 epoch
    assert 0 <= row["ci95"]["hr@20"][0] <= row["hr@20"] <= row["ci95"]["hr@20"][1]
    ranks = row["ranks"]  # the point can be recomputed from its file: per-row ranks, user ids, top-1 titles
    assert len(ranks["user_id"]) == len(ranks["rank"]) == len(ranks["top1"]) == 8
    assert metrics_from_ranks(ranks["rank"])["hr@20"] == row["hr@20"] and all(ranks["top1"])
    assert max(Counter(ranks["top1"]).values()) / 8 == row["modal_top1_share"]
    assert not (tmp_path / "ml-100k" / "ci" / "models" / "teacher_n32").exists()
    assert (tmp_path / "ml-100k" / "ci" / "results" / "teacher_n32.json").exists()


def test_cli_reports_a_foreign_curve_file_in_one_line(tmp_path, capsys):
    out = tmp_path / "curve.json"
    out.write_text(json.dumps({"dataset": "ml-1m", "profile": "default", "rows": []}))
    assert lc.main(["--profile", "ci", "--samples", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out} was made by an older version") and len(err.strip().splitlines()) == 1
    assert err.strip().endswith(f"delete {out} or choose another --out")


@pytest.mark.parametrize("args, flag", [
    (["--samples", "0"], "--samples"),
    (["--samples", "32", "-5"], "--samples"),
    (["--samples", "32", "--eval-batch", "0"], "--eval-batch"),
    (["--samples", "32", "--batch-size", "-1"], "--batch-size"),
    (["--samples", "32", "--grad-accum", "0"], "--grad-accum"),
])
def test_cli_refuses_non_positive_numbers_before_any_work(tmp_path, capsys, monkeypatch, args, flag):
    calls = []
    monkeypatch.setattr(lc, "run_curve", lambda *a, **k: calls.append(a))
    with pytest.raises(SystemExit) as exc:
        lc.main(["--profile", "ci", *args, "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and calls == []
    assert err[-1].startswith(f"python -m prunerec_utils.studies.learning_curve: error: argument {flag}:")
    assert "is not positive" in err[-1]


def test_cli_hands_the_step_seed_and_rows_to_the_profile(tmp_path, monkeypatch):
    from prunerec_utils import hardware

    # a CPU that multiplies bf16 fast: where it does not (AVX2 only), every run trains in fp32 (test_hardware.py)
    monkeypatch.setattr(hardware, "cpu_bf16_speed", lambda: (900.0, 150.0))
    seen = []
    monkeypatch.setattr(lc, "run_curve", lambda run, *a, **k: seen.append(run.prof))
    out = str(tmp_path / "c.json")
    assert lc.main(["--profile", "default", "--samples", "32", "--out", out]) == 0
    assert lc.main(["--profile", "default", "--samples", "32", "--out", out, "--train-precision", "autocast",
                    "--no-compile", "--seed", "7", "--max-test", "300"]) == 0
    default, arm = seen
    assert (default.train_precision, default.train_compile, default.seed) == ("bf16", True, 42)
    assert (arm.train_precision, arm.train_compile, arm.seed, arm.max_test) == ("autocast", False, 7, 300)
    assert arm.max_train == default.max_train and arm.effective_batch == default.effective_batch


def test_cli_refuses_an_unknown_training_step(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        lc.main(["--profile", "ci", "--samples", "32", "--out", str(tmp_path / "c.json"), "--train-precision", "fp16"])
    assert exc.value.code == 2 and "argument --train-precision: invalid choice: 'fp16'" in capsys.readouterr().err


def _arm(precision, ranks, top1, loss=1.0, **hyper):
    users = [f"u{i // 4}" for i in range(len(ranks))]
    return {"settings": {"data_id": "d", "hyper": {"lr": 3e-4, "seed": 42, "train_precision": precision, **hyper}},
            "rows": [{"samples": 64, "hr@20": sum(0 <= r < 20 for r in ranks) / len(ranks), "ndcg@20": 0.1,
                      "best_eval_loss": loss, "ranks": {"user_id": users, "rank": ranks, "top1": top1}}]}


def test_step_ab_pairs_the_arms_on_the_same_rows():
    n = 80  # 20 users of 4 rows
    a = _arm("bf16", [0] * n, ["Fargo"] * 60 + [f"t{i}" for i in range(20)], loss=1.3)
    b = _arm("autocast", [0] * 40 + [-1] * 40, [f"t{i}" for i in range(n)], loss=1.2)
    table = lc.step_ab(a, b, 64, labels=("bf16", "autocast"))
    assert table.loc["hr@20", "bf16"] == 1.0 and table.loc["hr@20", "autocast"] == 0.5
    assert table.loc["hr@20", "verdict"] == "bf16 ahead of autocast" and table.loc["hr@20", "users"] == 20
    share = table.loc["modal top-1 share"]
    assert (share["bf16"], share["autocast"], share["difference"]) == (0.75, 0.0125, 0.7375)
    assert share["verdict"] == "bf16 more concentrated than autocast" and share["rows"] == n
    assert table.loc["validation loss", "difference"] == pytest.approx(0.1)


def test_step_ab_refuses_arms_that_differ_in_more_than_the_step():
    a = _arm("bf16", [0] * 8, ["x"] * 8)
    with pytest.raises(PruneRecError, match="differ in more than the training step: lr"):
        lc.step_ab(a, _arm("autocast", [0] * 8, ["x"] * 8, lr=1e-3), 64)
    with pytest.raises(PruneRecError, match="arm A has no point at 128 samples with its per-row ranks"):
        lc.step_ab(a, _arm("autocast", [0] * 8, ["x"] * 8), 128)
    other = _arm("autocast", [0] * 8, ["x"] * 8)
    other["rows"][0]["ranks"]["user_id"] = ["v"] * 8
    with pytest.raises(PruneRecError, match="not evaluated on the same test rows"):
        lc.step_ab(a, other, 64)


def test_curve_view_puts_each_interval_beside_its_value():
    doc = {"rows": [{"samples": s, "steps": s // 16, "hr@20": h, "ndcg@20": h / 3,
                     "ci95": {"hr@20": [h - 0.01, h + 0.02], "ndcg@20": [h / 3 - 0.005, h / 3 + 0.004]},
                     "distinct_top10": 40, "modal_top1_share": 0.23456, "best_eval_loss": 0.612345,
                     "train_seconds": 123.4, "eval_seconds": 56.7} for s, h in ((4096, 0.08), (1024, 0.05))]}
    view = lc.curve_view(lc.curve_table(doc))
    assert list(view.index) == [1024, 4096]
    assert view.loc[1024, "hr@20"] == "0.0500 [0.0400, 0.0700]"
    assert view.loc[4096, "ndcg@20"] == "0.0267 [0.0217, 0.0307]"
    assert not [c for c in view.columns if c.endswith((" lo", " hi"))]
    assert view.loc[4096, "modal top-1 share"] == 0.235 and view.loc[4096, "train s"] == 123


def test_a_chapter_finds_the_curve_of_its_own_dataset_and_profile_only(tmp_path):
    from prunerec_utils.studies.learning_curve import curve_setup, find_curve

    def curve(name, dataset, profile, budgets, **extra):
        rows = [{"samples": n, "n": 1000} for n in budgets]
        (tmp_path / name).write_text(json.dumps({"dataset": dataset, "profile": profile, "device": "NVIDIA H200",
                                                 "rows": rows, **extra}))

    curve("ml-100k-default-h200.json", "ml-100k", "default", [1024, 2048, 4096],
          hyper={"batch_size": 16, "grad_accum": 1, "bf16": True})
    curve("ml-100k-default-cpu.json", "ml-100k", "default", [8192],
          settings={"hyper": {"batch_size": 8, "grad_accum": 2, "train_precision": "bf16"}})
    curve("named-ml-1m-default.json", "ml-100k", "ci", [64, 128, 256, 512])  # the file's own fields decide
    assert find_curve("ml-100k", "default", tmp_path).name == "ml-100k-default-h200.json"  # the most budgets
    assert find_curve("ml-1m", "default", tmp_path) is None  # never another dataset's curve
    assert find_curve("ml-100k", "ci", tmp_path).name == "named-ml-1m-default.json"
    docs = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert curve_setup(docs["ml-100k-default-h200.json"]) == \
        "NVIDIA H200, per-device batch 16 × 1, bf16 autocast step, 1,000 test rows"
    assert "per-device batch 8 × 2, bf16-weight step" in curve_setup(docs["ml-100k-default-cpu.json"])
