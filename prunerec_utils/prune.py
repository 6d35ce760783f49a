"""Prune your own LLM recommender on your own interaction log, in one command.

    python -m prunerec_utils.prune --model BASE_DIR --interactions log.csv --items items.csv \\
        --category book --out pruned/ --target-share 0.05
    prunerec --teacher FINETUNED_DIR --interactions log.parquet --title-col name --out pruned/ \\
        --keep-heads 7 --mlp 896 --layers 8

The log goes through the same recipe as the named datasets (titles, k-core, sliding windows, the
8:1:1 temporal cut); a base model is fine-tuned BIGRec-style first (``--teacher`` skips that);
then Stages I-III with distillation, vocabulary pruning, and the evaluation of the teacher, most
popular and every stage on the profile's fixed test rows. Everything is a cached step under
``OUT/run``: the same command continues an interrupted run and redoes nothing finished.

Writes ``OUT/model/`` (stock-loadable Hugging Face folder with its restricted tokenizer),
``OUT/report.json`` (per-stage parameters, metrics with 95% intervals, retention, timings,
settings), ``OUT/report.md`` and ``OUT/figure4.png`` (quality and size per stage).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from . import PruneRecError, cli
from .assets import load_model, resolve_model
from .cli_args import positive_int
from .identity import model_identity
from .method.metrics import METRICS, detectable_clause, interval_text, retention
from .paths import atomic_write_text, cli_path, output_dir
from .profiles import get_profile
from .quiet import set_progress
from .steps import differences

# torch, transformers, pandas and the pipeline (which loads them) are imported inside the functions that need them,
# marked "lazy": `prunerec --help` and a refused argument answer in a fraction of a second.

STAGE_ROWS = (("teacher", "teacher"), ("stage I", "stage1"), ("stage II", "stage2"), ("stage III", "stage3"),
              ("final (vocabulary pruned)", "stage3_vocab"))
RECORD = "prunerec.json"  # OUT's record of the command it belongs to
MIN_TEST = 10  # fewest test samples worth evaluating


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.prune", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="base model (HF folder, or a hub id in the local cache) to fine-tune first")
    src.add_argument("--teacher", help="an already fine-tuned recommender (HF folder): no fine-tune")
    ap.add_argument("--interactions", required=True, help="CSV or Parquet log with user, item, timestamp columns")
    ap.add_argument("--items", default=None, help="CSV or Parquet with item and title columns (or use a title column "
                                                  "in the log)")
    for role, default in (("user", "user"), ("item", "item"), ("time", "timestamp"), ("title", "title")):
        ap.add_argument(f"--{role}-col", default=default, help=f"name of the {role} column (default {default})")
    ap.add_argument("--out", required=True, help="output folder (the same command continues a run in it)")
    ap.add_argument("--profile", default="default", help="budgets: ci (minutes), default (CPU hours), paper (GPU)")
    ap.add_argument("--category", default="item", help='noun of the prompt, e.g. "movie", "book" (default item)')
    ap.add_argument("--plural", default=None, help="plural of --category (default: category + s)")
    ap.add_argument("--verb", default="choose", help="prompt verb (default choose); --verb-past its past participle")
    ap.add_argument("--verb-past", default="chosen")
    ap.add_argument("--keep-heads", type=positive_int, help="query heads kept per layer (Stage I)")
    ap.add_argument("--mlp", type=positive_int, help="MLP neurons kept per layer (Stage II)")
    ap.add_argument("--layers", type=positive_int, help="decoder layers kept (Stage III)")
    ap.add_argument("--target-share", type=float, default=None,
                    help="share of the teacher's non-embedding parameters to keep, e.g. 0.05 (the paper's "
                         "proportions: half the heads, K_MLP = 2 d', layers to the target)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = ap.parse_args(argv)
    explicit = [args.keep_heads, args.mlp, args.layers]
    if (args.target_share is not None and any(v is not None for v in explicit)) or \
            (args.target_share is None and None in explicit):
        ap.error("give either --target-share S, or all of --keep-heads K --mlp K --layers N")
    return args


def choose_device(device: str) -> None:
    """Hide CUDA for ``cpu``; refuse ``cuda`` where there is none (one line)."""
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif device == "cuda":
        # lazy (see the module's imports)
        import torch

        if not torch.cuda.is_available():
            raise PruneRecError("--device cuda: no CUDA device is visible to torch")


def claim_out(out: Path, identity: dict) -> bool:
    """Make ``out`` this command's folder: new or empty, or holding a run of the same inputs and
    settings (continued); another run or other files are refused in one line. True when the
    folder was claimed now (nothing of this run in it yet)."""
    output_dir(out, RECORD)  # a file, a path under a file, an unwritable folder: one line, nothing changed
    rec = out / RECORD
    if rec.exists():
        stored = json.loads(rec.read_text())
        diff = differences(stored, identity)
        if diff:
            raise PruneRecError(f"{out} holds another run ({'; '.join(diff[:3])}): choose another --out or delete it")
        return False
    if out.exists() and any(out.iterdir()):
        raise PruneRecError(f"{out} is not empty and holds no {RECORD}: choose a new or empty --out")
    out.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps(identity, indent=1))
    return True


def adopt_teacher(run, folder: Path) -> Path:
    """The user's fine-tuned recommender as the run's teacher: copied into ``models/teacher`` (a
    cached step keyed on its content), so every later step reads it like a trained one."""
    # lazy (see the module's imports)
    from .pipeline.finetune import SUMMARY

    def build(tmp: Path) -> dict:
        for f in folder.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        return {"given": str(folder), "train_samples": 0, "wall_seconds": 0.0}

    out, _ = run.model_step("teacher", SUMMARY, {"given_id": model_identity(folder)}, build)
    return out


def _evaluate(run, progress: bool) -> dict:
    # lazy (see the module's imports)
    from .pipeline.evaluate import evaluate_cached, popularity_cached

    results = {label: evaluate_cached(run, name, run.model(name), progress=progress) for label, name in STAGE_ROWS}
    results["most popular"] = popularity_cached(run)
    return results


def report(run, results: dict, stats: dict, shapes_line: str, seconds: dict, settings: dict) -> dict:
    """``report.json``'s content: per stage its parameters, metrics with intervals, retention
    against the teacher and the step's wall time; the data statistics and the settings."""
    # lazy (see the module's imports)
    from .pipeline.evaluate import compare
    from .pipeline.stages import stage_param_counts
    from .studies.scorecard import retention_gate

    teacher = results["teacher"].metrics
    gate = retention_gate(results["teacher"], results["most popular"])

    def quality(m: dict) -> dict:
        return {"metrics": {k: m[k] for k in METRICS}, "ci95": {k: list(m["ci95"][k]) for k in METRICS},
                "rows": m["n"], "users": m["users"], "retention": retention(m, teacher)}

    d = compare(results["teacher"], results["most popular"], labels=("teacher", "most popular")).loc["hr@20"]
    versus = {"metric": "hr@20", "difference": float(d["difference"]), "ci95": d["95% CI"],
              "detectable": float(d["detectable (80% power)"]), "verdict": d["verdict"]}

    counts = stage_param_counts(run, dict(STAGE_ROWS))
    stages = {label: {"model": name, "params": {k: int(v) for k, v in counts.loc[label].items()},
                      **quality(results[label].metrics), "seconds": seconds.get(name)} for label, name in STAGE_ROWS}
    stages["most popular"] = quality(results["most popular"].metrics)
    return {"shapes": shapes_line, "data": {k: v for k, v in stats.items() if k != "config"}, "stages": stages,
            "teacher_vs_most_popular": versus, "retention_meaningful": gate is None, "retention_note": gate,
            "settings": settings}


def report_markdown(rep: dict) -> str:
    """``report.md``: the per-stage table (parameters, HR/NDCG@10/20 with intervals, retention)."""
    lines = ["# PruneRec report", "", rep["shapes"], "",
             "**Per stage: parameters, HR/NDCG with 95% intervals, and the teacher's quality kept**", "",
             "| model | non-embedding | total | HR@10 | HR@20 | NDCG@10 | NDCG@20 | avg retention |",
             "|---|---|---|---|---|---|---|---|"]
    for label, s in rep["stages"].items():
        p = s.get("params") or {}
        sizes = [f"{p[k]:,}" if k in p else "—" for k in ("non_embedding", "total")]
        cells = [f"{s['metrics'][k]:.4f} {interval_text(*s['ci95'][k])}" for k in METRICS]
        ret = s["retention"]["avg"]
        # NaN: the teacher has no hit; a teacher that does not beat most popular: retention means nothing
        kept = "—" if ret != ret or not rep.get("retention_meaningful", True) else f"{ret:.1%}"
        lines.append("| " + " | ".join([label, *sizes, *cells, kept]) + " |")
    t = rep["stages"]["teacher"]
    v = rep["teacher_vs_most_popular"]
    lines += ["", f"{t['rows']:,} test rows from {t['users']:,} users; 95% bootstrap intervals that resample users "
                  "with all their rows; retention = metric / teacher's metric (mean over HR/NDCG@10/20).", "",
              f"Teacher vs most popular, HR@20: {v['verdict']} (paired difference {v['difference']:+.4f} {v['ci95']}"
              f"{detectable_clause(v['verdict'], v['detectable'])})."]
    if rep.get("retention_note"):
        lines += ["", f"Retention: {rep['retention_note']}."]
    lines += ["", "![quality and size per stage](figure4.png)", "",
              ("*Quality and size per stage: HR@20 and NDCG@20 (bars, 95% intervals), most popular (dashed), "
               "non-embedding parameters (line, right axis, log scale).*"), ""]
    return "\n".join(lines)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    choose_device(args.device)
    # lazy (see the module's imports)
    from transformers import AutoConfig

    from .own_log import log_config, log_files
    from .pipeline import size_targets
    from .pipeline.run import Run

    source = cli_path(args.teacher) if args.teacher else resolve_model(args.model)
    if not (source / "config.json").is_file():
        raise PruneRecError(f"{source}: no config.json (not a Hugging Face model folder)")
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:  # config.json that is not JSON, or not a model's
        raise PruneRecError(f"{source / 'config.json'}: cannot be read as a model configuration "
                            f"({str(exc).strip().splitlines()[-1][:200]})") from None
    if args.target_share is not None:
        shapes = size_targets.from_share(config, args.target_share)
    else:
        shapes = size_targets.Shapes(args.keep_heads, args.mlp, args.layers)
        size_targets.check(config, shapes)
    shapes_line = size_targets.describe(config, shapes)
    print(shapes_line, flush=True)

    columns = {"user": args.user_col, "item": args.item_col, "timestamp": args.time_col, "title": args.title_col}
    cfg = log_config(args.interactions, args.items, args.category, args.plural, args.verb, args.verb_past, columns)
    log_files(cfg)
    prof = replace(get_profile(args.profile), model=str(source), **shapes.profile_fields(config))
    out = cli_path(args.out)
    settings = {"source": "teacher" if args.teacher else "model", "source_id": model_identity(source),
                "recipe": asdict(cfg), "profile": prof.to_dict(), "shapes": asdict(shapes)}
    load_model(source)  # weights that do not load are refused now, before --out is claimed for this model
    new = claim_out(out, settings)
    run = Run("log", prof, out / "run", cfg)
    set_progress(True)

    try:
        return _prune(args, run, cfg, source, shapes_line, settings, out)
    except BaseException:
        if new and not any((run.folder / "models").glob("*")):  # nothing of this run was trained: as it was
            shutil.rmtree(out / "run", ignore_errors=True)
            (out / RECORD).unlink(missing_ok=True)
        raise


def _prune(args, run, cfg, source: Path, shapes_line: str, settings: dict, out: Path) -> int:
    """Everything after the output folder is claimed: data, teacher, stages, evaluation, report."""
    # lazy (see the module's imports)
    import pandas as pd

    from .data import prepare
    from .pipeline import stages
    from .studies import plots

    seconds, t0 = {}, time.time()
    stats = prepare(cfg, run.splits)
    if stats["test"] < MIN_TEST:
        raise PruneRecError(f"{args.interactions}: only {stats['test']} test samples after the {cfg.kcore}-core "
                            "filter and the 8:1:1 cut; the log is too small to evaluate a recommender")
    print(f"data: {stats['users']:,} users, {stats['items']:,} items, {stats['train']:,} / {stats['valid']:,} / "
          f"{stats['test']:,} training / validation / test samples", flush=True)

    def staged(out: dict) -> float:  # a stage's surgery and distillation, as their records state them
        return out["surgery"].get("seconds", 0.0) + out["distill"]["wall_seconds"]

    def teacher() -> float:
        if args.teacher:
            adopt_teacher(run, source)
            return 0.0
        return stages.train_teacher(run, progress=True)[1]["wall_seconds"]

    steps = (("teacher", teacher),
             ("stage1", lambda: staged(stages.stage1(run, True))), ("stage2", lambda: staged(stages.stage2(run, True))),
             ("stage3", lambda: staged(stages.stage3(run, True))),
             ("stage3_vocab", lambda: stages.vocab_prune(run, progress=True)[1]["seconds"]))
    for name, step in steps:
        print(f"[prunerec] {name} ...", flush=True)
        seconds[name] = round(step(), 1)
    results = _evaluate(run, progress=True)
    rep = report(run, results, stats, shapes_line, seconds, settings)
    rep["seconds_this_call"] = round(time.time() - t0, 1)  # the steps' own times are in rep["stages"]

    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(run.model("stage3_vocab"), final)
    plots.stage_figure({label: results[label] for label, _ in STAGE_ROWS},
                       pd.Series({label: s["params"]["non_embedding"] for label, s in rep["stages"].items()
                                  if "params" in s}), out / "figure4.png", popular=results["most popular"])
    atomic_write_text(out / "report.json", json.dumps(rep, indent=1))
    atomic_write_text(out / "report.md", report_markdown(rep))
    print(report_markdown(rep), flush=True)
    given = Path(args.out)  # named as the user named it
    print(f"[prunerec] wrote {given / 'model'} (stock AutoModelForCausalLM folder), {given / 'report.json'}, "
          f"{given / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
