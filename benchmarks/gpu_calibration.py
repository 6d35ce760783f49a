"""GPU calibration of the default series: what one device does with our code, measured in one run.

    # here, once (benchmarks/device/prepare.sh does this and packs the rest): the rows every device
    # uses (no preprocessing on the target), and the CPU kernel's fp32 lists of the first test rows
    python benchmarks/gpu_calibration.py export-rows --out .gpu/rows.json
    python benchmarks/gpu_calibration.py cpu-lists --rows .gpu/rows.json --out .gpu/cpu_lists.json --n 256
    # on the device (benchmarks/device/call1.sh, call2.sh); the JSON is written again after every
    # setting, so a call cut at its limit keeps what it measured
    python benchmarks/gpu_calibration.py measure --rows .gpu/rows.json --sections versions,train,determinism \\
        --random-init --json $OUT/calibration_train.json --deadline 240 [--compiled]
    python benchmarks/gpu_calibration.py measure --rows .gpu/rows.json --sections evaluator,scoring \\
        --model smollm2-135m --cpu-lists .gpu/cpu_lists.json --json $OUT/calibration_eval.json --deadline 240

Sections (each records its own seconds; one that fails records its error and the next goes on):

``versions``     python, torch, CUDA, driver, transformers …; the device's measured bf16 matrix rate
                 (best of ten 8192³ products, ``hardware.matmul_gflops``) — the ceiling model FLOP
                 utilisation (MFU) is read against.
``train``        the default profile's bf16 step (bf16 weights, fp32 master weights in fused AdamW,
                 response-token loss) at several per-device batches × attention implementations,
                 uncompiled, on random batches of real training samples (their padding
                 included); with ``--compiled`` also compiled at the largest batch, in a child
                 process cut at the deadline. Per setting: samples/s, tokens/s, model TFLOP/s and
                 MFU. FLOPs count the real (non-pad) tokens: 6·(decoder matmul weights) per token, the causal attention products, and the LM head on the kept positions.
``determinism``  two short ``finetune`` runs (Trainer, same seed, same samples) → the content hash
                 of each saved folder, with torch's default algorithms and with
                 ``torch.use_deterministic_algorithms(True)``.
``evaluator``    the constrained beam-search kernel (20 beams) on the same test rows at 64 / 128 /
                 256 / 512 rows per call, fp32 and bf16: rows/s; the fp32 lists against the CPU
                 kernel's fp32 lists of the same rows (``cpu-lists``); a profile of one call
                 (where the time goes: GPU kernels vs the host).
``scoring``      Stage I head importance (10 samples, all layers, kernel engine), hidden-dimension
                 importance, Stage II MLP activation counts (64 samples), Stage III greedy ΔPPL
                 search (16 samples, 20 of 30 layers) on the device: seconds and the choices made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunerec_utils.hardware import matmul_gflops  # noqa: E402
from prunerec_utils.paths import atomic_write_text  # noqa: E402

ROW_SEEDS = {"train": 42, "valid": 42, "test": 7}
TRAIN_BATCHES = (16, 32, 64, 128)
EVAL_PER_CALL = (64, 128, 256, 512)
COMPILE_SECONDS = 150  # a compiled setting starts only with this much time left before the deadline


# ----------------------------------------------------------------------------------------------- rows
def export_rows(out: Path, n_train: int, n_valid: int, n_test: int, dataset: str = "ml-100k") -> dict:
    """Seeded training / validation / test rows and the item titles, as one JSON file, so that every
    device measures on the same rows without running the preprocessing there."""
    from prunerec_utils.data import prepare, read_items, read_split, sample_rows
    from prunerec_utils.pipeline.run import splits_dir

    splits = splits_dir(dataset)
    prepare(dataset, splits)
    rows = {"dataset": dataset, "titles": read_items(splits)["item_title"].tolist()}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        df = sample_rows(read_split(splits, split), n, ROW_SEEDS[split])
        rows[split] = [{"history": list(h), "target": t, "user": str(u)}
                       for h, t, u in zip(df["history_item_title"], df["item_title"], df["user_id"])]
    atomic_write_text(out, json.dumps(rows))
    return {split: len(rows[split]) for split in ("train", "valid", "test")}


def load_rows(path: Path) -> dict:
    return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------------------------- models
def model_and_tokenizer(spec: str, random_init: bool, dtype=torch.float32):
    from prunerec_utils.assets import load_model, load_tokenizer, resolve_model

    folder = resolve_model(spec)
    tok = load_tokenizer(folder)
    if not random_init:
        return load_model(folder, dtype=dtype), tok, folder
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=dtype), tok, folder


def weights_digest(model) -> str:
    """sha256 over the parameter names and fp32 bytes: the same weights give the same digest
    whatever file format or library version stored them."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def tflops(flops_per_s: float) -> float:
    """A rate in TFLOPS to three significant digits: an H200's hundreds and a CPU's thousandths alike."""
    return float(f"{flops_per_s / 1e12:.3g}")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------- versions
def versions(device: str) -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine(), "cpu_threads": os.cpu_count(),
           "torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("transformers", "accelerate", "datasets", "numpy", "pandas", "pyarrow", "tokenizers",
                 "safetensors", "huggingface-hub", "gguf", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, multiprocessors=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version())
        try:
            out["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            out["driver"] = f"unknown ({exc})"
    for dtype, key, gpu_n in ((torch.bfloat16, "bf16_matmul_tflops", 8192),
                              (torch.float32, "tf32_off_fp32_matmul_tflops", 4096)):  # a CPU multiplies 1024³
        out[key] = tflops(matmul_gflops(dtype, gpu_n if device == "cuda" else 1024, 10, device) * 1e9)  # GFLOPS
    return out


# ---------------------------------------------------------------------------------------------- train
def encoded_samples(tok, rows: list[dict], cutoff_len: int) -> list[dict]:
    from prunerec_utils.data import get_dataset_config
    from prunerec_utils.prompts import encode_example

    cfg = get_dataset_config("ml-100k")
    return [encode_example(tok, r["history"], r["target"], cfg, cutoff_len) for r in rows]


def linear_weights_per_layer(config) -> int:
    """Weights of one decoder layer's matrix products (q, k, v, o, gate, up, down)."""
    d, heads = config.hidden_size, config.num_attention_heads
    hd = getattr(config, "head_dim", None) or d // heads
    kv = config.num_key_value_heads
    return d * heads * hd * 2 + d * kv * hd * 2 + 3 * d * config.intermediate_size


def step_flops(config, batch: dict) -> dict:
    """Model FLOPs of one training step (forward + backward = 3 × forward) on ``batch``.

    Forward FLOPs: 2 · (decoder matrix weights) per real token; causal attention 2 · 2 · H·hd ·
    t(t+1)/2 per sample of t real tokens and layer (scores and weighted sum); the LM head
    2 · d · V at the ``keep`` last positions of every row (the response loss runs it there only).
    """
    from prunerec_utils.prompts import IGNORE

    lengths = batch["attention_mask"].sum(1).double()
    L, d, V = config.num_hidden_layers, config.hidden_size, config.vocab_size
    hd = getattr(config, "head_dim", None) or d // config.num_attention_heads
    labels = batch["labels"]
    keep = labels.shape[1] - int((labels != IGNORE).any(0).nonzero().min()) + 1
    dense = 2 * linear_weights_per_layer(config) * L * float(lengths.sum())
    attention = 2 * 2 * config.num_attention_heads * hd * float((lengths * (lengths + 1) / 2).sum()) * L
    head = 2 * d * V * keep * labels.shape[0]
    return {"flops": 3 * (dense + attention + head), "real_tokens": int(lengths.sum()),
            "padded_tokens": int(batch["attention_mask"].numel())}


def train_rate(spec, random_init, samples, config, batch_size, attention, compiled, steps, device, seed=0) -> dict:
    """Optimizer steps of the default profile's bf16 step at ``batch_size`` samples per step."""
    from prunerec_utils.method.training import LeftPadCollator, response_loss
    from prunerec_utils.pipeline.finetune import prepare_precision
    from prunerec_utils.profiles import get_profile

    prof = replace(get_profile("default"), batch_size=batch_size, grad_accum=1, train_attention=attention,
                   train_compile=compiled)
    model, tok, _ = model_and_tokenizer(spec, random_init)
    opt_cls, opt_kwargs = prepare_precision(model, prof)["optimizer_cls_and_kwargs"]
    model.to(device).train()
    opt = opt_cls(model.parameters(), **opt_kwargs)
    forward = torch.compile(model, dynamic=True) if compiled else model
    collate = LeftPadCollator(tok.pad_token_id)
    rng = random.Random(seed)
    warm = 3 if compiled else 2
    times, flops, real, padded = [], 0.0, 0, 0
    t_first = None
    for i in range(warm + steps):
        picked = [samples[j] for j in rng.sample(range(len(samples)), batch_size)]
        sync(device)
        t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(picked).items()}
        loss = response_loss(forward, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        dt = time.perf_counter() - t0
        if i == 0:
            t_first = dt
        if compiled:  # compilation shows up here, step by step, in the call's output
            print(f"[train] batch {batch_size} compiled, step {i}: {dt:.2f} s", file=sys.stderr, flush=True)
        if i >= warm:
            times.append(dt)
            f = step_flops(config, {k: v.cpu() for k, v in batch.items()})
            flops, real, padded = flops + f["flops"], real + f["real_tokens"], padded + f["padded_tokens"]
    total = sum(times)
    del model, opt, forward
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"batch": batch_size, "attention": attention, "compiled": compiled, "steps_timed": steps,
            "first_step_s": round(t_first, 2), "s_per_step": round(total / steps, 4),
            "samples_per_s": round(batch_size * steps / total, 1), "real_tokens_per_s": round(real / total),
            "padding_share": round(1 - real / padded, 3), "model_tflops": tflops(flops / total),
            "loss_last": round(float(loss), 4)}


def training_pool(args, rows) -> tuple:
    """The model's config and the tokenised training rows every setting draws its batches from."""
    from prunerec_utils.profiles import get_profile

    model, tok, _ = model_and_tokenizer(args.model, args.random_init)
    return model.config, encoded_samples(tok, rows["train"], get_profile("default").cutoff_len)


def train_setting(args, pool: tuple, batch_size: int, attention: str, compiled: bool, device: str) -> dict:
    """One training setting measured in this process (``train-one`` runs it in a child process);
    ``pool``: :func:`training_pool`."""
    config, samples = pool
    r = train_rate(args.model, args.random_init, samples, config, batch_size, attention, compiled, args.train_steps,
                   device)
    if compiled:
        from torch._dynamo.utils import counters

        r["compiled_graphs"] = int(counters["stats"].get("unique_graphs", 0))
    return r


def train_child(args, b: int, att: str, seconds: float) -> dict:
    """A compiled setting in a child process, cut after ``seconds``: compiling a 30-layer model for
    every new shape can outlast a device call (it did, 2026-12-04), and must not take the rest with it."""
    cmd = [sys.executable, __file__, "train-one", "--rows", str(args.rows), "--model", args.model,
           "--batch", str(b), "--attention", att, "--train-steps", str(args.train_steps)]
    cmd += ["--random-init"] if args.random_init else []
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return {"batch": b, "attention": att, "compiled": True, "error": f"not done in {round(seconds)} s"}
    last = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not last:
        return {"batch": b, "attention": att, "compiled": True, "error": done.stderr.strip()[-400:]}
    return json.loads(last[-1])


def section_train(args, rows, device, res, deadline, save) -> None:
    from prunerec_utils.profiles import get_profile

    prof = get_profile("default")
    peak = (args.versions or {}).get("bf16_matmul_tflops")
    res.update({"model": args.model, "random_init": args.random_init, "samples_pool": len(rows["train"]),
                "profile_effective_batch": prof.effective_batch, "settings": []})
    plan = [(b, "eager", False) for b in args.train_batches] + [(b, "sdpa", False) for b in args.train_batches]
    plan += [(max(args.train_batches), "sdpa", True)] if args.compiled else []
    pool = training_pool(args, rows)
    for b, att, comp in plan:
        if time.time() > deadline - (COMPILE_SECONDS if comp else 0):
            res["settings"].append({"batch": b, "attention": att, "compiled": comp, "skipped": "deadline"})
            continue
        try:
            r = train_child(args, b, att, deadline - time.time()) if comp else \
                train_setting(args, pool, b, att, comp, device)
            if peak and "model_tflops" in r:
                r["mfu_vs_measured_bf16"] = round(r["model_tflops"] / peak, 4)
        except Exception as exc:  # record and go on: one failed setting must not lose the others
            r = {"batch": b, "attention": att, "compiled": comp, "error": f"{type(exc).__name__}: {exc}"[:400]}
        print(f"[train] {r}", flush=True)
        res["settings"].append(r)
        save()


# ---------------------------------------------------------------------------------------- determinism
def short_finetune(args, rows, deterministic: bool, folder: Path) -> dict:
    import pandas as pd

    from prunerec_utils.data import get_dataset_config
    from prunerec_utils.pipeline.finetune import finetune, tokenize_split
    from prunerec_utils.identity import model_identity
    from prunerec_utils.profiles import get_profile

    torch.use_deterministic_algorithms(deterministic)
    try:
        prof = replace(get_profile("default"), max_train=args.det_samples, max_valid=16, batch_size=16,
                       grad_accum=1, train_compile=False, save_steps=0, epochs=1)
        model, tok, _ = model_and_tokenizer(args.model, args.random_init)
        cfg = get_dataset_config("ml-100k")
        frame = lambda rs: pd.DataFrame({"history_item_title": [r["history"] for r in rs],  # noqa: E731
                                         "item_title": [r["target"] for r in rs]})
        train = tokenize_split(frame(rows["train"][:args.det_samples]), tok, cfg, prof.cutoff_len)
        valid = tokenize_split(frame(rows["valid"][:16]), tok, cfg, prof.cutoff_len)
        t0 = time.time()
        summary = finetune(model, tok, train, valid, folder, prof, progress=False)
        return {"content_id": model_identity(folder), "seconds": round(time.time() - t0, 1),
                "train_loss": round(next(h["train_loss"] for h in summary["log_history"] if "train_loss" in h), 6)}
    finally:
        torch.use_deterministic_algorithms(False)


def section_determinism(args, rows, device, res, deadline, save) -> None:
    res.update({"samples": args.det_samples, "batch": 16, "attention": "eager (the default profile's)",
                "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")})
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("default_algorithms", "deterministic_algorithms"):
            runs = []
            for i in range(2):
                if time.time() > deadline:
                    runs.append({"skipped": "deadline"})
                    continue
                try:
                    runs.append(short_finetune(args, rows, mode.startswith("det"), Path(tmp) / f"{mode}_{i}"))
                except Exception as exc:
                    runs.append({"error": f"{type(exc).__name__}: {exc}"[:400]})
                print(f"[determinism] {mode} {i}: {runs[-1]}", flush=True)
            ids = [r.get("content_id") for r in runs]
            res[mode] = {"runs": runs, "same_content_id": bool(ids[0]) and ids[0] == ids[1]}
            save()


# ------------------------------------------------------------------------------------------ evaluator
def beam_lists(model, tok, prompts, trie, tensor_trie, per_call, beams=20) -> list[list[str | None]]:
    from prunerec_utils.method.title_search import kernel_beams

    out = []
    for i in range(0, len(prompts), per_call):
        out += [[t for t, _ in user] for user in kernel_beams(model, tok, prompts[i:i + per_call], trie, beams, 0.0,
                                                             tensor_trie)]
    return out


def write_cpu_lists(args) -> dict:
    """fp32 lists of the CPU kernel on the first ``n`` test rows (the reference for ``evaluator``)."""
    from prunerec_utils.data import get_dataset_config
    from prunerec_utils.method.beam_search import TensorTrie
    from prunerec_utils.method.title_search import TitleTrie
    from prunerec_utils.prompts import prompt_ids

    rows = load_rows(args.rows)
    model, tok, folder = model_and_tokenizer(args.model, False)
    model.eval()
    cfg = get_dataset_config(rows["dataset"])
    trie = TitleTrie(tok, rows["titles"])
    prompts = [prompt_ids(tok, r["history"], cfg) for r in rows["test"][:args.n]]
    t0 = time.time()
    lists = beam_lists(model, tok, prompts, trie, TensorTrie(trie, "cpu"), args.per_call)
    res = {"rows": len(prompts), "per_call": args.per_call, "seconds": round(time.time() - t0, 1),
           "torch": torch.__version__, "weights_digest": weights_digest(model), "lists": lists}
    atomic_write_text(Path(args.out), json.dumps(res))
    return {k: v for k, v in res.items() if k != "lists"}


def profile_call(fn, device: str) -> dict:
    """Where one call's time goes: wall seconds, summed GPU kernel time, and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    top = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:12]
    kernels = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6 if device == "cuda" else None
    return {"wall_s_under_profiler": round(wall, 3),
            "gpu_kernel_s": None if kernels is None else round(kernels, 3),
            "gpu_busy_share": None if kernels is None else round(kernels / wall, 3),
            "top_ops": [{"op": e.key[:60], "calls": e.count, "self_ms": round(getattr(e, key, 0) / 1e3, 2),
                         "cpu_total_ms": round(e.cpu_time_total / 1e3, 2)} for e in top]}


def section_evaluator(args, rows, device, res, deadline, save) -> None:
    from prunerec_utils.data import get_dataset_config
    from prunerec_utils.method.beam_search import TensorTrie
    from prunerec_utils.method.metrics import lists_agreement
    from prunerec_utils.method.title_search import TitleTrie
    from prunerec_utils.prompts import prompt_ids

    cfg = get_dataset_config(rows["dataset"])
    res.update({"model": args.model, "random_init": args.random_init, "beams": 20, "rates": []})
    lists = {}
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, tok, _ = model_and_tokenizer(args.model, args.random_init, dtype)
        model.to(device).eval()
        if dtype_name == "fp32":
            res["weights_digest"] = weights_digest(model)
        trie = TitleTrie(tok, rows["titles"])
        tt = TensorTrie(trie, device)
        prompts = [prompt_ids(tok, r["history"], cfg) for r in rows["test"][:args.eval_rows]]
        res["rows"], res["prompt_tokens_mean"] = len(prompts), round(sum(map(len, prompts)) / len(prompts), 1)
        beam_lists(model, tok, prompts[:min(EVAL_PER_CALL)], trie, tt, min(EVAL_PER_CALL))  # warm-up
        for per_call in args.eval_per_call:
            if time.time() > deadline:
                res["rates"].append({"dtype": dtype_name, "per_call": per_call, "skipped": "deadline"})
                continue
            try:
                sync(device)
                t0 = time.perf_counter()
                got = beam_lists(model, tok, prompts, trie, tt, per_call)
                sync(device)
                dt = time.perf_counter() - t0
                lists[(dtype_name, per_call)] = got
                r = {"dtype": dtype_name, "per_call": per_call, "rows_per_s": round(len(prompts) / dt, 1),
                     "s_per_row": round(dt / len(prompts), 5),
                     "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if device == "cuda"
                     else None}
            except Exception as exc:
                r = {"dtype": dtype_name, "per_call": per_call, "error": f"{type(exc).__name__}: {exc}"[:400]}
            print(f"[evaluator] {r}", flush=True)
            res["rates"].append(r)
            save()
        if dtype_name == "bf16" and time.time() < deadline:
            try:
                n = min(256, len(prompts))
                res["profile_bf16_256_rows_one_call"] = profile_call(
                    lambda m=model: beam_lists(m, tok, prompts[:n], trie, tt, n), device)
            except Exception as exc:
                res["profile_bf16_256_rows_one_call"] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    # agreement: every list against the CPU fp32 kernel's, and bf16 against fp32 at the same batch
    agree = {}
    if args.cpu_lists and Path(args.cpu_lists).exists():
        ref = json.loads(Path(args.cpu_lists).read_text())
        res["cpu_reference"] = {k: v for k, v in ref.items() if k != "lists"}
        n = len(ref["lists"])
        for (dt_name, per_call), got in lists.items():
            agree[f"{dt_name}_{per_call}_vs_cpu_fp32"] = {k: round(v, 4) for k, v in
                                                          lists_agreement(got[:n], ref["lists"]).items()}
    for (dt_name, per_call), got in lists.items():
        if dt_name == "bf16" and ("fp32", per_call) in lists:
            agree[f"bf16_{per_call}_vs_gpu_fp32_{per_call}"] = {
                k: round(v, 4) for k, v in lists_agreement(got, lists[("fp32", per_call)]).items()}
        if dt_name == "fp32" and per_call != min(args.eval_per_call) and ("fp32", min(args.eval_per_call)) in lists:
            agree[f"fp32_{per_call}_vs_gpu_fp32_{min(args.eval_per_call)}"] = {
                k: round(v, 4) for k, v in lists_agreement(got, lists[("fp32", min(args.eval_per_call))]).items()}
    res["agreement"] = agree


# -------------------------------------------------------------------------------------------- scoring
def section_scoring(args, rows, device, res, deadline, save) -> None:
    from prunerec_utils.data import get_dataset_config
    from prunerec_utils.method.training import LeftPadCollator
    from prunerec_utils.method.heads import head_importance, scoring_batch
    from prunerec_utils.method.hidden import hidden_importance
    from prunerec_utils.method.layers import greedy_layer_removal
    from prunerec_utils.method.mlp import mlp_scores

    cfg = get_dataset_config(rows["dataset"])
    model, tok, _ = model_and_tokenizer(args.model, args.random_init)
    model.to(device).eval()
    train = rows["train"]
    encoded = encoded_samples(tok, train[:64], 512)
    collate = LeftPadCollator(tok.pad_token_id)

    def timed(name, fn, summary):
        if time.time() > deadline:
            res[name] = {"skipped": "deadline"}
            return
        try:
            sync(device)
            t0 = time.perf_counter()
            value = fn()
            sync(device)
            res[name] = {"seconds": round(time.perf_counter() - t0, 2), **summary(value)}
        except Exception as exc:
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:400], "trace": traceback.format_exc()[-800:]}
        print(f"[scoring] {name}: {res[name]}", flush=True)
        save()

    hist, targets = [r["history"] for r in train[:10]], [r["target"] for r in train[:10]]
    H = model.config.num_attention_heads
    timed("head_importance_10_samples_all_layers",
          lambda: head_importance(model, scoring_batch(tok, hist, targets, cfg, 512), H - 5, 0.7, 1e-4),
          lambda imp: {"kept_first_layers": imp.kept(H)[:3]})
    timed("hidden_importance_10_samples", lambda: hidden_importance(model, collate(encoded[:10])),
          lambda v: {"top5_dims": torch.argsort(-v)[:5].tolist()})
    hd = getattr(model.config, "head_dim", None) or model.config.hidden_size // H
    k = min(2 * 5 * hd, model.config.intermediate_size)  # the default profile's K_MLP = 2·d'
    timed("mlp_scores_64_samples", lambda: mlp_scores(model, collate(encoded[:64])),
          lambda s: {"kept_layer0_first5": s.keep(k)[0][:5]})
    L = model.config.num_hidden_layers
    n_remove = min(round(2 / 3 * L), L - 1)  # the default profile's share (20 of 30)
    timed("layer_search_16_samples_remove_two_thirds", lambda: greedy_layer_removal(model, collate(encoded[:16]),
                                                                                    n_remove),
          lambda s: {"removed": s["removed"], "base_ppl": round(s["base_ppl"], 4)})


SECTIONS = {"train": section_train, "determinism": section_determinism, "evaluator": section_evaluator,
            "scoring": section_scoring}


def measure(args) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t_start = time.time()
    deadline = t_start + args.deadline
    rows = load_rows(args.rows)
    out = {"device": device, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "commit": os.environ.get("PRUNEREC_COMMIT"), "sections_seconds": {}}
    def save():  # after every setting: a call cut at its limit still brings back what it measured
        if args.json:
            atomic_write_text(Path(args.json), json.dumps(out, indent=1) + "\n")

    for name in args.sections:
        t0 = time.time()
        out[name] = {}
        if time.time() > deadline:
            out[name] = {"skipped": "deadline"}
        else:
            try:
                if name == "versions":
                    out[name] = args.versions = versions(device)
                else:
                    SECTIONS[name](args, rows, device, out[name], deadline, save)
            except Exception as exc:
                out[name].update(error=f"{type(exc).__name__}: {exc}"[:400], trace=traceback.format_exc()[-1500:])
        out["sections_seconds"][name] = round(time.time() - t0, 1)
        print(f"== {name}: {out['sections_seconds'][name]} s", flush=True)
        save()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export-rows")
    ex.add_argument("--out", required=True)
    ex.add_argument("--train", type=int, default=2048)
    ex.add_argument("--valid", type=int, default=64)
    ex.add_argument("--test", type=int, default=512)
    cl = sub.add_parser("cpu-lists")
    cl.add_argument("--rows", required=True)
    cl.add_argument("--out", required=True)
    cl.add_argument("--model", default="smollm2-135m")
    cl.add_argument("--n", type=int, default=128)
    cl.add_argument("--per-call", type=int, default=8)
    me = sub.add_parser("measure")
    me.add_argument("--rows", required=True)
    me.add_argument("--sections", default="versions,train,determinism,evaluator,scoring",
                    type=lambda s: [x for x in s.split(",") if x])
    me.add_argument("--model", default="smollm2-135m")
    me.add_argument("--random-init", action="store_true", help="the model's architecture with seeded random weights")
    me.add_argument("--cpu-lists", default=None)
    me.add_argument("--json", default=None)
    me.add_argument("--deadline", type=float, default=300, help="seconds after which remaining settings are skipped")
    me.add_argument("--train-batches", type=lambda s: [int(x) for x in s.split(",")], default=list(TRAIN_BATCHES))
    me.add_argument("--train-steps", type=int, default=6)
    me.add_argument("--compiled", action="store_true", help="also the compiled step at the largest batch "
                    "(in a child process, cut at the deadline)")
    me.add_argument("--det-samples", type=int, default=128)
    me.add_argument("--eval-rows", type=int, default=512)
    me.add_argument("--eval-per-call", type=lambda s: [int(x) for x in s.split(",")], default=list(EVAL_PER_CALL))
    one = sub.add_parser("train-one", help="one training setting, its JSON on the last line (compiled)")
    one.add_argument("--rows", required=True)
    one.add_argument("--model", default="smollm2-135m")
    one.add_argument("--random-init", action="store_true")
    one.add_argument("--batch", type=int, required=True)
    one.add_argument("--attention", default="sdpa")
    one.add_argument("--train-steps", type=int, default=6)
    args = ap.parse_args(argv)
    args.versions = None
    unknown = [s for s in getattr(args, "sections", []) if s != "versions" and s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from versions, {', '.join(SECTIONS)}")
    if args.cmd == "export-rows":
        print(export_rows(Path(args.out), args.train, args.valid, args.test))
    elif args.cmd == "cpu-lists":
        print(write_cpu_lists(args))
    elif args.cmd == "train-one":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        pool = training_pool(args, load_rows(args.rows))
        print(json.dumps(train_setting(args, pool, args.batch, args.attention, True, device)))
    else:
        out = measure(args)
        print(json.dumps({k: out[k] for k in ("device", "sections_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
