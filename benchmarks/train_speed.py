"""Training step: the bf16 step against the autocast step it replaced, same samples, one run.

    python benchmarks/train_speed.py --samples 512 [--json benchmarks/results/train_speed_cpu.json]
        [--model smollm2-135m] [--attention-steps 4] [--device cuda]

1. **Attention at our lengths**: a few optimizer steps of the bf16 step with each attention
   implementation (SDPA with the flash kernel, SDPA restricted to its math kernel, eager), on the
   same batches; seconds per optimizer step.
2. **Whole fine-tunes**: ``finetune`` (the BIGRec response-loss Trainer) on the same ``--samples``
   training samples (seeded subset of the ml-100k train split, default profile hyper-parameters)
   with ``train_precision="autocast"`` (fp32 weights, bf16 autocast, ``adamw_torch``, random
   batches, SDPA attention) and ``"bf16"`` (bf16 weights, Kahan-summed AdamW, length-grouped
   batches, the profile's ``train_attention``); training
   samples per second (Trainer's own count, the epoch-end evaluation excluded), their ratio, the
   training-loss curves and the fp32 validation loss of both models on the same 256 validation
   samples: the two losses must agree within noise.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from _report import emit, machine
from prunerec_utils.assets import load_model, load_tokenizer, resolve_model
from prunerec_utils.data import get_dataset_config, prepare, read_split, sample_rows
from prunerec_utils.finetune import LeftPadCollator, finetune, prepare_precision, response_loss, tokenize_split, \
    validation_loss
from prunerec_utils.paths import splits_dir
from prunerec_utils.profiles import get_profile

ATTENTION = {"sdpa_flash": ("sdpa", SDPBackend.FLASH_ATTENTION), "sdpa_math": ("sdpa", SDPBackend.MATH),
             "eager": ("eager", None)}


def attention_steps(folder, batches, prof, device) -> dict:
    """Seconds per optimizer step of the bf16 step with each attention implementation."""
    from optimi import AdamW

    out = {}
    for name, (impl, backend) in ATTENTION.items():
        model = load_model(folder).to(device)
        prepare_precision(model, prof)
        model.set_attn_implementation(impl)
        model.train()
        opt = AdamW(model.parameters(), lr=prof.lr, kahan_sum=True, foreach=True)
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


def fine_tune(precision, folder, tok, train, valid, prof, device) -> dict:
    p = get_profile(prof.name, train_precision=precision, save_steps=0,
                    train_attention=prof.train_attention if precision == "bf16" else "sdpa")
    model = load_model(folder).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        summary = finetune(model, tok, train, valid.select(range(16)), Path(tmp) / "m", p, progress=False)
        trained = load_model(Path(tmp) / "m").to(device)
    logs = summary["log_history"]
    run = next(h for h in logs if "train_runtime" in h)
    evals = sum(h.get("eval_runtime", 0.0) for h in logs)
    return {"train_seconds": round(run["train_runtime"] - evals, 1),
            "samples_per_s": round(len(train) / (run["train_runtime"] - evals), 3),
            "train_loss_curve": [[h["step"], round(h["loss"], 4)] for h in logs if "loss" in h],
            "train_loss_mean": round(run["train_loss"], 4),
            "valid_loss_fp32": round(validation_loss(trained, tok, valid), 4)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--attention-steps", type=int, default=4, help="optimizer steps per attention variant")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)
    if args.samples < 16 or args.attention_steps < 2:
        ap.error("--samples must be at least 16 and --attention-steps at least 2")
    prof = get_profile("default")
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
    for precision in ("autocast", "bf16"):
        out[precision] = fine_tune(precision, folder, tok, train, valid, prof, args.device)
        print(f"{precision}: {out[precision]['samples_per_s']} samples/s", file=sys.stderr, flush=True)
    out["speedup_bf16_vs_autocast"] = round(out["bf16"]["samples_per_s"] / out["autocast"]["samples_per_s"], 2)
    out["valid_loss_difference_bf16_minus_autocast"] = round(
        out["bf16"]["valid_loss_fp32"] - out["autocast"]["valid_loss_fp32"], 4)
    emit(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
