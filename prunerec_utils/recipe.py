"""The dataset recipe's shared pieces: which dataset is which (:class:`DatasetConfig`) and the D3 title rule.

Below the loaders (:mod:`prunerec_utils.loaders`, :mod:`prunerec_utils.own_log`) and the prompt text
(:mod:`prunerec_utils.prompts`), which all need them, and below :mod:`prunerec_utils.data`, which builds the splits.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from . import PruneRecError

_AMAZON_WORDS = {
    "Video_Games": ("video games", "video game"),
    "CDs_and_Vinyl": ("CDs and vinyl records", "CD or vinyl record"),
    "Sports_and_Outdoors": ("sports and outdoors products", "sports and outdoors product"),
}


@dataclass(frozen=True)
class DatasetConfig:
    """Dataset-specific knobs of the recipe; everything else is shared."""

    name: str
    source: str  # "movielens" or "amazon"
    items_word: str  # plural noun in the prompt ("movies")
    item_word: str  # singular noun ("movie")
    verb: str  # "watch" / "buy"
    verb_past: str  # "watched" / "bought"
    window: tuple[str, str] | None = None  # half-open [start, end) dates, UTC
    min_items: int | None = None  # widen the window start by one year until this many items survive
    kcore: int = 5
    history_len: int = 10
    seed: int = 42  # item-id shuffle

    @property
    def category(self) -> str:
        return self.name.split("-", 1)[1] if self.source == "amazon" else self.name


def get_dataset_config(name: str) -> DatasetConfig:
    if name in ("ml-100k", "ml-1m"):
        return DatasetConfig(name, "movielens", "movies", "movie", "watch", "watched")
    if name.startswith("amazon-") and len(name) > len("amazon-"):
        cat = name.split("-", 1)[1]
        plural, singular = _AMAZON_WORDS.get(cat, ("items", "item"))
        return DatasetConfig(name, "amazon", plural, singular, "buy", "bought",
                             window=("2017-10-01", "2018-12-01"), min_items=10_000)
    raise PruneRecError(f"unknown dataset {name!r}; use ml-100k, ml-1m or amazon-<Category> "
                        "(e.g. amazon-Video_Games)")


_HTML_TAG = re.compile(r"<[^>]+>")


def clean_title(raw) -> str | None:
    """D3 title rule: no HTML, unescaped entities, stripped of spaces/quotes, 2+ chars, <= 20 words."""
    if not isinstance(raw, str) or _HTML_TAG.search(raw):
        return None
    title = html.unescape(raw).strip().strip('"').strip()
    if len(title) < 2 or len(title.split()) > 20:
        return None
    return title
