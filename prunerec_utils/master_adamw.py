"""AdamW over fp32 master copies of bf16 weights: the bf16 training step's optimizer.

A bf16 weight w has a rounding step of about 2⁻⁸·|w|; an AdamW update lr·m̂/(√v̂+ε) of 3e-4 on a
weight of 0.1 is a quarter of that step and would round away in a plain bf16 optimizer, every
step, for the whole run. Mixed-precision training's answer (and this class): the optimizer keeps
an fp32 master copy of every weight and its moments, updates the master with the fp32 gradient
(torch's fused multi-tensor AdamW kernel), then writes the master, rounded, back into the bf16
weight the forward and backward passes use. The model the Trainer sees, saves and evaluates is
bf16 throughout; the masters live in the optimizer state, so a resumed run continues from the
fp32 values, not from the rounded ones.
"""

from __future__ import annotations

import torch


class MasterWeightAdamW(torch.optim.Optimizer):
    """``torch.optim.AdamW`` (fused where the device allows) applied to fp32 copies of ``params``.

    Same hyper-parameters and parameter groups as ``AdamW``; the learning rate a scheduler sets on
    this optimizer's groups is handed to the inner one at every step. ``state_dict`` holds the
    inner optimizer's state (moments, step counts) and the masters.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, fused: bool | None = None):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.masters = [[p.detach().float().clone() for p in g["params"]] for g in self.param_groups]
        first = self.masters[0][0] if self.masters and self.masters[0] else None
        if fused is None:  # torch's fused AdamW runs on CPU and CUDA for fp32 tensors
            fused = first is not None and first.device.type in ("cpu", "cuda")
        self.inner = torch.optim.AdamW(
            [{"params": m, "lr": g["lr"], "weight_decay": g["weight_decay"], "betas": g["betas"], "eps": g["eps"]}
             for m, g in zip(self.masters, self.param_groups)], lr=lr, fused=fused)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, inner, masters in zip(self.param_groups, self.inner.param_groups, self.masters):
            for key in ("lr", "weight_decay", "betas", "eps"):
                inner[key] = group[key]
            for p, m in zip(group["params"], masters):
                m.grad = None if p.grad is None else p.grad.to(torch.float32)
        self.inner.step()
        for group, masters in zip(self.param_groups, self.masters):
            for p, m in zip(group["params"], masters):
                if m.grad is not None:
                    p.copy_(m)
                    m.grad = None
        return loss

    def state_dict(self) -> dict:
        out = super().state_dict()
        out["inner"] = self.inner.state_dict()
        out["masters"] = [[m.detach().clone() for m in group] for group in self.masters]
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        inner, masters = state_dict.pop("inner"), state_dict.pop("masters")
        super().load_state_dict(state_dict)
        self.inner.load_state_dict(inner)
        with torch.no_grad():
            for group, saved in zip(self.masters, masters):
                for m, s in zip(group, saved):
                    m.copy_(s)
