"""Whether bf16 pays on this machine, and the profile a run can actually use here.

bf16 is the fast path only where the hardware multiplies bf16 natively: tensor cores on a GPU, the
AMX / AVX512-BF16 units of recent Xeons. Elsewhere torch falls back to a scalar bf16 matmul: on a
2-core AVX2 EPYC it measured 0.8 GFLOPS against 61 for fp32, so a "bf16" training step would take
≈ 75× longer than the fp32 one. :func:`for_this_machine` turns such a profile's bf16 fields to fp32
and says so in one line (on stderr); every :class:`~prunerec_utils.pipeline.run.Run` applies it, so
what was actually used is what the cached steps record in their keys. The library functions
(``finetune``, ``distill``, the benchmarks) do what their profile says.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

PROBE_SIZE = 384  # matmul side of the throughput probe: a few ms in fp32, ≤ 0.1 s even where bf16 is scalar
FAST_ENOUGH = 0.5  # bf16 counts as usable when it reaches at least this share of fp32's throughput


def matmul_gflops(dtype: torch.dtype, n: int = PROBE_SIZE, repeats: int = 3, device: str = "cpu") -> float:
    """Best-of-``repeats`` throughput (GFLOPS) of one n×n @ n×n matmul in ``dtype`` on random data,
    on ``device`` (on a GPU each product is timed to its end: the device is synchronised)."""
    a, b = torch.randn(n, n).to(device, dtype), torch.randn(n, n).to(device, dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b  # warm-up: first-call dispatch and allocation
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


@functools.lru_cache(maxsize=None)
def cpu_bf16_speed() -> tuple[float, float]:
    """(bf16, fp32) matmul GFLOPS of this CPU, measured once per process."""
    return matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)


def bf16_is_fast(device: str | torch.device = "cpu") -> bool:
    """True where bf16 matmuls run at least :data:`FAST_ENOUGH` × as fast as fp32 on ``device``."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    bf16, fp32 = cpu_bf16_speed()
    return bf16 >= FAST_ENOUGH * fp32


_told: set[str] = set()


def run_device() -> str:
    """Where a run computes: "cuda" when torch sees a GPU, else "cpu" (training, scoring, statistics and
    evaluation alike; the CPU and GPU share one code path)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of /proc/cpuinfo (None where there is no such file or field)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC …"), else what ``platform`` knows of it."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


# widest first: what decides the speed of a bf16 / fp32 matmul on the CPUs this project meets
ISA_LEVELS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_isa(flags: str | None = None) -> str:
    """The widest matmul instruction set of :data:`ISA_LEVELS` the CPU has ("amx_bf16" on recent Xeons,
    "avx2" on an AVX2-only EPYC), "unknown" where its flags cannot be read. ``flags``: a cpuinfo
    flags line (default: this machine's)."""
    have = set((flags if flags is not None else _cpuinfo_field("flags") or "").split())
    return next((level for level in ISA_LEVELS if level in have), "unknown")


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def device_facts() -> dict:
    """What a run record names as its machine: the device kind, its model (GPU name, or the CPU's model and
    core count), the NVIDIA driver and CUDA version where there is a GPU, and torch's version."""
    facts = {"device": run_device(), "torch": torch.__version__, "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
             "arch": platform.machine()}
    if facts["device"] == "cuda":
        facts.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                     driver=_nvidia_driver())
    return facts


def device_name(facts: dict | None = None) -> str:
    """The machine in words: "NVIDIA H200 (driver 580.159.04, CUDA 13.0), torch 2.11.0" or
    "2 CPU cores (Intel(R) Xeon(R) Processor, x86_64), torch 2.13.0"."""
    f = facts or device_facts()
    if f["device"] == "cuda":
        return f"{f['gpu']} (driver {f.get('driver') or 'unknown'}, CUDA {f.get('cuda')}), torch {f['torch']}"
    return f"{f['cpu_cores']} CPU cores ({f['cpu']}, {f['arch']}), torch {f['torch']}"


def for_this_machine(prof, device: str | torch.device | None = None):
    """``prof`` as this machine can run it: where bf16 is not fast (see :func:`bf16_is_fast`), its
    ``train_precision`` ("bf16" or "autocast") and ``eval_dtype`` ("bf16") become "fp32", with one
    printed line per process. ``device``: None = CUDA when present, else the CPU."""
    if device is None:
        device = run_device()
    on_device = prof.on_device(str(torch.device(device).type))
    if on_device is not prof:
        said = f"{prof.name}:{device}"
        if said not in _told:
            _told.add(said)
            print(f"[prunerec] on {device}: profile {prof.name!r} trains {on_device.batch_size} x "
                  f"{on_device.grad_accum} per step (effective batch {on_device.effective_batch}, as everywhere), "
                  f"{on_device.eval_batch} rows per beam-search call, "
                  f"{'compiled' if on_device.train_compile else 'uncompiled'}, no mid-epoch checkpoints",
                  file=sys.stderr, flush=True)
        prof = on_device
    changes = {}
    if prof.train_precision != "fp32":
        changes["train_precision"] = "fp32"
    if prof.eval_dtype != "fp32":
        changes["eval_dtype"] = "fp32"
    if not changes or bf16_is_fast(device):
        return prof
    message = ", ".join(f"{k}={getattr(prof, k)!r}" for k in changes)
    if message not in _told:
        _told.add(message)
        bf16, fp32 = cpu_bf16_speed()
        print(f"[prunerec] this CPU multiplies bf16 at {bf16:.1f} GFLOPS against {fp32:.0f} for fp32 (no AMX or "
              f"AVX512-BF16 units): profile {prof.name!r} asks {message}; using fp32 instead", file=sys.stderr,
              flush=True)
    return dataclasses.replace(prof, **changes)
