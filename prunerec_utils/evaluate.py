"""Constrained beam-search evaluation (SPEC §2): title trie, ranks, HR/NDCG@K, bootstrap CIs, CLI.

Every model — the teacher now, each pruned stage later — is scored the same way: beam search
(20 beams) whose next tokens are restricted by a prefix trie over the tokenised answers
``"title"\\n`` + EOS of all items, so every beam is a real item. The rank of a sample is the
position of the first beam whose title equals the target title (duplicated titles count as one
item). HR@K = share with rank < K; NDCG@K = mean of 1/log2(rank + 2) over hits.

Two engines give the same ranked lists: our kernel (``beam_search.py``, the default) and
``transformers.generate`` with ``prefix_allowed_tokens_fn`` (the reference it is tested against).

CLI::

    python -m prunerec_utils.evaluate --model runs/ml-100k/default/models/teacher \
        --dataset ml-100k --split test --limit 200
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import PruneRecError, cli
from .data import DatasetConfig, get_dataset_config, read_items, read_split, sample_rows
from .paths import atomic_write_text, resolve, splits_dir, unique_temp
from .prompts import prompt_ids, target_ids

KS = (10, 20)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # evaluation precisions (profile ``eval_dtype``)
METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20")  # the paper's four, averaged for "retention"


class TitleTrie:
    """Prefix trie over the token ids of every item's answer (``"title"\\n`` + EOS).

    ``allowed(prefix)`` lists the tokens that may follow ``prefix``; ``title_of(ids)`` maps a
    complete answer back to its title (None if the ids are not an item).
    """

    def __init__(self, tokenizer, titles: list[str]):
        self.eos = tokenizer.eos_token_id
        self.next: dict[tuple, list[int]] = {}
        self.titles: dict[tuple, str] = {}
        children: dict[tuple, set] = {}
        for title in dict.fromkeys(titles):
            ids = tuple(target_ids(tokenizer, title))
            self.titles[ids] = title
            for i in range(len(ids)):
                children.setdefault(ids[:i], set()).add(ids[i])
        self.next = {k: sorted(v) for k, v in children.items()}
        self.depth = max(len(k) for k in self.titles)

    def allowed(self, prefix: tuple) -> list[int]:
        return self.next.get(tuple(prefix), [self.eos])

    def title_of(self, ids) -> str | None:
        ids = list(ids)
        if self.eos in ids:
            ids = ids[: ids.index(self.eos) + 1]
        return self.titles.get(tuple(ids))


@torch.no_grad()
def beam_search_generate(model, tokenizer, prompts: list[list[int]], trie: TitleTrie, num_beams: int = 20,
                         length_penalty: float = 0.0, share_prompt: bool = True
                         ) -> list[list[tuple[str | None, float]]]:
    """Constrained beam search with ``generate``; per prompt the ranked (title, score) beams.

    ``share_prompt`` prefills each prompt once and hands ``generate`` that KV cache copied to every
    beam (``generate`` alone would prefill the prompt once per beam: 20x the dominant cost).
    """
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)

    def allowed(_batch_id, input_ids):
        return trie.allowed(tuple(input_ids[width:].tolist()))

    extra = {}
    if share_prompt:  # prefill the prompt once per user, then copy its cache to the beams
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
              position_ids=(mask[:, :-1].cumsum(-1) - 1).clamp(min=0), cache=cache,
              use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(num_beams)
        extra["cache"] = cache
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=num_beams, num_return_sequences=num_beams,
                         max_new_tokens=trie.depth, length_penalty=length_penalty, early_stopping=True,
                         do_sample=False, prefix_allowed_tokens_fn=allowed, pad_token_id=pad,
                         eos_token_id=trie.eos, return_dict_in_generate=True, output_scores=True,
                         temperature=None, top_p=None, top_k=None, **extra)
    seqs = out.sequences[:, width:].tolist()
    scores = out.sequences_scores.tolist()
    return [[(trie.title_of(seqs[i * num_beams + j]), scores[i * num_beams + j]) for j in range(num_beams)]
            for i in range(len(prompts))]


def rank_of(target: str, ranked: list[str | None]) -> int:
    """0-based position of the first beam equal to ``target``; -1 when absent."""
    return ranked.index(target) if target in ranked else -1


def metrics_from_ranks(ranks, ks=KS) -> dict:
    """HR@K and NDCG@K (eq. of SPEC §2) from 0-based ranks (-1 = miss)."""
    r = np.asarray(ranks)
    out = {}
    for k in ks:
        hit = (r >= 0) & (r < k)
        out[f"hr@{k}"] = float(hit.mean()) if len(r) else math.nan
        gain = np.where(hit, 1.0 / np.log2(np.where(hit, r, 0) + 2), 0.0)
        out[f"ndcg@{k}"] = float(gain.mean()) if len(r) else math.nan
    return out


def _bootstrap(stat, n_users: int, n_boot: int, seed: int, level: float) -> dict:
    """Percentile interval of each value of ``stat(user_indices) -> {name: value}`` over resamples."""
    rng = np.random.default_rng(seed)
    draws = [stat(rng.integers(0, n_users, n_users)) for _ in range(n_boot)]
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {k: (float(np.percentile([d[k] for d in draws], lo)), float(np.percentile([d[k] for d in draws], hi)))
            for k in draws[0]}


def bootstrap_ci(ranks, n_boot: int = 1000, seed: int = 0, level: float = 0.95, ks=KS) -> dict:
    """Percentile bootstrap interval of each metric, resampling users with replacement."""
    r = np.asarray(ranks)
    return _bootstrap(lambda idx: metrics_from_ranks(r[idx], ks), len(r), n_boot, seed, level)


def paired_bootstrap(ranks_a, ranks_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95, ks=KS) -> dict:
    """Metric differences A - B on the same users, with a paired percentile bootstrap interval.

    Users are resampled jointly, so the interval reflects the per-user correlation of the two
    models. Returns ``{metric: (difference, lo, hi)}``.
    """
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    if a.shape != b.shape:
        raise PruneRecError("paired bootstrap needs both models evaluated on the same users")

    def diff(idx):
        ma, mb = metrics_from_ranks(a[idx], ks), metrics_from_ranks(b[idx], ks)
        return {k: ma[k] - mb[k] for k in ma}

    point = diff(np.arange(len(a)))
    ci = _bootstrap(diff, len(a), n_boot, seed, level)
    return {k: (point[k], *ci[k]) for k in point}


def compare(res_a: EvalResult, res_b: EvalResult, digits: int = 4) -> pd.DataFrame:
    """Table of A - B per metric with its paired 95% interval (both evaluated on the same users)."""
    if not res_a.per_user["user_id"].equals(res_b.per_user["user_id"]):
        raise PruneRecError("the two evaluations are not on the same users")
    diff = paired_bootstrap(res_a.per_user["rank"], res_b.per_user["rank"])
    return pd.DataFrame({k: {"difference": round(d, digits), "95% CI": interval_text(lo, hi, digits),
                             "significant": not lo <= 0 <= hi} for k, (d, lo, hi) in diff.items()}).T


def list_diversity(top_lists: list[list[str | None]], k: int = 10) -> dict:
    """Collapse check: distinct titles over all top-k lists, share of users with the modal top-1."""
    tops = [lst[:k] for lst in top_lists]
    firsts = Counter(lst[0] for lst in tops if lst)
    return {"distinct_top10": len({t for lst in tops for t in lst if t}),
            "modal_top1_share": firsts.most_common(1)[0][1] / len(tops) if tops else math.nan}


def lists_agreement(lists_a: list[list], lists_b: list[list], k: int = 20) -> dict:
    """How alike two sets of ranked lists of the same users are: identical top-k lists, same top-1,
    and the mean share of the top-k titles the lists have in common."""
    pairs = [(a[:k], b[:k]) for a, b in zip(lists_a, lists_b)]
    n = max(len(pairs), 1)
    return {"users": len(pairs), "identical": sum(a == b for a, b in pairs) / n,
            "same_top1": sum(a[:1] == b[:1] for a, b in pairs) / n,
            "mean_overlap": sum(len(set(a) & set(b)) / k for a, b in pairs) / n}


def list_agreement(res_a: "EvalResult", res_b: "EvalResult", k: int = 20) -> dict:
    """:func:`lists_agreement` of two evaluations on the same users."""
    return lists_agreement([json.loads(t) for t in res_a.per_user["top"]],
                           [json.loads(t) for t in res_b.per_user["top"]], k)


@dataclass
class EvalResult:
    per_user: pd.DataFrame  # user_id, target, rank, top (JSON list of the ranked titles)
    metrics: dict

    def summary(self, digits: int = 4) -> dict:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in self.metrics.items()}


def _result(df: pd.DataFrame, ranked: list[list[str | None]], extra: dict) -> EvalResult:
    ranks = [rank_of(t, lst) for t, lst in zip(df["item_title"], ranked)]
    per_user = pd.DataFrame({"user_id": df["user_id"].values, "target": df["item_title"].values,
                             "rank": ranks, "top": [json.dumps(lst[:20]) for lst in ranked]})
    m = {"n": len(ranks), **metrics_from_ranks(ranks),
         "invalid": int(sum(t is None for lst in ranked for t in lst)), **list_diversity(ranked), **extra}
    m["ci95"] = bootstrap_ci(ranks)
    return EvalResult(per_user, m)


def first_users(res: EvalResult, n: int) -> EvalResult:
    """The same evaluation restricted to its first ``n`` users (metrics and CIs recomputed)."""
    pu = res.per_user.iloc[:n]
    df = pd.DataFrame({"user_id": pu["user_id"], "item_title": pu["target"]})
    keep = {k: res.metrics[k] for k in ("num_beams", "length_penalty", "engine", "exclude_seen", "dtype")
            if k in res.metrics}
    return _result(df, [json.loads(t) for t in pu["top"]], keep)


def precision_of(model) -> str:
    """"fp32" or "bf16": the dtype the model's weights (and so its evaluation) run in."""
    found = next(model.parameters()).dtype
    names = {v: k for k, v in DTYPES.items()}
    if found not in names:
        raise PruneRecError(f"cannot evaluate a {found} model; cast it to one of {', '.join(DTYPES)}")
    return names[found]


def model_for_eval(model_dir: str | Path, dtype: str = "fp32"):
    """The model of ``model_dir`` in ``dtype`` ("fp32" or "bf16"), on the GPU when there is one."""
    from .assets import load_model

    if dtype not in DTYPES:
        raise PruneRecError(f"unknown evaluation dtype {dtype!r}; use {' or '.join(DTYPES)}")
    model = load_model(model_dir, dtype=DTYPES[dtype])
    return model.cuda() if torch.cuda.is_available() else model


def kernel_beams(model, tokenizer, prompts: list[list[int]], trie: TitleTrie, num_beams: int = 20,
                 length_penalty: float = 0.0, tensor_trie=None, banned_titles: list[list[str]] | None = None,
                 prompt_cache: str = "shared") -> list[list[tuple[str | None, float]]]:
    """Same contract as :func:`beam_search_generate`, computed by our kernel (``beam_search.py``).

    ``banned_titles[u]``: titles user ``u`` must not be recommended (e.g. already seen);
    ``prompt_cache``: the kernel's layout ("shared", or the "copied" reference).
    """
    from .beam_search import constrained_beam_search

    banned = None if banned_titles is None else [[target_ids(tokenizer, t) for t in ts] for ts in banned_titles]
    hyps = constrained_beam_search(model, prompts, trie, num_beams, length_penalty, tokenizer.pad_token_id,
                                   tensor_trie, banned, prompt_cache)
    return [[(trie.title_of(ids), score) for ids, score in user] for user in hyps]


def evaluate_model(model, tokenizer, df: pd.DataFrame, cfg: DatasetConfig, titles: list[str], num_beams: int = 20,
                   length_penalty: float = 0.0, batch_size: int = 4, cutoff_len: int = 512,
                   progress: bool = True, engine: str = "kernel", exclude_seen: bool = False,
                   done: list | None = None, checkpoint=None) -> EvalResult:
    """Constrained beam search for every row of ``df``; ranks and metrics with 95% bootstrap CIs.

    ``engine``: "kernel" (ours, fast) or "generate" (``transformers.generate``, the reference).
    ``exclude_seen``: never recommend a title from the user's history (kernel only) — fair
    where the data has no repeat consumption (MovieLens: the target is never in the history).
    ``done``: ranked lists of the first users from an interrupted run (they are not searched
    again); ``checkpoint(ranked)`` is called after every batch with all lists so far.
    """
    if exclude_seen and engine != "kernel":
        raise PruneRecError("exclude_seen needs the kernel engine")
    from .beam_search import TensorTrie

    model.eval()
    trie = TitleTrie(tokenizer, titles)
    if engine == "kernel":
        tt = TensorTrie(trie, next(model.parameters()).device)
        search = partial(kernel_beams, model, tokenizer, trie=trie, num_beams=num_beams,
                         length_penalty=length_penalty, tensor_trie=tt)
    elif engine == "generate":
        search = partial(beam_search_generate, model, tokenizer, trie=trie, num_beams=num_beams,
                         length_penalty=length_penalty)
    else:
        raise PruneRecError(f"unknown engine {engine!r}; use kernel or generate")
    ranked: list[list[str | None]] = list(done or [])
    t0 = time.time()
    bar = tqdm(total=len(df), initial=len(ranked), desc="evaluate", unit="user", disable=not progress)
    histories = df["history_item_title"].tolist()
    for i in range(len(ranked), len(df), batch_size):
        prompts = [prompt_ids(tokenizer, h, cfg, cutoff_len - trie.depth) for h in histories[i:i + batch_size]]
        extra = {"banned_titles": histories[i:i + batch_size]} if exclude_seen else {}
        for beams in search(prompts, **extra):
            ranked.append([t for t, _ in beams])
        bar.update(len(prompts))
        if checkpoint is not None:
            checkpoint(ranked)
    bar.close()
    return _result(df, ranked, {"num_beams": num_beams, "length_penalty": length_penalty, "engine": engine,
                                "exclude_seen": exclude_seen, "dtype": precision_of(model),
                                "seconds": round(time.time() - t0, 1)})


def most_popular(train: pd.DataFrame, df: pd.DataFrame, k: int = 20, exclude_seen: bool = False) -> EvalResult:
    """Baseline: the top-k most frequent training targets (minus the user's history if ``exclude_seen``)."""
    ranking = train["item_title"].value_counts(sort=True).index.tolist()
    if exclude_seen:
        lists = []
        for hist in df["history_item_title"]:
            seen = set(hist)
            lists.append([t for t in ranking[:k + len(seen)] if t not in seen][:k])
    else:
        lists = [ranking[:k]] * len(df)
    return _result(df, lists, {"num_beams": k, "length_penalty": None, "exclude_seen": exclude_seen,
                               "seconds": 0.0})


def save_result(res: EvalResult, folder: str | Path, name: str, settings: dict) -> None:
    """``ranks/<name>.csv`` (per-user ranks), then ``results/<name>.json`` (the step's record:
    ``settings`` and the metrics) in a run folder; the JSON, written last, marks it complete."""
    from .steps import record

    folder = resolve(folder)
    rfile = folder / "ranks" / f"{name}.csv"
    tmp = unique_temp(rfile)
    res.per_user.to_csv(tmp, index=False)
    tmp.replace(rfile)
    atomic_write_text(folder / "results" / f"{name}.json", json.dumps(record(settings, res.metrics), indent=1))


def _read_result(folder: Path, name: str, rec: dict) -> EvalResult:
    from .steps import SETTINGS

    rfile = folder / "ranks" / f"{name}.csv"
    try:
        per_user = pd.read_csv(rfile, dtype={"user_id": str}, keep_default_na=False)
    except FileNotFoundError:
        raise PruneRecError(f"{rfile} is missing (its metrics are in {folder / 'results' / name}.json): delete "
                            f"both to evaluate again") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PruneRecError(f"{rfile} is corrupt ({type(exc).__name__}); delete it and "
                            f"{folder / 'results' / name}.json to evaluate again") from None
    return EvalResult(per_user, {k: v for k, v in rec.items() if k != SETTINGS})


def load_result(folder: str | Path, name: str) -> EvalResult | None:
    """A stored evaluation as it is (for reports that read finished results), or None."""
    from .steps import read_json

    folder = resolve(folder)
    mfile = folder / "results" / f"{name}.json"
    if not mfile.exists():
        return None
    return _read_result(folder, name, read_json(mfile))


def cached_result(folder: str | Path, name: str, settings: dict) -> EvalResult | None:
    """The stored evaluation ``name`` if it was made with ``settings`` (else None, after one line
    saying what changed: the caller evaluates again)."""
    from .steps import stored

    folder = resolve(folder)
    rec = stored(folder / "results" / f"{name}.json", settings, on_change="rebuild")
    return None if rec is None else _read_result(folder, name, rec)


def fixed_test_users(dataset: str, prof, runs_root=None) -> pd.DataFrame:
    """The profile's fixed, seeded sample of test rows — the same users for every model."""
    from .run import Run

    return Run(dataset, prof, runs_root).rows("budget", prof.max_test, "test")


def users_identity(users: pd.DataFrame) -> str:
    """16 hex digits of the SHA-256 of the users' ids and targets, in order."""
    import hashlib

    text = json.dumps([users["user_id"].astype(str).tolist(), users["item_title"].astype(str).tolist()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluation_settings(run, users: pd.DataFrame, length_penalty: float, exclude_seen: bool, model_id: str,
                        engine: str = "kernel") -> dict:
    """Everything a stored evaluation depends on: which users (their identity), the search
    (beams, length penalty, engine, seen-item rule, precision, prompt cut-off), the model's
    identity and the data's."""
    prof = run.prof
    return {"users": len(users), "users_id": users_identity(users), "num_beams": prof.num_beams,
            "length_penalty": length_penalty, "engine": engine, "exclude_seen": exclude_seen,
            "dtype": prof.eval_dtype, "cutoff_len": prof.cutoff_len, "model_id": model_id, "data_id": run.data_id()}


def evaluate_cached(name: str, model_dir: str | Path, dataset: str, prof, runs_root=None,
                    length_penalty: float | None = None, limit: int | None = None,
                    progress: bool = True, exclude_seen: bool = False) -> EvalResult:
    """Evaluate ``model_dir`` on the profile's fixed test sample, or read the stored result.

    Results live in the run folder as ``results/<name>.json`` + ``ranks/<name>.csv``, a cached step
    keyed by :func:`evaluation_settings` (users, search, precision, the model's and the data's
    identity: a model retrained in the same folder is evaluated again, after one printed line).
    """
    from .assets import load_tokenizer, resolve_model
    from .identity import model_identity
    from .run import Run

    run = Run(dataset, prof, runs_root)
    model_dir = resolve_model(model_dir)
    lp = prof.length_penalty if length_penalty is None else length_penalty
    test = fixed_test_users(dataset, prof, runs_root)
    if limit is not None:
        test = test.iloc[:limit]
    settings = evaluation_settings(run, test, lp, exclude_seen, model_identity(model_dir))
    cached = cached_result(run.folder, name, settings)
    if cached:
        return cached
    model = model_for_eval(model_dir, prof.eval_dtype)
    return evaluate_resumable(model, load_tokenizer(model_dir), test, run, name, settings, lp, progress,
                              exclude_seen=exclude_seen)


def evaluate_resumable(model, tok, test: pd.DataFrame, run, name: str, settings: dict, length_penalty: float,
                       progress: bool = True, extra: dict | None = None, exclude_seen: bool = False) -> EvalResult:
    """Evaluate ``model`` on ``test`` and store ``results/<name>.json`` (+ ranks) in ``run``'s folder.

    Every finished batch of users is checkpointed to ``ranks/.<name>.partial.json`` (a record with
    the same ``settings``); a later call with the same settings resumes after them (the partial
    file is removed once the result is stored). ``extra`` is merged into the stored metrics.
    The run folder is locked meanwhile.
    """
    from .steps import record, run_lock, stored

    partial_file = run.folder / "ranks" / f".{name}.partial.json"
    with run_lock(run.folder):
        part = stored(partial_file, settings, on_change="rebuild", quiet=True) or {}
        done, spent = part.get("ranked", []), float(part.get("seconds", 0.0))
        t0 = time.time()

        def checkpoint(ranked):  # the lists so far, so that an interrupted evaluation resumes
            atomic_write_text(partial_file, json.dumps(record(settings, {"ranked": ranked,
                                                                         "seconds": spent + time.time() - t0})))

        res = evaluate_model(model, tok, test, get_dataset_config(run.dataset), read_items(run.splits)["item_title"].tolist(),
                             run.prof.num_beams, length_penalty, run.prof.eval_batch, run.prof.cutoff_len, progress,
                             exclude_seen=exclude_seen, done=done, checkpoint=checkpoint)
        res.metrics["seconds"] = round(spent + time.time() - t0, 1)
        if done:
            res.metrics["resumed_after_users"] = len(done)
        res.metrics.update({"model_id": settings["model_id"], **(extra or {})})
        save_result(res, run.folder, name, settings)
        partial_file.unlink(missing_ok=True)
    return res


def popularity_cached(dataset: str, prof, runs_root=None, limit: int | None = None, exclude_seen: bool = False,
                      name: str = "most_popular") -> EvalResult:
    """Most-popular baseline on the same test sample as :func:`evaluate_cached`, stored alike
    (computed again each time: it takes milliseconds)."""
    from .run import Run

    run = Run(dataset, prof, runs_root)
    test = fixed_test_users(dataset, prof, runs_root)
    test = test.iloc[:limit] if limit else test
    res = most_popular(run.split("train"), test, exclude_seen=exclude_seen)
    save_result(res, run.folder, name, {"users": len(test), "users_id": users_identity(test), "engine": "most_popular",
                                        "exclude_seen": exclude_seen, "data_id": run.data_id()})
    return res


def metrics_table(results: dict[str, EvalResult], digits: int = 4) -> pd.DataFrame:
    """One row per model: HR/NDCG@10/20 with their 95% intervals, invalid count, diversity."""
    rows = {}
    for name, res in results.items():
        m = res.metrics
        row = {}
        for key in METRICS:
            row[key] = round(m[key], digits)
            row[f"{key} 95% CI"] = interval_text(*m["ci95"][key], digits)
        row.update({"n": m["n"], "invalid": m["invalid"], "distinct top-10": m["distinct_top10"],
                    "modal top-1 share": round(m["modal_top1_share"], 3)})
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def interval_text(lo: float, hi: float, digits: int = 4) -> str:
    """A 95% interval as the tables print it, "[lo, hi]" (read back by ``plots._interval``)."""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def retention(metrics: dict, ref: dict, keys=METRICS) -> dict:
    """metric / reference metric per key (NaN where the reference is 0), and their mean "avg"
    (the paper's retention). ``metrics``, ``ref``: :attr:`EvalResult.metrics` dicts."""
    row = {k: (metrics[k] / ref[k] if ref[k] else math.nan) for k in keys}
    row["avg"] = sum(row.values()) / len(keys)
    return row


def retention_table(results: dict[str, EvalResult], reference: str, metrics=METRICS) -> pd.DataFrame:
    """:func:`retention` of every model against ``reference``, one row each."""
    ref = results[reference].metrics
    return pd.DataFrame.from_dict({name: retention(res.metrics, ref, metrics) for name, res in results.items()},
                                  orient="index")


@cli
def main(argv: list[str] | None = None) -> int:
    from .assets import load_tokenizer, resolve_model
    from .cli_args import positive_int
    from .profiles import get_profile

    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF model folder (or profile model name)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ap.add_argument("--limit", type=positive_int, default=None, help="evaluate a seeded sample of N rows (N >= 1)")
    ap.add_argument("--profile", default="default", help="beam count, batch and seed come from it")
    ap.add_argument("--splits", default=None, help="folder with the CSV splits (default runs/DATASET/splits)")
    ap.add_argument("--length-penalty", type=float, default=None)
    ap.add_argument("--engine", default="kernel", choices=["kernel", "generate"],
                    help="our constrained beam-search kernel, or transformers.generate (reference)")
    ap.add_argument("--exclude-seen", action="store_true", help="never recommend an item of the user's history")
    ap.add_argument("--dtype", default=None, choices=list(DTYPES),
                    help="evaluation precision (default: the profile's eval_dtype); bf16 runs on AMX / tensor cores")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile)
    cfg = get_dataset_config(args.dataset)
    splits = resolve(args.splits) if args.splits else splits_dir(args.dataset)
    df = sample_rows(read_split(splits, args.split), args.limit, prof.seed)
    model = model_for_eval(args.model, args.dtype or prof.eval_dtype)
    tok = load_tokenizer(resolve_model(args.model))
    lp = prof.length_penalty if args.length_penalty is None else args.length_penalty
    res = evaluate_model(model, tok, df, cfg, read_items(splits)["item_title"].tolist(), prof.num_beams, lp,
                         prof.eval_batch, prof.cutoff_len, progress=sys.stderr.isatty(), engine=args.engine,
                         exclude_seen=args.exclude_seen)
    keys = ("hr@10", "hr@20", "ndcg@10", "ndcg@20", "n", "invalid", "dtype")
    print(json.dumps({k: res.metrics[k] for k in keys}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
