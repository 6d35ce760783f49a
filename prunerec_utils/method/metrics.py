"""Ranking metrics of a recommender's lists (paper §4.1): HR@K, NDCG@K, bootstrap intervals.

The rank of a test row is the 0-based position of its target item in the model's ranked list (-1
when absent). HR@K = share of rows with rank < K; NDCG@K = mean over rows of 1 / log2(rank + 2)
for hits (one relevant item, so the ideal DCG is 1): the paper's estimand, a mean over test rows.
A user has many test rows (ml-100k: 9,834 rows from 166 users), so intervals are percentile
bootstraps that resample **users**, each with all of its rows; a difference of two models on the
same rows is bootstrapped *paired*, and a comparison is decided only by that paired interval
(:func:`decision`).
"Retention" (the paper's) is a metric of the pruned model over the teacher's, averaged over the
four metrics.
"""

from __future__ import annotations

import math
from collections import Counter
from statistics import NormalDist

import numpy as np

from .. import PruneRecError

KS = (10, 20)
METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20")  # the paper's four, averaged for "retention"


def rank_of(target: str, ranked: list[str | None]) -> int:
    """0-based position of the first beam equal to ``target``; -1 when absent."""
    return ranked.index(target) if target in ranked else -1


def metrics_from_ranks(ranks, ks=KS) -> dict:
    """HR@K and NDCG@K (book/method.md, method-recommender) from 0-based ranks (-1 = miss)."""
    r = np.asarray(ranks)
    out = {}
    for k in ks:
        hit = (r >= 0) & (r < k)
        out[f"hr@{k}"] = float(hit.mean()) if len(r) else math.nan
        gain = np.where(hit, 1.0 / np.log2(np.where(hit, r, 0) + 2), 0.0)
        out[f"ndcg@{k}"] = float(gain.mean()) if len(r) else math.nan
    return out


def _user_sums(ranks, users, ks=KS) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per user: the sum of each metric's per-row value over the user's rows ``[U, M]``, the user's
    row count ``[U]``, and the metric names. The metric of any set of users is then
    (Σ sums) / (Σ counts): the mean over their rows."""
    r, u = np.asarray(ranks), np.asarray(users)
    if r.shape != u.shape:
        raise PruneRecError(f"{len(u)} user ids for {len(r)} ranked rows: every row needs its user id")
    _, idx = np.unique(u, return_inverse=True)
    names, cols = [], []
    for k in ks:
        hit = (r >= 0) & (r < k)
        names += [f"hr@{k}", f"ndcg@{k}"]
        cols += [hit.astype(float), np.where(hit, 1.0 / np.log2(np.where(hit, r, 0) + 2), 0.0)]
    per_row = np.stack(cols, 1) if len(r) else np.zeros((0, len(names)))
    sums = np.zeros((idx.max() + 1 if len(idx) else 0, len(names)))
    np.add.at(sums, idx, per_row)
    return sums, np.bincount(idx, minlength=len(sums)).astype(float), names


def _cluster_bootstrap(sums: np.ndarray, counts: np.ndarray, names: list[str], n_boot: int, seed: int,
                       level: float) -> dict:
    """Percentile interval of each metric over ``n_boot`` resamples of the users (with replacement,
    each drawn user bringing all of its rows); the statistic of a resample is its mean over rows."""
    users = len(counts)
    if users == 0:
        return {k: (math.nan, math.nan) for k in names}
    draws = np.random.default_rng(seed).multinomial(users, np.full(users, 1 / users), size=n_boot)  # [n_boot, U]
    values = (draws @ sums) / (draws @ counts)[:, None]
    lo, hi = np.percentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100], axis=0)
    return {k: (float(a), float(b)) for k, a, b in zip(names, lo, hi)}


def bootstrap_ci(ranks, users, n_boot: int = 1000, seed: int = 0, level: float = 0.95, ks=KS) -> dict:
    """Percentile bootstrap interval of each metric (the mean over test rows), resampling **users**
    with all of their rows: rows of one user share that user's taste and history, so resampling
    rows alone would make the interval too narrow. ``users``: the user id of each row of ``ranks``."""
    return _cluster_bootstrap(*_user_sums(ranks, users, ks), n_boot, seed, level)


def contrast_bootstrap(ranks, weights, users, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                       ks=KS) -> dict:
    """A weighted sum of several models' metrics on the same rows, Σᵢ wᵢ · metric(model i), with a
    percentile interval that resamples users (each with all of its rows) jointly for every model.

    ``ranks``: ``[models][rows]`` ranks of each model on the same rows; ``weights``: one per model
    (``(1, -1)``: the paired difference A − B; ``(-1, 2, -1)``: how much more the middle model
    drops to the last than the first drops to it). ``users``: the user id of each row.
    Returns ``{metric: (value, lo, hi)}``."""
    arrays = [np.asarray(r) for r in ranks]
    if len(arrays) != len(weights) or any(a.shape != arrays[0].shape for a in arrays):
        raise PruneRecError("a paired comparison needs every model evaluated on the same rows")
    parts = [_user_sums(a, users, ks) for a in arrays]
    sums = sum(w * s for w, (s, _, _) in zip(weights, parts))
    _, counts, names = parts[0]
    point = sums.sum(0) / max(counts.sum(), 1)
    ci = _cluster_bootstrap(sums, counts, names, n_boot, seed, level)
    return {k: (float(p), *ci[k]) for k, p in zip(names, point)}


def paired_bootstrap(ranks_a, ranks_b, users, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                     ks=KS) -> dict:
    """Metric differences A - B on the same rows, with a paired percentile bootstrap interval.
    Users are resampled (each with all of its rows), jointly for both models, so the interval
    reflects both the correlation of a user's rows and the per-user correlation of the two models.
    Returns ``{metric: (difference, lo, hi)}`` (:func:`contrast_bootstrap` with weights 1, −1).
    """
    return contrast_bootstrap([ranks_a, ranks_b], (1, -1), users, n_boot, seed, level, ks)


def share_contrast(flags, weights, users, n_boot: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> tuple[float, float, float]:
    """A weighted sum of row shares on the same rows, Σᵢ wᵢ · mean(flags i), with a percentile interval
    that resamples users (each with all of its rows) jointly for every model: e.g. how much more often
    model A's top-1 is its most common title than model B's, weights ``(1, -1)``.

    ``flags``: ``[models][rows]`` 0/1 (or any per-row value) of each model on the same rows;
    ``users``: the user id of each row. Returns ``(value, lo, hi)``."""
    arrays = [np.asarray(f, dtype=float) for f in flags]
    u = np.asarray(users)
    if len(arrays) != len(weights) or any(a.shape != u.shape for a in arrays):
        raise PruneRecError("a share contrast needs one flag per row of every model, on the same rows")
    _, idx = np.unique(u, return_inverse=True)
    per_row = sum(w * a for w, a in zip(weights, arrays))
    sums = np.zeros((idx.max() + 1 if len(idx) else 0, 1))
    np.add.at(sums[:, 0], idx, per_row)
    counts = np.bincount(idx, minlength=len(sums)).astype(float)
    lo, hi = _cluster_bootstrap(sums, counts, ["share"], n_boot, seed, level)["share"]
    return float(per_row.mean()) if len(u) else math.nan, lo, hi


def detectable_difference(lo: float, hi: float, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true difference a paired comparison with 95% interval [lo, hi] would find
    significant with probability ``power`` (two-sided, normal approximation): the interval's
    standard error, (hi − lo) / (2·z₀.₉₇₅), times z₀.₉₇₅ + z_power (1.96 + 0.84 = 2.80)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return (hi - lo) / (2 * z) * (z + NormalDist().inv_cdf(power))


UNDECIDED = "not decided at this budget"
TIE = "tie: no row differs"


def read_interval(lo: float, hi: float, above: str, below: str, tie: str = TIE) -> str:
    """The verdict a paired 95% interval [lo, hi] of a difference supports: ``above`` when it lies above 0,
    ``below`` when under 0, ``tie`` when it is [0, 0] (no row differs: no spread, so nothing to detect), else
    :func:`undecided`. The one rule every comparison of the book is read by."""
    if lo > 0:
        return above
    if hi < 0:
        return below
    if lo == hi == 0:
        return tie
    return undecided(lo, hi)


def undecided(lo: float, hi: float) -> str:
    """"not decided at this budget (detectable ≥ X)": an interval [lo, hi] across 0, with the smallest
    difference these rows and users could have detected (:func:`detectable_difference`)."""
    return f"{UNDECIDED} (detectable ≥ {detectable_difference(lo, hi):.4f})"


def decision(lo: float, hi: float, label_a: str = "A", label_b: str = "B") -> str:
    """The one verdict of a comparison, read off the paired 95% interval [lo, hi] of A − B
    (:func:`read_interval`): "A ahead of B", "A behind B", "tie: no row differs" or "not decided at this
    budget (detectable ≥ X)". Never decided from overlapping single-model intervals."""
    return read_interval(lo, hi, f"{label_a} ahead of {label_b}", f"{label_a} behind {label_b}")


def detectable_clause(verdict: str, detectable: float) -> str:
    """"; smallest detectable X" to append after a paired difference, or "" when ``verdict``
    (:func:`decision`) already states X ("not decided at this budget (detectable ≥ X)") or there is
    nothing to detect (a tie)."""
    return "" if verdict.startswith((UNDECIDED, TIE)) else f"; smallest detectable {detectable:.4f}"


def modal_first(top_lists: list[list[str | None]]) -> tuple[str | None, np.ndarray]:
    """The title ranked first most often over ``top_lists`` (None when no list starts with a title) and, per
    list [n], 1.0 where it starts with that title (0.0 elsewhere: another title, an invalid answer (None) or an
    empty list)."""
    firsts = [lst[0] if lst else None for lst in top_lists]
    counts = Counter(f for f in firsts if f is not None)
    title = counts.most_common(1)[0][0] if counts else None
    return title, np.array([title is not None and f == title for f in firsts], dtype=float)


def list_diversity(top_lists: list[list[str | None]], k: int = 10) -> dict:
    """Collapse check: distinct titles over all top-k lists, and the share of lists that start with the most
    common first title (:func:`modal_first`)."""
    tops = [lst[:k] for lst in top_lists]
    return {"distinct_top10": len({t for lst in tops for t in lst if t}),
            "modal_top1_share": float(modal_first(tops)[1].mean()) if tops else math.nan}


def lists_agreement(lists_a: list[list], lists_b: list[list], k: int = 20) -> dict:
    """How alike two sets of ranked lists of the same users are: identical top-k lists, same top-1,
    and the mean share of the top-k titles the lists have in common."""
    pairs = [(a[:k], b[:k]) for a, b in zip(lists_a, lists_b)]
    n = max(len(pairs), 1)
    return {"users": len(pairs), "identical": sum(a == b for a, b in pairs) / n,
            "same_top1": sum(a[:1] == b[:1] for a, b in pairs) / n,
            "mean_overlap": sum(len(set(a) & set(b)) / k for a, b in pairs) / n}


def interval_text(lo: float, hi: float, digits: int = 4) -> str:
    """A 95% interval as the tables print it, "[lo, hi]"."""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def retention(metrics: dict, ref: dict, keys=METRICS) -> dict:
    """metric / reference metric per key (NaN where the reference is 0), and their mean "avg"
    (the paper's retention). ``metrics``, ``ref``: :attr:`EvalResult.metrics` dicts."""
    row = {k: (metrics[k] / ref[k] if ref[k] else math.nan) for k in keys}
    row["avg"] = sum(row.values()) / len(keys)
    return row
