"""What an executed chapter shows, said at its top when it is not the run of chapter 01.

A chapter of the book is an executed copy of a notebook. Two things can make it mislead a reader:
its notebook changed after it was executed (*stale*: the text or the checks differ from what the
notebook says today), or it was executed before chapter 01's execution, so it shows an earlier
run's teacher (*another run*). :func:`mark` puts a generated banner at the top of every such
chapter naming the run it shows — the teacher's training budget, the test rows (and users) it was
evaluated on, and whether it beat most popular — read from the run facts the runner records in
each executed copy (:func:`run_facts`), or, for copies executed before the runner recorded them,
from what that run printed (:func:`printed_facts`). Nothing is re-executed.

    python -m prunerec_utils.pipeline.banners book/default/ml-100k
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

from .. import PruneRecError, cli
from ..paths import REPO_ROOT, atomic_write_text, resolve
from .evaluate import compare, load_result
from .finetune import SUMMARY

NOTEBOOKS = REPO_ROOT / "notebooks"
RECORD_TAG = "run-record"  # the markdown cell the runner adds under the title
BANNER_TAG = "run-banner"  # the cell this module adds above it
REFERENCE = "01_bigrec_finetune"  # the chapter whose run the book shows


def source_cells(path: Path) -> list[tuple[str, str]]:
    """(cell type, source) of a notebook, without the cells added after execution (parameters, run
    record, banner)."""
    return source_cells_of(json.loads(Path(path).read_text()))


def source_cells_of(nb: dict) -> list[tuple[str, str]]:
    """:func:`source_cells` of a notebook already read."""
    added = {RECORD_TAG, BANNER_TAG, "injected-parameters"}
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]
            if not added & set(c.get("metadata", {}).get("tags", []))]


def run_facts(run) -> dict:
    """The run a chapter shows, from its run folder: the teacher's training samples, the test rows
    and users of its evaluation, and the paired HR@20 verdict against most popular (``{}`` where
    the teacher is not evaluated yet). Recorded by the runner in each executed copy."""
    teacher, popular = load_result(run.folder, "teacher"), load_result(run.folder, "most_popular")
    summary = run.model("teacher") / SUMMARY
    facts = {"teacher_samples": json.loads(summary.read_text())["train_samples"]} if summary.exists() else {}
    if teacher is not None:
        facts.update(rows=teacher.metrics["n"], users=teacher.metrics["users"])
        if popular is not None and popular.per_user["user_id"].equals(teacher.per_user["user_id"]):
            facts["versus_most_popular"] = compare(teacher, popular, labels=("the teacher", "most popular")
                                                   ).loc["hr@20", "verdict"]
    return facts


def _outputs(nb: dict) -> str:
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))


BUDGET_LINE = re.compile(r"fine-tuned on (?P<samples>\d+) training rows; test (?:users|rows): (?P<rows>\d+)")


def _printed_hr20(text: str) -> dict:
    """HR@20 and its printed interval of the rows "teacher" and "most popular" of the first printed
    table whose header has ``hr@20`` and ``hr@20 95% CI`` columns."""
    lines = text.splitlines()
    for i, head in enumerate(lines):
        cols = re.split(r"\s{2,}", head.strip())
        if "hr@20" not in cols or "hr@20 95% CI" not in cols:
            continue
        found = {}
        for line in lines[i + 1:]:
            cells = re.split(r"\s{2,}", line.strip())
            if not line.strip() or len(cells) < len(cols):
                break
            if cells[0] in ("teacher", "most popular"):
                found[cells[0]] = (float(cells[1 + cols.index("hr@20")]), cells[1 + cols.index("hr@20 95% CI")])
        if len(found) == 2:
            return found
    return {}


def printed_facts(chapters: list[dict]) -> dict:
    """The run facts of copies executed before the runner recorded them, read from what those
    chapters printed: the teacher's budget and test rows (chapter 08's first line) and HR@20 of the
    teacher and of most popular with their intervals (a printed metrics table). Those intervals were
    made before users were resampled, so the verdict is only "below" / "above" when they are apart."""
    facts: dict = {}
    for nb in chapters:
        text = _outputs(nb)
        if "teacher_samples" not in facts and (m := BUDGET_LINE.search(text)):
            facts.update(teacher_samples=int(m["samples"]), rows=int(m["rows"]))
        if "versus_most_popular" not in facts and (hr := _printed_hr20(text)):
            (t, t_ci), (p, p_ci) = hr["teacher"], hr["most popular"]
            (t_lo, t_hi), (p_lo, p_hi) = (json.loads(ci) for ci in (t_ci, p_ci))
            where = ("below most popular's: the teacher did not beat it" if t_hi < p_lo else
                     "above most popular's" if t_lo > p_hi else "overlapping most popular's: not decided")
            facts["versus_most_popular"] = (f"HR@20 teacher {t:.4f} {t_ci} vs most popular {p:.4f} {p_ci} as printed "
                                            f"then (rows resampled), its interval {where}")
    return facts


def _executed(nb: dict) -> datetime | None:
    start = nb.get("metadata", {}).get("papermill", {}).get("start_time")
    return datetime.fromisoformat(start) if start else None


def _commit(nb: dict) -> str:
    record = next(("".join(c["source"]) for c in nb["cells"] if RECORD_TAG in c.get("metadata", {}).get("tags", [])), "")
    m = re.search(r"commit `([^`]+)`", record)
    return m[1] if m else "unknown"


def describe(facts: dict) -> str:
    """The run in one sentence: "a teacher fine-tuned on N samples, evaluated on R test rows from U
    users; <verdict against most popular>"."""
    parts = []
    if "teacher_samples" in facts:
        parts.append(f"a teacher fine-tuned on {facts['teacher_samples']:,} samples")
    if "rows" in facts:
        users = f" from {facts['users']:,} users" if facts.get("users") else ""
        parts.append(f"evaluated on {facts['rows']:,} test rows{users}")
    text = ", ".join(parts) or "a run whose teacher this chapter does not describe"
    return text + (f"; {facts['versus_most_popular']}" if facts.get("versus_most_popular") else "")


def banner(name: str, nb: dict, source: Path | None, reference: dict | None, earlier_run: dict) -> str | None:
    """The banner of the executed chapter ``name`` (its notebook ``nb``), or None when it shows the
    reference run as its notebook stands. ``source``: the notebook it was executed from;
    ``reference``: the executed chapter 01; ``earlier_run``: :func:`printed_facts` of the chapters
    executed before chapter 01 (used where a copy records no facts of its own)."""
    when, ref_when = _executed(nb), _executed(reference) if reference else None
    other_run = name != REFERENCE and when is not None and ref_when is not None and when < ref_when
    stale = source is not None and source.exists() and source_cells_of(nb) != source_cells(source)
    if not (other_run or stale):
        return None
    executed = f"executed {when:%Y-%m-%d} at commit `{_commit(nb)}`" if when else f"executed at commit `{_commit(nb)}`"
    lines = []
    if other_run:
        facts = nb.get("metadata", {}).get("prunerec", {}).get("run") or earlier_run
        lines.append(f"**Not the run of chapter 01.** This page was {executed}, before chapter 01 "
                     f"({ref_when:%Y-%m-%d}), so it shows an earlier run: {describe(facts)}. Its numbers do not "
                     "describe chapter 01's teacher.")
    else:
        lines.append(f"This page was {executed}; it shows the run of chapter 01.")
    if stale:
        lines.append("Its notebook has changed since (text, checks or verdict wording), so what it prints may "
                     "differ from what the notebook prints today.")
    lines.append("Both go when the series is executed again (`make reproduce`).")
    return "```{warning}\n" + " ".join(lines) + "\n```"


def mark(folder: str | Path, sources: Path = NOTEBOOKS) -> dict[str, bool]:
    """Put (or refresh, or remove) the banner at the top of every executed chapter in ``folder``;
    returns chapter → whether it carries one. A chapter is rewritten only when its banner changes."""
    folder = resolve(folder)
    chapters = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))
                if not p.name.endswith(".failed.ipynb")}
    if not chapters:
        raise PruneRecError(f"no executed chapter in {folder}")
    reference = chapters.get(REFERENCE)
    ref_when = _executed(reference) if reference else None
    earlier = printed_facts([nb for nb in chapters.values()
                             if ref_when and (w := _executed(nb)) is not None and w < ref_when])
    marked = {}
    for name, nb in chapters.items():
        text = banner(name, nb, sources / f"{name}.ipynb", reference, earlier)
        kept = [c for c in nb["cells"] if BANNER_TAG not in c.get("metadata", {}).get("tags", [])]
        if text is not None:  # under the title (the page's heading stays its first line)
            title = next((i + 1 for i, c in enumerate(kept)
                          if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("# ")), 0)
            kept.insert(title, {"cell_type": "markdown", "id": "run-banner", "metadata": {"tags": [BANNER_TAG]},
                            "source": text.splitlines(keepends=True)})
        if kept != nb["cells"]:
            nb["cells"] = kept
            atomic_write_text(folder / f"{name}.ipynb", json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        marked[name] = text is not None
    return marked


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.pipeline.banners", description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="folders of executed chapters, e.g. book/default/ml-100k")
    for folder in ap.parse_args(argv).folders:
        marked = mark(folder)
        print(f"{folder}: banner on {', '.join(n[:2] for n, m in marked.items() if m) or 'no chapter'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
