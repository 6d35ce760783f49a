"""ID-based sequential recommenders — SASRec, GRU4Rec, Caser — their loss and full ranking.

* **SASRec** (Kang & McAuley, ICDM 2018, "Self-Attentive Sequential Recommendation"): item +
  learned position embeddings, causal self-attention blocks, the last position's output dotted
  with every item embedding.
* **GRU4Rec** (Hidasi et al., ICLR 2016, "Session-based Recommendations with Recurrent Neural
  Networks"): item embeddings → GRU → the hidden state after the last item · item embeddings.
* **Caser** (Tang & Wang, WSDM 2018, "Personalized Top-N Sequential Recommendation via
  Convolutional Sequence Embedding"): horizontal and vertical convolutions over the L×d matrix of
  the history's embeddings, a fully connected layer, · item embeddings. The per-user embedding of
  the original is left out: test users may have no training row, and the LLM sees only the history.

Conventions. Items are ``0..n_items-1``; ``n_items`` is the padding id. Histories are
**left-padded** (the most recent item is always in the last column) and cut to their last
``max_len`` items. Each model is invariant to extra left padding (tested). Output and input item
embeddings are shared (one matrix).

Loss (as in SASRec, the paper's baseline setting): binary cross-entropy with sampled negatives. For each sample with
positive logit s⁺ and ``k`` negative logits s⁻ⱼ (items drawn uniformly among all items other than
the positive, from a seeded generator): ℓ = −log σ(s⁺) − Σⱼ log(1 − σ(s⁻ⱼ)), averaged over the
batch. Optimiser: Adam (``adamw_torch`` with weight decay 0, constant learning rate, no gradient
clipping), through ``transformers.Trainer``.

Ranking. Validation and test score **every** item (full ranking, no sampled candidates). The rank
of the target is the number of items with a higher score plus the number of items with the same
score and a smaller id (ties go to the smaller id: the order of a stable descending sort).
Model selection uses that item-id rank (validation NDCG@20, computed in ``compute_metrics``; the
per-batch reduction of the scores to ranks runs in ``preprocess_logits_for_metrics``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import PruneRecError

MODELS = ("sasrec", "gru4rec", "caser")
EVAL_BATCH = 512  # users per scoring batch (validation and test)


def check_models(models) -> tuple[str, ...]:
    """None → all three; a name or a list of names → that tuple; an unknown name → PruneRecError."""
    models = tuple(MODELS if models is None else ([models] if isinstance(models, str) else models))
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise PruneRecError(f"unknown baseline model {', '.join(map(repr, bad)) or '(none)'}; "
                            f"choose from {', '.join(MODELS)}")
    return models


def pad_histories(histories: list[list[int]], pad: int, max_len: int) -> torch.Tensor:
    """Left-pad (and cut to the last ``max_len`` items) → ``[B, max_len]`` long, pad = ``pad``."""
    out = torch.full((len(histories), max_len), pad, dtype=torch.long)
    for row, h in enumerate(histories):
        h = list(h)[-max_len:]
        if h:
            out[row, max_len - len(h):] = torch.tensor(h, dtype=torch.long)
    return out


def sample_negatives(positives: torch.Tensor, n_items: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``[B]`` positives → ``[B, k]`` items drawn uniformly among the ``n_items - 1`` other items."""
    draw = torch.randint(0, n_items - 1, (len(positives), k), generator=generator)
    return draw + (draw >= positives[:, None]).long()


class NegativeSamplingCollator:
    """Rows {history, labels} → ``history [B, max_len]`` (left-padded), ``labels [B]``,
    ``negatives [B, k]`` from a generator seeded once per training run."""

    def __init__(self, n_items: int, max_len: int, negatives: int, seed: int):
        self.n_items, self.max_len, self.k = n_items, max_len, negatives
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, rows: list[dict]) -> dict:
        labels = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        return {"history": pad_histories([r["history"] for r in rows], self.n_items, self.max_len),
                "labels": labels, "negatives": sample_negatives(labels, self.n_items, self.k, self.generator)}


# -- models -------------------------------------------------------------------------------------

def sampled_bce(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −log σ(s⁺) − Σⱼ log(1 − σ(s⁻ⱼ)); ``pos [B]``, ``neg [B, k]``."""
    return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()


class SequentialRecommender(nn.Module):
    """Shared parts: item embeddings ``[n_items + 1, d]`` (last row = padding, kept at zero), the
    sampled BCE loss and full scores. Subclasses implement ``encode(history [B, L]) -> [B, d]``."""

    def __init__(self, n_items: int, emb: int, dropout: float = 0.2, max_len: int = 10):
        super().__init__()
        self.n_items, self.pad, self.max_len = n_items, n_items, max_len
        self.item_emb = nn.Embedding(n_items + 1, emb, padding_idx=n_items)
        nn.init.normal_(self.item_emb.weight, std=emb ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
        self.drop = nn.Dropout(dropout)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` left-padded histories → a score for every item, ``[B, n_items]``."""
        return self.encode(history[:, -self.max_len:]) @ self.item_emb.weight[:self.n_items].T

    def forward(self, history, labels=None, negatives=None) -> dict:
        """Training: ``{"loss"}`` (sampled BCE of ``labels [B]`` against ``negatives [B, k]``);
        in eval mode also ``{"scores": [B, n_items]}`` for full ranking."""
        user = self.encode(history[:, -self.max_len:])  # [B, d]
        out = {}
        if labels is not None and negatives is not None:
            cand = torch.cat([labels[:, None], negatives], 1)  # [B, 1 + k]
            logits = (self.item_emb(cand) * user[:, None, :]).sum(-1)
            out["loss"] = sampled_bce(logits[:, 0], logits[:, 1:])
        if not self.training:
            out["scores"] = user @ self.item_emb.weight[:self.n_items].T
        return out


class SASRecBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + FFN(LN(x)) (point-wise d → d → d)."""

    def __init__(self, emb: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(emb), nn.LayerNorm(emb)
        self.attn = nn.MultiheadAttention(emb, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(emb, emb), nn.ReLU(), nn.Dropout(dropout), nn.Linear(emb, emb))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, h, attn_mask=blocked, need_weights=False)[0])
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRec(SequentialRecommender):
    """Kang & McAuley 2018. Embedding ``E[item]·√d + P[pos]`` ``[B, L, d]``, ``blocks`` causal
    self-attention blocks, final LayerNorm, output at the last (most recent) position ``[B, d]``.

    Positions are counted back from the most recent item (0 = newest), as in SASRec's fixed left
    padding where the newest item always sits in the last slot; so extra left padding changes nothing.
    Attention mask: a real position sees real positions up to itself; a padding position sees only
    itself (keeps the softmax finite; padding outputs are zeroed after every block).
    """

    def __init__(self, n_items: int, emb: int, dropout: float = 0.2, max_len: int = 10, blocks: int = 2,
                 heads: int = 1):
        super().__init__(n_items, emb, dropout, max_len)
        self.heads = heads
        self.pos_emb = nn.Embedding(max_len, emb)
        self.blocks = nn.ModuleList(SASRecBlock(emb, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(emb)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        B, L = history.shape
        real = history != self.pad  # [B, L]
        pos = torch.arange(L - 1, -1, -1, device=history.device)  # [L], newest = 0
        x = self.item_emb(history) * self.item_emb.embedding_dim ** 0.5 + self.pos_emb(pos)[None]
        x = self.drop(x) * real[..., None]
        idx = torch.arange(L, device=history.device)
        future = idx[None, :] > idx[:, None]  # [L, L] key j after query i
        blocked = future[None] | (~real[:, None, :] & (idx[None, :] != idx[:, None])[None])  # [B, L, L]
        blocked = blocked.repeat_interleave(self.heads, 0)  # [B·heads, L, L]
        for block in self.blocks:
            x = block(x, blocked) * real[..., None]
        return self.norm(x[:, -1])


class GRU4Rec(SequentialRecommender):
    """Hidasi et al. 2016. Embedding ``[B, L, d]`` → one-layer GRU (hidden d) → the hidden state
    after the most recent item ``[B, d]``. The GRU runs over the real items only: each row is first
    reordered so its items come first (padding after them, where a forward GRU cannot see it)."""

    def __init__(self, n_items: int, emb: int, dropout: float = 0.2, max_len: int = 10):
        super().__init__(n_items, emb, dropout, max_len)
        self.gru = nn.GRU(emb, emb, batch_first=True)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        real = history != self.pad
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real items first, oldest → newest
        out, _ = self.gru(self.drop(self.item_emb(history.gather(1, order))))  # [B, L, d]
        last = real.sum(1).clamp(min=1) - 1  # [B]
        return out[torch.arange(len(history), device=history.device), last]


class Caser(SequentialRecommender):
    """Tang & Wang 2018. The history is left-padded to ``L = max_len`` rows, E ``[B, L, d]``:

    * vertical: ``n_v`` filters of shape L×1, i.e. ``n_v`` learned weighted sums of the L rows
      → ``[B, n_v·d]``;
    * horizontal: for each height h = 1..L, ``n_h`` filters of shape h×d slid over the L−h+1
      windows of h consecutive rows, ReLU, max over the windows → ``[B, n_h]`` each, ``[B, n_h·L]``;
    * z = ReLU(W [vertical; horizontal] + b) ``[B, d]`` (dropout before W).

    A filter that spans the full width d is a linear map of each flattened h×d window, so the
    convolutions are written as ``nn.Linear`` layers (same function, much faster on CPU than
    ``Conv2d`` with these shapes).
    """

    def __init__(self, n_items: int, emb: int, dropout: float = 0.2, max_len: int = 10, n_h: int = 16,
                 n_v: int = 4):
        super().__init__(n_items, emb, dropout, max_len)
        self.vertical = nn.Linear(max_len, n_v)  # over the L axis, shared by the d columns
        self.horizontal = nn.ModuleList(nn.Linear(h * emb, n_h) for h in range(1, max_len + 1))
        self.fc = nn.Linear(n_v * emb + n_h * max_len, emb)

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        history = F.pad(history, (self.max_len - history.shape[1], 0), value=self.pad)  # [B, L]
        e = self.item_emb(history)  # [B, L, d]
        vertical = self.vertical(e.transpose(1, 2)).flatten(1)  # [B, d, n_v] → [B, d·n_v]
        horizontal = []
        for h, filters in enumerate(self.horizontal, start=1):
            windows = e.unfold(1, h, 1).transpose(2, 3).flatten(2)  # [B, L−h+1, h·d], rows in time order
            horizontal.append(F.relu(filters(windows)).max(1).values)  # [B, n_h]
        return F.relu(self.fc(self.drop(torch.cat([vertical, *horizontal], 1))))


ARCHITECTURES = {"sasrec": SASRec, "gru4rec": GRU4Rec, "caser": Caser}


def build_model(name: str, n_items: int, emb: int, dropout: float = 0.2, max_len: int = 10,
                seed: int = 0) -> SequentialRecommender:
    """A freshly initialised baseline (initialisation seeded)."""
    check_models([name])
    torch.manual_seed(seed)
    return ARCHITECTURES[name](n_items, emb, dropout, max_len)


# -- ranking ------------------------------------------------------------------------------------

def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``targets [B]`` among all items of ``scores [B, N]`` → ``[B]``.

    Items with a higher score, plus items with an equal score and a smaller id, come first: the
    order of a stable descending sort (:func:`ranked_items`)."""
    t = scores.gather(1, targets[:, None].long())  # [B, 1]
    ids = torch.arange(scores.shape[1], device=scores.device)[None, :]
    return ((scores > t) | ((scores == t) & (ids < targets[:, None]))).sum(1)


def ranked_items(scores: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Item ids by decreasing score (ties: smaller id first) ``[B, k]`` (all items if ``k`` is None)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order if k is None else order[:, :k]


def top_titles(scores: torch.Tensor, titles: list[str], k: int = 20, seen: list[list[str]] | None = None
               ) -> list[list[str]]:
    """Per row the ``k`` best distinct titles (an item whose title is already listed is skipped, as
    duplicated titles count as one item); ``seen[b]``: titles never to recommend to row b."""
    skip_max = len(titles) - len(set(titles)) + (max((len(s) for s in seen), default=0) if seen else 0)
    order = ranked_items(scores, min(len(titles), k + skip_max)).tolist()
    lists = []
    for b, ids in enumerate(order):
        used = set(seen[b]) if seen else set()
        row = []
        for i in ids:
            if titles[i] not in used:
                used.add(titles[i])
                row.append(titles[i])
                if len(row) == k:
                    break
        lists.append(row)
    return lists


@torch.no_grad()
def score_histories(model: SequentialRecommender, histories: list[list[int]], batch_size: int = EVAL_BATCH):
    """Yield ``[b, n_items]`` score blocks (CPU) for consecutive batches of histories (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    for i in range(0, len(histories), batch_size):
        yield model.scores(pad_histories(histories[i:i + batch_size], model.pad, model.max_len).to(device)).cpu()


# -- training -----------------------------------------------------------------------------------
