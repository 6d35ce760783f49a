"""Stage III, depth (paper eq. 12): remove whole layers greedily by the perplexity they cost.

ΔPPL_l = PPL(model without layer l) − PPL(model), next-token perplexity over every real token
of a calibration set of recommendation training samples (prompt + answer). Greedy: remove the
layer whose removal hurts least, re-score the remaining ones, repeat until the target count.
A layer is skipped (not deleted) while scoring; :func:`prunerec_utils.method.surgery.remove_layers`
deletes the chosen ones and renumbers the rest.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .surgery import temporary_layers


@torch.no_grad()
def perplexity(model, batch: dict, embeds: torch.Tensor | None = None) -> float:
    """exp(mean next-token cross-entropy) over the real (non-pad) tokens of a left-padded batch;
    ``embeds`` ``[B, T, d]``: start the decoder from this residual stream instead of the embeddings.
    The LM head runs only at the positions whose next token is real."""
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    pos = batch.get("position_ids")
    feed = {"input_ids": ids} if embeds is None else {"inputs_embeds": embeds}
    hidden = model.get_decoder()(**feed, attention_mask=mask, position_ids=None if pos is None else pos.to(device),
                                 use_cache=False).last_hidden_state
    real = mask[:, 1:].bool()
    logits = model.get_output_embeddings()(hidden[:, :-1][real]).float()
    return math.exp(F.cross_entropy(logits, ids[:, 1:][real]))


@torch.no_grad()
def layer_inputs(model, batch: dict, keep: list[int]) -> list[torch.Tensor]:
    """The residual stream entering each layer of ``keep`` (``[B, T, d]`` each), from one forward of
    the decoder holding only those layers."""
    device = next(model.parameters()).device
    layers, got = model.get_decoder().layers, []
    hooks = [layers[i].register_forward_pre_hook(
        lambda _m, args, kwargs: got.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
        for i in keep]
    pos = batch.get("position_ids")
    try:
        with temporary_layers(model, keep):
            model.get_decoder()(input_ids=batch["input_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device),
                                position_ids=None if pos is None else pos.to(device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return got


def _deltas_cached(model, batch: dict, keep: list[int], current: float) -> dict[int, float]:
    """ΔPPL of removing each layer of ``keep`` next: the decoder restarts from the cached residual
    entering that layer and runs only the layers after it (the ones before are unchanged)."""
    inputs = layer_inputs(model, batch, keep)
    delta = {}
    for j, layer in enumerate(keep):
        with temporary_layers(model, keep[j + 1:]):
            delta[layer] = perplexity(model, batch, inputs[j]) - current
    return delta


def _deltas_naive(model, batch: dict, keep: list[int], current: float) -> dict[int, float]:
    """The same with one full forward per candidate (the reference the cached engine is tested against)."""
    delta = {}
    for layer in keep:
        with temporary_layers(model, [i for i in keep if i != layer]):
            delta[layer] = perplexity(model, batch) - current
    return delta


def greedy_layer_removal(model, batch: dict, n_remove: int, progress: bool = False, engine: str = "cached",
                         prefix: dict | None = None) -> dict:
    """Choose ``n_remove`` layers by greedy ΔPPL (eq. 12).

    ``engine`` "cached" (default) reuses the residual stream entering each candidate, which halves
    the decoder work of a step on average; "naive" runs the whole model per candidate. Both give
    the same choices. Returns ``{"removed": [...] in removal order, "base_ppl", "steps": [{"removed",
    "ppl", "delta": {layer: ΔPPL of removing it next}}], "reused_steps"}`` — deltas are relative to
    the model at that step.

    ``prefix``: an earlier result of this search on the same model and batch. Greedy choices do not
    depend on how many layers will go in the end, so its first ``min(n_remove, its length)`` steps
    are taken as they are and the search goes on from there; it is ignored unless its base
    perplexity matches this model's on ``batch``.
    """
    deltas = {"cached": _deltas_cached, "naive": _deltas_naive}.get(engine)
    if deltas is None:
        raise ValueError(f"unknown engine {engine!r}; use cached or naive")
    L = len(model.get_decoder().layers)
    base = perplexity(model, batch)
    same = prefix is not None and math.isclose(prefix.get("base_ppl") or 0.0, base, rel_tol=1e-6)
    steps = list(prefix["steps"][:n_remove]) if same else []
    removed, reused = [st["removed"] for st in steps], len(steps)
    current = steps[-1]["ppl"] if steps else base
    for _ in tqdm(range(len(steps), n_remove), desc="layer search", unit="layer", disable=not progress):
        delta = deltas(model, batch, [i for i in range(L) if i not in removed], current)
        best = min(delta, key=lambda k: (delta[k], k))
        removed.append(best)
        current += delta[best]
        steps.append({"removed": best, "ppl": current, "delta": delta})
    return {"removed": removed, "base_ppl": base, "steps": steps, "reused_steps": reused}


def random_layers(num_layers: int, n_remove: int, seed: int) -> dict:
    """Seeded random layers to remove (the random structured baseline's Stage III), in the record
    shape of :func:`greedy_layer_removal` (no search: no perplexities, no steps)."""
    return {"removed": random.Random(seed).sample(range(num_layers), n_remove), "base_ppl": None, "steps": []}
