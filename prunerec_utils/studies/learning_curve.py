"""Learning curve of the BIGRec teacher: training samples vs HR/NDCG@20 and list diversity.

Each budget fine-tunes a fresh teacher from the profile's base model with the profile's
hyper-parameters (only ``max_train`` changes), evaluates it on the profile's fixed test rows
with the constrained beam search, and appends one row to a JSON file (written atomically after
every budget, so a cut-off run keeps what it finished)::

    python -m prunerec_utils.studies.learning_curve --profile default --samples 1024 2048 4096 \\
        --out results/learning_curve/ml-100k-default-cpu.json

Budgets already in ``--out`` are skipped; models live in ``runs/<ds>/<profile>/models/teacher_n<N>``
(``--drop-models`` deletes each after its evaluation).

An A/B of two training steps on the same samples (same seeded subset, same test rows) is two curves, each
arm in its own run folder and file, e.g. the default bf16 step (bf16 weights, fp32 master weights,
length-grouped batches) against the autocast step (fp32 weights under bf16 autocast, batches in random
order), both compiled::

    PRUNEREC_RUNS=runs/ab-bf16 python -m prunerec_utils.studies.learning_curve --profile default \\
        --samples 8192 --max-test 500 --out results/learning_curve/ml-100k-default-cpu-bf16.json
    PRUNEREC_RUNS=runs/ab-autocast python -m prunerec_utils.studies.learning_curve --profile default \\
        --samples 8192 --max-test 500 --train-precision autocast \\
        --out results/learning_curve/ml-100k-default-cpu-autocast.json

:func:`step_ab` compares the two points (paired, users resampled); each point keeps its per-row ranks,
user ids and top-1 titles, so the comparison is recomputed from the files alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import PruneRecError, cli
from ..cli_args import positive_int
from ..data import prepare
from ..hardware import device_name
from ..method.metrics import (UNDECIDED, contrast_bootstrap, decision, detectable_difference, interval_text,
                              share_contrast)
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
    m, pu = res.metrics, res.per_user
    ranks = {"user_id": pu["user_id"].astype(str).tolist(), "rank": pu["rank"].astype(int).tolist(),
             "top1": [(json.loads(t) or [None])[0] for t in pu["top"]]}
    return {"samples": samples, "steps": summary["steps"], "train_seconds": summary["wall_seconds"],
            "eval_seconds": m.get("seconds"), "best_eval_loss": summary["best_eval_loss"],
            **{k: m[k] for k in METRICS}, "ci95": m["ci95"], "wall_seconds": round(time.time() - t0, 1),
            "ranks": ranks}


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


def curve_view(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """:func:`curve_table` as the chapter shows it, narrow enough for the text column: each metric and its
    95% interval in one cell ("0.1335 [0.1190, 0.1500]"), the rest rounded."""
    out = table.drop(columns=[f"{k} {b}" for k in ("hr@20", "ndcg@20") for b in ("lo", "hi")])
    for k in ("hr@20", "ndcg@20"):
        out[k] = [f"{v:.{digits}f} {interval_text(lo, hi, digits)}"
                  for v, lo, hi in zip(table[k], table[f"{k} lo"], table[f"{k} hi"])]
    return out.round({"modal top-1 share": 3, "validation loss": 4, "train s": 0, "eval s": 0})


def first_budget_beating_popularity(doc: dict, metrics=("hr@20", "ndcg@20")) -> int | None:
    """Smallest budget whose 95% interval lies above most-popular's on every metric, else None."""
    pop = doc["most_popular"]["ci95"]
    for r in sorted(doc["rows"], key=lambda r: r["samples"]):
        if all(r["ci95"][m][0] > pop[m][1] for m in metrics):
            return r["samples"]
    return None


CURVES = Path("results") / "learning_curve"  # committed curves: <dataset>-<profile>-<where>.json


def find_curve(dataset: str, profile: str, folder: str | Path = CURVES) -> Path | None:
    """The committed curve of ``dataset`` and ``profile`` (as its file records them) with the most budgets, or
    None where there is none: a chapter never shows another dataset's curve as its own."""
    found = []
    for path in sorted(resolve(folder).glob("*.json")):
        doc = json.loads(path.read_text())
        if (doc.get("dataset"), doc.get("profile")) == (dataset, profile):
            found.append((len(doc.get("rows", [])), path.name, path))
    return max(found)[2] if found else None


def curve_setup(doc: dict) -> str:
    """How a curve was made, from its file: "NVIDIA H200, per-device batch 16 × 1, bf16 autocast step, 1,000 test
    rows" (older files record ``bf16: true`` for the autocast step, newer ones ``train_precision``)."""
    hyper = doc.get("hyper") or doc.get("settings", {}).get("hyper", {})
    step = hyper.get("train_precision") or ("autocast" if hyper.get("bf16") else "fp32")
    step = {"autocast": "bf16 autocast", "bf16": "bf16-weight"}.get(step, step)
    rows = doc["rows"][0]["n"] if doc.get("rows") and "n" in doc["rows"][0] else hyper.get("max_test")
    return (f"{doc['device']}, per-device batch {hyper.get('batch_size')} × {hyper.get('grad_accum')}, {step} step"
            + (f", {rows:,} test rows" if rows else ""))


STEP_FIELDS = ("train_precision", "train_compile", "batch_size", "grad_accum")  # what an A/B's arms may differ in


def step_ab(doc_a: dict, doc_b: dict, samples: int, labels: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """Two training steps on the same samples, compared on the same test rows: HR@20 and NDCG@20 as paired
    differences A − B, and the modal top-1 share (the share of rows whose top-1 is the arm's most common top-1
    title: how concentrated the lists are) as a paired difference too; users resampled with all their rows.
    Each row: both arms' values, the difference with its 95% interval, the smallest difference these rows
    could detect (80% power), the verdict, rows and users.

    ``doc_a`` / ``doc_b``: learning-curve files (:func:`run_curve`) whose settings differ only in the
    training step (``STEP_FIELDS``) and whose point at ``samples`` kept its per-row ranks."""
    hyper = [{k: v for k, v in d["settings"]["hyper"].items() if k not in STEP_FIELDS} for d in (doc_a, doc_b)]
    if hyper[0] != hyper[1] or doc_a["settings"]["data_id"] != doc_b["settings"]["data_id"]:
        diff = sorted(k for k in hyper[0].keys() | hyper[1].keys() if hyper[0].get(k) != hyper[1].get(k))
        raise PruneRecError(f"the two curves differ in more than the training step: {', '.join(diff) or 'data'}")
    points = []
    for doc, label in zip((doc_a, doc_b), labels):
        found = [r for r in doc["rows"] if r["samples"] == samples and "ranks" in r]
        if not found:
            raise PruneRecError(f"arm {label} has no point at {samples} samples with its per-row ranks")
        points.append(found[0])
    a, b = (p["ranks"] for p in points)
    if a["user_id"] != b["user_id"]:
        raise PruneRecError("the two arms were not evaluated on the same test rows")
    users = np.asarray(a["user_id"])
    paired = contrast_bootstrap([a["rank"], b["rank"]], (1, -1), users, ks=(20,))
    modal = [np.asarray(r["top1"], dtype=object) == Counter(r["top1"]).most_common(1)[0][0] for r in (a, b)]
    stats = {"hr@20": paired["hr@20"], "ndcg@20": paired["ndcg@20"],
             "modal top-1 share": share_contrast(modal, (1, -1), users)}
    values = {"hr@20": [p["hr@20"] for p in points], "ndcg@20": [p["ndcg@20"] for p in points],
              "modal top-1 share": [float(f.mean()) for f in modal]}
    rows = {}
    for name, (d, lo, hi) in stats.items():
        verdict = decision(lo, hi, *labels)
        if name == "modal top-1 share" and not verdict.startswith(UNDECIDED):
            verdict = verdict.replace("ahead of", "more concentrated than").replace("behind", "less concentrated than")
        rows[name] = {labels[0]: round(values[name][0], 4), labels[1]: round(values[name][1], 4),
                      "difference": round(d, 4), "95% CI": interval_text(lo, hi),
                      "detectable (80% power)": round(detectable_difference(lo, hi), 4), "verdict": verdict,
                      "rows": len(users), "users": len(set(a["user_id"]))}
    rows["validation loss"] = {labels[0]: round(points[0]["best_eval_loss"], 4),
                               labels[1]: round(points[1]["best_eval_loss"], 4),
                               "difference": round(points[0]["best_eval_loss"] - points[1]["best_eval_loss"], 4)}
    return pd.DataFrame.from_dict(rows, orient="index")


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
