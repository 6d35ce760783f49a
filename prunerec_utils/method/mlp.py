"""Stage II, MLP intermediate neurons (paper eq. 8-11).

Paper scorer: H = X·W_up (+b), the up-projection output at the **last token** of each of B
training samples (``[B, I]`` per layer). A neuron's score is how many samples activate it
strongly, S(d) = #{b : |H_bd| > τ_l}; keep the K_MLP highest per layer (ties: larger mean
|H|). τ is not given in the paper; we take a per-layer quantile of |H| over samples × neurons
(``tau_quantile``, default 0.9) and report it.

Reference-code scorer (``variant="reference"``): one sample, up to 100 tokens; per token, the
top-K signed up_proj outputs; a neuron's score is how often it is among them.

``variant="random"``: seeded uniform scores, no forward pass (the random structured baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .surgery import decoder_layers


@dataclass
class MLPScores:
    scores: torch.Tensor  # [L, I] counts (eq. 10)
    tau: torch.Tensor  # [L] thresholds (paper scorer; NaN for the reference scorer)
    activations: torch.Tensor  # [L, B, I] |H| at the last token (paper) or [L, T, I] signed (reference)

    def keep(self, k: int) -> list[list[int]]:
        """Top-k neurons per layer by score, ties broken by mean |activation| (eq. 11)."""
        tie = self.activations.abs().mean(1)
        tie = tie / (tie.max(-1, keepdim=True).values + 1e-12)  # < 1: only breaks ties
        rank = self.scores.float() + 0.5 * tie
        return [sorted(torch.topk(r, k).indices.tolist()) for r in rank]


def up_outputs(model, batch: dict, last_only: bool = True) -> torch.Tensor:
    """up_proj outputs per layer: ``[L, B, I]`` at the last position (left padding puts every
    sample's last token there), or ``[L, B, T, I]`` for all positions."""
    outs = []
    hooks = [layer.mlp.up_proj.register_forward_hook(lambda m, i, o: outs.append(o[:, -1] if last_only else o))
             for layer in decoder_layers(model)]
    device = next(model.parameters()).device
    pos = batch.get("position_ids")
    try:
        with torch.no_grad():
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                  position_ids=None if pos is None else pos.to(device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(outs).float().cpu()


def mlp_scores(model, batch: dict, tau_quantile: float = 0.9, variant: str = "paper", top_k: int | None = None,
               tokens: int = 100, seed: int = 0) -> MLPScores:
    """Neuron scores per layer (see the module docstring). ``top_k`` is the reference scorer's K;
    ``seed`` is used by the random scorer only."""
    if variant == "random":
        L, I = len(decoder_layers(model)), model.config.intermediate_size
        return MLPScores(torch.rand(L, I, generator=torch.Generator().manual_seed(seed)),
                         torch.full((L,), float("nan")), torch.zeros(L, 1, I))
    if variant == "paper":
        H = up_outputs(model, batch).abs()  # [L, B, I]
        tau = torch.quantile(H.reshape(H.shape[0], -1), tau_quantile, dim=1)  # [L]
        return MLPScores((H > tau[:, None, None]).sum(1), tau, H)
    if variant == "reference":
        one = {k: v[:1] for k, v in batch.items()}
        H = up_outputs(model, one, last_only=False)[:, 0]  # [L, T, I]
        real = one["attention_mask"][0].bool()
        H = H[:, real][:, -tokens:]
        k = top_k or H.shape[-1] // 4
        top = torch.topk(H, k, dim=-1).indices  # [L, T, k]
        counts = torch.zeros(H.shape[0], H.shape[-1], dtype=torch.long)
        counts.scatter_add_(1, top.reshape(H.shape[0], -1), torch.ones_like(top.reshape(H.shape[0], -1)))
        return MLPScores(counts, torch.full((H.shape[0],), float("nan")), H)
    raise ValueError(f"unknown variant {variant!r}; use paper, reference or random")
