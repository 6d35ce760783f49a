"""What a run found, for the book's introduction: a short table and one sentence per chapter,
generated from the run folder's results files (nothing typed in, nothing computed anew).

``python -m prunerec_utils.studies.findings --profile default --dataset ml-100k --out FILE`` writes
the Markdown the introduction includes; the runner writes it after executing the series.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from .. import cli
from ..method.metrics import detectable_clause, interval_text
from ..pipeline.evaluate import compare, load_result, retention
from ..pipeline.run import Run
from ..pipeline.stages import recorded_params
from ..profiles import get_profile
from . import scorecard as sc
from .baselines import result_name
from .efficiency import benchmark_file, findings, tables
from .gates import gates_line, teacher_gates
from .id_models import MODELS

CHAPTERS = {"00": "00_preprocess", "01": "01_bigrec_finetune", "02": "02_observations", "03": "03_stage1_heads",
            "04": "04_stage2_mlp", "05": "05_stage3_layers", "06": "06_ablations", "07": "07_efficiency",
            "08": "08_baselines", "09": "09_table2_scorecard"}
NOT_RUN = "not run yet"


def _value(res, metric: str) -> str:
    return f"{res.metrics[metric]:.4f} {interval_text(*res.metrics['ci95'][metric])}"


def _versus(a, b, label_a: str, label_b: str, metric: str) -> str:
    """"A 0.1 [..] vs B 0.07 [..]: A ahead of B / A behind B / not decided at this budget (detectable ≥ X)
    (paired difference d [lo, hi]; N rows from U users)"."""
    d = compare(a, b, labels=(label_a, label_b)).loc[metric]
    return (f"{metric.upper()} {label_a} {_value(a, metric)} vs {label_b} {_value(b, metric)}: {d['verdict']} "
            f"(paired difference {d['difference']:+.4f} {d['95% CI']}; {d['rows']:,} rows from {d['users']:,} users"
            f"{detectable_clause(d['verdict'], d['detectable (80% power)'])})")


def _kept(model, teacher, popular) -> str:
    """"x% of the teacher's HR/NDCG@10/20", or why a retention says nothing here."""
    gate = sc.retention_gate(teacher, popular)
    if gate:
        return gate
    return f"{retention(model.metrics, teacher.metrics)['avg']:.1%} of the teacher's HR/NDCG@10/20 (mean ratio)"


def _teacher_text(teacher, popular) -> str:
    """Teacher vs most popular on HR@20, and whether its lists are personal."""
    m = teacher.metrics
    return (_versus(teacher, popular, "teacher", "most popular", "hr@20")
            + f"; {m['distinct_top10']} distinct titles in its top-10 lists, {m['modal_top1_share']:.0%} of test "
              "rows get its most common first title")


def _tally_text(card: pd.DataFrame) -> str:
    total = sc.tally(card).loc["total"]
    return " · ".join(f"{int(n)} {kind}" for kind, n in total.items() if n)


def _best_id(run: Run):
    found = {m: load_result(run.folder, result_name(m)) for m in MODELS}
    found = {m: r for m, r in found.items() if r is not None}
    if not found:
        return None, None
    best = max(found, key=lambda m: (found[m].metrics.get("valid_ndcg@20", found[m].metrics["ndcg@20"]), m))
    return best, found[best]


TEACHER_ROW, GATES_ROW, ID_ROW = "Teacher vs most popular", "Teacher's gates", "Best ID model vs the LLM teacher"


def findings_table(run: Run, card: pd.DataFrame | None = None) -> pd.DataFrame:
    """The run's headline numbers, one row each: teacher vs most popular, the teacher's science gates
    (:mod:`~prunerec_utils.studies.gates`), the best ID model vs the
    teacher, the final model's size and retention, PruneRec vs both pruned-LLM baselines, the
    scorecard's tally (``card``: :func:`~prunerec_utils.studies.scorecard.scorecard` of the run, made
    here if not given). A row whose files are missing reads :data:`NOT_RUN`."""
    f = run.folder
    teacher, popular, final = (load_result(f, n) for n in ("teacher", "most_popular", "stage3"))
    rows = {}
    rows[TEACHER_ROW] = _teacher_text(teacher, popular) if teacher and popular else NOT_RUN
    rows[GATES_ROW] = gates_line(teacher_gates(teacher, popular), teacher) if teacher and popular else NOT_RUN
    best, best_res = _best_id(run)
    rows[ID_ROW] = (_versus(best_res, teacher, best, "teacher", "ndcg@20") if best_res is not None and teacher
                    else NOT_RUN)
    p0, p3 = recorded_params(run.folder, "stage1_pruned", "teacher"), recorded_params(run.folder, "stage3_pruned", "stage3")
    rows["Final model (Stage III): size"] = (
        f"{p3['non_embedding']:,} of {p0['non_embedding']:,} non-embedding parameters "
        f"({p3['non_embedding'] / p0['non_embedding']:.1%}); {p3['total']:,} in all" if p0 and p3 else NOT_RUN)
    rows["Final model: quality kept"] = _kept(final, teacher, popular) if final and teacher else NOT_RUN
    card = (card if card is not None else sc.scorecard(run)).set_index("claim")
    for label, other in (("SLMRec-style", "SLMRec-style layer-only pruning"),
                         ("random structured", "random structured pruning at the same shapes")):
        r = card.loc[f"PruneRec beats {other}"]
        rows[f"PruneRec vs {label}"] = NOT_RUN if r["verdict"] == sc.NOT_MEASURED else f"{r['ours']}: {r['verdict']}"
    rows["Scorecard"] = _tally_text(card.reset_index())
    return pd.DataFrame({"this run": rows})


def chapter_sentences(run: Run, card: pd.DataFrame | None = None,
                      table: pd.DataFrame | None = None) -> dict[str, str]:
    """One sentence per chapter number, read from the same results files (``card`` and ``table``:
    the run's scorecard and :func:`findings_table`, made here if not given)."""
    f = run.folder
    card = card if card is not None else sc.scorecard(run)
    rows = (table if table is not None else findings_table(run, card))["this run"]
    out = {}
    stats = run.splits / "stats.json"
    if stats.exists():
        s = json.loads(stats.read_text())
        out["00"] = (f"{s['users']:,} users and {s['items']:,} items after the {s['kcore']}-core filter; "
                     f"{s['train']:,} / {s['valid']:,} / {s['test']:,} training / validation / test samples.")
    if rows[TEACHER_ROW] != NOT_RUN:
        out["01"] = rows[TEACHER_ROW] + "."

    def said(section_prefix: str) -> str:
        claims = card[card["section"].str.startswith(section_prefix)]
        return "; ".join(f"{r['claim']}: {r['verdict']}" for _, r in claims.iterrows() if r["verdict"] != sc.NOT_MEASURED)

    for number, prefix in (("02", "Obs."), ("03", "Stage I"), ("05", "Headline")):
        if text := said(prefix):
            out[number] = text + "."
    teacher, s2, popular = load_result(f, "teacher"), load_result(f, "stage2"), load_result(f, "most_popular")
    if s2 and teacher:
        out["04"] = f"Stage II's retention: {_kept(s2, teacher, popular)}."
    abl = card[card["section"] == "Ablations"]
    if (abl["verdict"] != sc.NOT_MEASURED).any():
        out["06"] = f"Ablation claims: {_tally_text(abl)}."
    eff = benchmark_file(run, "cpu")
    if eff.exists():
        first = findings(tables(json.loads(eff.read_text()))["run"])
        if first:
            out["07"] = first[0]
    if rows[ID_ROW] != NOT_RUN:
        out["08"] = rows[ID_ROW] + "."
    out["09"] = f"Scorecard: {_tally_text(card)}."
    return out


RECORD = re.compile(r"commit `(?P<commit>[^`]+)`, (?P<when>[0-9-]+ [0-9:]+) UTC, wall time of this execution "
                    r"\*\*(?P<minutes>[0-9.]+) min\*\*")


def executions(folder: Path) -> pd.DataFrame:
    """Commit, date and wall time of each executed chapter in ``folder``, read from the note the
    runner puts under every chapter's title (chapters without one are left out)."""
    rows = {}
    for number, name in CHAPTERS.items():
        path = Path(folder) / f"{name}.ipynb"
        if not path.exists():
            continue
        text = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
        m = RECORD.search(text)
        if m:
            rows[number] = {"commit": m["commit"], "executed (UTC)": m["when"], "minutes": float(m["minutes"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def findings_record(run: Run, card: pd.DataFrame | None = None, table: pd.DataFrame | None = None) -> dict:
    """What :mod:`~prunerec_utils.studies.datasets` sets beside other datasets' runs: the findings table, every
    claim's verdict, and the test rows and users the teacher was evaluated on (the power of the run); ``card``
    and ``table``: the run's scorecard and :func:`findings_table`, made here if not given."""
    card = card if card is not None else sc.scorecard(run)
    table = table if table is not None else findings_table(run, card)
    teacher = load_result(run.folder, "teacher")
    return {"profile": run.prof.name, "dataset": run.dataset,
            "rows": teacher.metrics["n"] if teacher else None, "users": teacher.metrics["users"] if teacher else None,
            "findings": table["this run"].to_dict(),
            "claims": card[["section", "claim", "verdict"]].to_dict(orient="records")}


def findings_markdown(run: Run, chapters: str, folder: Path | None = None, card: pd.DataFrame | None = None,
                      table: pd.DataFrame | None = None) -> str:
    """The introduction's findings: :func:`findings_table` as a Markdown table, then
    :func:`chapter_sentences` as a list linking each chapter (``chapters``: their folder, as the
    introduction's ``{doc}`` links see it, e.g. ``default/ml-100k``); with ``folder`` (the executed
    chapters), the commits, dates and wall times of the executions. ``card`` and ``table``: as for
    :func:`findings_record`."""
    card = card if card is not None else sc.scorecard(run)
    table = table if table is not None else findings_table(run, card)
    lines = [f"**What this run found (profile `{run.prof.name}`, `{run.dataset}`, run folder "
             f"`runs/{run.dataset}/{run.prof.name}`; generated from its results files)**", "",
             "| finding | this run |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in table["this run"].items()]
    lines += ["", "**Chapter by chapter:**", ""]
    sentences = chapter_sentences(run, card, table)
    runs = executions(folder) if folder is not None else pd.DataFrame()
    for number, name in CHAPTERS.items():
        said = sentences.get(number)  # a chapter whose results are not in this run folder shows no wall time
        took = f" *({runs.loc[number, 'minutes']:.0f} min)*" if said and number in runs.index else ""
        lines.append(f"* {{doc}}`{chapters}/{name}`{took}: {said or NOT_RUN}")
    if len(runs):
        commits = list(dict.fromkeys(runs.sort_values("executed (UTC)")["commit"]))
        lines += ["", f"The chapters were executed from {runs['executed (UTC)'].min()} to "
                      f"{runs['executed (UTC)'].max()} UTC at commit{'s' if len(commits) > 1 else ''} "
                      f"{', '.join(f'`{c}`' for c in commits)}; {runs['minutes'].sum() / 60:.1f} h of wall time in all "
                      "(steps found finished in the run folder are reused, so a chapter's time is what its own "
                      "execution still had to compute)."]
    return "\n".join(lines) + "\n"


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.findings", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--out", required=True, help="Markdown file to write")
    ap.add_argument("--chapters", default=None, help="chapters folder as the intro links it (default PROFILE/DATASET)")
    args = ap.parse_args(argv)
    run = Run(args.dataset, get_profile(args.profile))
    text = findings_markdown(run, args.chapters or f"{args.profile}/{args.dataset}")
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
