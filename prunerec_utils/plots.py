"""Shared figure helpers: every figure is saved as PNG into the run folder and returned for display."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path: str | Path | None):
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def split_timeline(splits: dict[str, pd.DataFrame], path=None):
    """Target timestamps per split (the global temporal 8:1:1 cut) and history lengths."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    every = pd.concat(splits.values())
    edges = pd.to_datetime(pd.Series(range(41)) * (every["timestamp"].max() - every["timestamp"].min()) / 40
                           + every["timestamp"].min(), unit="s")  # one set of bins for all splits
    for name, df in splits.items():
        a.hist(pd.to_datetime(df["timestamp"], unit="s"), bins=edges, alpha=0.8, label=f"{name} ({len(df):,})")
    a.set(xlabel="target time", ylabel="samples", title="Temporal split")
    a.legend()
    a.tick_params(axis="x", rotation=30)
    lens = every["history_item_id"].map(len)
    b.hist(lens, bins=range(0, lens.max() + 2), align="left", rwidth=0.8)
    b.set(xlabel="history length (items)", ylabel="samples", title="History length (≤ 10)")
    return _save(fig, path)


def training_curve(log_history: list[dict], path=None):
    """Training loss per logging step and validation loss per epoch (response tokens only)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    tr = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    ev = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if tr:
        ax.plot(*zip(*tr), marker=".", label="train loss")
    if ev:
        ax.plot(*zip(*ev), marker="o", linestyle="--", label="validation loss")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy (nats / answer token)", title="BIGRec fine-tune")
    ax.legend()
    return _save(fig, path)


def metric_bars(table: pd.DataFrame, path=None, metrics=("hr@10", "hr@20", "ndcg@10", "ndcg@20")):
    """Grouped bars of HR/NDCG@K per model with 95% bootstrap intervals as error bars."""
    rows = []
    for model, r in table.iterrows():
        for m in metrics:
            lo, hi = (float(x) for x in r[f"{m} 95% CI"].strip("[]").split(","))
            rows.append({"model": model, "metric": m, "value": r[m], "lo": lo, "hi": hi})
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    models = list(table.index)
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        sub = df[df["model"] == model]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, sub["value"], width, label=model,
               yerr=[sub["value"] - sub["lo"], sub["hi"] - sub["value"]], capsize=3)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(ylabel="value on the test sample", title="Recommendation quality (95% bootstrap CI)")
    ax.legend()
    return _save(fig, path)
