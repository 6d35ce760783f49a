"""What a book folder gets once its chapters are executed (by the runner) or merged (from shards): banners on
the chapters that are stale or show another run than chapter 01, the introduction's findings (``findings.md``),
the run's budgets (``budgets.md``, included by the method page), and, for the book's own run
(``book/<profile>/<dataset>``), the run's results files under ``results/``, its budgets in the README, and its
findings record (``findings.json``), which the profile's page of datasets side by side (``datasets.md``) reads."""

from __future__ import annotations

import json
from pathlib import Path

from ..paths import REPO_ROOT, atomic_write_text
from ..pipeline.banners import mark
from ..pipeline.run import Run
from .budgets import write_budgets
from .datasets import RECORD, write_datasets
from .export import export_run
from .findings import findings_markdown, findings_record, findings_table
from .scorecard import scorecard


def publish(run: Run, copies: Path) -> None:
    """Banners, findings, budgets and (the book's own run) results for the executed chapters in ``copies``; nothing
    where ``copies`` is outside ``book/`` (nbval's copies, a shard's temporary folder)."""
    book = REPO_ROOT / "book"
    copies = Path(copies).resolve()
    if not copies.is_relative_to(book):
        return
    marked = [n[:2] for n, m in mark(copies).items() if m]
    print(f"[book] banners (stale or another run than 01) on: {', '.join(marked) or 'no chapter'}", flush=True)
    card = scorecard(run)  # read once for the findings and the findings record
    table = findings_table(run, card)
    atomic_write_text(copies / "findings.md",
                      findings_markdown(run, str(copies.relative_to(book)), copies, card, table))
    print(f"[book] findings -> {copies / 'findings.md'}", flush=True)
    own = copies == book / run.prof.name / run.dataset  # the book's own run: README quotes it, results/ holds it
    write_budgets(run, copies, REPO_ROOT / "README.md" if own else None)
    print(f"[book] budgets -> {copies / 'budgets.md'}" + (" and README.md" if own else ""), flush=True)
    if own:
        counts = export_run(run, REPO_ROOT / "results" / run.prof.name / run.dataset)
        print(f"[book] results -> results/{run.prof.name}/{run.dataset}: {counts}", flush=True)
        atomic_write_text(copies / RECORD, json.dumps(findings_record(run, card, table), indent=1, ensure_ascii=False) + "\n")
        print(f"[book] datasets side by side -> {write_datasets(copies.parent)}", flush=True)
