"""What the default series costs on one GPU, step by step, and how to cut it into device windows.

    python benchmarks/gpu_plan.py --profile default --dataset ml-100k [--command-minutes 10] [--session-minutes 15]

Each step's work comes from the profile (training samples, evaluation rows, ablation variants, as the chapters
run them) and the model shapes of each stage (the base model's config cut to the profile's shapes, parameter
counts from ``param_formula``). Its device seconds come from rates measured on the H200 and committed here:
training samples per second of the teacher from the learning curve (``results/learning_curve/*-h200.json``),
evaluation rows per second from the GPU calibration (``benchmarks/results/gpu_calibration_h200.json``, fp32, at
the profile's rows per call on CUDA). A distillation is costed by FLOPs relative to the teacher's training: the
student's forward and backward (3 × its non-embedding parameters per token) plus the teacher's forward (1 ×),
against 3 × the teacher's; evaluation is costed at the teacher's rate for every model (on the GPU the beam
search is bound by its per-step bookkeeping, not by the model's size). Steps nobody measured on the GPU yet
(scoring, statistics, the ID baselines, the efficiency benchmark) carry a stated allowance.

Weights do not survive a device window, so every window makes again the models whose weights its chapters use (the
teacher, and the stages before them: ``stages.ensure``). Its shard runs after the earlier ones
(``python -m prunerec_utils.shards run ... --after SHARD ...``): their results and records are read back, so a window
pays for the training of what it makes again, not for its evaluations, and chapters that only read results need no
model (08: the teacher's stored evaluation; 09: Stage III's parameter count from its record, the teacher's weights
for its two baselines). The plan packs chapters, in order, into windows that fit, each window's commands at most
``--command-minutes``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig

from prunerec_utils import cli
from prunerec_utils.assets import resolve_model
from prunerec_utils.data import prepare
from prunerec_utils.method.surgery import param_formula
from prunerec_utils.pipeline import ablations
from prunerec_utils.pipeline.run import splits_dir
from prunerec_utils.pipeline.size_targets import Shapes, pruned_config
from prunerec_utils.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "benchmarks" / "results" / "gpu_calibration_h200.json"
ALLOWANCE_S = {"scoring": 30, "statistics": 30, "id baselines": 120, "efficiency benchmark": 120}  # not measured
# The vocabulary step of 07 splits every prompt of every split and every title into pieces, then runs the tokenizer's
# model on the distinct pieces (CPU work, whatever the device): its rate on ml-1m, measured on 2 CPU cores by
# benchmarks/vocab_check.py. The device machine's 16 cores split the texts in more worker processes: an upper bound.
VOCAB_CHECK = ROOT / "benchmarks" / "results" / "vocab_check_ml-1m.json"
VOCAB_TEXTS_PER_S = json.loads(VOCAB_CHECK.read_text())["texts_per_second"]["pieces"]


@dataclass
class Step:
    chapter: str
    what: str
    seconds: float
    needs: tuple[str, ...] = ()  # stages the chapter must have (re-derived in a fresh window)


def measured_rates(prof) -> tuple[float, float, str]:
    """(training samples/s of the teacher, evaluation rows/s, where each was read)."""
    curves = sorted((ROOT / "results" / "learning_curve").glob(f"*-{prof.name}-h200.json"))
    if not curves:
        raise SystemExit(f"no H200 learning curve of profile {prof.name} in results/learning_curve/")
    best = max(json.loads(curves[0].read_text())["rows"], key=lambda r: r["samples"])
    train = best["samples"] / best["train_seconds"]
    cal = json.loads(CALIBRATION.read_text())["evaluator"]["rates"]
    per_call = prof.on_device("cuda").eval_batch
    fp32 = [r for r in cal if r.get("dtype") == "fp32" and "rows_per_s" in r]
    rate = min(fp32, key=lambda r: abs(r["per_call"] - per_call))
    return train, rate["rows_per_s"], (f"training {train:.0f} samples/s ({curves[0].name}, {best['samples']:,} samples "
                                       f"in {best['train_seconds']} s); evaluation {rate['rows_per_s']} rows/s "
                                       f"({CALIBRATION.name}, fp32, {rate['per_call']} rows per call)")


def stage_params(prof) -> dict[str, int]:
    """Non-embedding parameters of the teacher and of each stage's model under the profile's shapes."""
    config = AutoConfig.from_pretrained(resolve_model(prof.model))
    d_prime = prof.kept_heads * (config.hidden_size // config.num_attention_heads)
    layers = config.num_hidden_layers - min(round(prof.layers_removed_share * config.num_hidden_layers),
                                            config.num_hidden_layers - 1)
    mlp = round(prof.mlp_keep_factor * d_prime)
    shapes = {"teacher": None,
              "stage1": Shapes(prof.kept_heads, config.intermediate_size, config.num_hidden_layers),
              "stage2": Shapes(prof.kept_heads, mlp, config.num_hidden_layers),
              "stage3": Shapes(prof.kept_heads, mlp, layers)}
    return {name: param_formula(config if s is None else pruned_config(config, s))["non_embedding"]
            for name, s in shapes.items()}


def training_cost(prof, train_rate: float):
    """Seconds to train ``samples`` of the teacher, or to distil a stage's student from it (FLOPs relative to the
    teacher's training, see the module docstring)."""
    n = stage_params(prof)

    def train(samples, student="teacher"):
        factor = 1.0 if student == "teacher" else (3 * n[student] + n["teacher"]) / (3 * n["teacher"])
        return (samples or 0) * prof.epochs / train_rate * factor
    return train


def remake_seconds(prof, train_rate: float) -> dict[str, float]:
    """Seconds a window spends making a model again whose weights did not survive: its training (and a stage's
    scoring), not its evaluations, which the earlier shards' records hold."""
    train = training_cost(prof, train_rate)
    return {"teacher": train(prof.max_train),
            **{f"stage{i}": ALLOWANCE_S["scoring"] + train(prof.distill_samples, f"stage{i}") for i in (1, 2, 3)}}


def plan_steps(prof, train_rate: float, eval_rate: float, texts: int = 0) -> list[Step]:
    """Every chapter's steps with their device seconds; ``texts``: the dataset's prompts and titles (samples of
    every split + items), which the vocabulary step tokenises on the CPU."""
    train = training_cost(prof, train_rate)

    def evaluate(rows):
        return (rows or 0) / eval_rate

    test = prof.max_test
    distill = prof.distill_samples
    steps = [Step("01", f"teacher fine-tune ({prof.max_train:,} samples)", train(prof.max_train)),
             Step("01", f"teacher, most popular: evaluation ({test:,} rows + {prof.length_penalty_rows} "
                        f"length penalty 1 + {prof.exclude_seen_rows} seen excluded)",
                  evaluate(test + prof.length_penalty_rows + prof.exclude_seen_rows), ("teacher",)),
             Step("02", f"Wanda and random at {len(prof.observe_sparsities)} sparsities ({prof.observe_rows} rows "
                        "each) + activation statistics",
                  evaluate(2 * len(prof.observe_sparsities) * prof.observe_rows) + ALLOWANCE_S["statistics"],
                  ("teacher",))]
    for ch, stage in (("03", "stage1"), ("04", "stage2"), ("05", "stage3")):
        steps.append(Step(ch, f"{stage}: scoring, surgery, distillation ({distill:,} samples), evaluation "
                              f"({prof.pruned_eval_rows} + {test:,} rows)",
                          ALLOWANCE_S["scoring"] + train(distill, stage) + evaluate(prof.pruned_eval_rows + test),
                          ("teacher",) + tuple(f"stage{i}" for i in range(1, int(stage[-1])))))
    extra = [b for b in prof.restoration_curve_budgets if b != distill]  # the last point is the stage itself
    for ch, stage in (("03", "stage1"), ("04", "stage2"), ("05", "stage3")):
        steps.append(Step(ch, f"{stage} restoration curve: {len(extra)} more distillations "
                              f"({', '.join(f'{b:,}' for b in extra)} samples), "
                              f"{len(prof.restoration_curve_budgets)} x {prof.restoration_rows} rows",
                          sum(train(b, stage) for b in extra)
                          + evaluate(len(prof.restoration_curve_budgets) * prof.restoration_rows),
                          ("teacher",) + tuple(f"stage{i}" for i in range(1, int(stage[-1])))))
    variants = {}
    for group in (ablations.table3(), ablations.fig5a(), ablations.fig5b(), ablations.fig5c(),
                  ablations.alpha_sweep(), ablations.lambda_sweep()):
        for v in group:
            variants.setdefault(v.name(prof), v)
    abl = sum(sum(train(v.profile(prof).distill_max_train, f"stage{s}") for s in range(v.stage, v.last + 1))
              + evaluate(v.test_rows(prof)) for v in variants.values())
    steps.append(Step("06", f"{len(variants)} ablation variants ({prof.ablation_distill_samples:,} distillation "
                            f"samples per stage, {prof.ablation_test_rows} rows each)", abl,
                      ("teacher", "stage1", "stage2", "stage3")))
    steps.append(Step("07", f"vocabulary pruning ({texts:,} texts tokenised on the CPU), evaluation ({test:,} rows), "
                            "efficiency benchmark",
                      texts / VOCAB_TEXTS_PER_S + evaluate(test) + ALLOWANCE_S["efficiency benchmark"],
                      ("teacher", "stage1", "stage2", "stage3")))
    steps.append(Step("08", "ID baselines (SASRec, GRU4Rec, Caser grid; the teacher's stored evaluation)",
                      ALLOWANCE_S["id baselines"]))
    steps.append(Step("09", f"SLMRec-style and random structured baselines (4 distillations of {distill:,} samples, "
                            f"2 x {test:,} rows)",
                      train(distill, "stage3") + sum(train(distill, s) for s in ("stage1", "stage2", "stage3"))
                      + evaluate(2 * test), ("teacher",)))  # Stage III's size: from its record
    return steps


def windows(steps: list[Step], upstream: dict[str, float], budget_s: float) -> list[dict]:
    """Chapters packed in order into device windows of ``budget_s`` seconds, each paying for the stages its
    chapters need and did not make themselves."""
    made_by = {"teacher": "01", "stage1": "03", "stage2": "04", "stage3": "05"}
    chapters = {}
    for s in steps:
        ch = chapters.setdefault(s.chapter, {"seconds": 0.0, "needs": set()})
        ch["seconds"] += s.seconds
        ch["needs"] |= set(s.needs)
    out, current = [], None
    for name, ch in chapters.items():
        for attempt in (current, None):
            if attempt is None:
                attempt = {"chapters": [], "seconds": 0.0, "rederive": []}
            have = {made_by[n] for n in made_by} & set(attempt["chapters"])
            need = [n for n in made_by if n in ch["needs"] and made_by[n] not in have and n not in attempt["rederive"]
                    and made_by[n] != name]  # in the order they are made
            cost = ch["seconds"] + sum(upstream[n] for n in need)
            if attempt["seconds"] + cost <= budget_s or not attempt["chapters"]:
                attempt["chapters"].append(name)
                attempt["rederive"] += need
                attempt["seconds"] += cost
                if attempt is not current:
                    out.append(attempt)
                current = attempt
                break
    return out


@cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--session-minutes", type=float, default=15.0, help="device time of one window")
    ap.add_argument("--startup-minutes", type=float, default=3.0, help="of each window: start, install, transfers")
    ap.add_argument("--command-minutes", type=float, default=10.0, help="one command's limit")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile)
    dataset = args.dataset or prof.dataset
    stats = prepare(dataset, splits_dir(dataset))  # the splits (made once, then read back): how many texts
    train_rate, eval_rate, source = measured_rates(prof)
    steps = plan_steps(prof, train_rate, eval_rate, texts=stats["samples"] + stats["items"])
    print(f"profile {prof.name} on {dataset}, one H200; rates measured: {source}\n")
    width = max(len(s.what) for s in steps)
    for s in steps:
        print(f"  {s.chapter}  {s.what:<{width}}  {s.seconds / 60:6.1f} min")
    total = sum(s.seconds for s in steps)
    print(f"\n  the series once, in one run folder: {total / 60:.1f} min of device time")
    upstream = remake_seconds(prof, train_rate)
    budget = (args.session_minutes - args.startup_minutes) * 60
    plan = windows(steps, upstream, budget)
    print(f"\n  windows of {args.session_minutes:g} min ({args.startup_minutes:g} for start-up), chapters in order, "
          "each after the earlier ones, making again the models its chapters use:")
    modelless = {s.chapter for s in steps} - {s.chapter for s in steps if s.needs}
    for i, w in enumerate(plan, 1):
        over = " (over the window: split the chapter's steps)" if w["seconds"] > budget else ""
        cpu = " (uses no model of the run: may run on the CPU instead)" if set(w["chapters"]) <= modelless else ""
        print(f"  {i}. chapters {' '.join(w['chapters'])}: {w['seconds'] / 60:.1f} min"
              f"{', making again ' + ', '.join(w['rederive']) if w['rederive'] else ''}{over}{cpu}")
    longest = max(s.seconds for s in steps)
    print(f"\n  longest single step {longest / 60:.1f} min (a command may run {args.command_minutes:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
