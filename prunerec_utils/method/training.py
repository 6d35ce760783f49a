"""The response-only training loss, tensor level (book/method.md, method-recommender): what BIGRec's fine-tune and the
restoration (eq. 13) share, and what the importance scores collate their batches with.

Loss on response tokens only. Sequences are left-padded so every answer sits at the end of its row; the LM head is
then applied only to the last ``n`` positions (``logits_to_keep``) — the vocabulary projection over the whole prompt
is the most expensive and useless part of a step. Position ids follow the attention mask, exactly as ``generate``
builds them for left padding. Nothing here reads or writes a file: the cached fine-tune step that drives
:class:`ResponseLossTrainer` is :func:`prunerec_utils.pipeline.finetune.finetune`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import Trainer

from ..prompts import IGNORE


class LeftPadCollator:
    """Left-pads a batch; labels padded with IGNORE; position ids from the attention mask. With
    ``count_response=True`` (the Trainer's batches) also ``response_width``, a Python int: the positions
    :func:`response_logits` keeps, counted here on the host so that a training step on a GPU never waits for the
    device to read it back."""

    def __init__(self, pad_token_id: int, count_response: bool = False):
        self.pad = pad_token_id
        self.count_response = count_response

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        out = {"input_ids": [], "attention_mask": [], "labels": []}
        for f in features:
            gap = width - len(f["input_ids"])
            out["input_ids"].append([self.pad] * gap + list(f["input_ids"]))
            out["attention_mask"].append([0] * gap + list(f["attention_mask"]))
            out["labels"].append([IGNORE] * gap + list(f["labels"]))
        batch = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        if self.count_response and bool((batch["labels"] != IGNORE).any()):
            batch[RESPONSE_WIDTH] = response_width(batch["labels"])
        return batch


RESPONSE_WIDTH = "response_width"  # batch key: how many last positions the LM head runs on


def response_width(labels: torch.Tensor) -> int:
    """Positions the LM head keeps for left-padded ``labels`` [B, L]: from the one predicting the first label
    of any row to the end (logits[:, t] predicts token t+1)."""
    labelled = (labels != IGNORE).any(0).nonzero()
    return labels.shape[1] - int(labelled.min()) + 1  # +1: the position predicting the first label


def response_logits(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the positions that predict labels, and those labels: ``[B, k, V]``, ``[B, k]``.

    logits[:, t] predicts token t+1; with left padding the labels occupy the last positions, so
    the LM head runs on the last ``keep`` hidden states only.
    """
    labels = inputs["labels"]
    keep = inputs.get(RESPONSE_WIDTH) or response_width(labels)  # the collator's count saves a device sync
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   position_ids=inputs.get("position_ids"), logits_to_keep=keep).logits
    target = labels[:, -keep + 1:] if keep > 1 else labels[:, :0]
    return logits[:, :-1], target


def response_loss(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """Next-token cross-entropy on the labelled (response) positions only."""
    logits, target = response_logits(model, inputs)
    loss_sum = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                               ignore_index=IGNORE, reduction="sum")
    return loss_sum / response_count(target, num_items_in_batch)


def response_count(target: torch.Tensor, num_items_in_batch=None):
    """Divisor of a summed loss: Trainer's token count over the accumulated batch, else this batch's."""
    if num_items_in_batch is not None:
        return num_items_in_batch
    return (target != IGNORE).sum().clamp(min=1)


def across_processes(trainer: Trainer, loss: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Stock ``Trainer.compute_loss``'s rule for a loss divided by ``num_items_in_batch``, the token
    count gathered over all processes: multiply it by their number, since DDP averages the
    gradients (and the evaluation the losses) over processes. Alone (one process) a no-op."""
    if num_items_in_batch is not None and trainer.args.average_tokens_across_devices:
        loss = loss * trainer.accelerator.num_processes
    return loss


class ResponseLossTrainer(Trainer):
    """``Trainer`` whose loss is :func:`response_loss` (everything else is stock)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = across_processes(self, response_loss(model, inputs, num_items_in_batch), num_items_in_batch)
        return (loss, {}) if return_outputs else loss


def validation_loss(model, tokenizer, ds, batch_size: int = 8) -> float:
    """Mean response-token cross-entropy of ``model`` on ``ds`` (tokenised rows, e.g. a ``datasets.Dataset``; no grad)."""
    collate = LeftPadCollator(tokenizer.pad_token_id)
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ds), batch_size):
            batch = collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += float(response_loss(model, batch)) * n
            count += n
    return total / max(count, 1) if count else math.nan
