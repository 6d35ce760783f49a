"""Executed chapters that are stale or from an earlier run than chapter 01 say so at their top."""

import json

import nbformat
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.pipeline import banners
from prunerec_utils.pipeline.evaluate import _result, save_result
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile

TABLE = """                   hr@10  hr@20  ndcg@10  ndcg@20      hr@20 95% CI  \\
teacher            0.022  0.040   0.0112   0.0157  [0.0270, 0.0520]   
PruneRec (ours)    0.024  0.042   0.0108   0.0155  [0.0300, 0.0550]   
most popular       0.036  0.072   0.0172   0.0260  [0.0570, 0.0890]   
"""


def _chapter(folder, name, source, started, printed="", facts=None):
    """An executed copy of ``source`` (cells) run at ``started``, its code cell printing ``printed``."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(t) if t.startswith("#") else
                                         nbformat.v4.new_code_cell(t) for t in source])
    record = nbformat.v4.new_markdown_cell("```{note}\nExecuted ... commit `abc1234`, 2026-11-27 10:00 UTC\n```")
    record.metadata["tags"] = [banners.RECORD_TAG]
    nb.cells.insert(1, record)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    nb.metadata["papermill"] = {"start_time": started}
    if facts is not None:
        nb.metadata["prunerec"] = {"run": facts}
    nbformat.write(nb, folder / f"{name}.ipynb")


def _source(folder, name, cells):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(t) if t.startswith("#") else
                                                   nbformat.v4.new_code_cell(t) for t in cells]),
                   folder / f"{name}.ipynb")


def _book(tmp_path):
    src, book = tmp_path / "notebooks", tmp_path / "book"
    src.mkdir(), book.mkdir()
    cells = {"01_bigrec_finetune": ["# 01", "print(1)"], "03_stage1_heads": ["# 03", "print(3)"],
             "08_baselines": ["# 08", "print(8)"], "09_table2_scorecard": ["# 09", "print(9)"]}
    for name, c in cells.items():
        _source(src, name, c)
    new = {"teacher_samples": 16384, "rows": 2000, "users": 166, "versus_most_popular": "the teacher ahead of most popular"}
    _chapter(book, "01_bigrec_finetune", cells["01_bigrec_finetune"], "2026-12-02T07:18:15+00:00", facts=new)
    _chapter(book, "03_stage1_heads", ["# 03", "print('old')"], "2026-11-27T22:41:05+00:00")  # stale, earlier run
    _chapter(book, "08_baselines", cells["08_baselines"], "2026-11-28T00:52:47+00:00",
             "the LLM teacher of this profile was fine-tuned on 2048 training rows; test users: 1000\n")
    _chapter(book, "09_table2_scorecard", cells["09_table2_scorecard"], "2026-12-03T09:00:00+00:00", TABLE, facts=new)
    return src, book


def _banner(book, name):
    cells = json.loads((book / f"{name}.ipynb").read_text())["cells"]
    found = [c for c in cells if banners.BANNER_TAG in c["metadata"].get("tags", [])]
    assert len(found) <= 1
    return "".join(found[0]["source"]) if found else None


def test_chapters_of_an_earlier_run_name_the_run_they_show(tmp_path):
    src, book = _book(tmp_path)
    marked = banners.mark(book, src)
    assert marked == {"01_bigrec_finetune": False, "03_stage1_heads": True, "08_baselines": True,
                      "09_table2_scorecard": False}  # 09 ran after 01 from the same source: nothing to say
    b08 = _banner(book, "08_baselines")
    assert "**Not the run of chapter 01.**" in b08 and "a teacher fine-tuned on 2,048 samples" in b08
    assert "evaluated on 1,000 test rows" in b08 and "changed since" not in b08
    # the verdict against most popular is read from what that run printed (chapter 03's copy has no table,
    # 09 belongs to the new run): 08's run printed none, so it says nothing it did not see
    assert "most popular" not in b08
    b03 = _banner(book, "03_stage1_heads")
    assert "Its notebook has changed since" in b03 and "executed 2026-11-27 at commit `abc1234`" in b03
    cells = json.loads((book / "03_stage1_heads.ipynb").read_text())["cells"]
    assert "".join(cells[0]["source"]) == "# 03" and banners.BANNER_TAG in cells[1]["metadata"]["tags"]  # under the title


def test_the_earlier_runs_verdict_comes_from_its_printed_table(tmp_path):
    src, book = _book(tmp_path)
    _chapter(book, "09_table2_scorecard", ["# 09", "print(9)"], "2026-11-28T02:49:53+00:00", TABLE)  # the old run's 09
    banners.mark(book, src)
    b = _banner(book, "08_baselines")
    assert "HR@20 teacher 0.0400 [0.0270, 0.0520] vs most popular 0.0720 [0.0570, 0.0890]" in b
    assert "below most popular's: the teacher did not beat it" in b


def test_marking_again_is_stable_and_a_re_executed_chapter_loses_its_banner(tmp_path):
    src, book = _book(tmp_path)
    banners.mark(book, src)
    before = (book / "03_stage1_heads.ipynb").read_text()
    banners.mark(book, src)
    assert (book / "03_stage1_heads.ipynb").read_text() == before  # no second banner, no rewrite
    assert banners.source_cells(book / "03_stage1_heads.ipynb") == [("markdown", "# 03"), ("code", "print('old')")]
    _chapter(book, "03_stage1_heads", ["# 03", "print(3)"], "2026-12-03T10:00:00+00:00")  # executed again
    assert banners.mark(book, src)["03_stage1_heads"] is False and _banner(book, "03_stage1_heads") is None
    with pytest.raises(PruneRecError, match="no executed chapter"):
        banners.mark(tmp_path / "notebooks" / "..", src)


def test_the_runner_records_the_run_a_copy_shows(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path)
    assert banners.run_facts(run) == {}  # nothing evaluated yet
    users = [f"u{j % 5}" for j in range(40)]

    def res(hits):
        import pandas as pd

        df = pd.DataFrame({"user_id": users, "item_title": ["t"] * 40})
        return _result(df, [["t"] + [f"x{k}" for k in range(19)] if j < hits else [f"x{k}" for k in range(20)]
                            for j in range(40)], {})

    save_result(res(30), run.folder, "teacher", {})
    save_result(res(30), run.folder, "most_popular", {})
    facts = banners.run_facts(run)
    assert facts == {"rows": 40, "users": 5, "versus_most_popular": "tie: no row differs"}
    assert banners.describe(facts) == "evaluated on 40 test rows from 5 users; tie: no row differs"
