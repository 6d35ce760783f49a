"""The rendered-book check: each kind of problem found on a page made to have it, none on a clean page."""

import json

import pytest

from prunerec_utils.studies import book_check

CLEAN = """<html><head><style>article {{ width: 600px; }}</style></head><body><article>
<h1>A chapter</h1>
<div class="cell docutils container"><div class="cell_output docutils container">
<div class="output text_html"><p class="prunerec-caption"><strong>Teacher against most popular</strong></p></div>
<div class="output text_html"><div style="overflow-x: auto"><table class="dataframe">
<tr><th></th><th>HR@20</th></tr><tr><th>teacher</th><td>0.1335</td></tr></table></div></div>
<img src="fig.png" alt="fig" width="300">
<div class="output text_html"><p class="prunerec-figcaption">Figure 1: the training curve.</p></div>
<div class="output stream"><pre>teacher: 1,024 steps, best validation loss 0.537</pre></div>
</div></div>
<p><strong>Commands</strong></p>
<table><tr><th>what</th><th>command</th></tr><tr><td>test</td><td>make test</td></tr></table>
<figure><img src="b.png" alt="b"><figcaption>Figure 2: a figure with its caption.</figcaption></figure>
<p><img src="c.png" alt="c"></p>
<p><em>Figure 3: a Markdown image with an italic line under it.</em></p>
{extra}
</article></body></html>"""

BROKEN = """
<div class="cell docutils container tag_run-banner"><p>This chapter shows another run.</p></div>
<p>Stage II: not run yet</p>
<table><tr><th>model</th><th>HR@20</th></tr><tr><td>stage I</td><td>NaN</td></tr></table>
<div class="cell_output docutils container">
<div class="output stream"><pre>{'loss': 0.61, 'epoch': 1.0}
ModuleNotFoundError: No module named 'prunerec_utils.finetune'
/x.py:3: FutureWarning: something changed
avg retention nan% of the teacher</pre></div>
<img src="c.png" alt="no caption">
</div>"""


def kinds(problems):
    return sorted(p.kind for p in problems)


def test_a_clean_page_has_no_problem():
    assert book_check.page_problems(CLEAN.format(extra=""), "clean.html") == []


def test_every_kind_of_static_problem_is_found():
    problems = book_check.page_problems(CLEAN.format(extra=BROKEN), "broken.html")
    assert kinds(problems) == sorted([
        "shows another run (banner)", "not run yet", "missing value in a table", "uncaptioned table",
        "raw dict printed", "error or warning in an output", "error or warning in an output",
        "missing value in an output", "uncaptioned figure"])
    assert {p.page for p in problems} == {"broken.html"}
    assert any("prunerec_utils.finetune" in p.where for p in problems)


def test_a_caption_must_sit_right_above_its_table():
    # the bold line is followed by a paragraph, then the table: the caption belongs to the paragraph
    page = CLEAN.format(extra="<p><strong>A caption</strong></p><p>Some text.</p><table><tr><td>1</td></tr></table>")
    assert kinds(book_check.page_problems(page, "p.html")) == ["uncaptioned table"]


def test_pages_skip_the_theme_pages_and_the_redirect(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text(CLEAN.format(extra=""))
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    for name in ("genindex.html", "search.html"):
        (tmp_path / name).write_text("<html></html>")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text("<html></html>")
    assert [p.relative_to(tmp_path).as_posix() for p in book_check.book_pages(tmp_path)] == ["book/intro.html"]
    with pytest.raises(book_check.PruneRecError, match="no page of"):
        book_check.book_pages(tmp_path, ["book/nothing*"])


def test_cli_exit_codes_and_json(tmp_path, capsys):
    assert book_check.main([str(tmp_path / "missing"), "--no-browser"]) == 2
    assert "no rendered book at" in capsys.readouterr().err
    (tmp_path / "ok.html").write_text(CLEAN.format(extra=""))
    assert book_check.main([str(tmp_path), "--no-browser"]) == 0
    assert "1 pages, static only (layout not checked: --no-browser): 0 problems" in capsys.readouterr().out
    (tmp_path / "bad.html").write_text(CLEAN.format(extra=BROKEN))
    assert book_check.main([str(tmp_path), "--no-browser", "--json", str(tmp_path / "out.json")]) == 1
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["pages"] == ["bad.html", "ok.html"] and len(doc["problems"]) == 9


BROWSER = book_check.find_browser()


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (.ci/run installs Debian's chromium)")
def test_layout_finds_what_sticks_out_and_nothing_else(tmp_path):
    wide = "<table class='dataframe'><tr>" + "".join(f"<td>[0.{i:04d},&nbsp;0.{i + 1:04d}]</td>" for i in range(30)) + "</tr></table>"
    page = CLEAN.format(extra=f"""
<div class="cell docutils container"><div class="cell_input"><pre>{'x = 1; ' * 60}</pre></div>
<div class="cell_output docutils container"><p class="prunerec-caption"><strong>Too wide</strong></p>
<div class="output text_html" style="overflow-x: auto">{wide}</div>
<div class="output stream"><pre style="white-space: pre">{'a printed line that never wraps ' * 10}</pre></div></div></div>""")
    (tmp_path / "page.html").write_text(page)
    problems = book_check.layout_problems(tmp_path / "page.html", "page.html", BROWSER)
    # the table, the printed line and the page they widen; the code cell may scroll
    assert len(problems) == 3, problems
    table, printed, whole = sorted(problems, key=lambda p: ["(table," in p.kind, "(pre," in p.kind, True].index(True))
    assert table.kind.startswith("wider than the text column (table,") and "[0.0000," in table.where
    assert printed.kind.startswith("spills out of its box (pre,") and "never wraps" in printed.where
    assert whole.kind.startswith("the page scrolls sideways")
    assert not list(tmp_path.glob(".layout-check-*"))  # the probe copy is gone
    (tmp_path / "page.html").write_text(CLEAN.format(extra=""))
    assert book_check.layout_problems(tmp_path / "page.html", "page.html", BROWSER) == []


def test_a_dict_printed_over_several_lines_is_found_once():
    indented = """<div class="cell_output docutils container"><div class="output stream"><pre>splits written
{
 "dataset": "ml-100k",
 "users": 943
}
[
 {"model": "sasrec"}
]
[1, 2, 3]
{ not a dict</pre></div></div>"""
    problems = book_check.page_problems(CLEAN.format(extra=indented), "indented.html")
    assert [(p.kind, p.where) for p in problems] == [("raw dict printed", '{ "dataset": "ml-100k", "users": 943 }'),
                                                     ("raw dict printed", '[ {"model": "sasrec"} ]')]
