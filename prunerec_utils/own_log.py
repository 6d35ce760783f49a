"""A user's own interaction log as a dataset of the recipe: CSV or Parquet files in, the same
``(user, item, timestamp)`` log and ``item -> title`` map that the named datasets' loaders give.

Everything after loading (titles cleaned, k-core, sliding windows, the 8:1:1 temporal cut) is
:func:`prunerec_utils.data.build_splits`, the code the named datasets run. Only the prompt's nouns
and verbs come from the user (``--category book`` → "Given the books this user has chosen in
order, write the next book the user will choose.").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import PruneRecError
from .recipe import DatasetConfig

LOG_SOURCE = "log"
FLAGS = {"user": "--user-col", "item": "--item-col", "timestamp": "--time-col", "title": "--title-col"}  # prune CLI


@dataclass(frozen=True)
class LogConfig(DatasetConfig):
    """A :class:`~prunerec_utils.data.DatasetConfig` read from the user's files. ``items`` is ""
    when the log itself has a title column."""

    interactions: str = ""
    items: str = ""
    user_col: str = "user"
    item_col: str = "item"
    time_col: str = "timestamp"
    title_col: str = "title"


def log_config(interactions: str | Path, items: str | Path | None = None, category: str = "item",
               plural: str | None = None, verb: str = "choose", verb_past: str = "chosen",
               columns: dict | None = None, kcore: int = 5, history_len: int = 10) -> LogConfig:
    """The recipe for a log: its files (absolute paths), column names (``columns``: any of
    ``user``, ``item``, ``timestamp``, ``title`` → the file's names) and the prompt's words."""
    cols = {"user": "user", "item": "item", "timestamp": "timestamp", "title": "title", **(columns or {})}
    return LogConfig(name="log", source=LOG_SOURCE, items_word=plural or f"{category}s", item_word=category,
                     verb=verb, verb_past=verb_past, kcore=kcore, history_len=history_len,
                     interactions=str(Path(interactions).resolve()), items=str(Path(items).resolve()) if items else "",
                     user_col=cols["user"], item_col=cols["item"], time_col=cols["timestamp"],
                     title_col=cols["title"])


def log_files(cfg: LogConfig) -> list[Path]:
    """The files :func:`load_log` reads; one line naming a missing one."""
    files = [Path(cfg.interactions)] + ([Path(cfg.items)] if cfg.items else [])
    for f in files:
        if not f.is_file():
            raise PruneRecError(f"{f}: no such file")
    return files


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python")
    except (ValueError, OSError, pd.errors.ParserError, ImportError) as e:
        raise PruneRecError(f"{path}: cannot be read as {'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'} "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _need(df: pd.DataFrame, path: Path, wanted: dict[str, str]) -> None:
    missing = [f"{col} (the {role} column)" for role, col in wanted.items() if col not in df.columns]
    if missing:
        flags = ", ".join(FLAGS[role] for role, col in wanted.items() if col not in df.columns)
        raise PruneRecError(f"{path}: no column {', '.join(missing)}; it has {', '.join(map(str, df.columns))} "
                            f"(name yours with {flags})")


def _timestamps(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Unix seconds from numbers or dates."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        return num.astype("int64")
    dates = pd.to_datetime(values, errors="coerce", utc=True)
    bad = values[num.isna() & dates.isna()]
    if len(bad):
        raise PruneRecError(f"{path}: column {column} holds {bad.iloc[0]!r}, neither a Unix time nor a date "
                            f"({len(bad):,} such rows)")
    return pd.Series((dates.astype("int64") // 10**9).where(num.isna(), num), index=values.index).astype("int64")


def load_log(cfg: LogConfig) -> tuple[pd.DataFrame, dict]:
    """``(log, titles)``: the interactions as ``user, item, timestamp`` (strings, strings, Unix
    seconds) in file order, and every item's title, from the log's title column or the items file."""
    inter_path, *rest = log_files(cfg)
    inter = _read_table(inter_path)
    roles = {"user": cfg.user_col, "item": cfg.item_col, "timestamp": cfg.time_col}
    if not cfg.items:
        roles["title"] = cfg.title_col
    _need(inter, inter_path, roles)
    log = pd.DataFrame({"user": inter[cfg.user_col].astype(str), "item": inter[cfg.item_col].astype(str),
                        "timestamp": _timestamps(inter[cfg.time_col], inter_path, cfg.time_col)})
    if cfg.items:
        items_path = rest[0]
        table = _read_table(items_path)
        _need(table, items_path, {"item": cfg.item_col, "title": cfg.title_col})
        titles = dict(zip(table[cfg.item_col].astype(str), table[cfg.title_col]))
    else:
        titles = dict(zip(log["item"], inter[cfg.title_col]))
    if log.empty:
        raise PruneRecError(f"{inter_path}: no interactions")
    return log, titles


def synthetic_log(folder: str | Path, users: int = 200, items: int = 120, per_user: int = 14, seed: int = 0,
                  category: str = "book") -> tuple[Path, Path]:
    """A small log with structure a recommender can learn, for examples and tests: items fall
    into six genres with their own title words, each user mostly reads one genre, in
    title-number order. Writes ``interactions.csv`` (user, item, timestamp) and ``items.csv``
    (item, title) into ``folder``; returns both paths."""

    rng = np.random.default_rng(seed)
    genres = ["Mystery", "Garden", "Space", "Cooking", "History", "Sailing"]
    nouns = ["Secret", "Road", "Light", "House", "River", "Letter", "Winter", "Harbor", "Map", "Song"]
    titles = {f"i{j}": f"The {nouns[(j // len(genres)) % len(nouns)]} of {genres[j % len(genres)]} "
                       f"{category.title()} {j}" for j in range(items)}
    rows, t0 = [], 1_600_000_000
    for u in range(users):
        genre = rng.integers(len(genres))
        own = [j for j in range(items) if j % len(genres) == genre]
        start = int(rng.integers(len(own)))
        seen = [own[(start + k) % len(own)] if rng.random() < 0.8 else int(rng.integers(items))
                for k in range(per_user)]
        t = t0 + int(rng.integers(0, 86_400 * 365))
        for j in seen:
            t += int(rng.integers(3_600, 86_400 * 7))
            rows.append((f"u{u}", f"i{j}", t))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    log.to_csv(folder / "interactions.csv", index=False)
    pd.DataFrame({"item": list(titles), "title": list(titles.values())}).to_csv(folder / "items.csv", index=False)
    return folder / "interactions.csv", folder / "items.csv"
