"""New items after vocabulary pruning: what titles that the run's dataset lacks cost the pruned vocabulary.

Vocabulary pruning keeps only the tokens the dataset's prompts and titles use. An item added later may need
a token that is gone: its title then encodes differently (usually into more, shorter tokens), and the
model never learned those pieces as answers. The check lets another dataset's titles play the new items:
by default the other MovieLens (ml-100k ↔ ml-1m, each lacking titles of the other), so the check runs in
both directions when both datasets are in the book.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..assets import load_tokenizer
from ..data import clean_title, get_dataset_config, load_interactions, read_items
from ..method.vocab import new_item_cost
from ..pipeline.run import Run

COUNTERPART = {"ml-100k": "ml-1m", "ml-1m": "ml-100k"}
OTHER = "other"  # the notebook parameter's value that means "the other MovieLens"


def new_items_source(dataset: str, choice: str | None) -> str | None:
    """The dataset whose titles play the new items for ``dataset``: ``choice`` itself, or for
    :data:`OTHER` the other MovieLens (None for a dataset without one); None (or ``dataset`` itself, which
    lacks none of its own titles) skips the check."""
    source = COUNTERPART.get(dataset) if choice == OTHER else choice
    return None if source == dataset else source


def new_item_check(run: Run, source: str, full_dir: Path, vocab_dir: Path, kept_token_ids) -> dict:
    """:func:`~prunerec_utils.method.vocab.new_item_cost` of every title of ``source`` that ``run``'s items
    lack, between the full tokenizer (``full_dir``) and the pruned one (``vocab_dir``; ``kept_token_ids``: the
    full vocabulary's id of each kept token), with ``source`` added."""
    _, other = load_interactions(get_dataset_config(source))
    known = set(read_items(run.splits)["item_title"])
    titles = sorted({t for t in map(clean_title, other.values()) if t and t not in known})
    cost = new_item_cost(load_tokenizer(full_dir), load_tokenizer(vocab_dir), torch.tensor(kept_token_ids), titles)
    return {"source": source, **cost}


def new_item_line(cost: dict, dataset: str) -> str:
    """One line: how many titles, what share needs a removed token, and the answer length before and after."""
    return (f"{cost['titles']:,} {cost['source']} titles not in {dataset}: "
            f"{100 * cost['share_needing_pruned_tokens']:.1f}% need a removed token; answer length "
            f"{cost['mean_tokens_full']:.2f} -> {cost['mean_tokens_restricted']:.2f} tokens on average")
