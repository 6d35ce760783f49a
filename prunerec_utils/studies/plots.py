"""Shared figure helpers: every figure is saved as PNG into the run folder and returned for display.

Figures are drawn for the book's page: at most two panels per row, :data:`PAGE_WIDTH` inches wide at
:data:`DPI`, so the browser shows them at about their drawn size (labels stay readable) and legends
sit outside the data (below the panels) where they would cover it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .observe import top_count

sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
PAGE_WIDTH, DPI = 7.6, 100  # inches, dots per inch: ≈ 760 px, the book's text column at 1280 px
plt.rcParams["figure.dpi"] = DPI  # the inline copy the notebook shows has the same size as the file


def _panels(n: int, height: float = 3.2, cols: int = 2, width: float = PAGE_WIDTH, **kw):
    """A figure of ``n`` panels, at most ``cols`` per row, page-wide; returns (fig, [axes])."""
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width if cols > 1 else 0.8 * width, height * rows),
                             squeeze=False, **kw)
    for ax in axes.ravel()[n:]:
        ax.remove()
    return fig, list(axes.ravel()[:n])


def _legend_below(ax, ncol: int = 2, handles=None, **kw):
    """The legend under the panel, outside the data (placed under the tick labels by :func:`_save`)."""
    leg = ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=8,
                    frameon=False, **kw)
    leg.below = True


def _place_legends(fig) -> None:
    """Move every :func:`_legend_below` legend just under its panel's tick labels, then let
    ``tight_layout`` make room for it (twice: the room moves the labels a little)."""
    for _ in range(2):
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            leg = ax.get_legend()
            if leg is None or not getattr(leg, "below", False):
                continue
            leg.set_visible(False)
            bottom = ax.get_tightbbox(renderer).y0
            leg.set_visible(True)
            y = ax.transAxes.inverted().transform((0, bottom))[1]
            leg.set_bbox_to_anchor((0.5, y - 0.02), transform=ax.transAxes)
        fig.tight_layout()


def _save(fig, path: str | Path | None):
    _place_legends(fig)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")  # "tight" keeps the legends drawn below
    return fig


def _ci(results: dict, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, lower and upper 95% bound of ``metric`` for every result (``EvalResult`` values)."""
    vals = np.array([r.metrics[metric] for r in results.values()])
    lo, hi = (np.array([r.metrics["ci95"][metric][j] for r in results.values()]) for j in (0, 1))
    return vals, lo, hi


def split_timeline(splits: dict[str, pd.DataFrame], path=None):
    """Target timestamps per split (the global temporal 8:1:1 cut) and history lengths."""
    fig, (a, b) = _panels(2)
    every = pd.concat(splits.values())
    edges = pd.to_datetime(pd.Series(range(41)) * (every["timestamp"].max() - every["timestamp"].min()) / 40
                           + every["timestamp"].min(), unit="s")  # one set of bins for all splits
    for name, df in splits.items():
        a.hist(pd.to_datetime(df["timestamp"], unit="s"), bins=edges, alpha=0.8, label=f"{name} ({len(df):,})")
    a.set(xlabel="target time", ylabel="samples", title="Temporal split")
    _legend_below(a, ncol=3)
    a.tick_params(axis="x", rotation=30)
    lens = every["history_item_id"].map(len)
    b.hist(lens, bins=range(0, lens.max() + 2), align="left", rwidth=0.8)
    b.set(xlabel="history length (items)", ylabel="samples", title="History length (≤ 10)")
    return _save(fig, path)


def training_curve(log_history: list[dict], path=None, title: str = "BIGRec fine-tune",
                   ylabel: str = "cross-entropy (nats / answer token)"):
    """Training loss per logging step and validation loss per evaluation (response tokens only).
    The fine-tune's loss is the cross-entropy; a distillation passes its own ``title`` and
    ``ylabel`` (eq. 13: λ·KL + CE)."""
    fig, (ax,) = _panels(1)
    tr = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    ev = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if tr:
        ax.plot(*zip(*tr), marker=".", label="train loss")
    if ev:
        ax.plot(*zip(*ev), marker="o", linestyle="--", label="validation loss")
    ax.set(xlabel="optimizer step", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _rows_text(rows, users=None) -> str:
    """"N test rows from U users" (or "N test rows" when the user count is unknown)."""
    text = f"{int(rows):,} test rows"
    return text if users is None or pd.isna(users) else f"{text} from {int(users):,} users"


def _table_rows(table: pd.DataFrame) -> str:
    """:func:`_rows_text` of an ablation table (its ``n`` column; users from its ``row users`` lists)."""
    row = table.iloc[0]
    users = len(set(row["row users"])) if isinstance(row.get("row users"), list) else None
    return _rows_text(row["n"], users)


def metric_bars(results: dict, path=None, metrics=("hr@10", "hr@20", "ndcg@10", "ndcg@20")):
    """Grouped bars of HR/NDCG@K per model (``results``: label → ``EvalResult``) with the 95%
    bootstrap intervals as error bars."""
    fig, (ax,) = _panels(1, height=3.4)
    width = 0.8 / len(results)
    cols = [_ci(results, m) for m in metrics]  # per metric: values, lows, highs over the models
    for i, model in enumerate(results):
        vals = np.array([c[0][i] for c in cols])
        lo, hi = np.array([c[1][i] for c in cols]), np.array([c[2][i] for c in cols])
        xs = np.arange(len(metrics)) + (i - (len(results) - 1) / 2) * width
        ax.bar(xs, vals, width, label=model, yerr=[vals - lo, hi - vals], capsize=3)
    ax.set_xticks(range(len(metrics)), [m.upper() for m in metrics])
    first = next(iter(results.values())).metrics
    ax.set(ylabel=f"value ({_rows_text(first['n'], first.get('users'))})",
           title="Recommendation quality (95% CI, users resampled)")
    _legend_below(ax, ncol=min(3, len(results)), handles=None)
    return _save(fig, path)


def learning_curve(table: pd.DataFrame, popular: dict, path=None, own: dict | None = None, device: str = ""):
    """HR@20 / NDCG@20 (95% bands) and list diversity vs training samples, most-popular as a band.
    ``table``: :func:`prunerec_utils.studies.learning_curve.curve_table`; ``popular``: its metrics dict with
    ``ci95``; ``own``: ``{"samples", "hr@20", "ndcg@20"}`` of this run's teacher, drawn as a star.
    """
    fig, axes = _panels(3)
    x = table.index.to_numpy()
    for ax, m in zip(axes[:2], ("hr@20", "ndcg@20")):
        ax.plot(x, table[m], marker="o", label="fine-tuned teacher")
        ax.fill_between(x, table[f"{m} lo"], table[f"{m} hi"], alpha=0.25)
        lo, hi = popular["ci95"][m]
        ax.axhline(popular[m], color="grey", linestyle="--", label="most popular")
        ax.axhspan(lo, hi, color="grey", alpha=0.15)
        if own:
            ax.plot([own["samples"]], [own[m]], marker="*", markersize=14, color="C3", linestyle="",
                    label="this run's teacher")
        ax.set(xscale="log", xlabel="training samples", ylabel=m, title=f"{m.upper()} (95% CI)")
        ax.set_xticks(x, [f"{v:,}" for v in x], rotation=30)
        ax.minorticks_off()
    _legend_below(axes[1], ncol=1)
    c = axes[2]
    c.plot(x, table["distinct top-10"], marker="o", color="C2", label="distinct top-10 titles")
    c.set(xscale="log", xlabel="training samples", ylabel="distinct titles", title="List diversity")
    c.set_xticks(x, [f"{v:,}" for v in x], rotation=30)
    c.minorticks_off()
    c2 = c.twinx()
    c2.plot(x, table["modal top-1 share"], marker="s", color="C4", label="modal top-1 share")
    c2.set(ylabel="modal top-1 share", ylim=(0, 1))
    c2.grid(False)
    _legend_below(c, ncol=1, handles=c.get_lines() + c2.get_lines())
    if device:
        fig.suptitle(f"Teacher learning curve (measured on {device})")
    return _save(fig, path)


def head_heatmaps(records: dict[str, dict], path=None):
    """Per record (label → ``stage1_heads`` record): layers × heads of the ranking score (eq. 6),
    pruned heads crossed out."""
    fig, axes = _panels(len(records), height=5.0)
    for ax, (label, rec) in zip(axes, records.items()):
        mixed = np.array(rec["mixed"])
        sns.heatmap(mixed, ax=ax, cmap="viridis", vmin=0, vmax=1, cbar=ax is axes[-1],
                    cbar_kws={"label": "importance (normalised, mixed)"})
        for layer, pruned in enumerate(rec["pruned"]):
            for h in pruned:
                ax.text(h + 0.5, layer + 0.5, "×", ha="center", va="center", color="white", fontsize=9)
        ax.set(xlabel="head", ylabel="layer", title=f"{label} (× = pruned)")
        ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def hidden_importance_curve(importance: list[float], kept: list[int], path=None):
    """eq. 7 scores sorted from high to low with the cut at d', and the score per dimension index."""
    imp = np.asarray(importance)
    keep = np.zeros(len(imp), bool)
    keep[kept] = True
    fig, (a, b) = _panels(2)
    order = np.argsort(-imp, kind="stable")
    a.plot(range(1, len(imp) + 1), imp[order])
    a.axvline(len(kept), color="C3", linestyle="--", label=f"d' = {len(kept)} kept")
    a.set(yscale="log", xlabel="rank", ylabel="importance", title="Hidden dimensions, sorted (eq. 7)")
    a.legend(fontsize=8)
    b.scatter(np.flatnonzero(keep), imp[keep], s=6, label="kept")
    b.scatter(np.flatnonzero(~keep), imp[~keep], s=6, color="grey", label="removed")
    b.set(yscale="log", xlabel="dimension index", ylabel="importance", title="By index")
    b.legend(fontsize=8)
    return _save(fig, path)


def mlp_thresholds(rec: dict, path=None):
    """Stage II: per layer, quantiles of |up_proj| at the last token and the chosen τ; and the
    distribution of the counts S(d) with the number kept."""
    q = np.array(rec["abs_activation_quantiles"])  # [L, 3]
    layers = np.arange(len(q))
    fig, (a, b) = _panels(2, height=3.4)
    for j, name in enumerate(("median", "90%", "99%")):
        a.plot(layers, q[:, j], marker=".", label=f"|H| {name}")
    a.plot(layers, rec["tau"], color="k", linestyle="--", label=f"τ (quantile {rec['tau_quantile']})")
    a.set(yscale="log", xlabel="layer", ylabel="|up_proj output|", title="Activation scale and τ per layer")
    _legend_below(a, ncol=2)
    scores = np.array(rec["scores"])
    b.hist(scores.ravel(), bins=np.arange(scores.max() + 2) - 0.5, color="C0")
    b.set(xlabel=f"S(d): samples (of {rec['samples']}) with |H_d| > τ", ylabel="neurons (all layers)",
          title=f"Keep {rec['k']} of {rec['intermediate_before']} per layer")
    return _save(fig, path)


def layer_search(rec: dict, path=None):
    """Stage III: ΔPPL of every layer at the first step, and perplexity along the removal order."""
    first = {int(k): v for k, v in rec["steps"][0]["delta"].items()}
    fig, (a, b) = _panels(2, height=3.4)
    a.bar(list(first), list(first.values()), color=["C3" if k in rec["removed"] else "C0" for k in first])
    a.set(xlabel="layer", ylabel="ΔPPL if removed first", title="Cost at step 1 (red: removed)")
    ppl = [rec["base_ppl"]] + [s["ppl"] for s in rec["steps"]]
    b.plot(range(len(ppl)), ppl, marker="o")
    b.set_xticks(range(len(ppl)), ["none"] + [str(s["removed"]) for s in rec["steps"]], rotation=60, fontsize=7)
    b.set(yscale="log", xlabel="layer removed (greedy order)", ylabel="calibration perplexity",
          title="Greedy removal (eq. 12)")
    return _save(fig, path)


def stage_figure(results: dict, params: pd.Series, path=None, popular=None):
    """The paper's Figure 4 for our run: HR@20 / NDCG@20 per stage (bars, 95% CI) and the
    non-embedding parameter count (line, right axis, log scale). ``results``: stage label →
    ``EvalResult``; ``params`` non-embedding count per stage label; ``popular`` (an ``EvalResult``
    on the same rows) draws most popular's HR@20 / NDCG@20 as dashed lines in the bars' colours."""
    stages = list(results)
    x = np.arange(len(stages))
    fig, (ax,) = _panels(1, height=3.6)
    for i, m in enumerate(("hr@20", "ndcg@20")):
        vals, lo, hi = _ci(results, m)
        bars = ax.bar(x + (i - 0.5) * 0.38, vals, 0.38, label=m.upper(), yerr=[vals - lo, hi - vals], capsize=3)
        if popular is not None:
            ax.axhline(popular.metrics[m], color=bars.patches[0].get_facecolor(), ls="--", lw=1.2,
                       label=f"most popular {m.upper()}")
    ax.set_xticks(x, [textwrap.fill(s, 12) for s in stages])  # "final (vocabulary pruned)" on three lines
    ax.set(ylabel="metric (95% CI)", title="Per stage: quality and size")
    ax2 = ax.twinx()
    ax2.plot(x, params.loc[stages].to_numpy(), color="k", marker="s", label="non-embedding parameters")
    ax2.set(yscale="log", ylabel="non-embedding parameters")
    ax2.grid(False)
    _legend_below(ax, ncol=3, handles=ax.get_legend_handles_labels()[0] + ax2.get_lines())
    return _save(fig, path)


def latency_vs_params(tables: dict[str, pd.DataFrame], path=None, device: str = ""):
    """Measured latency against total parameters, one panel per family of
    :func:`prunerec_utils.studies.efficiency.tables`; the dotted line is the latency each model would
    have if time fell exactly with FLOPs (the reference's latency divided by the FLOP bound)."""
    fig, axes = _panels(len(tables), height=3.6)
    for ax, (family, t) in zip(axes, tables.items()):
        for op, marker in (("recommend", "o"), ("beam_step", "s"), ("prefill", "^"), ("decode", "v")):
            if f"{op} ms" not in t:
                continue
            x, y = t["total params"].astype(float), t[f"{op} ms"].astype(float)
            line = ax.plot(x, y, marker=marker, label=op.replace("_", " "))[0]
            ax.plot(x, y.iloc[0] / t[f"{op} FLOP bound"].astype(float), ls=":", color=line.get_color())
        for name, xv, yv in zip(t.index, t["total params"].astype(float),
                                t.get("recommend ms", t["beam_step ms"]).astype(float)):
            ax.annotate(name, (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlabel="total parameters", ylabel="ms (median)",
               title=f"{family}" + (f" — {device}" if device else ""))
        _legend_below(ax, ncol=2, title="dotted: FLOP-proportional", title_fontsize=7)
    return _save(fig, path)


def activation_concentration(tables: dict[str, pd.DataFrame], path=None):
    """Fig 1a: per layer, the share of Σ|activation| held by the top-K% units; one row of panels per
    kind of unit (``tables``: "MLP units" → :func:`prunerec_utils.studies.observe.concentration`, ...), one
    panel per K, one line per model."""
    ks = sorted(next(iter(tables.values()))["K"].unique())
    fig, flat = _panels(len(tables) * len(ks), height=3.0, cols=len(ks))
    axes = [flat[i * len(ks):(i + 1) * len(ks)] for i in range(len(tables))]
    for row, (what, table) in zip(axes, tables.items()):
        layers = sorted(table["layer"].unique())
        for ax, k in zip(row, ks):
            for model, g in table[table["K"] == k].groupby("model", sort=False):
                ax.plot(g["layer"], 100 * g["share"], marker="o", markersize=4, label=model)
            ax.axhline(100 * k, color="grey", linestyle=":", label="all units equal")
            ax.set(xlabel="layer (0-based)", ylabel="share of Σ|act.| (%)", title=f"Top {k:.0%} of {what}")
            ax.set_xticks(layers[::max(1, round(len(layers) / 10))])  # about ten labels, whatever the depth
    _legend_below(axes[-1][0], ncol=3)
    return _save(fig, path)


def sorted_magnitudes(curves: dict[str, dict], what: str, path=None, ks=(0.1, 0.5)):
    """Fig 2-3: per-unit mean |activation| sorted high → low, one panel per layer, one line per
    model (``curves``: label → :func:`prunerec_utils.studies.observe.sorted_units`); the top-K% cut of each
    model is marked on its curve and as a vertical line."""
    layers = list(next(iter(curves.values())))
    fig, axes = _panels(len(layers), height=3.0)
    for ax, layer in zip(axes, layers):
        for i, (label, per_layer) in enumerate(curves.items()):
            y = per_layer[layer]
            ax.plot(np.arange(1, len(y) + 1), y, color=f"C{i}", label=label)
            for k, marker in zip(ks, "vsD"):
                n = top_count(k, len(y))
                ax.plot([n], [y[n - 1]], marker=marker, color=f"C{i}", linestyle="")
        units = len(y)
        for k, style in zip(ks, ("--", ":", "-.")):
            ax.axvline(top_count(k, units), color="grey", linestyle=style, label=f"top {k:.0%} cut")
        ax.set(yscale="log", xlabel="unit rank", ylabel="mean |activation|", title=f"{what}, layer {layer}")
    _legend_below(axes[-1], ncol=2)
    return _save(fig, path)


def pruning_retention(table: pd.DataFrame, path=None):
    """Fig 1b: retention (mean over HR/NDCG@10/20 of pruned / unpruned) and HR@20 / NDCG@20 against
    sparsity, per method. ``table``: :func:`prunerec_utils.studies.observe.sparsity_sweep`."""
    fig, (a, b) = _panels(2, height=3.4)
    pruned = table[table["method"] != "teacher"]
    for i, (method, g) in enumerate(pruned.groupby("method", sort=False)):
        x = 100 * g["sparsity"]
        a.plot(x, g["retention"], marker="o", color=f"C{i}", label=method)
        b.plot(x, g["hr@20"], marker="o", color=f"C{i}", label=f"{method} HR@20")
        b.plot(x, g["ndcg@20"], marker="s", linestyle="--", color=f"C{i}", label=f"{method} NDCG@20")
    a.axhline(1.0, color="k", linestyle=":", label="unpruned")
    if pruned["retention"].isna().all():
        a.text(0.5, 0.7, "undefined: the unpruned teacher\nhas no hit on these rows", transform=a.transAxes,
               ha="center", va="center")
    a.set(xlabel="sparsity (% of decoder linear weights)", ylabel="retention (pruned / unpruned)",
          title="Retention, mean over HR/NDCG@10/20")
    _legend_below(a, ncol=1)
    teacher = table[table["method"] == "teacher"].iloc[0]
    b.axhline(teacher["hr@20"], color="k", linestyle=":", label="unpruned HR@20")
    b.axhline(teacher["ndcg@20"], color="grey", linestyle=":", label="unpruned NDCG@20")
    b.set(xlabel="sparsity (% of decoder linear weights)", ylabel="metric on the test rows",
          title=f"Constrained beam search ({_rows_text(teacher['n'], teacher.get('users'))})")
    _legend_below(b, ncol=1)
    for ax in (a, b):
        ax.set_xticks(sorted(100 * pruned["sparsity"].unique()))
    a.set_xlim(b.get_xlim())
    return _save(fig, path)


def validation_curves(histories: dict[str, list[dict]], path=None):
    """ID-based baselines: validation NDCG@20 (full ranking) per epoch, one line per grid point;
    the best epoch of each is circled (the weights kept). ``histories``:
    :func:`prunerec_utils.studies.baselines.validation_histories`."""
    fig, (ax,) = _panels(1, height=3.4)
    for i, (label, hist) in enumerate(histories.items()):
        epochs, ndcg = [h["epoch"] for h in hist], [h["ndcg@20"] for h in hist]
        ax.plot(epochs, ndcg, marker=".", color=f"C{i}", label=label)
        best = max(range(len(ndcg)), key=lambda j: (ndcg[j], -j))
        ax.plot([epochs[best]], [ndcg[best]], marker="o", markersize=10, fillstyle="none", color=f"C{i}")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="validation NDCG@20 (full ranking)",
           title="Baselines: validation per epoch (circle: epoch kept)")
    _legend_below(ax, ncol=3)
    return _save(fig, path)


def ablation_bars(table: pd.DataFrame, path=None, title: str = "", paper: pd.DataFrame | None = None):
    """Table 3 / Fig 5a: HR@20 (95% CI) and NDCG@20 per variant, with the average retention on the
    right; ``paper`` (columns "paper hr@20", "paper ndcg@20", same index) adds the paper's values
    as black markers. ``table``: :func:`prunerec_utils.pipeline.ablations.ablation_table`."""
    fig, (a, b) = _panels(2, height=3.6, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(table))
    lo, hi = table["hr@20 lo"].to_numpy(), table["hr@20 hi"].to_numpy()
    a.bar(x - 0.2, table["hr@20"], 0.4, label="HR@20 (95% CI)", yerr=[table["hr@20"] - lo, hi - table["hr@20"]],
          capsize=3)
    a.bar(x + 0.2, table["ndcg@20"], 0.4, label="NDCG@20")
    if paper is not None:
        a.plot(x - 0.2, paper["paper hr@20"], "k_", markersize=18, mew=2, label="paper HR@20 (Games)")
        a.plot(x + 0.2, paper["paper ndcg@20"], "kx", label="paper NDCG@20 (Games)")
    a.set_xticks(x, table.index, rotation=15, ha="right", fontsize=8)
    a.set(ylabel=f"metric ({_table_rows(table)})", title=title)
    _legend_below(a, ncol=2)
    b.barh(x, table["avg retention"], color="C2")
    b.axvline(1.0, color="k", linestyle=":")
    b.set_yticks(x, table.index, fontsize=8)
    b.invert_yaxis()
    b.set(xlabel="avg retention vs teacher", title="Retention (same rows)")
    return _save(fig, path)


def ablation_sweep(table: pd.DataFrame, x: str, path=None, xlabel: str = "", title: str = "",
                   method=None):
    """Fig 5b/5c and the α/λ sweeps: HR@20 (95% CI) and NDCG@20 against the swept setting ``x``
    (a column of the table), average retention on the right; ``method`` marks the method's value."""
    t = table.sort_values(x)
    fig, (a, b) = _panels(2, height=3.4)
    lo, hi = t["hr@20 lo"].to_numpy(), t["hr@20 hi"].to_numpy()
    a.errorbar(t[x], t["hr@20"], yerr=[t["hr@20"] - lo, hi - t["hr@20"]], marker="o", capsize=3,
               label="HR@20 (95% CI)")
    a.plot(t[x], t["ndcg@20"], marker="s", linestyle="--", label="NDCG@20")
    b.plot(t[x], t["avg retention"], marker="o", color="C2")
    b.axhline(1.0, color="k", linestyle=":", label="teacher")
    for ax in (a, b):
        if method is not None:
            ax.axvline(method, color="grey", linestyle=":", label="the method's setting")
        ax.set_xticks(t[x], [f"{v:.3g}" for v in t[x]])  # 2/3 reads 0.667, not 0.6667
        ax.set(xlabel=xlabel or x)
    a.set(ylabel=f"metric ({_table_rows(t)})", title=title)
    b.set(ylabel="avg retention vs teacher", title="Retention (same rows)")
    _legend_below(a, ncol=2)
    _legend_below(b, ncol=2)
    return _save(fig, path)
