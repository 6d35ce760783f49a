"""The introduction's findings come from the run's results files: missing ones say so."""

import re

import pandas as pd

from prunerec_utils.pipeline.evaluate import _result, save_result
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies import findings


def _res(ranks):
    df = pd.DataFrame({"user_id": [str(u) for u in range(len(ranks))], "item_title": ["t"] * len(ranks)})
    ranked = [[f"x{j}" for j in range(20)] if r is None else [f"x{j}" for j in range(r - 1)] + ["t"]
              + [f"y{j}" for j in range(20 - r)] for r in ranks]
    return _result(df, ranked, {})


def test_an_empty_run_finds_nothing_and_says_so(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path)
    t = findings.findings_table(run)
    assert (t.loc[t.index != "Scorecard", "this run"] == findings.NOT_RUN).all()
    md = findings.findings_markdown(run, "ci/ml-100k")
    assert "| Teacher vs most popular | not run yet |" in md
    assert "* {doc}`ci/ml-100k/05_stage3_layers`: not run yet" in md
    assert md.count("{doc}") == len(findings.CHAPTERS)


def test_the_teacher_row_reads_the_stored_evaluations(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path)
    teacher, popular = _res([1, 2, 3, 4] * 50 + [None] * 200), _res([1] * 20 + [None] * 380)
    save_result(teacher, run.folder, "teacher", {})
    save_result(popular, run.folder, "most_popular", {})
    row = findings.findings_table(run).loc["Teacher vs most popular", "this run"]
    assert row.startswith(f"HR@20 teacher {teacher.metrics['hr@20']:.4f}") and "teacher ahead" in row
    assert f"{teacher.metrics['distinct_top10']} distinct titles" in row and "most common first title" in row
    assert findings.chapter_sentences(run)["01"] == row + "."
    gates = findings.findings_table(run).loc["Teacher's gates", "this run"]
    assert gates.startswith("Science gates: 2 of 3 hold") and "most common one ≤ 20%: fails" in gates
    save_result(popular, run.folder, "teacher", {})  # a teacher no better than popularity
    same = findings.findings_table(run).loc["Teacher vs most popular", "this run"]
    assert "tie: no row differs" in same and "ahead" not in same  # the same lists: nothing decided


def test_executions_are_read_from_the_runners_notes(tmp_path):
    import nbformat

    from prunerec_utils import runner

    for name, commit, when, minutes in (("00_preprocess", "aaa1111", "2026-12-02 07:00", 0.2),
                                        ("01_bigrec_finetune", "bbb2222", "2026-12-02 08:00", 61.5)):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")])
        runner._record_cell(nb, {"profile": "default", "dataset": "ml-100k", "seed": 42}, minutes * 60, commit)
        nb.cells[1].source = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", f"{when} UTC", nb.cells[1].source)
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    runs = findings.executions(tmp_path)
    assert runs.loc["01", "commit"] == "bbb2222" and runs.loc["01", "minutes"] == 61.5 and list(runs.index) == ["00", "01"]
    run = Run("ml-100k", get_profile("ci"), tmp_path / "runs")
    save_result(_res([1, 2] * 50 + [None] * 100), run.folder, "teacher", {})
    save_result(_res([1] * 20 + [None] * 180), run.folder, "most_popular", {})
    md = findings.findings_markdown(run, "default/ml-100k", tmp_path)
    assert "`default/ml-100k/01_bigrec_finetune` *(62 min)*: HR@20 teacher" in md
    # chapter 00 was executed, but its results are not in this run folder: no wall time beside "not run yet"
    assert "* {doc}`default/ml-100k/00_preprocess`: not run yet" in md
    assert "from 2026-12-02 07:00 to 2026-12-02 08:00 UTC at commits `aaa1111`, `bbb2222`; 1.0 h" in md
