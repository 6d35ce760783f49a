"""Figure helpers: values and intervals drawn from the results, legends off the data, sweeps drawn in order."""

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


def _result(ranks):
    from prunerec_utils.pipeline.evaluate import _result as make

    df = pd.DataFrame({"user_id": range(len(ranks)), "item_title": ["t"] * len(ranks)})
    ranked = [[None] * 20 if r is None else [f"x{j}" for j in range(r - 1)] + ["t"] + [f"y{j}" for j in range(20 - r)]
              for r in ranks]
    return make(df, ranked, {})


def test_metric_bars_draw_each_models_value_and_interval(tmp_path):
    res = {"a": _result([1, 3, None, 15, None, None]), "b": _result([None, 2, None, None, None, None])}
    fig = plots.metric_bars(res, tmp_path / "m.png", metrics=("hr@10", "hr@20"))
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([res["a"].metrics["hr@10"], res["a"].metrics["hr@20"],
                                     res["b"].metrics["hr@10"], res["b"].metrics["hr@20"]])
    lo, hi = res["a"].metrics["ci95"]["hr@20"]
    caps = [seg for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None
            for seg in c.errorbar.lines[2][0].get_segments()]
    assert any(np.allclose([s[0][1], s[1][1]], [lo, hi]) for s in caps)  # a's HR@20 whisker spans its interval
    assert ax.get_legend().get_texts()[0].get_text() == "a" and (tmp_path / "m.png").exists()


def test_legends_below_sit_under_the_tick_labels(tmp_path):
    res = {"a": _result([1, 3, None]), "b": _result([2, None, None])}
    fig = plots.metric_bars(res, tmp_path / "m.png")
    ax = fig.axes[0]
    r = fig.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(r).y1 <= ax.xaxis.get_tightbbox(r).y0 + 1  # no overlap with the axis


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


def test_axes_count_test_rows_and_the_users_they_come_from(tmp_path):
    t = _table()
    t["row users"] = [[f"u{j % 40}" for j in range(200)]] * 3  # 200 rows from 40 users
    assert plots.ablation_bars(t).axes[0].get_ylabel() == "metric (200 test rows from 40 users)"
    assert plots.ablation_sweep(_table([1.0, 2.0, 3.0]), "factor").axes[0].get_ylabel() == "metric (200 test rows)"
    res = {"a": _result([1, 3, None, 15])}
    assert plots.metric_bars(res).axes[0].get_ylabel() == "value (4 test rows from 4 users)"


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


def test_stage_figure_wraps_long_stage_names_so_ticks_do_not_overlap(tmp_path):
    results = {label: _result([1, 4, None]) for label in ("teacher", "stage III", "final (vocabulary pruned)")}
    fig = plots.stage_figure(results, pd.Series({"teacher": 1000, "stage III": 100, "final (vocabulary pruned)": 100}),
                             tmp_path / "f.png")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[-1] == "final\n(vocabulary\npruned)" and ticks[0] == "teacher"


def test_stage_figure_draws_most_popular_as_a_dashed_line_per_metric(tmp_path):
    results = {label: _result([1, 4, None]) for label in ("teacher", "stage III")}
    popular = _result([None, 2, None])
    fig = plots.stage_figure(results, pd.Series({"teacher": 1000, "stage III": 100}), tmp_path / "f.png",
                             popular=popular)
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in dashed) == sorted([popular.metrics["hr@20"],
                                                                      popular.metrics["ndcg@20"]])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "most popular HR@20" in labels and "most popular NDCG@20" in labels
    plain = plots.stage_figure(results, pd.Series({"teacher": 1000, "stage III": 100}))
    assert not [line for line in plain.axes[0].get_lines() if line.get_linestyle() == "--"]
