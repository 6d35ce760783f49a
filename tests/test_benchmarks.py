"""The speed benchmarks run end to end on the tiny model and print their ratios (no timing is
asserted: speed is measured by running them on the real model, see the README)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prunerec_utils import hardware

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_evaluator_speed_prints_every_row_its_ratio_and_list_agreement(tmp_path):
    out = run("evaluator_speed.py", "--model", "tiny-qwen2", "--users", "3", "--batch", "2", "--no-generate",
              "--json", str(tmp_path / "e.json"))
    rows = {"reference_kernel_fp32", "kernel_fp32", "reference_kernel_bf16", "kernel_bf16"}
    assert set(out["s_per_user"]) == set(out["speedup_vs_reference_kernel_fp32"]) == rows
    assert out["speedup_vs_reference_kernel_fp32"]["reference_kernel_fp32"] == 1.0
    assert out["lists_vs_reference_kernel_fp32"]["kernel_fp32"] == {"identical": 1.0, "same_top1": 1.0,
                                                                     "top20_overlap": 1.0}  # exact in fp32
    assert json.loads((tmp_path / "e.json").read_text()) == out


def test_train_speed_prints_every_step_its_ratios_and_losses():
    out = run("train_speed.py", "--model", "tiny-qwen2", "--samples", "64", "--attention-steps", "2")
    assert set(out["attention_s_per_step"]) == {"sdpa_flash", "sdpa_math", "eager"}
    for step in ("autocast", "bf16_eager", "bf16"):
        assert out[step]["samples_per_s"] > 0 and out[step]["valid_loss_fp32"] > 0
        assert out[step]["samples_per_s_whole_run"] > 0
    for step in ("bf16_eager", "bf16"):
        assert out[f"speedup_{step}_vs_autocast"] > 0 and out[f"speedup_{step}_vs_autocast_whole_run"] > 0
        assert abs(out[f"valid_loss_difference_{step}_minus_autocast"]) < 1.0


# ---------------------------------------------------------------- bad arguments (issue #22)

def script(name, monkeypatch):
    """The benchmark script ``benchmarks/<name>.py`` as a module (its folder on sys.path, as when run)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# A missing model / profile rides along, so that an argument that is not refused fails fast too.
@pytest.mark.parametrize("name, args, flag", [
    ("efficiency", ["--users", "0", "--profile", "nosuch"], "--users"),
    ("efficiency", ["--repeats", "-1", "--profile", "nosuch"], "--repeats"),
    ("efficiency", ["--device", "gpu", "--profile", "nosuch"], "--device"),
    ("eval_precision", ["--users", "0", "--profile", "nosuch"], "--users"),
    ("evaluator_speed", ["--users", "0", "--model", "/no/such/model"], "--users"),
    ("evaluator_speed", ["--beams", "0", "--model", "/no/such/model"], "--beams"),
    ("evaluator_speed", ["--batch", "-2", "--model", "/no/such/model"], "--batch"),
    ("head_importance_speed", ["--samples", "0", "--model", "/no/such/model"], "--samples"),
    ("head_importance_speed", ["--kept", "0", "--model", "/no/such/model"], "--kept"),
    ("head_importance_speed", ["--layers", "-1", "--model", "/no/such/model"], "--layers"),
    ("head_importance_speed", ["--repeats", "0", "--model", "/no/such/model"], "--repeats"),
    ("head_importance_speed", ["--device", "tpu", "--model", "/no/such/model"], "--device"),
    ("layer_search_speed", ["--samples", "0", "--model", "/no/such/model"], "--samples"),
    ("layer_search_speed", ["--steps", "0", "--model", "/no/such/model"], "--steps"),
    ("train_speed", ["--samples", "0", "--model", "/no/such/model"], "--samples"),
    ("vocab_check", ["--limit", "0", "--model", "/no/such/model"], "--limit"),
    ("train_speed", ["--attention-steps", "-3", "--model", "/no/such/model"], "--attention-steps"),
])
def test_bad_numbers_and_devices_are_refused_by_argparse(monkeypatch, capsys, name, args, flag):
    with pytest.raises(SystemExit) as exc:
        script(name, monkeypatch).main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and "Traceback" not in "\n".join(err)
    assert f"error: argument {flag}:" in err[-1], err


@pytest.mark.parametrize("name, flag", [
    ("evaluator_speed", "--model"), ("head_importance_speed", "--model"), ("head_importance_speed", "--random-init"),
    ("layer_search_speed", "--model"), ("train_speed", "--model"), ("vocab_check", "--model"),
])
def test_missing_model_is_one_line_error(monkeypatch, capsys, tmp_path, name, flag):
    missing = str(tmp_path / "no-model")
    assert script(name, monkeypatch).main([flag, missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-model" in err and len(err.strip().splitlines()) == 1, err


def test_vocab_check_keeps_the_same_ids_by_both_routes_and_says_on_which_cpu(monkeypatch, capsys, tmp_path,
                                                                             ml100k_splits, tiny_model_dir):
    shutil.copytree(ml100k_splits, tmp_path / "runs" / "ml-100k" / "splits")
    out = tmp_path / "vocab.json"
    assert script("vocab_check", monkeypatch).main(["--dataset", "ml-100k", "--runs", str(tmp_path / "runs"),
                                                    "--model", str(tiny_model_dir), "--limit", "3000",
                                                    "--json", str(out)]) in (0, None)
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res  # printed and written alike
    assert res["texts"] == 3000 and 0 < res["distinct_pieces"] < res["texts"]
    assert res["same_kept_ids"] is True and res["changed"] == {"whole_texts": 0, "pieces": 0}
    assert res["cpu_isa"] in hardware.ISA_LEVELS + ("unknown",) and res["workers"] == 1  # too few texts for more


def test_head_counts_beyond_the_model_are_refused(monkeypatch, capsys, tiny_model_dir):
    heads = layers = 4  # TINY_QWEN2
    mod = script("head_importance_speed", monkeypatch)
    for args in (["--kept", str(heads + 1)], ["--layers", str(layers + 1)]):
        with pytest.raises(SystemExit) as exc:
            mod.main(["--model", str(tiny_model_dir), *args])
        assert exc.value.code == 2
        assert "--kept must be at most the 4 heads and --layers at most the 4 layers" in capsys.readouterr().err


# ---------------------------------------------------------------- GPU calibration (runs on the CPU too)

def test_step_flops_count_every_decoder_matrix_and_only_real_tokens(monkeypatch, tiny_model):
    import torch

    cal = script("gpu_calibration", monkeypatch)
    cfg = tiny_model.config
    linear = sum(m.weight.numel() for m in tiny_model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    assert cal.linear_weights_per_layer(cfg) * cfg.num_hidden_layers == linear
    # two rows, 3 and 5 real tokens (left padding), the answer in the last 2 positions
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    labels = torch.full((2, 5), -100)
    labels[:, 3:] = 7
    f = cal.step_flops(cfg, {"attention_mask": mask, "labels": labels})
    assert (f["real_tokens"], f["padded_tokens"]) == (8, 10)
    more = mask.clone()
    more[0, 1] = 1  # one more real token: more FLOPs
    assert cal.step_flops(cfg, {"attention_mask": more, "labels": labels})["flops"] > f["flops"]


def test_rates_keep_three_significant_digits_on_a_cpu_and_on_a_gpu(monkeypatch):
    cal = script("gpu_calibration", monkeypatch)
    assert cal.tflops(2.2e9) == 0.0022  # an AVX2 CPU's bf16 (a rounding to 2 decimals gave 0.0)
    assert cal.tflops(7.1234e14) == 712.0 and cal.tflops(0) == 0.0


def test_gpu_calibration_measures_every_section_and_keeps_a_cut_run(tmp_path, ml100k_splits):
    rows = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_calibration.py"), "export-rows",
                           "--out", str(rows), "--train", "64", "--valid", "16", "--test", "4"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lists = tmp_path / "cpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_calibration.py"), "cpu-lists",
                           "--rows", str(rows), "--out", str(lists), "--model", "tiny-qwen2", "--n", "4",
                           "--per-call", "3"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "cal.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_calibration.py"), "measure",
                           "--rows", str(rows), "--model", "tiny-qwen2", "--random-init", "--train-batches", "2",
                           "--train-steps", "1", "--det-samples", "16", "--eval-rows", "4", "--eval-per-call", "1,4",
                           "--cpu-lists", str(lists), "--json", str(out), "--deadline", "600"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    assert got["versions"]["torch"] and got["versions"]["bf16_matmul_tflops"] > 0
    assert [(s["batch"], s["attention"]) for s in got["train"]["settings"]] == [(2, "eager"), (2, "sdpa")]
    assert all(s["model_tflops"] >= 0 and s["samples_per_s"] > 0 for s in got["train"]["settings"])
    for mode in ("default_algorithms", "deterministic_algorithms"):  # the same training twice: the same weights
        assert got["determinism"][mode]["same_content_id"], got["determinism"][mode]
    agree = got["evaluator"]["agreement"]
    assert agree["fp32_4_vs_gpu_fp32_1"]["identical"] == 1.0  # rows per call do not change fp32 lists here
    assert agree["fp32_1_vs_cpu_fp32"]["users"] == 4
    assert all("seconds" in v for v in got["scoring"].values()), got["scoring"]
    # a deadline already past: every section says so, and the file is written all the same
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_calibration.py"), "measure",
                           "--rows", str(rows), "--model", "tiny-qwen2", "--random-init", "--sections", "train,scoring",
                           "--json", str(out), "--deadline", "0"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and json.loads(out.read_text())["scoring"] == {"skipped": "deadline"}


def test_gpu_plan_costs_every_chapter_and_packs_windows_that_rederive_what_they_need():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_plan
    finally:
        sys.path.pop(0)
    from prunerec_utils.profiles import get_profile

    prof = get_profile("ci")
    steps = gpu_plan.plan_steps(prof, train_rate=100.0, eval_rate=50.0)
    assert sorted({s.chapter for s in steps}) == [f"{i:02d}" for i in range(1, 10)]
    assert steps[0].seconds == pytest.approx(prof.max_train * prof.epochs / 100.0)  # the teacher at the measured rate
    stage3 = next(s for s in steps if s.what.startswith("stage3"))
    stage1 = next(s for s in steps if s.what.startswith("stage1"))
    assert stage3.seconds < stage1.seconds  # a smaller student distils faster
    one = [gpu_plan.Step("01", "teacher", 100.0), gpu_plan.Step("04", "stage2", 50.0, ("teacher", "stage1"))]
    upstream = {"teacher": 100.0, "stage1": 30.0, "stage2": 0.0, "stage3": 0.0}
    assert gpu_plan.windows(one, upstream, budget_s=1000) == [
        {"chapters": ["01", "04"], "seconds": 180.0, "rederive": ["stage1"]}]  # the teacher is made in the window
    apart = gpu_plan.windows(one, upstream, budget_s=150)
    assert [w["chapters"] for w in apart] == [["01"], ["04"]] and apart[1]["rederive"] == ["teacher", "stage1"]
    # after the earlier shards (--after): 08 reads the teacher's stored evaluation, 09 Stage III's size from its
    # record; a model made again costs its training, not its evaluations
    needs = {s.chapter: set(s.needs) for s in steps if s.chapter in ("08", "09")}
    assert needs == {"08": set(), "09": {"teacher"}}
    vocab = [s for s in gpu_plan.plan_steps(prof, 100.0, 50.0, texts=1_000_000) if s.chapter == "07"][0]
    assert vocab.seconds - next(s for s in steps if s.chapter == "07").seconds == \
        pytest.approx(1_000_000 / gpu_plan.VOCAB_TEXTS_PER_S)  # the dataset's texts, tokenised on the CPU
    remake = gpu_plan.remake_seconds(prof, train_rate=100.0)
    assert remake["teacher"] == pytest.approx(steps[0].seconds) and remake["stage1"] < stage1.seconds


def test_step_ab_prints_the_paired_comparison_of_two_curve_files(tmp_path):
    def arm(precision, ranks, top1):
        users = [f"u{i // 2}" for i in range(len(ranks))]
        doc = {"device": "cpu", "settings": {"data_id": "d", "hyper": {"lr": 3e-4, "train_precision": precision}},
               "rows": [{"samples": 64, "steps": 4, "train_seconds": 9.0, "eval_seconds": 2.0, "hr@20": 0.5,
                         "ndcg@20": 0.2, "best_eval_loss": 1.0,
                         "ranks": {"user_id": users, "rank": ranks, "top1": top1}}]}
        path = tmp_path / f"{precision}.json"
        path.write_text(json.dumps(doc))
        return str(path)

    a = arm("bf16", [0, -1] * 20, ["Fargo"] * 40)
    b = arm("autocast", [0, -1] * 20, [f"t{i}" for i in range(40)])
    out = run("step_ab.py", a, b, "--samples", "64", "--labels", "bf16", "autocast", "--json", str(tmp_path / "o.json"))
    share = out["comparison"]["modal top-1 share"]
    assert (share["bf16"], share["autocast"], share["difference"]) == (1.0, 0.025, 0.975)
    assert share["verdict"] == "bf16 more concentrated than autocast" and share["users"] == 20
    assert out["comparison"]["hr@20"]["verdict"] == "tie: no row differs"
    assert out["arms"]["autocast"]["train_precision"] == "autocast"
    assert json.loads((tmp_path / "o.json").read_text()) == out
    missing = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_ab.py"), a, str(tmp_path / "no.json"),
                              "--samples", "64"], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'no.json'}: no such learning-curve file"
