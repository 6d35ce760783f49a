"""Ranking metrics of a recommender's lists (paper §4.1): HR@K, NDCG@K, bootstrap intervals.

The rank of a user is the 0-based position of the target item in the model's ranked list (-1
when absent). HR@K = share of users with rank < K; NDCG@K = mean over users of
1 / log2(rank + 2) for hits (one relevant item, so the ideal DCG is 1). Intervals are percentile
bootstraps over users; a difference of two models on the same users is bootstrapped *paired*.
"Retention" (the paper's) is a metric of the pruned model over the teacher's, averaged over the
four metrics.
"""

from __future__ import annotations

import math
from collections import Counter

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


def detectable_difference(lo: float, hi: float, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true difference a paired comparison with 95% interval [lo, hi] would find
    significant with probability ``power`` (two-sided, normal approximation): the interval's
    standard error, (hi − lo) / (2·z₀.₉₇₅), times z₀.₉₇₅ + z_power (1.96 + 0.84 = 2.80)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    return (hi - lo) / (2 * z) * (z + NormalDist().inv_cdf(power))


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


def interval_text(lo: float, hi: float, digits: int = 4) -> str:
    """A 95% interval as the tables print it, "[lo, hi]"."""
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def retention(metrics: dict, ref: dict, keys=METRICS) -> dict:
    """metric / reference metric per key (NaN where the reference is 0), and their mean "avg"
    (the paper's retention). ``metrics``, ``ref``: :attr:`EvalResult.metrics` dicts."""
    row = {k: (metrics[k] / ref[k] if ref[k] else math.nan) for k in keys}
    row["avg"] = sum(row.values()) / len(keys)
    return row
