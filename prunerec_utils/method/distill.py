"""Restoration (paper eq. 13): distil the pruned student from the fine-tuned teacher.

L = λ·KL(p_T ‖ p_S) + (1-λ)·CE(y, p_S) on the shifted response positions, temperature 1,
both terms summed over answer tokens and divided by the token count (book/method.md, method-restoration; the reference
code forgot the one-token shift). Training goes through ``transformers.Trainer`` via
:func:`prunerec_utils.pipeline.finetune.distill`: resumable epoch checkpoints, best epoch by the
validation loss (the same KD loss), the profile's training precision (the frozen teacher runs in
bf16 under ``no_grad`` whenever the student trains in bf16 or under autocast, compiled with the
student under the profile's ``train_compile``), multi-GPU via
``torchrun``/``accelerate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..prompts import IGNORE
from .training import ResponseLossTrainer, across_processes, response_count, response_logits


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, kd_lambda: float,
            num_items=None) -> torch.Tensor:
    """eq. 13 on ``[B, k, V]`` logits at the positions that predict ``target`` ``[B, k]``."""
    mask = target != IGNORE
    s = F.log_softmax(student_logits.float(), -1)
    t = F.log_softmax(teacher_logits.float(), -1)
    kl = ((t.exp() * (t - s)).sum(-1) * mask).sum()
    ce = F.nll_loss(s.reshape(-1, s.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return (kd_lambda * kl + (1 - kd_lambda) * ce) / response_count(target, num_items)


class DistillTrainer(ResponseLossTrainer):
    """``Trainer`` whose loss is :func:`kd_loss` against a frozen ``teacher``."""

    def __init__(self, *args, teacher=None, kd_lambda: float = 0.8, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        self.kd_lambda = kd_lambda

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        device = inputs["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        logits, target = response_logits(model, inputs)
        with torch.no_grad():
            teacher_logits, _ = response_logits(self.teacher, inputs)
        loss = across_processes(self, kd_loss(logits, teacher_logits, target, self.kd_lambda, num_items_in_batch),
                                num_items_in_batch)
        return (loss, {}) if return_outputs else loss
