"""Figure helpers: intervals parsed from the tables' CI strings, files written, sweeps drawn in order."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from prunerec_utils.studies import plots  # noqa: E402


def _table(x=None):
    t = pd.DataFrame({"hr@20": [0.05, 0.02, 0.04], "ndcg@20": [0.02, 0.01, 0.015],
                      "hr@20 lo": [0.03, 0.01, 0.025], "hr@20 hi": [0.07, 0.03, 0.055],
                      "avg retention": [1.1, 0.5, 0.9], "n": [200, 200, 200]}, index=["a", "b", "c"])
    if x is not None:
        t["factor"] = x
    return t


def test_interval_reads_ci_strings():
    lo, hi = plots._interval(["[0.0300, 0.0700]", "[0.1, 0.2]"])
    assert lo.tolist() == [0.03, 0.1] and hi.tolist() == [0.07, 0.2]
    with pytest.raises(ValueError):
        plots._interval(["0.03 to 0.07"])


def test_ablation_bars_draw_every_variant_and_the_paper_markers(tmp_path):
    t = _table()
    paper = pd.DataFrame({"paper hr@20": [0.1, 0.11, 0.12], "paper ndcg@20": [0.04, 0.05, 0.06]}, index=t.index)
    fig = plots.ablation_bars(t, tmp_path / "bars.png", "title", paper=paper)
    assert (tmp_path / "bars.png").stat().st_size > 0
    bars, ret = fig.axes[0], fig.axes[1]
    assert [p.get_height() for p in bars.patches[:3]] == pytest.approx(t["hr@20"].tolist())
    assert [tl.get_text() for tl in bars.get_xticklabels()] == ["a", "b", "c"]
    assert [p.get_width() for p in ret.patches] == pytest.approx(t["avg retention"].tolist())
    assert any(np.allclose(line.get_ydata(), paper["paper hr@20"]) for line in bars.get_lines())


def test_ablation_sweep_sorts_by_the_swept_setting(tmp_path):
    t = _table([2.0, 0.5, 2 / 3])
    fig = plots.ablation_sweep(t, "factor", tmp_path / "sweep.png", method=2.0)
    hr = fig.axes[0].get_lines()[0]
    assert list(hr.get_xdata()) == [0.5, 2 / 3, 2.0] and list(hr.get_ydata()) == [0.02, 0.04, 0.05]
    assert [label.get_text() for label in fig.axes[0].get_xticklabels()] == ["0.5", "0.667", "2"]
    assert (tmp_path / "sweep.png").exists()


def test_concentration_draws_a_row_per_kind_of_unit_with_sparse_layer_labels(tmp_path):
    rows = [{"model": m, "K": k, "layer": layer, "share": k + 0.01 * layer + (0.02 if m == "ft" else 0)}
            for m in ("ft", "base") for k in (0.1, 0.5) for layer in range(30)]
    tables = {"MLP units": pd.DataFrame(rows), "attention-output units": pd.DataFrame(rows[:2 * 30])}
    fig = plots.activation_concentration(tables, tmp_path / "c.png")
    assert len(fig.axes) == 4 and (tmp_path / "c.png").exists()
    assert [ax.get_title() for ax in fig.axes] == ["Top 10% of MLP units", "Top 50% of MLP units",
                                                   "Top 10% of attention-output units", "Top 50% of attention-output units"]
    assert len(fig.axes[0].get_xticks()) <= 15  # 30 layers, not 30 crowded labels
    ft = fig.axes[1].get_lines()[0]
    assert ft.get_ydata()[3] == pytest.approx(100 * (0.5 + 0.03 + 0.02))
