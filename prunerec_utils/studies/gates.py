"""The teacher's science gates: what a fine-tuned teacher must show before pruning it means anything.

* **It recommends better than popularity**: teacher − most popular on HR@20 and on NDCG@20, each with a
  paired 95% interval above 0 (the same test rows, users resampled with all their rows, jointly for both).
* **Its lists are personal**: the title it most often puts first is the first recommendation of at most
  :data:`MODAL_SHARE_LIMIT` (20%) of the evaluated rows, the whole 95% interval of that share (users
  resampled) at or under the limit. A teacher that sends most users to one blockbuster can still beat
  popularity, and every retention measured against it would then be a retention of that one title.

A gate *holds* only when its interval says so; an interval on the wrong side *fails* it; an interval across
the line decides nothing and says so, with the smallest difference these rows and users could detect.

    python -m prunerec_utils.studies.gates --profile default --dataset ml-100k [--runs-root R]

prints the gates of the run's stored teacher and most-popular evaluations (chapter 01 makes them) and exits
0 when every gate holds, 1 when one does not (a GPU shard can stop there instead of pruning such a
teacher), 2 when an evaluation is missing.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from .. import PruneRecError, cli
from ..method import metrics
from ..method.metrics import detectable_difference, interval_text, paired_bootstrap, share_contrast, undecided
from ..pipeline.evaluate import EvalResult, load_result
from ..pipeline.run import Run
from ..profiles import CHOICES, get_profile

MODAL_SHARE_LIMIT = 0.20
HOLDS, FAILS = "holds", "fails"
COLUMNS = ["value", "95% CI", "rows", "users", "detectable (80% power)", "verdict"]


def modal_first(res: EvalResult) -> tuple[str | None, np.ndarray]:
    """:func:`~prunerec_utils.method.metrics.modal_first` of an evaluation's test rows: the flags' mean is its
    ``metrics["modal_top1_share"]``."""
    return metrics.modal_first([json.loads(top) for top in res.per_user["top"]])


def _verdict(lo: float, hi: float, line: float, above: bool) -> str:
    """"holds" when [lo, hi] lies on the gate's side of ``line``, "fails" when it lies wholly on the other, else
    undecided with the smallest detectable distance from the line. The line itself belongs to the "at or under"
    side: a gate "above 0" fails on [0, 0] (no row differs), a share "at or under 20%" holds at 20%."""
    ok, bad = (lo > line, hi <= line) if above else (hi <= line, lo > line)
    if ok:
        return HOLDS
    if bad:
        return FAILS
    return undecided(lo - line, hi - line)


def teacher_gates(teacher: EvalResult, popular: EvalResult, limit: float = MODAL_SHARE_LIMIT) -> pd.DataFrame:
    """One row per gate (index: what must hold), columns :data:`COLUMNS`: the paired differences teacher −
    most popular on HR@20 and NDCG@20 (must be above 0), and the share of rows whose first title is the
    teacher's most common one (must be ≤ ``limit``). Both evaluations must cover the same rows."""
    if not teacher.per_user["user_id"].equals(popular.per_user["user_id"]):
        raise PruneRecError("the teacher's gates need most popular evaluated on the teacher's test rows")
    users = teacher.per_user["user_id"].astype(str).to_numpy()
    n, n_users = len(users), len(set(users))
    diffs = paired_bootstrap(teacher.per_user["rank"], popular.per_user["rank"], users)
    rows = {}
    for metric in ("hr@20", "ndcg@20"):
        d, lo, hi = diffs[metric]
        rows[f"teacher − most popular, {metric.upper()} > 0"] = [
            round(d, 4), interval_text(lo, hi), n, n_users, round(detectable_difference(lo, hi), 4),
            _verdict(lo, hi, 0.0, above=True)]
    _, flags = modal_first(teacher)
    share, lo, hi = share_contrast([flags], (1,), users)
    rows[f"rows whose first title is the teacher's most common one ≤ {limit:.0%}"] = [
        round(share, 4), interval_text(lo, hi), n, n_users, round(detectable_difference(lo - limit, hi - limit), 4),
        _verdict(lo, hi, limit, above=False)]
    return pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)


def gates_line(gates: pd.DataFrame, teacher: EvalResult | None = None) -> str:
    """One sentence: how many gates hold, and each that does not with its verdict (and, given ``teacher``,
    the title its lists favour)."""
    held = int((gates["verdict"] == HOLDS).sum())
    out = f"Science gates: {held} of {len(gates)} hold"
    rest = [f"{gate}: {row['verdict']} ({row['value']:.4f} {row['95% CI']})"
            for gate, row in gates.iterrows() if row["verdict"] != HOLDS]
    if rest:
        out += "; " + "; ".join(rest)
    if teacher is not None:
        title, flags = modal_first(teacher)
        out += f". Most common first title: {title} ({int(flags.sum()):,} of {len(flags):,} rows)"
    return out + "."


def all_hold(gates: pd.DataFrame) -> bool:
    return bool((gates["verdict"] == HOLDS).all())


def stored_gates(run: Run) -> tuple[pd.DataFrame, EvalResult]:
    """:func:`teacher_gates` of the run's stored teacher and most-popular evaluations, and the teacher's."""
    teacher, popular = load_result(run.folder, "teacher"), load_result(run.folder, "most_popular")
    if teacher is None or popular is None:
        missing = " and ".join(n for n, r in (("teacher", teacher), ("most popular", popular)) if r is None)
        raise PruneRecError(f"no stored {missing} evaluation in {run.folder}: run notebook 01 first")
    return teacher_gates(teacher, popular), teacher


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.gates", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default", choices=CHOICES)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--runs-root", default=None, help="the runs folder (default: runs/ or $PRUNEREC_RUNS)")
    args = ap.parse_args(argv)
    run = Run(args.dataset, get_profile(args.profile), args.runs_root)
    gates, teacher = stored_gates(run)
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(gates.to_string())
    print(gates_line(gates, teacher))
    return 0 if all_hold(gates) else 1


if __name__ == "__main__":
    sys.exit(main())
