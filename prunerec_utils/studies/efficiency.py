"""Speed and memory of a recommender checkpoint, and the FLOP bound each speed-up is read against.

Measured per model (median of ``repeats`` after ``warmup``), all fp32 unless asked otherwise:

* ``prefill_s``: one forward over a typical prompt (logits of the last token only);
* ``decode_s``: one cached decode step at batch 1 (full-vocabulary logits);
* ``beam_step_s``: one cached decode step for ``num_beams`` beams of one user — the unit of the
  constrained beam search;
* ``recommend_s``: the whole constrained beam search (``beam_search.py``) for one user;
* ``users_per_s``: throughput of the search over ``users`` users in batches of ``batch``;
* ``peak_mb``: peak memory — CUDA: ``max_memory_allocated``; CPU: the peak resident set of the
  worker process (Linux ``VmHWM``, reset just before loading) minus what it held at that point (run each model in its own
  process, :func:`measure_in_subprocess`).

The bound: a forward costs ``2 × (weights it multiplies)`` FLOPs per token plus the attention
scores and mixing (``4 × layers × heads × head_dim × context``), plus the LM head where logits
are computed (:func:`forward_flops`). A pruned model cannot be faster than the FLOP ratio unless
the unpruned one was memory-bound; how close each measured ratio comes to its bound says how
much of the pruning the hardware turns into speed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

from .. import PruneRecError, cli
from ..assets import load_model, load_tokenizer
from ..data import get_dataset_config, read_items
from ..method.beam_search import TensorTrie, constrained_beam_search
from ..method.surgery import head_dim, param_counts, prune_heads, prune_hidden, prune_mlp, remove_layers
from ..paths import atomic_write_text
from ..pipeline.evaluate import DTYPES, TitleTrie, fixed_test_rows
from ..pipeline.stages import ensure
from ..prompts import prompt_ids


def _dims(config) -> tuple[int, int, int, int, int, int]:
    return (config.hidden_size, head_dim(config), config.num_hidden_layers, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size)


def forward_flops(config, new_tokens: int, past: int, logits_tokens: int, rows: int = 1) -> float:
    """Matmul FLOPs of one forward of ``rows`` sequences, each feeding ``new_tokens`` tokens after
    ``past`` cached ones, with LM-head logits at ``logits_tokens`` positions per row."""
    d, hd, L, H, G, inter = _dims(config)
    weights = L * (d * H * hd * 2 + 2 * d * G * hd + 3 * d * inter)  # q, o, k, v, gate/up/down
    context = new_tokens * past + new_tokens * (new_tokens + 1) / 2  # keys each new token attends to
    attention = 4 * L * H * hd * context
    head = 2 * config.vocab_size * d * logits_tokens
    return rows * (2 * weights * new_tokens + attention + head)


def kv_cache_values(config) -> int:
    """Numbers cached per token by the KV cache: keys and values, ``2 × layers × KV heads × head_dim``."""
    _, hd, L, _, G, _ = _dims(config)
    return 2 * L * G * hd


def flop_costs(config, prompt_len: int, num_beams: int, steps: float) -> dict:
    """FLOPs of the measured operations (``steps``: mean decode steps of the beam search)."""
    beam = forward_flops(config, 1, prompt_len + steps / 2, 1, num_beams)
    prefill = forward_flops(config, prompt_len, 0, 1)
    return {"prefill_s": prefill, "decode_s": forward_flops(config, 1, prompt_len, 1), "beam_step_s": beam,
            "recommend_s": prefill + steps * beam}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int = 5, warmup: int = 1, device="cpu") -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _prefill(model, ids: torch.Tensor, cache=None):
    return model(input_ids=ids, cache=cache, use_cache=cache is not None, logits_to_keep=1)


@torch.no_grad()
def measure(model, prompts: list[list[int]], trie=None, num_beams: int = 20, batch: int = 4, repeats: int = 5,
            warmup: int = 1, length_penalty: float = 0.0) -> dict:
    """Latencies (seconds) and, with a ``trie``, recommendation latency and throughput over ``prompts``
    (the search of the run's evaluation: ``num_beams``, ``length_penalty``)."""
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([prompts[0]], device=device)
    out = {"prompt_tokens": len(prompts[0]), "num_beams": num_beams}
    out["prefill_s"] = median_time(lambda: _prefill(model, ids), repeats, warmup, device)

    def stepper(rows: int):
        cache = DynamicCache(config=model.config)
        _prefill(model, ids, cache)
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        tok = torch.full((rows, 1), int(prompts[0][-1]), device=device)
        return lambda: model(input_ids=tok, cache=cache, use_cache=True)

    out["decode_s"] = median_time(stepper(1), repeats, warmup, device)
    out["beam_step_s"] = median_time(stepper(num_beams), repeats, warmup, device)
    if trie is not None:
        tt = TensorTrie(trie, device)
        pad = model.config.pad_token_id or 0
        steps, per_user = [], []
        for p in prompts:
            _sync(device)
            t0 = time.perf_counter()
            hyps = constrained_beam_search(model, [p], trie, num_beams, length_penalty, pad, tt)[0]
            _sync(device)
            per_user.append(time.perf_counter() - t0)
            steps.append(max(len(h) for h, _ in hyps))
        out["recommend_s"] = statistics.median(per_user[warmup:] or per_user)
        out["search_steps"] = statistics.mean(steps)
        _sync(device)
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch):
            constrained_beam_search(model, prompts[i:i + batch], trie, num_beams, length_penalty, pad, tt)
        _sync(device)
        out["users_per_s"] = len(prompts) / (time.perf_counter() - t0)
        out["users"], out["batch"] = len(prompts), batch
    return out


def folder_mb(folder: str | Path) -> float:
    """Size of the weight files (``*.safetensors``) in a checkpoint folder, MB."""
    return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors")) / 2**20


def _proc_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, MB (Linux)."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024


def _reset_peak_rss() -> float:
    """Restart the peak-resident counter at the current size (Linux ``clear_refs`` 5); returns it, MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _proc_mb("VmRSS")


def save_paper_geometry(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Qwen2-0.5B's architecture with random weights, saved at each stage's shape under ``root``:
    ``teacher``; ``stage1`` 7 of 14 heads and hidden 448; ``stage2`` MLP 896; ``stage3`` 8 of 24
    layers. Which heads / dims / neurons / layers go is random: structure, not accuracy, sets the
    speed. Returns ``{stage: folder}``."""
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                      rope_theta=1e6, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).eval()

    def pick(total: int, k: int) -> list[int]:
        return sorted(torch.randperm(total, generator=g)[:k].tolist())

    cuts = {"teacher": lambda: None,
            "stage1": lambda: (prune_heads(model, [pick(14, 7) for _ in range(24)]), prune_hidden(model, pick(896, 448))),
            "stage2": lambda: prune_mlp(model, [pick(4864, 896) for _ in range(24)]),
            "stage3": lambda: remove_layers(model, pick(24, 16))}
    out = {}
    for stage, cut in cuts.items():
        cut()
        out[stage] = Path(root) / stage
        model.save_pretrained(out[stage])
    return out


def _worker(args) -> dict:
    """One model in this process: load, measure, report (see :func:`measure_in_subprocess`)."""
    job = json.loads(Path(args.job).read_text())
    torch.manual_seed(0)
    base = _reset_peak_rss()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = load_model(job["model"])
    disk = folder_mb(job["model"])
    dtype = DTYPES[job.get("dtype", "fp32")]
    model = model.to(device=args.device, dtype=dtype)
    tok = load_tokenizer(job.get("tokenizer") or job["model"])
    cfg = get_dataset_config(job["dataset"])
    trie = TitleTrie(tok, job["titles"])
    prompts = [prompt_ids(tok, h, cfg, job["cutoff_len"] - trie.depth) for h in job["histories"]]  # as the evaluator
    res = measure(model, prompts, trie if job.get("search", True) else None, job["num_beams"], job["batch"],
                  job["repeats"], job["warmup"], job.get("length_penalty", 0.0))
    res["peak_mb"] = (torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else _proc_mb("VmHWM") - base)
    res["disk_mb"] = disk
    res["params"] = param_counts(model)
    res["config"] = {k: getattr(model.config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                           "num_key_value_heads", "intermediate_size", "vocab_size")}
    res["config"]["head_dim"] = head_dim(model.config)
    res["device"] = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return res


def measure_in_subprocess(job: dict, device: str = "cpu", timeout: float | None = None) -> dict:
    """Run :func:`_worker` for ``job`` in a fresh Python process (clean memory peak); returns its dict.
    ``job``: ``model`` (folder), optional ``tokenizer`` (folder, default the model's); ``histories`` (history title
    lists), ``titles``, ``dataset`` (name, for the prompt wording), ``cutoff_len``, ``num_beams``,
    ``batch``, ``repeats``, ``warmup``; optional ``search`` (False: no beam search) and ``dtype``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        jf, of = Path(tmp) / "job.json", Path(tmp) / "out.json"
        jf.write_text(json.dumps(job))
        proc = subprocess.run([sys.executable, "-m", "prunerec_utils.studies.efficiency", "--job", str(jf), "--out", str(of),
                               "--device", device], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise PruneRecError(f"efficiency worker failed for {job['model']}: {last}")
        return json.loads(of.read_text())


STEPS = ("prefill", "decode", "beam_step", "recommend")  # timed operations, ``<step>_s`` in a worker result


def ratio_table(results: dict[str, dict], reference: str, num_beams: int):
    """Speed-ups vs ``reference`` beside their FLOP bounds, memory and size (a DataFrame, one row
    per model). Each model's recommendation FLOPs use its own mean number of search steps."""
    def flops(r):
        return flop_costs(SimpleNamespace(**r["config"]), r["prompt_tokens"], num_beams, r.get("search_steps", 0))

    def kv(r):
        return kv_cache_values(SimpleNamespace(**r["config"]))

    ref = results[reference]
    ref_flops, ref_kv = flops(ref), kv(ref)
    out = {}
    for name, r in results.items():
        row = {"non-embedding params": r["params"]["non_embedding"], "total params": r["params"]["total"]}
        own = flops(r)
        for step in STEPS:
            key = f"{step}_s"
            if key in r and key in ref:
                row[f"{step} ms"] = 1000 * r[key]
                row[f"{step} speed-up"] = ref[key] / r[key]
                row[f"{step} FLOP bound"] = ref_flops[key] / own[key]
        if "users_per_s" in r and "users_per_s" in ref:
            row["users/s"] = r["users_per_s"]
            row["throughput speed-up"] = r["users_per_s"] / ref["users_per_s"]
        row["KV cache ratio"] = kv(r) / ref_kv
        row["peak MB"] = r["peak_mb"]
        row["memory ratio"] = r["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] > 0 else float("nan")
        row["disk MB"] = r["disk_mb"]
        out[name] = row
    return pd.DataFrame(out).T


MODELS = ("teacher", "stage1", "stage2", "stage3", "stage3_vocab")


def benchmark_run(run, device: str = "cpu", rows: int = 8, repeats: int = 5,
                  warmup: int = 1, paper: bool = False, models: tuple[str, ...] = MODELS,
                  progress: bool = True) -> dict:
    """Measure every model of a run folder that exists (``models``, in order; the teacher is
    required), each in its own process, on the first ``rows`` of the fixed test sample; with
    ``paper``, also Qwen2-0.5B's geometry at each stage (random weights, no beam search). The record
    keeps its historical key ``users`` for the number of rows timed."""
    prof, folder = run.prof, run.folder / "models"
    ensure(run, "teacher")
    test = fixed_test_rows(run).iloc[:rows]
    base = {"histories": test["history_item_title"].tolist(), "dataset": run.dataset,
            "titles": read_items(run.splits)["item_title"].tolist(),
            "cutoff_len": prof.cutoff_len, "num_beams": prof.num_beams, "batch": prof.eval_batch,
            "length_penalty": prof.length_penalty, "dtype": prof.eval_dtype,
            "repeats": repeats, "warmup": warmup}
    jobs = {name: {**base, "model": str(folder / name)} for name in models if (folder / name / "config.json").exists()}
    out = {"dataset": run.dataset, "profile": prof.name, "users": len(test), "repeats": repeats, "warmup": warmup,
           "num_beams": prof.num_beams, "batch": prof.eval_batch, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if paper:
            jobs.update({f"paper {s}": {**base, "model": str(d), "tokenizer": str(folder / "teacher"), "search": False}
                         for s, d in save_paper_geometry(tmp).items()})
        for name, job in tqdm(jobs.items(), desc="models", disable=not progress):
            out["results"][name] = measure_in_subprocess(job, device)
    out["device"] = next(iter(out["results"].values()))["device"]
    return out


def benchmark_file(run, device: str = "cpu") -> Path:
    """Where a run keeps its :func:`benchmark_run` on ``device`` (``results/efficiency_<device>.json``)."""
    return run.result_file(f"efficiency_{device}")


def save_benchmark(run, bench: dict, device: str = "cpu") -> Path:
    """Write ``bench`` (:func:`benchmark_run`) to :func:`benchmark_file`; returns its path."""
    path = benchmark_file(run, device)
    atomic_write_text(path, json.dumps(bench, indent=1))
    return path


def tables(bench: dict) -> dict:
    """``{"run": ratio table vs the teacher, "paper geometry": vs the full Qwen2-0.5B shape}``."""
    res = bench["results"]
    own = {k: v for k, v in res.items() if not k.startswith("paper ")}
    paper = {k[len("paper "):]: v for k, v in res.items() if k.startswith("paper ")}
    out = {"run": ratio_table(own, "teacher", bench["num_beams"])}
    if paper:
        out["paper geometry"] = ratio_table(paper, "teacher", bench["num_beams"])
    return out


def formatted(table):
    """A ratio table (one row per model) as strings, models as columns: counts with thousands
    separators, milliseconds and MB to 0.1, throughput to 0.001, ratios to 0.01."""
    def fmt(row: str, v) -> str:
        if v != v:  # NaN
            return "–"
        if "params" in row:
            return f"{v:,.0f}"
        if row.endswith(" ms") or row.endswith(" MB"):
            return f"{v:,.1f}"
        return f"{v:.3f}" if row == "users/s" else f"{v:.2f}"

    t = table.T
    return t.apply(lambda col: [fmt(row, v) for row, v in zip(t.index, col)])


def findings(table, reference: str = "teacher") -> list[str]:
    """Sentences read off a ratio table (rows: models, smallest last): which measured step of the
    smallest model comes closest to / farthest from its FLOP bound, which models cache more keys
    and values per token than ``reference`` and what their throughput and memory ratios are, and
    what vocabulary pruning (a ``<model>_vocab`` row beside ``<model>``) changed."""
    out = []
    small = table.drop(index=reference).sort_values(["non-embedding params", "total params"]).index
    if len(small):
        m = table.loc[small[0]]
        share = {s: m[f"{s} speed-up"] / m[f"{s} FLOP bound"] for s in STEPS
                 if f"{s} speed-up" in m and f"{s} FLOP bound" in m}

        def said(s: str) -> str:
            return f"{s} ({m[s + ' speed-up']:.2f}× of a {m[s + ' FLOP bound']:.2f}× bound, {share[s]:.0%})"

        if share:
            best, worst = max(share, key=share.get), min(share, key=share.get)
            out.append(f"{small[0]}: {said(best)} comes closest to its FLOP bound, {said(worst)} the farthest.")
    for name, r in table.drop(index=reference).iterrows():
        if r["KV cache ratio"] > 1:
            more = [f"its peak memory {r['memory ratio']:.2f}×"]
            if "throughput speed-up" in r and r["throughput speed-up"] == r["throughput speed-up"]:
                more.insert(0, f"its batch throughput {r['throughput speed-up']:.2f}×")
            out.append(f"{name} caches {r['KV cache ratio']:.2f}× the {reference}'s keys and values per token; "
                       f"{' and '.join(more)} the {reference}'s.")
    for name in table.index:
        base = name[:-len("_vocab")] if name.endswith("_vocab") else None
        if base in table.index:
            a, b = table.loc[base], table.loc[name]
            steps = [f"{col[:-3]} {a[col]:.1f} → {b[col]:.1f} ms" for col in table.columns if col.endswith(" ms")]
            out.append(f"vocabulary pruning ({base} → {name}): {', '.join(steps)}; peak memory "
                       f"{a['peak MB']:.0f} → {b['peak MB']:.0f} MB, weights on disk {a['disk MB']:.0f} → "
                       f"{b['disk MB']:.0f} MB.")
    return out


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.efficiency",
                                 description="worker: measure one model described by a job file")
    ap.add_argument("--job", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PruneRecError("--device cuda asked but CUDA is not available")
    Path(args.out).write_text(json.dumps(_worker(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
