"""bf16 only where the machine multiplies bf16 fast; elsewhere a bf16 profile runs, and is keyed, in fp32."""

import pytest
import torch

from prunerec_utils import hardware
from prunerec_utils.pipeline.finetune import training_settings
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile


@pytest.fixture
def speeds(monkeypatch):
    """Set the measured (bf16, fp32) GFLOPS of "this CPU"."""
    def set_speeds(bf16, fp32):
        monkeypatch.setattr(hardware, "cpu_bf16_speed", lambda: (bf16, fp32))
    return set_speeds


def test_a_bf16_profile_runs_in_fp32_on_a_cpu_without_bf16_units(speeds, capsys, tmp_path):
    speeds(0.8, 61.0)  # a 2-core AVX2 EPYC, measured
    prof = Run("ml-100k", get_profile("default", eval_dtype="bf16"), tmp_path).prof
    assert (prof.train_precision, prof.eval_dtype) == ("fp32", "fp32")
    assert training_settings(prof)["train_precision"] == "fp32"  # the key says what was used
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "0.8 GFLOPS against 61" in said and "using fp32" in said


def test_a_bf16_profile_keeps_bf16_where_it_is_fast(speeds, tmp_path):
    speeds(900.0, 220.0)  # AMX-bf16 Xeon
    prof = Run("ml-100k", get_profile("default", eval_dtype="bf16"), tmp_path).prof
    assert (prof.train_precision, prof.eval_dtype) == ("bf16", "bf16")


def test_an_fp32_profile_measures_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(hardware, "cpu_bf16_speed", lambda: pytest.fail("probed an fp32 profile"))
    prof = get_profile("ci")
    assert Run("ml-100k", prof, tmp_path).prof == prof


def test_the_probe_measures_positive_throughputs():
    assert hardware.matmul_gflops(torch.float32, n=64) > 0 and hardware.matmul_gflops(torch.bfloat16, n=64) > 0
