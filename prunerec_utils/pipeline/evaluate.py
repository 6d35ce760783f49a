"""Evaluation of a run's models: constrained beam search, ranks, HR/NDCG@K, stored results, CLI.

Ranks and HR/NDCG@K with bootstrap intervals come from :mod:`prunerec_utils.method.metrics`;
stored and resumable evaluations are cached steps (:mod:`prunerec_utils.steps`).

Every model — the teacher, each pruned stage, every baseline — is scored the same way: beam
search (20 beams) restricted to item titles (:mod:`prunerec_utils.method.title_search`). The
rank of a sample is the position of the first beam whose title equals the target title
(duplicated titles count as one item). Two engines give the same ranked lists: our kernel
(:mod:`prunerec_utils.method.beam_search`, the default) and ``transformers.generate`` with
``prefix_allowed_tokens_fn`` (the reference it is tested against).

CLI::

    python -m prunerec_utils.pipeline.evaluate --model runs/ml-100k/default/models/teacher \
        --dataset ml-100k --split test --limit 200
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import PruneRecError, cli
from ..assets import load_model, load_tokenizer, resolve_model
from ..cli_args import positive_int
from ..data import DatasetConfig, get_dataset_config, read_items, read_split, sample_rows
from ..identity import model_identity
from ..method.beam_search import TensorTrie
from ..method.metrics import (METRICS, bootstrap_ci, decision, detectable_difference, interval_text, list_diversity,
                              lists_agreement, metrics_from_ranks, paired_bootstrap, rank_of, retention)
from ..method.title_search import TitleTrie, beam_search_generate, kernel_beams
from ..paths import atomic_write_text, cli_path, resolve, unique_temp
from ..profiles import get_profile
from ..prompts import prompt_ids
from ..steps import SETTINGS, read_json, record, run_lock, stored
from .run import splits_dir

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # evaluation precisions (profile ``eval_dtype``)


def compare(res_a: EvalResult, res_b: EvalResult, digits: int = 4, labels: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Table of A - B per metric with its paired 95% interval (both evaluated on the same rows;
    users resampled with all their rows), whether it excludes 0, the smallest difference these rows
    could detect (:func:`~prunerec_utils.method.metrics.detectable_difference`, 80% power), the
    verdict (:func:`~prunerec_utils.method.metrics.decision`, ``labels`` naming A and B), and how
    many rows from how many users it rests on."""
    if not res_a.per_user["user_id"].equals(res_b.per_user["user_id"]):
        raise PruneRecError("the two evaluations are not on the same test rows")
    users = res_a.per_user["user_id"].astype(str)
    diff = paired_bootstrap(res_a.per_user["rank"], res_b.per_user["rank"], users)
    return pd.DataFrame({k: {"difference": round(d, digits), "95% CI": interval_text(lo, hi, digits),
                             "significant": not lo <= 0 <= hi,
                             "detectable (80% power)": round(detectable_difference(lo, hi), digits),
                             "verdict": decision(lo, hi, *labels),
                             "rows": len(users), "users": users.nunique()}
                         for k, (d, lo, hi) in diff.items()}).T


def budget_power(res_a: EvalResult, res_b: EvalResult, sizes=None, metric: str = "hr@20",
                 labels: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """What a paired comparison of A and B (the same rows) could decide with fewer rows: for each
    size n (default: 1/8, 1/4, 1/2 and all of the evaluated rows) the first n rows of the fixed
    sample — itself a seeded sample, so its first n rows are one too —, the users they come from,
    the paired difference of ``metric`` with its 95% interval (users resampled), the smallest
    difference it could detect (80% power) and its verdict (``labels`` naming A and B). Rows beyond the evaluated ones cannot
    be shown; more rows from the same users narrow the interval less than more users would."""
    if not res_a.per_user["user_id"].equals(res_b.per_user["user_id"]):
        raise PruneRecError("the two evaluations are not on the same test rows")
    total = len(res_a.per_user)
    sizes = sorted({max(1, total // d) for d in (8, 4, 2, 1)} if sizes is None else {min(int(n), total) for n in sizes})
    out = {}
    for n in sizes:
        users = res_a.per_user["user_id"].iloc[:n].astype(str).to_numpy()
        d, lo, hi = paired_bootstrap(res_a.per_user["rank"].iloc[:n], res_b.per_user["rank"].iloc[:n], users)[metric]
        out[n] = {"rows": n, "users": len(set(users)), "difference": round(d, 4), "95% CI": interval_text(lo, hi),
                  "detectable (80% power)": round(detectable_difference(lo, hi), 4), "verdict": decision(lo, hi, *labels)}
    return pd.DataFrame.from_dict(out, orient="index").set_index("rows")


def list_agreement(res_a: "EvalResult", res_b: "EvalResult", k: int = 20) -> dict:
    """:func:`lists_agreement` of two evaluations on the same users."""
    return lists_agreement([json.loads(t) for t in res_a.per_user["top"]],
                           [json.loads(t) for t in res_b.per_user["top"]], k)


@dataclass
class EvalResult:
    per_user: pd.DataFrame  # one row per test row: user_id, target, rank, top (JSON list of the ranked titles)
    metrics: dict  # n (rows), users, the metrics, ci95 (users resampled), list diversity, settings

    def summary(self, digits: int = 4) -> dict:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in self.metrics.items()}


def _result(df: pd.DataFrame, ranked: list[list[str | None]], extra: dict) -> EvalResult:
    ranks = [rank_of(t, lst) for t, lst in zip(df["item_title"], ranked)]
    per_user = pd.DataFrame({"user_id": df["user_id"].values, "target": df["item_title"].values,
                             "rank": ranks, "top": [json.dumps(lst[:20]) for lst in ranked]})
    m = {"n": len(ranks), **metrics_from_ranks(ranks),
         "invalid": int(sum(t is None for lst in ranked for t in lst)), **list_diversity(ranked), **extra}
    return EvalResult(per_user, with_intervals(per_user, m))


def with_intervals(per_user: pd.DataFrame, metrics: dict) -> dict:
    """``metrics`` with ``ci95`` from the rows' ranks, users resampled with all their rows, and the
    user count: computed from the stored ranks whenever an evaluation is made or read, so an
    evaluation stored with intervals of another kind is never shown with them."""
    users = per_user["user_id"].astype(str)
    ci = bootstrap_ci(per_user["rank"].to_numpy(), users.to_numpy())
    return {**metrics, "users": int(users.nunique()), "ci95": {k: list(v) for k, v in ci.items()},  # as stored in JSON
            "ci95_resamples": "users"}


def first_rows(res: EvalResult, n: int) -> EvalResult:
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
    if dtype not in DTYPES:
        raise PruneRecError(f"unknown evaluation dtype {dtype!r}; use {' or '.join(DTYPES)}")
    model = load_model(model_dir, dtype=DTYPES[dtype])
    return model.cuda() if torch.cuda.is_available() else model


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
    folder = resolve(folder)
    rfile = folder / "ranks" / f"{name}.csv"
    (folder / "results" / f"{name}.json").unlink(missing_ok=True)  # never old metrics beside new ranks
    tmp = unique_temp(rfile)
    res.per_user.to_csv(tmp, index=False)
    tmp.replace(rfile)
    atomic_write_text(folder / "results" / f"{name}.json", json.dumps(record(settings, res.metrics), indent=1))


def _read_result(folder: Path, name: str, rec: dict) -> EvalResult:
    rfile = folder / "ranks" / f"{name}.csv"
    try:
        per_user = pd.read_csv(rfile, dtype={"user_id": str}, keep_default_na=False)
    except FileNotFoundError:
        raise PruneRecError(f"{rfile} is missing (its metrics are in {folder / 'results' / name}.json): delete "
                            f"both to evaluate again") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PruneRecError(f"{rfile} is corrupt ({type(exc).__name__}); delete it and "
                            f"{folder / 'results' / name}.json to evaluate again") from None
    return EvalResult(per_user, with_intervals(per_user, {k: v for k, v in rec.items() if k != SETTINGS}))


def load_result(folder: str | Path, name: str) -> EvalResult | None:
    """A stored evaluation as it is (for reports that read finished results), or None."""
    folder = resolve(folder)
    mfile = folder / "results" / f"{name}.json"
    if not mfile.exists():
        return None
    return _read_result(folder, name, read_json(mfile))


def cached_result(folder: str | Path, name: str, settings: dict) -> EvalResult | None:
    """The stored evaluation ``name`` if it was made with ``settings`` (else None, after one line
    saying what changed: the caller evaluates again)."""
    folder = resolve(folder)
    rec = stored(folder / "results" / f"{name}.json", settings, on_change="rebuild")
    return None if rec is None else _read_result(folder, name, rec)


def fixed_test_rows(run) -> pd.DataFrame:
    """The profile's fixed, seeded sample of test rows — the same users for every model of ``run``."""
    return run.rows("budget", run.prof.max_test, "test")


def users_identity(users: pd.DataFrame) -> str:
    """16 hex digits of the SHA-256 of the users' ids and targets, in order."""
    text = json.dumps([users["user_id"].astype(str).tolist(), users["item_title"].astype(str).tolist()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def users_settings(run, users: pd.DataFrame, engine: str, exclude_seen: bool) -> dict:
    """What every stored evaluation depends on, whatever ranks the items: which users (their
    identity), the ranking engine, the seen-item rule and the data's identity."""
    return {"users": len(users), "users_id": users_identity(users), "engine": engine, "exclude_seen": exclude_seen,
            "data_id": run.data_id()}


def evaluation_settings(run, users: pd.DataFrame, length_penalty: float, exclude_seen: bool, model_id: str,
                        engine: str = "kernel") -> dict:
    """Everything a stored LLM evaluation depends on: :func:`users_settings`, the search (beams,
    length penalty, precision, prompt cut-off) and the model's identity."""
    prof = run.prof
    return {**users_settings(run, users, engine, exclude_seen), "num_beams": prof.num_beams,
            "length_penalty": length_penalty, "dtype": prof.eval_dtype, "cutoff_len": prof.cutoff_len,
            "model_id": model_id}


def evaluate_cached(run, name: str, model_dir: str | Path, length_penalty: float | None = None,
                    limit: int | None = None, progress: bool = True, exclude_seen: bool = False) -> EvalResult:
    """Evaluate ``model_dir`` on the profile's fixed test sample, or read the stored result.
    Results live in the run folder as ``results/<name>.json`` + ``ranks/<name>.csv``, a cached step
    keyed by :func:`evaluation_settings` (users, search, precision, the model's and the data's
    identity: a model retrained in the same folder is evaluated again, after one printed line).
    """
    prof = run.prof
    model_dir = resolve_model(model_dir)
    lp = prof.length_penalty if length_penalty is None else length_penalty
    test = fixed_test_rows(run)
    if limit is not None:
        test = test.iloc[:limit]
    settings = evaluation_settings(run, test, lp, exclude_seen, model_identity(model_dir))
    cached = cached_result(run.folder, name, settings)
    if cached:
        return cached
    model = model_for_eval(model_dir, prof.eval_dtype)
    return evaluate_resumable(run, model, load_tokenizer(model_dir), test, name, settings, lp, progress,
                              exclude_seen=exclude_seen)


def evaluate_resumable(run, model, tok, test: pd.DataFrame, name: str, settings: dict, length_penalty: float,
                       progress: bool = True, extra: dict | None = None, exclude_seen: bool = False) -> EvalResult:
    """Evaluate ``model`` on ``test`` and store ``results/<name>.json`` (+ ranks) in ``run``'s folder.
    Every finished batch of users is checkpointed to ``ranks/.<name>.partial.json`` (a record with
    the same ``settings``); a later call with the same settings resumes after them (the partial
    file is removed once the result is stored). ``extra`` is merged into the stored metrics.
    The run folder is locked meanwhile.
    """
    partial_file = run.folder / "ranks" / f".{name}.partial.json"
    with run_lock(run.folder):
        part = stored(partial_file, settings, on_change="rebuild", quiet=True) or {}
        done, spent = part.get("ranked", []), float(part.get("seconds", 0.0))
        t0 = time.time()

        def checkpoint(ranked):  # the lists so far, so that an interrupted evaluation resumes
            atomic_write_text(partial_file, json.dumps(record(settings, {"ranked": ranked,
                                                                         "seconds": spent + time.time() - t0})))

        titles = read_items(run.splits)["item_title"].tolist()
        res = evaluate_model(model, tok, test, run.cfg, titles, run.prof.num_beams,
                             length_penalty, run.prof.eval_batch, run.prof.cutoff_len, progress,
                             exclude_seen=exclude_seen, done=done, checkpoint=checkpoint)
        res.metrics["seconds"] = round(spent + time.time() - t0, 1)
        if done:
            res.metrics["resumed_after_users"] = len(done)
        res.metrics.update({"model_id": settings["model_id"], **(extra or {})})
        partial_file.unlink(missing_ok=True)  # first: a crash after it re-evaluates, never resumes a done one
        save_result(res, run.folder, name, settings)
    return res


def popularity_cached(run, limit: int | None = None, exclude_seen: bool = False,
                      name: str = "most_popular") -> EvalResult:
    """Most-popular baseline on the same test sample as :func:`evaluate_cached`, stored alike
    (computed again each time: it takes milliseconds)."""
    test = fixed_test_rows(run)
    test = test.iloc[:limit] if limit else test
    res = most_popular(run.split("train"), test, exclude_seen=exclude_seen)
    save_result(res, run.folder, name, users_settings(run, test, "most_popular", exclude_seen))
    return res


def metrics_table(results: dict[str, EvalResult], digits: int = 4) -> pd.DataFrame:
    """One row per model, one cell per metric: "value [lo, hi]" (95% bootstrap interval, users
    resampled) for HR/NDCG@10/20, then the test rows, the users they come from, invalid beams and
    list diversity. A display table: the numbers
    stay in the results (figures read ``res.metrics`` and its ``ci95``)."""
    rows = {}
    for name, res in results.items():
        m = res.metrics
        row = {key.upper(): f"{m[key]:.{digits}f} {interval_text(*m['ci95'][key], digits)}" for key in METRICS}
        row.update({"rows": m["n"], "users": m.get("users"), "invalid": m["invalid"], "distinct top-10": m["distinct_top10"],
                    "modal top-1": round(m["modal_top1_share"], 3)})
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def retention_table(results: dict[str, EvalResult], reference: str, metrics=METRICS) -> pd.DataFrame:
    """:func:`retention` of every model against ``reference``, one row each."""
    ref = results[reference].metrics
    return pd.DataFrame.from_dict({name: retention(res.metrics, ref, metrics) for name, res in results.items()},
                                  orient="index")


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.pipeline.evaluate", description=__doc__.split("\n")[0])
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

    splits = cli_path(args.splits) if args.splits else splits_dir(args.dataset)
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
