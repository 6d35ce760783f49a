"""Vocabulary pruning (beyond the paper): keep only the tokens a dataset's prompts and titles use.

After Stage III the embedding matrix (V × d) holds most of the parameters. A recommender only
ever reads the prompts of its dataset and writes its item titles, so the rows of every other
token are dead weight. This module

1. collects the token ids of every prompt (all splits) and every item answer, from their distinct
   pre-tokenized pieces (:func:`corpus_token_ids` over :func:`~.pretokens.distinct_pieces`),
2. closes that set under the BPE merges and adds the byte alphabet and the special tokens
   (:func:`closure`), and
3. writes a smaller tokenizer with the ids renumbered (:func:`restrict_tokenizer`); the
   model's embedding / lm_head rows follow with :func:`surgery.prune_vocab`;
4. checks that every piece encodes as before (:func:`changed_encodings`), hence every text.

Why the encodings do not change. Byte-level BPE encodes each pre-token by repeatedly applying
the lowest-ranked merge among the adjacent pairs present. Every merge that fires while
encoding a corpus text produces a token that either is in the output or is merged further
into an output token, so it lies in the merge-closure of the output tokens. Dropping merges
outside the closure removes only merges that never were the lowest-ranked applicable pair, so
every step picks the same merge as before: corpus texts encode to the same tokens, renumbered.
A text outside the corpus (a new item's title) still encodes, because the 256 byte tokens are
kept, but possibly into more, shorter tokens than the full tokenizer would use.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import AutoTokenizer

from .. import PruneRecError
from ..prompts import target_text
from .pretokens import Pieces, piece_ids, readable


def _spec(tokenizer) -> dict:
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise PruneRecError(f"vocabulary pruning supports BPE tokenizers, not {spec['model']['type']}")
    return spec


def _merge_pairs(spec: dict) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]


def corpus_token_ids(tokenizer, pieces: Pieces) -> set[int]:
    """Ids a corpus uses: its distinct pieces through the tokenizer's model, and its texts that hold
    an added token encoded whole (as the evaluator and trainer encode them, no special tokens added)."""
    used = {i for piece in pieces.distinct for i in piece_ids(tokenizer, piece)}
    if pieces.whole:
        for ids in tokenizer(list(pieces.whole), add_special_tokens=False)["input_ids"]:
            used.update(ids)
    return used


def closure(tokenizer, ids: set[int]) -> list[int]:
    """Sorted old ids to keep: ``ids``, every token a merge chain builds them from, the byte
    alphabet and all added/special tokens."""
    spec = _spec(tokenizer)
    vocab: dict[str, int] = spec["model"]["vocab"]
    inverse = {i: t for t, i in vocab.items()}
    parents: dict[str, list[str]] = {}
    for a, b in _merge_pairs(spec):  # a string may be built by more than one merge: keep every route
        parents.setdefault(a + b, []).extend((a, b))
    keep = {t["id"] for t in spec["added_tokens"]} | {i for i in ids if i not in inverse}
    keep |= {vocab[c] for c in ByteLevel.alphabet() if c in vocab}
    todo, seen = [inverse[i] for i in ids if i in inverse], set()
    while todo:
        tok = todo.pop()
        if tok not in seen:
            seen.add(tok)
            keep.add(vocab[tok])
            todo.extend(parents.get(tok, ()))
    return sorted(keep)


def restrict_tokenizer(tokenizer, keep_ids: list[int]):
    """A tokenizer holding only ``keep_ids`` (old ids, sorted), renumbered 0..n-1 in that order.
    Returns ``(new_tokenizer, old_of_new)`` with ``old_of_new[new_id] = old_id`` (a LongTensor).
    Merges are kept when both parts and their result survive; special-token strings are
    unchanged, so ``eos_token`` etc. still name the same tokens.
    """
    spec = _spec(tokenizer)
    keep_ids = sorted(set(keep_ids))
    new_of_old = {old: new for new, old in enumerate(keep_ids)}
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = {t: new_of_old[i] for t, i in vocab.items() if i in new_of_old}
    kept = spec["model"]["vocab"]
    spec["model"]["merges"] = [[a, b] for a, b in _merge_pairs(spec) if a in kept and b in kept and a + b in kept]
    for tok in spec["added_tokens"]:
        if tok["id"] not in new_of_old:
            raise PruneRecError(f"added token {tok['content']!r} must be kept")
        tok["id"] = new_of_old[tok["id"]]
    post = spec.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [new_of_old[i] for i in special["ids"]]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False))
        cfg_file = Path(tmp) / "tokenizer_config.json"
        cfg = json.loads(cfg_file.read_text())
        if "added_tokens_decoder" in cfg:
            cfg["added_tokens_decoder"] = {str(new_of_old[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()}
        cfg_file.write_text(json.dumps(cfg, indent=1))
        new = AutoTokenizer.from_pretrained(tmp)
    return new, torch.tensor(keep_ids, dtype=torch.long)


def encoding_mismatches(old_tok, new_tok, old_of_new: torch.Tensor, texts: list[str], batch: int = 2048) -> int:
    """How many ``texts`` the restricted tokenizer encodes differently (after renumbering)."""
    table = old_of_new.tolist()
    bad = 0
    for i in range(0, len(texts), batch):
        chunk = texts[i:i + batch]
        old = old_tok(chunk, add_special_tokens=False)["input_ids"]
        new = new_tok(chunk, add_special_tokens=False)["input_ids"]
        bad += sum(a != [table[t] for t in b] for a, b in zip(old, new))
    return bad


def changed_encodings(old_tok, new_tok, old_of_new: torch.Tensor, pieces: Pieces) -> list[str]:
    """The pieces (as text) and whole texts of a corpus that ``new_tok`` encodes differently from
    ``old_tok`` after renumbering; empty when every text of the corpus encodes as before. Both
    tokenizers must split texts alike (same normaliser and pre-tokenizer, as :func:`restrict_tokenizer`
    leaves them): a text's encoding is then its pieces' encodings in a row."""
    splitting = [{k: _spec(t).get(k) for k in ("normalizer", "pre_tokenizer")} for t in (old_tok, new_tok)]
    if splitting[0] != splitting[1]:
        raise PruneRecError("the two tokenizers split texts differently (normaliser or pre-tokenizer): "
                            "compare whole texts with encoding_mismatches")
    table = old_of_new.tolist()
    changed = [readable(old_tok, p) for p in sorted(pieces.distinct)
               if piece_ids(old_tok, p) != [table[i] for i in piece_ids(new_tok, p)]]
    return changed + [t for t in pieces.whole if encoding_mismatches(old_tok, new_tok, old_of_new, [t])]


def new_item_cost(old_tok, new_tok, old_of_new: torch.Tensor, titles: list[str]) -> dict:
    """What unseen titles cost under the restricted vocabulary.
    Returns the number of titles, the share that needs a pruned token (their encoding changes),
    and the mean answer length in tokens under the full and the restricted tokenizer.
    """
    texts = [target_text(t) for t in titles]
    kept = set(old_of_new.tolist())
    old = old_tok(texts, add_special_tokens=False)["input_ids"]
    new = new_tok(texts, add_special_tokens=False)["input_ids"]
    changed = sum(any(t not in kept for t in ids) for ids in old)
    n = max(len(texts), 1)
    return {"titles": len(texts), "share_needing_pruned_tokens": changed / n,
            "mean_tokens_full": sum(map(len, old)) / n, "mean_tokens_restricted": sum(map(len, new)) / n}
