"""The pieces a tokenizer's model encodes one at a time, collected once per distinct piece.

A fast (``tokenizers``) tokenizer encodes a text in steps: it cuts out the added tokens
(``<|endoftext|>`` …), normalises each remaining segment, splits it with the pre-tokenizer
(words, numbers, punctuation runs, whitespace, mapped to byte-level characters) and hands every
piece on its own to the model (BPE). So a text without added tokens encodes to the concatenation
of its pieces' encodings, and a question about a whole corpus — which token ids does it use,
does another tokenizer with the same normaliser and pre-tokenizer encode it the same? — is a
question about its *distinct* pieces. Those are few: the prompts of a recommender repeat one
template and a catalogue of titles (ml-1m: 996,987 prompts and titles hold a few thousand
distinct pieces), so the model runs a few thousand times instead of once per token of the corpus.

This module imports only ``tokenizers`` and ``tqdm``: a spawned worker starts in a fraction of a second.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from tokenizers import Tokenizer
from tqdm.auto import tqdm

CHUNK = 20_000  # texts per task (progress step)
PER_WORKER = 50_000  # fewer texts than this per worker do not pay a worker's start-up (about a second)


@dataclass(frozen=True)
class Pieces:
    """What a corpus asks of a tokenizer's model: its distinct pre-tokenized pieces (as the model
    sees them, byte-level characters) and the texts that hold an added token, which are encoded
    whole (an added token is cut out before the pre-tokenizer runs)."""

    distinct: frozenset[str]
    whole: tuple[str, ...]
    texts: int  # how many texts they come from


class _Splitter:
    """normalise → pre-tokenize, as the tokenizer does for a text without added tokens."""

    def __init__(self, backend: Tokenizer, added: str | None):
        self.normalizer, self.pre = backend.normalizer, backend.pre_tokenizer
        self.added = re.compile(added) if added else None

    def split(self, texts: list[str]) -> tuple[set[str], list[str]]:
        distinct, whole = set(), []
        for text in texts:
            norm = self.normalizer.normalize_str(text) if self.normalizer is not None else text
            if self.added is not None and (self.added.search(text) or self.added.search(norm)):
                whole.append(text)
            elif self.pre is None:
                distinct.add(norm)
            else:
                distinct.update(piece for piece, _ in self.pre.pre_tokenize_str(norm))
        return distinct, whole


_worker: _Splitter | None = None


def _start_worker(spec: str, added: str | None) -> None:
    global _worker
    _worker = _Splitter(Tokenizer.from_str(spec), added)


def _split_in_worker(texts: list[str]) -> tuple[set[str], list[str]]:
    return _worker.split(texts)


def _backend(tokenizer) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` of a fast transformers tokenizer (or the one given)."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def _added_pattern(backend: Tokenizer) -> str | None:
    """A regex matching any added token's text (longest first), or None when there is none."""
    contents = sorted({t.content for t in backend.get_added_tokens_decoder().values()}, key=len, reverse=True)
    return "|".join(map(re.escape, contents)) or None


def default_workers(n_texts: int) -> int:
    """Processes worth starting for ``n_texts``: one per usable core, one per :data:`PER_WORKER` texts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS
    return max(1, min(cores, n_texts // PER_WORKER))


def distinct_pieces(tokenizer, texts: list[str], workers: int | None = None, progress: bool = False) -> Pieces:
    """The :class:`Pieces` of ``texts`` under ``tokenizer`` (a fast transformers tokenizer or a
    ``tokenizers.Tokenizer``). ``workers`` processes split them (default :func:`default_workers`);
    1 splits in this process."""
    backend = _backend(tokenizer)
    added = _added_pattern(backend)
    workers = default_workers(len(texts)) if workers is None else workers
    chunks = [texts[i:i + CHUNK] for i in range(0, len(texts), CHUNK)]
    distinct, whole = set(), []
    bar = tqdm(total=len(texts), desc="pieces of the texts", unit="text", disable=not progress)
    for (d, w), chunk in zip(_split_all(backend, added, chunks, workers), chunks):
        distinct |= d
        whole += w
        bar.update(len(chunk))
    bar.close()
    return Pieces(frozenset(distinct), tuple(whole), len(texts))


def _split_all(backend: Tokenizer, added: str | None, chunks: list[list[str]],
               workers: int) -> Iterator[tuple[set[str], list[str]]]:
    if workers <= 1 or len(chunks) <= 1:
        splitter = _Splitter(backend, added)
        yield from map(splitter.split, chunks)
        return
    # spawn, not fork: the parent may hold torch's and tokenizers' thread pools, which a fork copies half-started
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                             initargs=(backend.to_str(), added)) as pool:
        yield from pool.map(_split_in_worker, chunks)


def piece_ids(tokenizer, piece: str) -> list[int]:
    """The ids the tokenizer's model gives one piece."""
    return [t.id for t in _backend(tokenizer).model.tokenize(piece)]


def readable(tokenizer, piece: str) -> str:
    """A piece as text (byte-level characters decoded), for messages."""
    decoder = _backend(tokenizer).decoder
    return decoder.decode([piece]) if decoder is not None else piece
