"""Stage I, attention heads (paper eq. 3-6): importance by ε-suppression, greedy layer by layer.

* eq. 3 — suppress head i of layer l by multiplying its query vectors by ε (default 1e-4): its
  scores Q_iK_iᵀ shrink by ε (RoPE is linear), so it attends uniformly over the causal context.
* eq. 4 — importance = KL(p_original ‖ p_suppressed) of the full-vocabulary next-token
  distribution on the scored positions (the answer positions of B training samples, or the
  reference code's quirk: the last position of a batch right-padded to 256), mean per sample,
  then mean over samples. p_original is the unpruned model.
* eq. 5-6 — min-max normalise within the layer, then mix by head index with the previous
  layer's mixed vector: m_l = α·m_{l-1} + (1-α)·norm_l; prune the K lowest of m_l. Heads chosen
  in earlier layers stay suppressed while later layers are scored (greedy).

The kernel (:func:`kernel_layer_scores`) keeps the residual stream entering layer l (computed
once per layer, with the earlier choices applied) and scores all H heads of the layer in one
pass of layers l..L over a batch of H × B rows (row block h suppresses head h). The naive
reference (:func:`naive_layer_scores`) runs one full forward per head; both give the same scores.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..prompts import IGNORE, encode_example
from .surgery import decoder_layers, head_dim, temporary_layers
from .training import LeftPadCollator


class HeadSuppressor(contextlib.AbstractContextManager):
    """Forward hooks on every ``q_proj``: ``scales[l]`` is ``[rows or 1, H]`` (1 = untouched, ε = suppressed)."""

    def __init__(self, model):
        self.hd = head_dim(model.config)
        self.scales: dict[int, torch.Tensor] = {}
        self.handles = [layer.self_attn.q_proj.register_forward_hook(self._hook(i))
                        for i, layer in enumerate(decoder_layers(model))]

    def _hook(self, idx: int):
        def scale(_module, _inp, out):
            s = self.scales.get(idx)
            if s is None:
                return out
            return out * s.to(out.dtype).repeat_interleave(self.hd, -1)[:, None, :]
        return scale

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


def head_scale(num_heads: int, heads, epsilon: float, device=None) -> torch.Tensor:
    """``[1, H]`` multipliers with ε at ``heads``."""
    s = torch.ones(1, num_heads, device=device)
    s[0, list(heads)] = epsilon
    return s


def only_layers(model, start: int, stop: int | None = None):
    """Temporarily make the decoder hold ``layers[start:stop]`` (feed it ``inputs_embeds``)."""
    return temporary_layers(model, range(len(decoder_layers(model)))[start:stop])


@dataclass
class ScoringBatch:
    """B left-padded samples and the positions whose next-token distribution is scored."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    scored: torch.Tensor  # [B, T] bool; True where logits[t] is compared (t predicts t+1)

    @property
    def keep(self) -> int:
        """Trailing positions that hold every scored one (the LM head runs on these only)."""
        cols = self.scored.any(0).nonzero()
        return self.scored.shape[1] - int(cols.min())

    def to(self, device) -> "ScoringBatch":
        return ScoringBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.position_ids,
                                                      self.scored)))


def scoring_batch(tokenizer, histories, targets, cfg, cutoff_len: int = 512, quirk_last_padded: bool = False,
                  pad_to: int = 256) -> ScoringBatch:
    """Prompt + answer of each sample. Default: the answer positions are scored (logits[t] with
    labels[t+1] set). ``quirk_last_padded``: the reference code — right-pad to ``pad_to`` and score
    only the last position (usually a pad token attending to the real ones)."""
    feats = [encode_example(tokenizer, h, t, cfg, min(cutoff_len, pad_to) if quirk_last_padded else cutoff_len)
             for h, t in zip(histories, targets)]
    if quirk_last_padded:
        ids = torch.full((len(feats), pad_to), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, f in enumerate(feats):
            ids[i, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, :len(f["input_ids"])] = 1
        scored = torch.zeros_like(ids, dtype=torch.bool)
        scored[:, -1] = True
        pos = torch.arange(pad_to).expand_as(ids).clone()
        return ScoringBatch(ids, mask, pos, scored)
    b = LeftPadCollator(tokenizer.pad_token_id)(feats)
    scored = torch.zeros_like(b["labels"], dtype=torch.bool)
    scored[:, :-1] = b["labels"][:, 1:] != IGNORE
    return ScoringBatch(b["input_ids"], b["attention_mask"], b["position_ids"], scored)


def _logits(model, batch: ScoringBatch, rows: int = 1, embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Logits at the last ``keep`` positions, ``[rows·B, keep, V]``; the batch repeated ``rows`` times."""
    rep = lambda t: t.repeat(rows, *([1] * (t.dim() - 1)))  # noqa: E731
    kw = dict(attention_mask=rep(batch.attention_mask), position_ids=rep(batch.position_ids),
              logits_to_keep=batch.keep, use_cache=False)
    if embeds is None:
        return model(input_ids=rep(batch.input_ids), **kw).logits
    return model(inputs_embeds=embeds, **kw).logits


def kl_per_sample(ref: torch.Tensor, logits: torch.Tensor, batch: ScoringBatch) -> torch.Tensor:
    """KL(p_ref ‖ softmax(logits)) per row: sum over V, mean over the row's scored positions.

    ``ref`` [B, k, V] log-probs, ``logits`` [R·B, k, V] → [R·B]. One row block at a time, so the
    temporaries stay [B, k, V] (the difference ref − log p is taken before summing: KL values are
    ~1e-4 and would drown in the cancellation of Σp·log p − Σp·log q in float32).
    """
    B = ref.shape[0]
    p = ref.exp()
    mask = batch.scored[:, -batch.keep:].float()
    out = []
    for z in logits.split(B):
        logq = torch.log_softmax(z.float(), -1)
        kl = (p * (ref - logq)).sum(-1)  # [B, k]
        out.append((kl * mask).sum(-1) / mask.sum(-1).clamp(min=1))
    return torch.cat(out)


@torch.no_grad()
def reference_logprobs(model, batch: ScoringBatch) -> torch.Tensor:
    """p_original: the unsuppressed model's log-probs at the scored positions, ``[B, keep, V]``."""
    return F.log_softmax(_logits(model, batch).float(), -1)


@torch.no_grad()
def suppressed_kl(model, batch: ScoringBatch, ref: torch.Tensor, suppress: dict[int, list[int]],
                  epsilon: float = 1e-4) -> float:
    """Mean over samples of KL(p_original ‖ p with ``suppress[l]`` heads ε-scaled) — full forward."""
    H = model.config.num_attention_heads
    with HeadSuppressor(model) as sup:
        for layer, heads in suppress.items():
            sup.scales[layer] = head_scale(H, heads, epsilon, batch.input_ids.device)
        return float(kl_per_sample(ref, _logits(model, batch), batch).mean())


def naive_layer_scores(model, batch, ref, layer: int, chosen: dict[int, list[int]], epsilon: float) -> torch.Tensor:
    """Reference scorer: one full forward per head of ``layer`` (earlier choices suppressed)."""
    H = model.config.num_attention_heads
    return torch.tensor([suppressed_kl(model, batch, ref, {**chosen, layer: [h]}, epsilon) for h in range(H)])


@dataclass
class KernelState:
    """Residual stream entering the current layer, ``[B, T, d]``."""

    resid: torch.Tensor
    layer: int = 0


def _layer_output(model, batch: ScoringBatch, state: KernelState) -> torch.Tensor:
    """Output of decoder layer ``state.layer`` for the cached residual (current suppression applied)."""
    got = {}
    layer = decoder_layers(model)[state.layer]
    handle = layer.register_forward_hook(lambda _m, _i, out: got.setdefault("h", out[0] if isinstance(out, tuple)
                                                                          else out))
    try:
        with only_layers(model, state.layer, state.layer + 1):
            model.get_decoder()(inputs_embeds=state.resid, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids, use_cache=False)
    finally:
        handle.remove()
    return got["h"]


@torch.no_grad()
def kernel_layer_scores(model, batch, ref, layer: int, chosen: dict[int, list[int]], epsilon: float,
                        state: KernelState, max_rows: int = 128) -> torch.Tensor:
    """All heads of ``layer`` in batched passes of layers ``layer..L`` from the cached residual.

    ``state`` must hold the residual entering ``layer`` with ``chosen`` (earlier layers) applied;
    row block h of the batch suppresses head h. At most ``max_rows`` rows per pass.
    """
    H, B = model.config.num_attention_heads, batch.input_ids.shape[0]
    assert state.layer == layer, "kernel state is not at this layer"
    per_pass = max(1, max_rows // B)
    scores = []
    with HeadSuppressor(model) as sup, only_layers(model, layer):
        for start in range(0, H, per_pass):
            heads = list(range(start, min(H, start + per_pass)))
            scale = torch.ones(len(heads), H, device=state.resid.device)
            scale[range(len(heads)), heads] = epsilon
            sup.scales[layer] = scale.repeat_interleave(B, 0)  # hooks were set on the full model
            logits = _logits(model, batch, len(heads), state.resid.repeat(len(heads), 1, 1))
            scores.append(kl_per_sample(ref, logits, batch).view(len(heads), B).mean(1))
    return torch.cat(scores).cpu()


@torch.no_grad()
def advance(model, batch, state: KernelState, heads: list[int], epsilon: float) -> None:
    """Move ``state`` past its layer, with ``heads`` of that layer suppressed."""
    H = model.config.num_attention_heads
    with HeadSuppressor(model) as sup:
        if heads:
            sup.scales[state.layer] = head_scale(H, heads, epsilon, state.resid.device)
        state.resid = _layer_output(model, batch, state)
    state.layer += 1


def min_max(x: torch.Tensor) -> torch.Tensor:
    """eq. 5: (x - min) / (max - min) within a layer (zeros if the layer is flat)."""
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


@dataclass
class HeadImportance:
    raw: torch.Tensor  # [L, H] KL scores (eq. 4)
    normalised: torch.Tensor  # [L, H] eq. 5
    mixed: torch.Tensor  # [L, H] eq. 6 (the ranking used)
    pruned: list[list[int]] = field(default_factory=list)  # per layer, the removed heads

    def kept(self, num_heads: int) -> list[list[int]]:
        return [[h for h in range(num_heads) if h not in p] for p in self.pruned]

    def to_dict(self) -> dict:
        return {"raw": self.raw.tolist(), "normalised": self.normalised.tolist(), "mixed": self.mixed.tolist(),
                "pruned": self.pruned}

    @classmethod
    def from_dict(cls, d: dict) -> "HeadImportance":
        return cls(torch.tensor(d["raw"]), torch.tensor(d["normalised"]), torch.tensor(d["mixed"]), d["pruned"])

    @classmethod
    def zeros(cls, num_layers: int, num_heads: int, pruned: list[list[int]]) -> "HeadImportance":
        """A choice made without scores (e.g. :func:`random_heads`): all-zero score maps."""
        z = torch.zeros(num_layers, num_heads)
        return cls(z, z.clone(), z.clone(), pruned)


def global_ranking(scores: torch.Tensor, num_prune: int) -> list[int]:
    """The ``num_prune`` head indices with the lowest mean score over layers ([L, H] → sorted ids):
    one cut for every layer (Table 3's "no layer-wise importance")."""
    return sorted(torch.argsort(scores.mean(0), stable=True)[:num_prune].tolist())


def random_heads(num_layers: int, num_heads: int, num_prune: int, seed: int) -> list[list[int]]:
    """Seeded random heads to prune per layer (Table 3's random choice; the random structured baseline)."""
    rng = random.Random(seed)
    return [sorted(rng.sample(range(num_heads), num_prune)) for _ in range(num_layers)]


def greedy_selection(score_layer: Callable[[int, dict], torch.Tensor], num_layers: int, num_heads: int, num_prune: int,
                     alpha: float, on_choice: Callable[[int, list[int]], None] | None = None,
                     progress: bool = False, only: set[int] | None = None) -> HeadImportance:
    """eq. 4-6 driver: ``score_layer(l, chosen)`` gives layer l's raw scores with the heads in
    ``chosen`` suppressed; the ``num_prune`` lowest mixed scores of each layer join ``chosen``.
    ``only``: score just these layers (benchmarks); the others keep every head, score zero."""
    raw, norm, mixed, chosen = [], [], [], {}
    for layer in tqdm(range(num_layers), desc="head importance", unit="layer", disable=not progress):
        if only is not None and layer not in only:
            zero = torch.zeros(num_heads)
            chosen[layer] = []
            raw.append(zero), norm.append(zero), mixed.append(mixed[-1] if mixed else zero)
            if on_choice:
                on_choice(layer, [])
            continue
        r = score_layer(layer, dict(chosen))
        n = min_max(r)
        m = n if not mixed else alpha * mixed[-1] + (1 - alpha) * n
        pruned = sorted(torch.argsort(m, stable=True)[:num_prune].tolist())
        chosen[layer] = pruned
        raw.append(r), norm.append(n), mixed.append(m)
        if on_choice:
            on_choice(layer, pruned)
    return HeadImportance(torch.stack(raw), torch.stack(norm), torch.stack(mixed), [chosen[i] for i in range(num_layers)])


def head_importance(model, batch: ScoringBatch, num_prune: int, alpha: float = 0.7, epsilon: float = 1e-4,
                    engine: str = "kernel", greedy: bool = True, progress: bool = False,
                    max_rows: int = 128, only_layers_scored: set[int] | None = None) -> HeadImportance:
    """Stage I head scores and the heads to prune per layer (``engine`` "kernel" or "naive").

    ``greedy=False`` scores every layer with nothing suppressed elsewhere (an ablation of the
    layer-wise scheme); ``alpha=0`` switches the cross-layer mixing off. ``only_layers_scored``:
    score just these layers, keep every head elsewhere (benchmarks).
    """
    model.eval()
    device = next(model.parameters()).device
    batch = batch.to(device)
    ref = reference_logprobs(model, batch)
    L, H = len(decoder_layers(model)), model.config.num_attention_heads
    if engine == "naive":
        score = lambda layer, chosen: naive_layer_scores(model, batch, ref, layer, chosen if greedy else {},  # noqa: E731
                                                         epsilon)
        return greedy_selection(score, L, H, num_prune, alpha, progress=progress, only=only_layers_scored)
    if engine != "kernel":
        raise ValueError(f"unknown engine {engine!r}")
    with torch.no_grad():
        state = KernelState(model.get_input_embeddings()(batch.input_ids))
    score = lambda layer, chosen: kernel_layer_scores(model, batch, ref, layer, chosen, epsilon, state,  # noqa: E731
                                                      max_rows)
    on_choice = lambda layer, pruned: advance(model, batch, state, pruned if greedy else [], epsilon)  # noqa: E731
    return greedy_selection(score, L, H, num_prune, alpha, on_choice, progress, only_layers_scored)
