"""Raw-file loaders of the named datasets: Amazon 2018 JSON lines and MovieLens atomic files →
the ``(user, item, timestamp)`` log in file order and the ``item -> title`` map that
:func:`prunerec_utils.data.build_splits` turns into splits. (A user's own CSV / Parquet log is
:mod:`prunerec_utils.own_log`.)
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from . import PruneRecError
from .assets import movielens_dir
from .recipe import clean_title


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _json_lines(path: Path):
    """``(line number, record)`` of a JSON-lines file (plain or ``.gz``); bad files are one-line errors."""
    try:
        with _open_text(path) as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # the 2014 release wrote Python literals
                    try:
                        rec = ast.literal_eval(line)
                    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                        raise PruneRecError(f"{path} line {n} is not JSON: {line[:40]!r}") from None
                if not isinstance(rec, dict):
                    raise PruneRecError(f"{path} line {n} is not a JSON object: {line[:40]!r}")
                yield n, rec
    except UnicodeDecodeError:
        raise PruneRecError(f"{path} is not UTF-8 text: is it a JSON-lines file?") from None
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PruneRecError(f"{path} is truncated or corrupt ({why}): download it again") from None


def find_raw(raw_dir: Path, stems: list[str]) -> Path | None:
    """The first ``<stem>.json`` or ``<stem>.json.gz`` found in ``raw_dir``, or None."""
    for stem in stems:
        for ext in (".json", ".json.gz"):
            if (raw_dir / f"{stem}{ext}").exists():
                return raw_dir / f"{stem}{ext}"
    return None


def amazon_files(raw_dir: Path, category: str) -> tuple[Path, Path]:
    """Amazon 2018 ``<Category>.json[.gz]`` (or ``_5``) reviews and ``meta_<Category>.json[.gz]`` in
    ``raw_dir``; one line saying what to put where when either is missing."""
    raw_dir = Path(raw_dir)
    reviews = find_raw(raw_dir, [category, f"{category}_5"])
    meta = find_raw(raw_dir, [f"meta_{category}"])
    if reviews is None or meta is None:
        raise PruneRecError(
            f"Amazon 2018 files for {category} missing: put {category}.json.gz (or {category}_5.json.gz) "
            f"and meta_{category}.json.gz into {raw_dir}")
    return reviews, meta


def movielens_files(name: str) -> tuple[Path, Path]:
    """The RecBole atomic files of MovieLens ``name`` (``.inter``, ``.item``) inside the wheel."""
    folder = movielens_dir(name)
    return folder / f"{name}.inter", folder / f"{name}.item"


def load_amazon(raw_dir: Path, category: str) -> tuple[pd.DataFrame, dict]:
    """Amazon 2018 reviews and metadata of ``category`` (see :func:`amazon_files`)."""
    reviews, meta = amazon_files(raw_dir, category)
    titles, records = {}, 0
    for _, rec in _json_lines(meta):
        records += 1
        if "asin" in rec and rec["asin"] not in titles:
            titles[rec["asin"]] = rec.get("title")
    if not records:
        raise PruneRecError(f"{meta} is empty: download the Amazon 2018 metadata of {category} again")
    if not any(isinstance(t, str) and t.strip() for t in titles.values()):
        raise PruneRecError(f"{meta}: no item has a title (no line has both asin and title); "
                            f"is it the Amazon 2018 metadata file of {category}?")
    rows, records = [], 0
    for n, r in _json_lines(reviews):
        records += 1
        if {"reviewerID", "asin", "unixReviewTime"} <= r.keys():
            try:
                rows.append((r["reviewerID"], r["asin"], int(r["unixReviewTime"])))
            except (TypeError, ValueError):
                raise PruneRecError(f"{reviews} line {n}: unixReviewTime {r['unixReviewTime']!r} is not "
                                    "a Unix time in seconds") from None
    if not records:
        raise PruneRecError(f"{reviews} is empty: download the Amazon 2018 reviews of {category} again")
    if not rows:
        raise PruneRecError(f"{reviews}: no line has the keys reviewerID, asin and unixReviewTime; "
                            f"is it the Amazon 2018 reviews file of {category}?")
    log = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    usable = {k for k, t in titles.items() if clean_title(t) is not None}
    if not log["item"].isin(usable).any():
        raise PruneRecError(f"none of the {log['item'].nunique()} items reviewed in {reviews} has a usable "
                            f"title in {meta}: are both files of the same category?")
    return log, titles


def load_movielens(name: str) -> tuple[pd.DataFrame, dict]:
    """MovieLens from the RecBole atomic files; title = "Title (Year)"; every rating is an interaction."""
    inter_file, item_file = movielens_files(name)
    inter = pd.read_csv(inter_file, sep="\t", dtype=str)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    log = pd.DataFrame({"user": inter["user_id"], "item": inter["item_id"],
                        "timestamp": inter["timestamp"].astype(float).astype(np.int64)})
    items = pd.read_csv(item_file, sep="\t", dtype=str, keep_default_na=False)
    items.columns = [c.split(":")[0] for c in items.columns]
    if name == "ml-1m":  # item ids are already "Title (Year)"
        titles = dict(zip(items["item_id"], items["item_id"]))
    else:
        titles = {}
        for iid, title, year in zip(items["item_id"], items["movie_title"], items["release_year"]):
            if title.strip().lower() not in {"unknown", "unkonwn"}:  # placeholder rows (sic in the wheel)
                titles[iid] = f"{title} ({year})" if year else title
    return log, titles
