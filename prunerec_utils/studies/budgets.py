"""This run's budgets, read from what its steps recorded (never from the profile's intentions): how many
samples and optimizer steps trained the teacher and restored each stage, how many test rows (from how many
users) each kind of model was evaluated on, and the restoration curve's and the ablations' budgets.

The runner writes them as ``budgets.md`` beside the chapters (the method page includes it) and, for the
book's own run, into the README between ``<!-- budgets PROFILE/DATASET -->`` markers, so neither quotes a
number by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..paths import atomic_write_text
from ..pipeline.ablations import load_group
from ..pipeline.evaluate import load_result
from ..pipeline.finetune import SUMMARY
from ..pipeline.run import Run

NOT_RUN = "not run yet"
ABLATION_GROUPS = ("table3", "fig5a", "fig5b", "fig5c", "alpha", "lambda")


def _summary(run: Run, name: str) -> dict | None:
    path = run.model_record(name, SUMMARY)
    return json.loads(path.read_text()) if path.exists() else None


def _training(summary: dict | None) -> str:
    """"16,384 samples, 1,024 optimizer steps of 16 (8 × 2)" from a fine-tune's or distillation's record (its
    profile holds the per-device batch and accumulation it ran with)."""
    if summary is None:
        return NOT_RUN
    prof = summary.get("profile", {})
    text = f"{summary['train_samples']:,} samples, {summary['steps']:,} optimizer steps"
    if prof.get("batch_size") and prof.get("grad_accum"):
        batch, accum = prof["batch_size"], prof["grad_accum"]
        text += f" of {batch * accum} ({batch} × {accum})"
    return text


def _rows(result) -> str:
    return NOT_RUN if result is None else f"{result.metrics['n']:,} test rows from {result.metrics['users']:,} users"


def budgets_table(run: Run) -> pd.DataFrame:
    """One row per budget (index), column "this run": what the run folder's records say, :data:`NOT_RUN` where
    the step has not run."""
    f = run.folder
    rows = {"Teacher fine-tune": _training(_summary(run, "teacher")),
            "Teacher and most popular evaluated on": _rows(load_result(f, "teacher"))}
    for name, label in (("stage1", "Stage I"), ("stage2", "Stage II"), ("stage3", "Stage III")):
        rows[f"{label} restoration (distillation)"] = _training(_summary(run, name))
    rows["Pruned stages evaluated on"] = _rows(load_result(f, "stage3") or load_result(f, "stage1"))
    for stage, label in ((1, "Stage I"), (2, "Stage II"), (3, "Stage III")):
        curve = load_group(run, f"restoration_stage{stage}")
        rows[f"{label} restoration curve"] = NOT_RUN if curve is None else (
            ", ".join(f"{int(b):,}" for b in sorted(curve["distill_max_train"])) + " distillation samples, "
            f"each evaluated on {int(curve['n'].iloc[0]):,} test rows")
    found = [(g, t) for g in ABLATION_GROUPS if (t := load_group(run, g)) is not None]
    rows["Ablation variants"] = NOT_RUN if not found else (
        f"{len(found)} group{'' if len(found) == 1 else 's'} ({', '.join(g for g, _ in found)}); "
        "each variant restored on "
        f"{_samples(found[0][1], run)} samples, evaluated on {int(found[0][1]['n'].iloc[0]):,} test rows")
    return pd.DataFrame({"this run": rows})


def _samples(table: pd.DataFrame, run: Run) -> str:
    if "distill_max_train" in table and table["distill_max_train"].notna().all():
        return f"{int(table['distill_max_train'].iloc[0]):,}"
    budget = run.prof.ablation_distill_samples
    return "all the training" if budget is None else f"{budget:,}"


def budgets_markdown(run: Run) -> str:
    """:func:`budgets_table` under its caption, as Markdown."""
    caption = (f"**The budgets of this run (profile `{run.prof.name}`, `{run.dataset}`; read from the records of "
               "its steps)**")
    lines = [caption, "", "| budget | this run |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in budgets_table(run)["this run"].items()]
    return "\n".join(lines) + "\n"


def marker(run: Run) -> tuple[str, str]:
    """The README's begin and end markers of this run's budgets block."""
    key = f"{run.prof.name}/{run.dataset}"
    return f"<!-- budgets {key} -->", f"<!-- /budgets {key} -->"


def with_budgets(text: str, run: Run, markdown: str) -> str:
    """``text`` (the README) with the block between this run's markers replaced by ``markdown``; unchanged
    where the markers are absent (a README that does not quote this run)."""
    begin, end = marker(run)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    return pattern.sub(lambda _: f"{begin}\n{markdown}{end}", text, count=1)


def write_budgets(run: Run, copies: Path, readme: Path | None = None) -> str:
    """``copies/budgets.md`` and, given ``readme``, its block there; returns the Markdown."""
    markdown = budgets_markdown(run)
    atomic_write_text(Path(copies) / "budgets.md", markdown)
    if readme is not None and readme.exists():
        text = readme.read_text()
        updated = with_budgets(text, run, markdown)
        if updated != text:
            atomic_write_text(readme, updated)
    return markdown
