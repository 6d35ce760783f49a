"""D3 data recipe (book/method.md, method-data): titles, time window, repeated k-core, sliding-window samples, 8:1:1 cut.

One path for every dataset: a loader turns the raw files into an interaction log
``(user, item, timestamp)`` in file order plus an ``item -> title`` map; everything after that
(:func:`build_splits`) is shared by Amazon 2018 and MovieLens.

Tie rule: interactions of one user with the same timestamp keep their order in the raw file
(stable sort); samples with the same target timestamp keep user order (users sorted by key),
then position. About half of MovieLens interactions tie on (user, timestamp).

CLI::

    python -m prunerec_utils.data --dataset ml-100k --out runs/ml-100k/splits
    python -m prunerec_utils.data --dataset amazon-Video_Games --raw-dir data/raw --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import PruneRecError, cli, loaders
from .identity import data_identity, files_identity
from .own_log import load_log, log_files
from .paths import atomic_dir, cli_path, output_dir, resolve
from .recipe import DatasetConfig, clean_title, get_dataset_config  # noqa: F401 (also read from here)
from .steps import SETTINGS, record, run_lock, stored

SPLIT_FILES = ("train", "valid", "test")
LIST_COLUMNS = ("history_item_id", "history_item_title", "history_timestamp")
COLUMNS = ("user_id", "history_item_id", "item_id", "history_item_title", "item_title",
           "history_timestamp", "timestamp")

# Paper Table 1 (items / train / valid / test).
PAPER_TABLE1 = {
    "amazon-Video_Games": (11037, 201613, 25202, 25203),
    "amazon-CDs_and_Vinyl": (14239, 148685, 18586, 18587),
    "amazon-Sports_and_Outdoors": (16003, 181477, 22685, 22686),
}
def raw_files(cfg: DatasetConfig, raw_dir: str | Path | None = None) -> list[Path]:
    """The files :func:`load_interactions` reads (a one-line error where they are missing)."""
    if cfg.source == "log":
        return log_files(cfg)
    if cfg.source == "amazon":
        return list(loaders.amazon_files(resolve(raw_dir or "data/raw"), cfg.category))
    return list(loaders.movielens_files(cfg.name))


def load_interactions(cfg: DatasetConfig, raw_dir: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """The dataset's ``(user, item, timestamp)`` log and ``item -> title`` map, from its loader
    (:mod:`prunerec_utils.loaders`, or :mod:`prunerec_utils.own_log` for a user's files)."""
    if cfg.source == "log":
        return load_log(cfg)
    if cfg.source == "amazon":
        return loaders.load_amazon(resolve(raw_dir or "data/raw"), cfg.category)
    return loaders.load_movielens(cfg.name)


# ---------------------------------------------------------------- recipe

def kcore(log: pd.DataFrame, k: int) -> pd.DataFrame:
    """Repeated k-core on users and items until every user and item has >= k interactions."""
    while True:
        u = log.groupby("user")["item"].transform("size")
        i = log.groupby("item")["user"].transform("size")
        keep = (u >= k) & (i >= k)
        if keep.all():
            return log
        log = log[keep]


def _ts(date: str) -> int:
    return int(datetime.fromisoformat(date).replace(tzinfo=timezone.utc).timestamp())


def _minus_year(date: str) -> str:
    d = datetime.fromisoformat(date)
    return d.replace(year=d.year - 1).date().isoformat()


def filter_window(log: pd.DataFrame, cfg: DatasetConfig) -> tuple[pd.DataFrame, tuple[str, str] | None]:
    """Time window + repeated k-core; the start moves back a year until ``min_items`` items survive."""
    if cfg.window is None:
        return kcore(log, cfg.kcore), None
    start, end = cfg.window
    while True:
        sub = log[(log["timestamp"] >= _ts(start)) & (log["timestamp"] < _ts(end))]
        sub = kcore(sub, cfg.kcore)
        if cfg.min_items is None or sub["item"].nunique() >= cfg.min_items or (
                log.empty or _ts(start) <= log["timestamp"].min()):  # nothing older to reach
            return sub, (start, end)
        start = _minus_year(start)


def build_splits(log: pd.DataFrame, titles: dict, cfg: DatasetConfig) -> tuple[dict, dict]:
    """The recipe after loading: returns ``({split: DataFrame}, stats)``."""
    clean = {k: t for k, t in ((k, clean_title(v)) for k, v in titles.items()) if t is not None}
    log = log[log["item"].isin(clean.keys())].reset_index(drop=True)
    raw_rows = len(log)
    log, window = filter_window(log, cfg)
    if log.empty:
        raise PruneRecError(f"{cfg.name}: no interactions survive the {cfg.kcore}-core filter")

    items = np.array(sorted(log["item"].unique()))
    perm = np.random.default_rng(cfg.seed).permutation(len(items))
    item_id = {item: int(perm[j]) for j, item in enumerate(items)}

    log = log.sort_values(["user", "timestamp"], kind="mergesort")  # stable: file order within ties
    rows = []
    for user, grp in log.groupby("user", sort=True):
        its, tss = grp["item"].tolist(), grp["timestamp"].tolist()
        for t in range(1, len(its)):
            lo = max(0, t - cfg.history_len)
            hist = its[lo:t]
            rows.append((user, [item_id[h] for h in hist], item_id[its[t]], [clean[h] for h in hist],
                         clean[its[t]], tss[lo:t], tss[t]))
    samples = pd.DataFrame(rows, columns=list(COLUMNS))
    samples = samples.sort_values("timestamp", kind="mergesort").reset_index(drop=True)
    n = len(samples)
    cut1, cut2 = int(0.8 * n), int(0.9 * n)
    splits = {"train": samples.iloc[:cut1], "valid": samples.iloc[cut1:cut2], "test": samples.iloc[cut2:]}
    splits = {k: v.reset_index(drop=True) for k, v in splits.items()}
    stats = {
        "dataset": cfg.name, "raw_interactions_with_title": raw_rows,
        "users": int(log["user"].nunique()), "items": len(items), "interactions": len(log),
        "samples": n, **{k: len(v) for k, v in splits.items()},
        "density": round(len(log) / (log["user"].nunique() * len(items)), 6),
        "avg_history": round(float(samples["history_item_id"].map(len).mean()), 3),
        "window": list(window) if window else None, "kcore": cfg.kcore, "config": asdict(cfg),
    }
    return splits, stats


# ---------------------------------------------------------------- files

def write_splits(splits: dict, stats: dict, out: str | Path, titles: dict | None = None,
                 settings: dict | None = None) -> Path:
    """CSV splits (list columns as JSON), ``items.csv`` and ``stats.json``, written atomically.

    ``stats.json`` is the splits' step record (:mod:`prunerec_utils.steps`): ``settings`` (the
    recipe and the raw files it read), the statistics, and ``splits_id``, the content hash of the
    CSV files as written (checked when they are reused)."""
    out = resolve(out)
    with atomic_dir(out, "stats.json") as tmp:
        for name, df in splits.items():
            df = df.copy()
            for c in LIST_COLUMNS:
                df[c] = df[c].map(json.dumps)
            df.to_csv(tmp / f"{name}.csv", index=False)
        item_table = pd.concat([pd.DataFrame({"item_id": df["item_id"], "item_title": df["item_title"]})
                                for df in splits.values()] +
                               [pd.DataFrame({"item_id": [i for h in df["history_item_id"] for i in h],
                                              "item_title": [t for h in df["history_item_title"] for t in h]})
                                for df in splits.values()])
        item_table.drop_duplicates("item_id").sort_values("item_id").to_csv(tmp / "items.csv", index=False)
        rec = record(settings or {}, {**stats, "splits_id": data_identity(tmp)})
        (tmp / "stats.json").write_text(json.dumps(rec, indent=2))
    return out


_parsed: dict[tuple, pd.DataFrame] = {}  # (path, size, mtime) -> the parsed split; the last few reads of a process
_PARSED_KEPT = 3  # train, valid and test of one dataset


def read_split(folder: str | Path, split: str) -> pd.DataFrame:
    """One split as written by :func:`prepare`, its list columns parsed. Parsing is the cost (ml-1m's 794,856
    training rows: ≈ 12 s), and a run reads its splits again for every seeded sample, so the parsed frame is
    kept per process, keyed by the file's path, size and modification time (a rewritten file is read again);
    each call returns its own frame (the history lists inside are shared: never change one in place)."""
    path = resolve(folder) / f"{split}.csv"
    if split not in SPLIT_FILES:
        raise PruneRecError(f"unknown split {split!r}; use train, valid or test")
    if not path.exists():
        raise PruneRecError(f"{path} not found: run `python -m prunerec_utils.data --dataset NAME --out "
                            f"{resolve(folder)}` (or notebook 00) first")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _parsed:
        df = _read_csv(path, {"user_id": str, "item_title": str}, COLUMNS, ("item_id", "timestamp"))
        if df.empty:
            raise PruneRecError(f"{path} is empty: nothing to train or evaluate on")
        for c in LIST_COLUMNS:
            df[c] = [_json_list(path, c, row, value) for row, value in enumerate(df[c], 1)]
        while len(_parsed) >= _PARSED_KEPT:
            _parsed.pop(next(iter(_parsed)))
        _parsed[key] = df
    return _parsed[key].copy()


_REBUILD = "rebuild the splits with `python -m prunerec_utils.data --force` (or notebook 00)"


def _read_csv(path: Path, dtype: dict, columns, integer_columns) -> pd.DataFrame:
    """A CSV file this module wrote; one-line errors name the file and what is wrong with it."""
    try:
        df = pd.read_csv(path, dtype=dtype, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise PruneRecError(f"{path} is empty: {_REBUILD}") from None
    except UnicodeDecodeError:
        raise PruneRecError(f"{path} is not a UTF-8 CSV file: {_REBUILD}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PruneRecError(f"{path} is not a readable CSV file ({why}): {_REBUILD}") from None
    missing = sorted(set(columns) - set(df.columns))
    if missing:
        raise PruneRecError(f"{path} lacks the columns {', '.join(missing)}: {_REBUILD}")
    for c in integer_columns:
        if len(df) and not pd.api.types.is_integer_dtype(df[c]):
            raise PruneRecError(f"{path}: column {c} holds values that are not whole numbers: {_REBUILD}")
    return df


def _json_list(path: Path, column: str, row: int, value) -> list:
    try:
        out = json.loads(value)
    except (TypeError, ValueError):
        out = None
    if not isinstance(out, list):
        raise PruneRecError(f"{path} data row {row}, column {column}: {str(value)[:40]!r} is not a JSON list: "
                            f"{_REBUILD}")
    return out


def read_items(folder: str | Path) -> pd.DataFrame:
    path = resolve(folder) / "items.csv"
    if not path.exists():
        raise PruneRecError(f"{path} not found: run `python -m prunerec_utils.data --dataset NAME --out "
                            f"{resolve(folder)}` (or notebook 00) first")
    return _read_csv(path, {"item_title": str}, ("item_id", "item_title"), ("item_id",))


def prepare(dataset: str | DatasetConfig, out: str | Path, raw_dir: str | Path | None = None,
            force: bool = False) -> dict:
    """Run the recipe unless ``out`` already holds its result for the same recipe and raw files
    (and its CSV files are as they were written); return its stats.

    A cached step whose record is ``stats.json`` (see :func:`write_splits`): another recipe or other
    raw files (by name and content hash), or split files changed since, make it again after one line. Where
    the raw files are gone, existing splits of the same recipe are used as they are."""
    out = output_dir(resolve(out), "stats.json")  # another folder's files are never replaced
    cfg = dataset if isinstance(dataset, DatasetConfig) else get_dataset_config(dataset)
    try:
        raw = [[p.name, files_identity([p])] for p in raw_files(cfg, raw_dir)]  # content, not just the size
    except PruneRecError:
        if force or not (out / "stats.json").exists():
            raise
        raw = None  # the raw files are gone (or the run was copied): the splits are checked on the recipe alone
    settings = {"recipe": asdict(cfg), "raw": raw}
    unchecked = ("raw",) if raw is None else ()
    rec = None if force else stored(out / "stats.json", settings, on_change="rebuild", ignore=unchecked)
    if rec is not None:
        try:
            same = rec.get("splits_id") == data_identity(out)
        except PruneRecError:
            same = False
        if same:
            return {k: v for k, v in rec.items() if k not in (SETTINGS, "splits_id")}
        print(f"[data] the split files in {out} changed since they were made: making them again", flush=True)
    with run_lock(out.parent):
        log, titles = load_interactions(cfg, raw_dir)
        splits, stats = build_splits(log, titles, cfg)
        write_splits(splits, stats, out, settings=settings)
    return stats


def sample_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded random subset of ``n`` rows (all rows if ``n`` is None or too large), original order."""
    if n is None or n >= len(df):
        return df
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[idx].reset_index(drop=True)


def table1(stats: dict) -> pd.DataFrame:
    """Our statistics in the paper's Table 1 layout, with the paper's row where one exists."""
    rows = [{"source": "ours", "dataset": stats["dataset"], "users": stats["users"], "items": stats["items"],
             "train": stats["train"], "valid": stats["valid"], "test": stats["test"]}]
    if stats["dataset"] in PAPER_TABLE1:
        it, tr, va, te = PAPER_TABLE1[stats["dataset"]]
        rows.append({"source": "paper", "dataset": stats["dataset"], "users": None, "items": it,
                     "train": tr, "valid": va, "test": te})
    return pd.DataFrame(rows).set_index(["dataset", "source"])


def recipe_table(stats: dict, splits: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """What the recipe kept of the raw log, one row per quantity (column "value", formatted): ratings with a
    title, interactions after the time window and the k-core filter, samples, density, mean history length
    and, given the ``splits``, how many users the validation and test rows come from (the unit an interval
    resamples)."""
    window = stats.get("window")
    rows = {"ratings with a known title": f"{stats['raw_interactions_with_title']:,}",
            "time window": f"{window[0]} to {window[1]}" if window else "the whole log",
            f"interactions after the {stats['kcore']}-core filter": f"{stats['interactions']:,}",
            "samples (one per interaction after a user's first)": f"{stats['samples']:,}",
            "density (interactions / users × items)": f"{stats['density']:.2%}",
            "mean history length (titles in a prompt)": f"{stats['avg_history']:.1f}"}
    for split in ("valid", "test"):
        if splits is not None and split in splits:
            df = splits[split]
            rows[f"{'validation' if split == 'valid' else 'test'} rows: from how many users"] = (
                f"{len(df):,} rows from {df['user_id'].nunique():,} users")
    return pd.DataFrame({"value": rows})


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.data", description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="ml-100k, ml-1m or amazon-<Category>")
    ap.add_argument("--out", required=True, help="output folder for train/valid/test.csv and stats.json: new, empty "
                                                 "or made by this command (relative to the current folder)")
    ap.add_argument("--raw-dir", default=None, help="folder with the Amazon 2018 files (default data/raw)")
    ap.add_argument("--force", action="store_true", help="rebuild even if OUT is complete")
    args = ap.parse_args(argv)
    stats = prepare(args.dataset, cli_path(args.out), args.raw_dir and cli_path(args.raw_dir), force=args.force)
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
