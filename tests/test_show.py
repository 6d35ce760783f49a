"""Displays for the book: captions travel with their tables, missing cells and counter indexes hidden."""

import numpy as np
import pandas as pd

from prunerec_utils.studies import show


def test_readable_hides_missing_cells_and_counter_index():
    f = pd.DataFrame({"a": [1.23456, np.nan], "b": pd.array([3, None], dtype="Int64")})
    r = show.readable(f, 2)
    assert r.iloc[0, 0] == 1.23 and r.iloc[1, 0] == show.MISSING and r.iloc[1, 1] == show.MISSING
    assert list(r.index) == ["", ""]
    assert "NaN" not in r.to_string() and "<NA>" not in r.to_html()
    named = show.readable(pd.DataFrame({"x": [1.0]}, index=["teacher"]))
    assert list(named.index) == ["teacher"] and named.iloc[0, 0] == 1.0  # labels kept, no gap left alone


def test_table_displays_its_caption_then_the_table_in_one_order(monkeypatch):
    shown = []
    monkeypatch.setattr(show, "display", lambda *objs: shown.extend(objs))
    show.table(pd.DataFrame({"x": [1]}, index=["m"]), "Table A <b>")
    show.line("finding → holds")
    assert repr(shown[0]) == "Table A <b>" and "<strong>Table A &lt;b&gt;</strong>" in shown[0]._repr_html_()
    assert isinstance(shown[1], pd.DataFrame) and repr(shown[2]) == "finding → holds"


def test_parameter_counts_get_thousands_separators_and_other_integers_do_not():
    f = pd.DataFrame({"non-embedding params": pd.array([134515008, None], dtype="Int64"), "epochs run": [3, 12000]})
    r = show.readable(f)
    assert list(r["non-embedding params"]) == ["134,515,008", show.MISSING]
    assert list(r["epochs run"]) == [3, 12000]


def test_with_shares_adds_percentages_of_the_reference_row():
    frame = pd.DataFrame({"total": [200, 50], "attention": [40, 10]}, index=["teacher", "stage1"])
    out = show.with_shares(frame, "teacher", {"total": "total %", "attention": "attention %"}, digits=2)
    assert out.loc["stage1", "total %"] == 25.0 and out.loc["teacher", "attention %"] == 100.0
    assert list(out.columns) == ["total", "attention", "total %", "attention %"] and "total %" not in frame


def test_figure_displays_the_figure_then_its_caption_and_closes_it(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(show, "display", lambda *objs: shown.extend(objs))
    fig = plt.figure()
    show.figure(fig, "Figure: a <caption>")
    assert shown[0] is fig and repr(shown[1]) == "Figure: a <caption>"
    assert shown[1]._repr_html_() == '<p class="prunerec-figcaption">Figure: a &lt;caption&gt;</p>'
    assert not plt.fignum_exists(fig.number)  # not shown a second time at the end of the cell


def test_number_shows_a_missing_value_as_a_dash():
    assert show.number(87.456) == "87.5" and show.number(0.5, ".0%") == "50%"
    assert show.number(float("nan")) == show.MISSING and show.number(None) == show.MISSING
    assert show.number(87.456, unit="%") == "87.5%" and show.number(float("nan"), unit="%") == show.MISSING
