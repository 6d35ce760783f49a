"""Learning curve of the BIGRec teacher: training samples vs HR/NDCG@20 and list diversity.

Each budget fine-tunes a fresh teacher from the profile's base model with the profile's
hyper-parameters (only ``max_train`` changes), evaluates it on the profile's fixed test users
with the constrained beam search, and appends one row to a JSON file (written atomically after
every budget, so a cut-off run keeps what it finished)::

    python -m prunerec_utils.studies.learning_curve --profile default --samples 1024 2048 4096 \\
        --out results/learning_curve/ml-100k-default-cpu.json

Budgets already in ``--out`` are skipped; models live in ``runs/<ds>/<profile>/models/teacher_n<N>``
(``--drop-models`` deletes each after its evaluation).

An A/B of two training steps on the same samples (same seeded subset, same test rows) is two curves, each
arm in its own run folder and file, e.g. the CPU's step against the autocast step::

    PRUNEREC_RUNS=runs/ab-bf16 python -m prunerec_utils.studies.learning_curve --profile default \
        --samples 8192 --max-test 500 --out results/learning_curve/ml-100k-default-cpu-bf16.json
    PRUNEREC_RUNS=runs/ab-autocast python -m prunerec_utils.studies.learning_curve --profile default \
        --samples 8192 --max-test 500 --train-precision autocast --no-compile \
        --out results/learning_curve/ml-100k-default-cpu-autocast.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from .. import cli
from ..cli_args import positive_int
from ..data import prepare
from ..hardware import device_name
from ..paths import atomic_write_text, resolve
from ..pipeline.evaluate import evaluate_cached, popularity_cached
from ..pipeline.finetune import training_settings
from ..pipeline.run import Run
from ..pipeline.stages import train_teacher
from ..profiles import CHOICES, get_profile
from ..steps import record, stored

METRICS = ("hr@10", "hr@20", "ndcg@10", "ndcg@20", "distinct_top10", "modal_top1_share", "n")


def curve_point(run, samples: int, progress: bool = False, drop_model: bool = False) -> dict:
    """Fine-tune on ``samples`` training samples, evaluate, and return one row of the curve."""
    point = Run(run.dataset, replace(run.prof, max_train=samples), run.root)
    name = f"teacher_n{samples}"
    t0 = time.time()
    folder, summary = train_teacher(point, progress, name=name)
    res = evaluate_cached(point, name, folder, progress=progress)
    if drop_model:
        shutil.rmtree(folder, ignore_errors=True)
    m = res.metrics
    return {"samples": samples, "steps": summary["steps"], "train_seconds": summary["wall_seconds"],
            "eval_seconds": m.get("seconds"), "best_eval_loss": summary["best_eval_loss"],
            **{k: m[k] for k in METRICS}, "ci95": m["ci95"], "wall_seconds": round(time.time() - t0, 1)}


CURVE_EVAL = ("model", "max_test", "num_beams", "length_penalty", "eval_dtype")  # what else a point depends on


def run_curve(run, budgets: list[int], out: str | Path, progress: bool = False, drop_models: bool = False) -> dict:
    """Each of ``budgets`` in the given order; the JSON at ``out`` grows one row per finished budget.
    The file is a step record (:mod:`prunerec_utils.steps`): its rows are continued only for the
    same dataset, profile (all fields but ``max_train``) and data; otherwise refused in one line."""
    out = resolve(out)
    prepare(run.dataset, run.splits)
    prof = run.prof
    settings = {"dataset": run.dataset, "profile": prof.name, "data_id": run.data_id(),
                "hyper": {k: v for k, v in training_settings(prof, **{f: getattr(prof, f) for f in CURVE_EVAL}).items()
                          if k != "max_train"}}
    doc = stored(out, settings, remedy="or choose another --out") or {}
    pop = popularity_cached(run).metrics
    payload = {"dataset": run.dataset, "profile": prof.name, "device": device_name(), "most_popular": {**{k: pop[k] for k in METRICS}, "ci95": pop["ci95"]}}
    rows = {r["samples"]: r for r in doc.get("rows", [])}
    for n in dict.fromkeys(budgets):
        if n in rows:
            continue
        rows[n] = curve_point(run, n, progress, drop_models)
        doc = record(settings, {**payload, "rows": [rows[k] for k in sorted(rows)]})
        atomic_write_text(out, json.dumps(doc, indent=1))
        r = rows[n]
        print(f"n={n}: HR@20 {r['hr@20']:.3f} NDCG@20 {r['ndcg@20']:.4f} distinct {r['distinct_top10']} "
              f"modal {r['modal_top1_share']:.2f} train {r['train_seconds']}s eval {r['eval_seconds']}s", flush=True)
    return doc or record(settings, {**payload, "rows": [rows[k] for k in sorted(rows)]})


def curve_table(doc: dict) -> pd.DataFrame:
    """One row per budget: metrics with their 95% intervals, diversity, steps and wall times."""
    rows = []
    for r in doc["rows"]:
        row = {"samples": r["samples"], "steps": r["steps"]}
        for k in ("hr@20", "ndcg@20"):
            row[k], (row[f"{k} lo"], row[f"{k} hi"]) = r[k], r["ci95"][k]
        row.update({"distinct top-10": r["distinct_top10"], "modal top-1 share": r["modal_top1_share"],
                    "validation loss": r["best_eval_loss"], "train s": r["train_seconds"],
                    "eval s": r["eval_seconds"]})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("samples").set_index("samples")


def first_budget_beating_popularity(doc: dict, metrics=("hr@20", "ndcg@20")) -> int | None:
    """Smallest budget whose 95% interval lies above most-popular's on every metric, else None."""
    pop = doc["most_popular"]["ci95"]
    for r in sorted(doc["rows"], key=lambda r: r["samples"]):
        if all(r["ci95"][m][0] > pop[m][1] for m in metrics):
            return r["samples"]
    return None


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.learning_curve", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default=None, help="default: the profile's dataset")
    ap.add_argument("--samples", type=positive_int, nargs="+", required=True,
                    help="training-sample budgets (whole numbers >= 1)")
    ap.add_argument("--out", required=True, help="JSON file the curve is written to")
    ap.add_argument("--eval-batch", type=positive_int, default=None, help="test rows per beam-search call (GPU: larger)")
    ap.add_argument("--batch-size", type=positive_int, default=None, help="per-device batch (keep the effective batch)")
    ap.add_argument("--grad-accum", type=positive_int, default=None)
    ap.add_argument("--max-test", type=positive_int, default=None, help="test rows evaluated (default: the profile's)")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default: the profile's)")
    # the training step, for an A/B of two steps on the same samples (each arm in its own --out and PRUNEREC_RUNS)
    ap.add_argument("--train-precision", choices=CHOICES["train_precision"], default=None,
                    help="training step (default: the profile's)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, dest="train_compile",
                    help="torch.compile the model being trained (default: the profile's)")
    ap.add_argument("--drop-models", action="store_true", help="delete each teacher after its evaluation")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile, eval_batch=args.eval_batch, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       max_test=args.max_test, seed=args.seed, train_precision=args.train_precision,
                       train_compile=args.train_compile)
    run_curve(Run(args.dataset or prof.dataset, prof), args.samples, args.out, progress=sys.stderr.isatty(),
              drop_models=args.drop_models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
