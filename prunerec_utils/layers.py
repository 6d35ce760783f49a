"""Stage III, depth (paper eq. 12): remove whole layers greedily by the perplexity they cost.

ΔPPL_l = PPL(model without layer l) − PPL(model), next-token perplexity over every real token
of a calibration set of recommendation training samples (prompt + answer). Greedy: remove the
layer whose removal hurts least, re-score the remaining ones, repeat until the target count.
A layer is skipped (not deleted) while scoring; :func:`prunerec_utils.surgery.remove_layers`
deletes the chosen ones and renumbers the rest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .surgery import temporary_layers


def skipping(model, removed):
    """Temporarily run the decoder without the layers in ``removed`` (indices of the full model)."""
    gone = set(removed)
    return temporary_layers(model, [i for i in range(len(model.get_decoder().layers)) if i not in gone])


@torch.no_grad()
def perplexity(model, batch: dict) -> float:
    """exp(mean next-token cross-entropy) over the real (non-pad) tokens of a left-padded batch."""
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    pos = batch.get("position_ids")
    logits = model(input_ids=ids, attention_mask=mask, position_ids=None if pos is None else pos.to(device),
                   use_cache=False).logits[:, :-1].float()
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return math.exp(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100))


def greedy_layer_removal(model, batch: dict, n_remove: int, progress: bool = False) -> dict:
    """Choose ``n_remove`` layers by greedy ΔPPL (eq. 12).

    Returns ``{"removed": [...] in removal order, "base_ppl", "steps": [{"removed", "ppl", "delta":
    {layer: ΔPPL of removing it next}}]}`` — the deltas are relative to the model at that step.
    """
    L = len(model.get_decoder().layers)
    removed: list[int] = []
    base = current = perplexity(model, batch)
    steps = []
    for _ in tqdm(range(n_remove), desc="layer search", unit="layer", disable=not progress):
        delta = {}
        for layer in (i for i in range(L) if i not in removed):
            with skipping(model, removed + [layer]):
                delta[layer] = perplexity(model, batch) - current
        best = min(delta, key=lambda k: (delta[k], k))
        removed.append(best)
        current += delta[best]
        steps.append({"removed": best, "ppl": current, "delta": delta})
    return {"removed": removed, "base_ppl": base, "steps": steps}
