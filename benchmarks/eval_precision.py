"""Is a bf16 evaluation safe? The run's teacher evaluated in fp32 and in bf16 on the same users.

    python benchmarks/eval_precision.py --profile default [--users 1000] \
        [--json benchmarks/results/eval_precision_default.json]

Trains the profile's teacher if the run folder has none (``stages.train_teacher``, resumable),
evaluates it on the profile's fixed test users in both precisions (stored in the run folder as
``teacher`` / ``teacher_bf16``, so a re-run only reads them), and prints per precision the
metrics and seconds per user, the paired bootstrap of HR@10/20 and NDCG@10/20 (bf16 − fp32) with
95% intervals, the share of users with the same top-1, the mean top-20 overlap, and the verdict
of the rule the profiles follow: bf16 may be the default evaluation precision only if every
paired interval contains 0 and at least 95% of the users get the same top-1.
"""

import argparse
import sys
from dataclasses import replace

from _report import emit, machine

from prunerec_utils import cli
from prunerec_utils.cli_args import device, positive_int
from prunerec_utils.data import prepare
from prunerec_utils.pipeline.evaluate import METRICS, evaluate_cached, list_agreement, paired_bootstrap
from prunerec_utils.pipeline.run import Run, splits_dir
from prunerec_utils.pipeline.stages import train_teacher
from prunerec_utils.profiles import get_profile

SAME_TOP1 = 0.95  # the least share of users whose top-1 must not change


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default=None, help="default: the profile's dataset")
    ap.add_argument("--users", type=positive_int, default=None, help="default: the profile's max_test")
    ap.add_argument("--device", default="cpu", type=device, help="cpu or cuda")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile, max_test=args.users)
    dataset = args.dataset or prof.dataset
    prepare(dataset, splits_dir(dataset))
    teacher, _ = train_teacher(Run(dataset, prof))
    res = {}
    for dtype, name in (("fp32", "teacher"), ("bf16", "teacher_bf16")):
        res[dtype] = evaluate_cached(Run(dataset, replace(prof, eval_dtype=dtype)), name, teacher)
    diff = paired_bootstrap(res["bf16"].per_user["rank"], res["fp32"].per_user["rank"],
                            res["fp32"].per_user["user_id"].astype(str))
    lists = list_agreement(res["bf16"], res["fp32"])
    holds = all(lo <= 0 <= hi for _, lo, hi in diff.values()) and lists["same_top1"] >= SAME_TOP1
    n = res["fp32"].metrics["n"]
    emit({**machine(args.device), "profile": prof.name, "dataset": dataset, "teacher": str(teacher), "rows": n,
          "users": res["fp32"].metrics["users"],
          "metrics": {d: {m: round(r.metrics[m], 4) for m in METRICS} for d, r in res.items()},
          "s_per_user": {d: round(r.metrics["seconds"] / n, 3) for d, r in res.items()},
          "bf16_minus_fp32": {m: [round(x, 4) for x in v] for m, v in diff.items()},
          "same_top1": round(lists["same_top1"], 3), "top20_overlap": round(lists["mean_overlap"], 3),
          "identical_lists": round(lists["identical"], 3),
          "bf16_safe_as_default": holds}, args.json)


if __name__ == "__main__":
    sys.exit(main())
