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


def test_a_run_on_cuda_says_what_changed_and_keeps_the_effective_batch(monkeypatch, capsys):
    from prunerec_utils import hardware
    from prunerec_utils.profiles import get_profile

    monkeypatch.setattr(hardware, "bf16_is_fast", lambda device="cpu": True)
    prof = hardware.for_this_machine(get_profile("default"), device="cuda")
    assert (prof.batch_size, prof.grad_accum, prof.eval_batch, prof.save_steps) == (16, 1, 512, 0)
    assert "effective batch 16" in capsys.readouterr().err
    assert hardware.for_this_machine(get_profile("default"), device="cpu").batch_size == 8


def test_the_machine_is_named_with_torch_and_its_cores():
    from prunerec_utils import hardware

    facts = hardware.device_facts()
    assert facts["torch"] == torch.__version__ and facts["device"] in ("cpu", "cuda")
    words = hardware.device_name()
    assert torch.__version__ in words and ("CPU cores" in words or facts.get("gpu", "?") in words)


@pytest.mark.parametrize("flags, isa", [
    ("fpu sse2 avx2 fma amx_bf16 avx512f avx512_bf16 amx_tile", "amx_bf16"),  # recent Xeon
    ("fpu avx2 avx512f avx512_bf16", "avx512_bf16"),  # AMD with AVX512-BF16
    ("fpu avx2 avx512f", "avx512f"),
    ("fpu sse2 avx2 fma", "avx2"),  # AVX2-only EPYC: bf16 is scalar there
    ("fpu sse2", "unknown"), ("", "unknown"),
])
def test_the_widest_matmul_instruction_set_is_named_from_the_cpu_flags(flags, isa):
    assert hardware.cpu_isa(flags) == isa
