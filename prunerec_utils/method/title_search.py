"""Answers restricted to item titles: the title trie, the ``generate`` reference, our kernel's lists.

Every model is scored the same way: beam search (20 beams) whose next tokens are restricted by
a prefix trie over the tokenised answers ``"title"\\n`` + EOS of all items, so every beam is a
real item. :func:`beam_search_generate` runs ``transformers.generate`` with
``prefix_allowed_tokens_fn`` (the reference); :func:`kernel_beams` runs our kernel
(:mod:`prunerec_utils.method.beam_search`) and gives the same ranked (title, score) lists.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from ..prompts import target_ids
from .beam_search import constrained_beam_search


class TitleTrie:
    """Prefix trie over the token ids of every item's answer (``"title"\\n`` + EOS).
    ``allowed(prefix)`` lists the tokens that may follow ``prefix``; ``title_of(ids)`` maps a
    complete answer back to its title (None if the ids are not an item).
    """
    def __init__(self, tokenizer, titles: list[str]):
        self.eos = tokenizer.eos_token_id
        self.next: dict[tuple, list[int]] = {}
        self.titles: dict[tuple, str] = {}
        children: dict[tuple, set] = {}
        for title in dict.fromkeys(titles):
            ids = tuple(target_ids(tokenizer, title))
            self.titles[ids] = title
            for i in range(len(ids)):
                children.setdefault(ids[:i], set()).add(ids[i])
        self.next = {k: sorted(v) for k, v in children.items()}
        self.depth = max(len(k) for k in self.titles)

    def allowed(self, prefix: tuple) -> list[int]:
        return self.next.get(tuple(prefix), [self.eos])

    def title_of(self, ids) -> str | None:
        ids = list(ids)
        if self.eos in ids:
            ids = ids[: ids.index(self.eos) + 1]
        return self.titles.get(tuple(ids))


@torch.no_grad()
def beam_search_generate(model, tokenizer, prompts: list[list[int]], trie: TitleTrie, num_beams: int = 20,
                         length_penalty: float = 0.0, share_prompt: bool = True
                         ) -> list[list[tuple[str | None, float]]]:
    """Constrained beam search with ``generate``; per prompt the ranked (title, score) beams.
    ``share_prompt`` prefills each prompt once and hands ``generate`` that KV cache copied to every
    beam (``generate`` alone would prefill the prompt once per beam: 20x the dominant cost).
    """
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)

    def allowed(_batch_id, input_ids):
        return trie.allowed(tuple(input_ids[width:].tolist()))

    extra = {}
    if share_prompt:  # prefill the prompt once per user, then copy its cache to the beams
        cache = DynamicCache(config=model.config)
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1],
              position_ids=(mask[:, :-1].cumsum(-1) - 1).clamp(min=0), cache=cache,
              use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(num_beams)
        extra["cache"] = cache
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=num_beams, num_return_sequences=num_beams,
                         max_new_tokens=trie.depth, length_penalty=length_penalty, early_stopping=True,
                         do_sample=False, prefix_allowed_tokens_fn=allowed, pad_token_id=pad,
                         eos_token_id=trie.eos, return_dict_in_generate=True, output_scores=True,
                         temperature=None, top_p=None, top_k=None, **extra)
    seqs = out.sequences[:, width:].tolist()
    scores = out.sequences_scores.tolist()
    return [[(trie.title_of(seqs[i * num_beams + j]), scores[i * num_beams + j]) for j in range(num_beams)]
            for i in range(len(prompts))]


def kernel_beams(model, tokenizer, prompts: list[list[int]], trie: TitleTrie, num_beams: int = 20,
                 length_penalty: float = 0.0, tensor_trie=None, banned_titles: list[list[str]] | None = None,
                 prompt_cache: str = "shared") -> list[list[tuple[str | None, float]]]:
    """Same contract as :func:`beam_search_generate`, computed by our kernel (``beam_search.py``).
    ``banned_titles[u]``: titles user ``u`` must not be recommended (e.g. already seen);
    ``prompt_cache``: the kernel's layout ("shared", or the "copied" reference).
    """
    banned = None if banned_titles is None else [[target_ids(tokenizer, t) for t in ts] for ts in banned_titles]
    hyps = constrained_beam_search(model, prompts, trie, num_beams, length_penalty, tokenizer.pad_token_id,
                                   tensor_trie, banned, prompt_cache)
    return [[(trie.title_of(ids), score) for ids, score in user] for user in hyps]
