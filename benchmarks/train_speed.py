"""Training step: the bf16 step against the autocast step it replaced, same samples, one run.

    python benchmarks/train_speed.py --samples 512 [--json benchmarks/results/train_speed_cpu.json]
        [--model smollm2-135m] [--attention-steps 4] [--device cuda]

1. **Attention at our lengths**: a few optimizer steps of the (uncompiled) bf16 step with each
   attention implementation (SDPA with the flash kernel, SDPA restricted to its math kernel,
   eager), on the same batches; seconds per optimizer step.
2. **Whole fine-tunes**: ``finetune`` (the BIGRec response-loss Trainer) on the same ``--samples``
   training samples (seeded subset of the ml-100k train split, default profile hyper-parameters),
   three steps:
   ``autocast``   the step before this work: fp32 weights, bf16 autocast, ``adamw_torch``, random
                  batches, SDPA attention, no compilation;
   ``bf16_eager`` bf16 weights, fp32 master weights in a fused AdamW, length-grouped batches, the
                  profile's ``train_attention``, no compilation;
   ``bf16``       the same, compiled (``torch_compile``): the default profile's step.
   For each: training samples per second in steady state (after the first ``WARM_STEPS``
   optimizer steps, which hold the compilation) and over the whole ``trainer.train`` call (the
   epoch-end evaluation excluded), the ratios to ``autocast``, the training-loss curve and the fp32
   validation loss on the same 256 validation samples: the losses must agree within noise.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from _report import emit, machine
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import TrainerCallback

from prunerec_utils import cli
from prunerec_utils.assets import load_model, load_tokenizer, resolve_model
from prunerec_utils.cli_args import device, positive_int
from prunerec_utils.data import get_dataset_config, prepare, read_split, sample_rows
from prunerec_utils.method.training import LeftPadCollator, response_loss, validation_loss
from prunerec_utils.pipeline.finetune import finetune, prepare_precision, tokenize_split
from prunerec_utils.pipeline.run import splits_dir
from prunerec_utils.profiles import get_profile

ATTENTION = {"sdpa_flash": ("sdpa", SDPBackend.FLASH_ATTENTION), "sdpa_math": ("sdpa", SDPBackend.MATH),
             "eager": ("eager", None)}


def attention_steps(folder, batches, prof, device) -> dict:
    """Seconds per optimizer step of the bf16 step with each attention implementation."""
    out = {}
    for name, (impl, backend) in ATTENTION.items():
        model = load_model(folder).to(device)
        opt_cls, opt_kwargs = prepare_precision(model, prof)["optimizer_cls_and_kwargs"]
        model.set_attn_implementation(impl)
        model.train()
        opt = opt_cls(model.parameters(), **opt_kwargs)
        times = []
        with sdpa_kernel(backend) if backend is not None else torch.enable_grad():
            for i, batch in enumerate(batches):
                t0 = time.perf_counter()
                for micro in batch:
                    response_loss(model, {k: v.to(device) for k, v in micro.items()}).backward()
                opt.step()
                opt.zero_grad()
                if device == "cuda":
                    torch.cuda.synchronize()
                if i:  # the first step warms up
                    times.append(time.perf_counter() - t0)
        out[name] = round(sum(times) / len(times), 3)
        print(f"attention {name}: {out[name]} s per optimizer step", file=sys.stderr, flush=True)
    return out


WARM_STEPS = 2  # optimizer steps excluded from the steady-state rate (compilation happens in them)
STEPS = {"autocast": {"train_precision": "autocast", "train_attention": "sdpa", "train_compile": False},
         "bf16_eager": {"train_precision": "bf16", "train_compile": False},
         "bf16": {"train_precision": "bf16", "train_compile": True}}


class StepClock(TrainerCallback):
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self):
        self.ends = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def fine_tune(step, folder, tok, train, valid, prof, device) -> dict:
    p = get_profile(prof.name, save_steps=0, **STEPS[step])
    model = load_model(folder).to(device)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        summary = finetune(model, tok, train, valid.select(range(16)), Path(tmp) / "m", p, progress=False,
                           callbacks=[clock])
        trained = load_model(Path(tmp) / "m").to(device)
    logs = summary["log_history"]
    run = next(h for h in logs if "train_runtime" in h)
    evals = sum(h.get("eval_runtime", 0.0) for h in logs)
    steady = len(clock.ends) - 1 - WARM_STEPS
    per_step = p.batch_size * p.grad_accum
    return {"train_seconds": round(run["train_runtime"] - evals, 1),
            "samples_per_s_whole_run": round(len(train) / (run["train_runtime"] - evals), 3),
            "samples_per_s": round(steady * per_step / (clock.ends[-1] - clock.ends[WARM_STEPS]), 3)
            if steady > 0 else None,
            "train_loss_curve": [[h["step"], round(h["loss"], 4)] for h in logs if "loss" in h],
            "train_loss_mean": round(run["train_loss"], 4),
            "valid_loss_fp32": round(validation_loss(trained, tok, valid), 4)}


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=positive_int, default=512)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--attention-steps", type=positive_int, default=4, help="optimizer steps per attention variant")
    ap.add_argument("--device", default="cpu", type=device, help="cpu or cuda")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)
    prof = get_profile("default")
    least = prof.batch_size * prof.grad_accum * (WARM_STEPS + 2)
    if args.samples < least or args.attention_steps < 2:
        ap.error(f"--samples must be at least {least} (a steady-state step after {WARM_STEPS} warm-up steps) "
                 "and --attention-steps at least 2")
    folder = resolve_model(args.model)
    tok = load_tokenizer(folder)
    cfg = get_dataset_config("ml-100k")
    splits = splits_dir("ml-100k")
    prepare("ml-100k", splits)
    train = tokenize_split(sample_rows(read_split(splits, "train"), args.samples, prof.seed), tok, cfg,
                           prof.cutoff_len)
    valid = tokenize_split(sample_rows(read_split(splits, "valid"), prof.max_valid, prof.seed), tok, cfg,
                           prof.cutoff_len)
    collate = LeftPadCollator(tok.pad_token_id)
    micro = [collate([train[j % len(train)] for j in range(i, i + prof.batch_size)])
             for i in range(0, prof.batch_size * prof.grad_accum * args.attention_steps, prof.batch_size)]
    batches = [micro[i:i + prof.grad_accum] for i in range(0, len(micro), prof.grad_accum)]
    out = {**machine(args.device), "model": args.model, "samples": args.samples,
           "batch": f"{prof.batch_size} x {prof.grad_accum}",
           "attention_s_per_step": attention_steps(folder, batches, prof, args.device)}
    for step in STEPS:
        out[step] = fine_tune(step, folder, tok, train, valid, prof, args.device)
        print(f"{step}: {out[step]['samples_per_s']} samples/s steady, {out[step]['samples_per_s_whole_run']} "
              f"over the whole run", file=sys.stderr, flush=True)
    for step in ("bf16_eager", "bf16"):
        for rate in ("samples_per_s", "samples_per_s_whole_run"):
            if out[step][rate] and out["autocast"][rate]:
                out[f"speedup_{step}_vs_autocast" + rate[len("samples_per_s"):]] = round(
                    out[step][rate] / out["autocast"][rate], 2)
        out[f"valid_loss_difference_{step}_minus_autocast"] = round(
            out[step]["valid_loss_fp32"] - out["autocast"]["valid_loss_fp32"], 4)
    emit(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
