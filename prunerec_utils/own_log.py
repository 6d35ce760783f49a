"""A user's own interaction log as a dataset of the recipe: CSV or Parquet files in, the same
``(user, item, timestamp)`` log and ``item -> title`` map that the named datasets' loaders give.

Everything after loading (titles cleaned, k-core, sliding windows, the 8:1:1 temporal cut) is
:func:`prunerec_utils.data.build_splits`, the code the named datasets run. Only the prompt's nouns
and verbs come from the user (``--category book`` → "Given the books this user has chosen in
order, write the next book the user will choose.").
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import PruneRecError
from .recipe import DatasetConfig, clean_title

LOG_SOURCE = "log"
MISSING_IDS = ("", "nan", "none", "null", "na", "n/a", "<na>")  # read as "no id", in any case
EPOCH = pd.Timestamp(0, tz="UTC").as_unit("s")  # dates keep their own resolution (9999-12-31 fits)
EARLIEST, LATEST = -2_208_988_800, 4_102_444_800  # 1900-01-01 and 2100-01-01, Unix seconds
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
    parquet = path.suffix.lower() in (".parquet", ".pq")
    if path.stat().st_size == 0:
        raise PruneRecError(f"{path}: is empty (0 bytes); it needs a header row and one row per interaction")
    try:
        if parquet:
            return pd.read_parquet(path)
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python", encoding="utf-8-sig")
    except (ValueError, OSError, pd.errors.ParserError, ImportError, csv.Error) as e:
        raise PruneRecError(f"{path}: cannot be read as {'Parquet' if parquet else 'CSV'} "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _need(df: pd.DataFrame, path: Path, wanted: dict[str, str]) -> None:
    missing = [f"{col} (the {role} column)" for role, col in wanted.items() if col not in df.columns]
    if missing:
        flags = ", ".join(FLAGS[role] for role, col in wanted.items() if col not in df.columns)
        raise PruneRecError(f"{path}: no column {', '.join(missing)}; it has {', '.join(map(str, df.columns))} "
                            f"(name yours with {flags})")


def _row(values: pd.Series, mask) -> str:
    """"row N" of the first row where ``mask`` holds (data rows counted from 1, the header not counted)."""
    first = int(np.flatnonzero(np.asarray(mask))[0])
    return f"row {first + 1} ({values.iloc[first]!r})"


def _ids(values: pd.Series, path: Path, column: str) -> pd.Series:
    """The id column as text; blank or NaN ids are refused (they would merge strangers into one user or item)."""
    text = values.astype(str).str.strip()
    blank = values.isna().to_numpy() | text.str.lower().isin(MISSING_IDS).to_numpy()
    if blank.any():
        raise PruneRecError(f"{path}: column {column} is blank or NaN in {int(blank.sum()):,} rows, first at "
                            f"{_row(values, blank)}; give every interaction an id")
    return text


def _timestamps(values: pd.Series, path: Path, column: str) -> pd.Series:
    """Unix seconds from one column of Unix seconds (integers; fractions dropped) or of dates (ISO 8601 or what
    pandas reads as a date, time zone UTC unless given). One column holds one of the two: mixed columns, values
    that are neither, and times outside 1900-2100 (milliseconds, say, which read as years far beyond 2100) are
    refused with the first offending row."""
    num = pd.to_numeric(values, errors="coerce")
    is_num = num.notna().to_numpy()
    dates = pd.to_datetime(values.where(~is_num), errors="coerce", utc=True, format="mixed")
    is_date = dates.notna().to_numpy()
    neither = ~is_num & ~is_date
    if neither.any():
        raise PruneRecError(f"{path}: column {column} holds a value that is neither a Unix time nor a date at "
                            f"{_row(values, neither)} ({int(neither.sum()):,} such rows)")
    if is_num.any() and is_date.any():
        minority, kind = (is_num, "a Unix time") if is_num.sum() <= is_date.sum() else (is_date, "a date")
        raise PruneRecError(f"{path}: column {column} mixes Unix times and dates; {_row(values, minority)} is "
                            f"{kind} among {int((~minority).sum()):,} of the other kind: use one format")
    if is_num.all():
        seconds = num.to_numpy(dtype="float64")
    else:
        seconds = ((dates - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")
    outside = ~((seconds >= EARLIEST) & (seconds < LATEST))
    if outside.any():
        hint = " (Unix milliseconds? divide them by 1,000)" if is_num.all() and (seconds[outside] >= LATEST).any() \
            else ""
        raise PruneRecError(f"{path}: column {column} holds a time outside 1900-2100 at {_row(values, outside)}"
                            f"{hint}")
    return pd.Series(np.floor(seconds).astype("int64"), index=values.index)


def _titles(table: pd.DataFrame, ids: pd.Series, column: str, path: Path) -> dict:
    """``item -> title``; an item given two different titles is refused (which one is right?)."""
    pairs = pd.DataFrame({"item": ids.to_numpy(), "title": table[column].to_numpy()}).drop_duplicates()
    counts = pairs["item"].value_counts()
    if (counts > 1).any():
        item = counts.index[counts > 1][0]
        shown = ", ".join(repr(t) for t in pairs.loc[pairs["item"] == item, "title"].head(3))
        raise PruneRecError(f"{path}: {int((counts > 1).sum()):,} items have more than one title, e.g. item "
                            f"{item!r}: {shown}; give each item one title")
    return dict(zip(pairs["item"], pairs["title"]))


def check_items(log: pd.DataFrame, titles: dict, path: Path) -> dict:
    """The titles the recipe can use for the log's items. Refused: no log item with a usable title, and one title
    naming several items (a recommendation is a title: they could not be told apart, every metric would be
    wrong). Items without a row in the items file, or whose title the recipe's rule rejects (empty, not text,
    HTML, over 20 words), are dropped with a printed line: how many and the share of interactions they take."""
    used = log["item"].drop_duplicates()
    per_item = log["item"].value_counts()
    missing = used[~used.isin(list(titles))]
    clean = {item: clean_title(titles[item]) for item in used if item in titles}
    unusable = [item for item, t in clean.items() if t is None]
    for what, items in (("have no row in it", missing.tolist()), ("have no usable title (empty, not text, HTML "
                                                                   "or over 20 words)", unusable)):
        if items and len(items) == len(used):
            raise PruneRecError(f"{path}: none of the log's {len(used):,} items can be used: they {what}, e.g. "
                                f"{items[0]!r}")
        if items:
            share = per_item[items].sum() / len(log)
            print(f"[own log] {path.name}: {len(items):,} of {len(used):,} items {what}, e.g. {items[0]!r}; "
                  f"their {100 * share:.1f}% of the interactions are dropped", flush=True)
    named = pd.Series({item: t for item, t in clean.items() if t is not None})
    shared = named.index.to_series().groupby(named.to_numpy()).apply(list)
    shared = shared[shared.map(len) > 1]
    if len(shared):
        title, items = shared.index[0], shared.iloc[0]
        raise PruneRecError(f"{path}: {len(shared):,} titles name more than one item, e.g. {title!r}: "
                            f"{', '.join(map(repr, items[:3]))}; recommendations are titles, so give each item its "
                            f"own title")
    return {item: titles[item] for item in named.index}


def load_log(cfg: LogConfig) -> tuple[pd.DataFrame, dict]:
    """``(log, titles)``: the interactions as ``user, item, timestamp`` (strings, strings, Unix
    seconds) in file order, and every item's title, from the log's title column or the items file.

    Refused in one line naming the file: blank ids, times that are not one clear format, conflicting or
    shared titles (:func:`check_items`). Exact duplicate rows (same user, item and timestamp) are removed with
    a printed count; the same item again at another time stays, as a second interaction."""
    inter_path, *rest = log_files(cfg)
    inter = _read_table(inter_path)
    roles = {"user": cfg.user_col, "item": cfg.item_col, "timestamp": cfg.time_col}
    if not cfg.items:
        roles["title"] = cfg.title_col
    _need(inter, inter_path, roles)
    if inter.empty:
        raise PruneRecError(f"{inter_path}: no interactions (a header and no rows)")
    log = pd.DataFrame({"user": _ids(inter[cfg.user_col], inter_path, cfg.user_col),
                        "item": _ids(inter[cfg.item_col], inter_path, cfg.item_col),
                        "timestamp": _timestamps(inter[cfg.time_col], inter_path, cfg.time_col)})
    if cfg.items:
        titles_path = rest[0]
        table = _read_table(titles_path)
        _need(table, titles_path, {"item": cfg.item_col, "title": cfg.title_col})
        titles = _titles(table, _ids(table[cfg.item_col], titles_path, cfg.item_col), cfg.title_col, titles_path)
    else:
        titles_path = inter_path
        titles = _titles(inter, log["item"], cfg.title_col, inter_path)
    duplicated = log.duplicated()
    if duplicated.any():
        log = log[~duplicated].reset_index(drop=True)
        print(f"[own log] {inter_path.name}: {int(duplicated.sum()):,} exact duplicate rows (same user, item and "
              f"timestamp) removed", flush=True)
    return log, check_items(log, titles, titles_path)


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
