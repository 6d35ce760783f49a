"""The speed benchmarks run end to end on the tiny model and print their ratios (no timing is
asserted: speed is measured by running them on the real model, see the README)."""

import json
import subprocess
import sys
from pathlib import Path

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
