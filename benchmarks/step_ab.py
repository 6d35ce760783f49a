"""Two training steps on the same samples, compared on the same test rows, from two learning-curve files.

    python benchmarks/step_ab.py results/learning_curve/ml-100k-default-cpu-bf16.json \\
        results/learning_curve/ml-100k-default-cpu-autocast.json --samples 8192 --labels bf16 autocast \\
        [--json benchmarks/results/step_ab_cpu.json]

Each file is one arm (``python -m prunerec_utils.studies.learning_curve ... --train-precision ...``, see that
module); they must differ only in the training step. Prints the table of
:func:`prunerec_utils.studies.learning_curve.step_ab` (HR@20, NDCG@20 and the modal top-1 share as paired
differences with user-resampled 95% intervals, the smallest detectable difference, the verdict; the
validation losses) and writes it with both arms' steps, devices and wall times to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import emit  # noqa: E402

from prunerec_utils import PruneRecError, cli  # noqa: E402
from prunerec_utils.cli_args import positive_int  # noqa: E402
from prunerec_utils.paths import cli_path  # noqa: E402
from prunerec_utils.studies.learning_curve import STEP_FIELDS, step_ab  # noqa: E402


def arm_summary(doc: dict, samples: int) -> dict:
    """The step an arm trained with, where, and how long its point took."""
    point = next(r for r in doc["rows"] if r["samples"] == samples)
    return {"device": doc["device"], **{k: doc["settings"]["hyper"].get(k) for k in STEP_FIELDS},
            "train_seconds": point["train_seconds"], "eval_seconds": point["eval_seconds"], "steps": point["steps"]}


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/step_ab.py", description=__doc__.split("\n")[0])
    ap.add_argument("arms", nargs=2, help="the two learning-curve files (A, B)")
    ap.add_argument("--samples", type=positive_int, required=True, help="the budget both arms trained on")
    ap.add_argument("--labels", nargs=2, default=("A", "B"))
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    paths = [cli_path(p) for p in args.arms]
    for p in paths:
        if not p.is_file():
            raise PruneRecError(f"{p}: no such learning-curve file")
    docs = [json.loads(p.read_text()) for p in paths]
    table = step_ab(*docs, args.samples, labels=tuple(args.labels))
    print(table.to_string(), file=sys.stderr)
    emit({"samples": args.samples, "files": args.arms,
          "arms": {label: arm_summary(doc, args.samples) for label, doc in zip(args.labels, docs)},
          "comparison": json.loads(table.to_json(orient="index"))}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
