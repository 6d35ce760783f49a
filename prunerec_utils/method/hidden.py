"""Stage I, hidden dimensions (paper eq. 7): which residual-stream dimensions to keep.

I_d = mean over samples and (non-pad) positions of |E_d ⊙ ∂L/∂E_d|, E the input embeddings
[B, T, d] and L the fine-tune loss (response cross-entropy). Variants (paper Fig 5a and the
reference code):

* ``"weight_x_grad"`` — eq. 7 (default);
* ``"gradient"`` — mean |∂L/∂E_d|;
* ``"weight"`` — mean |E_d|;
* ``"reference"`` — the reference code: one sample, |E ⊙ ∇E| of the top logit at the last position;
* ``"random"`` — seeded uniform scores (the random structured-pruning baseline).

Keep the d' = kept_heads × head_dim most important dimensions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..prompts import IGNORE

VARIANTS = ("weight_x_grad", "gradient", "weight", "reference", "random")


def hidden_importance(model, batch: dict, variant: str = "weight_x_grad", seed: int = 0) -> torch.Tensor:
    """``[d]`` importance per hidden dimension from a collated batch (input_ids, attention_mask,
    position_ids, labels) — see the module docstring for the variants (``seed``: "random" only)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if variant == "random":
        return torch.rand(model.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    model.eval()
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    if variant == "reference":
        batch = {k: v[:1] for k, v in batch.items()}
    emb = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    mask = batch["attention_mask"].bool()
    if variant != "weight":
        logits = model(inputs_embeds=emb, attention_mask=batch["attention_mask"],
                       position_ids=batch.get("position_ids"), use_cache=False).logits
        if variant == "reference":
            loss = logits[0, -1].max()
        else:
            labels = batch["labels"][:, 1:]
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   ignore_index=IGNORE)
        (grad,) = torch.autograd.grad(loss, emb)
    values = {"weight_x_grad": lambda: (emb * grad).abs(), "reference": lambda: (emb * grad).abs(),
              "gradient": lambda: grad.abs(), "weight": lambda: emb.abs()}[variant]()
    return values.detach()[mask].mean(0).float().cpu()


def top_dims(importance: torch.Tensor, keep: int) -> list[int]:
    """Indices of the ``keep`` largest scores, ascending (ties: lower index first)."""
    order = torch.argsort(-importance, stable=True)[:keep]
    return sorted(order.tolist())
