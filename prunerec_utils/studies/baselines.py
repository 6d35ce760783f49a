"""ID-based sequential baselines (SPEC §7b): SASRec, GRU4Rec and Caser on the LLM's splits and metrics.

Every baseline sees exactly what the LLM recommender sees: one D3 sample per training row (the
up-to-10 previous item ids → the next item id), model selection on the validation rows, and the
profile's fixed test users (:func:`prunerec_utils.pipeline.evaluate.fixed_test_users`). Only the item ids
are used — never the titles — so these models learn from co-occurrence alone.

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

Loss (SPEC §7b, as in SASRec): binary cross-entropy with sampled negatives. For each sample with
positive logit s⁺ and ``k`` negative logits s⁻ⱼ (items drawn uniformly among all items other than
the positive, from a seeded generator): ℓ = −log σ(s⁺) − Σⱼ log(1 − σ(s⁻ⱼ)), averaged over the
batch. Optimiser: Adam (``adamw_torch`` with weight decay 0, constant learning rate, no gradient
clipping), through ``transformers.Trainer``.

Ranking. Validation and test score **every** item (full ranking, no sampled candidates). The rank
of the target is the number of items with a higher score plus the number of items with the same
score and a smaller id (ties go to the smaller id: the order of a stable descending sort).
Model selection uses that item-id rank (validation NDCG@20, computed in ``compute_metrics``; the
per-batch reduction of the scores to ranks runs in ``preprocess_logits_for_metrics``). The test
result is built like the LLM's: the top-20 list of *titles* (duplicated titles count once, as in
the constrained beam search) goes through :func:`prunerec_utils.pipeline.evaluate._result`, so tables,
bootstrap intervals and paired comparisons apply unchanged.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn

from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .. import PruneRecError
from ..data import read_items, sample_rows
from ..pipeline.evaluate import (EvalResult, _result, cached_result, first_users, fixed_test_users, load_result,
                       metrics_from_ranks, save_result, users_identity)
from ..identity import files_identity
from ..pipeline.steps import folder_step, read_json

MODELS = ("sasrec", "gru4rec", "caser")
SUMMARY = "summary.json"
WEIGHTS = "model.safetensors"
EVAL_BATCH = 512  # users per scoring batch (validation and test)
# Per-profile budgets (any other profile gets "default"). train_rows / valid_rows: "all", an int
# (seeded sample), or "teacher": the very rows the LLM teacher was fine-tuned / validated on (the
# profile's max_train / max_valid sample). The paper's grid is lr {1e-2, 1e-3, 1e-4} × emb {64, 128, 256}.
BUDGETS = {
    "ci": {"lrs": (1e-2,), "embs": (16,), "epochs": 2, "patience": 1, "batch_size": 64, "negatives": 1,
           "dropout": 0.2, "train_rows": "teacher", "valid_rows": 256},
    "default": {"lrs": (1e-3, 1e-2), "embs": (64,), "epochs": 20, "patience": 3, "batch_size": 1024,
                "negatives": 1, "dropout": 0.2, "train_rows": "all", "valid_rows": "all"},
    "paper": {"lrs": (1e-2, 1e-3, 1e-4), "embs": (64, 128, 256), "epochs": 200, "patience": 10,
              "batch_size": 1024, "negatives": 1, "dropout": 0.2, "train_rows": "all", "valid_rows": "all"},
}


def budgets(prof, **overrides) -> dict:
    """The profile's baseline budget, with every non-None override taking precedence."""
    base = dict(BUDGETS.get(prof.name, BUDGETS["default"]))
    unknown = set(overrides) - set(base)
    if unknown:
        raise PruneRecError(f"unknown baseline budget field(s): {', '.join(sorted(unknown))}; "
                            f"use {', '.join(base)}")
    base.update({k: v for k, v in overrides.items() if v is not None})
    for key, kind in (("lrs", float), ("embs", int)):  # a single value is a one-point list
        values = base[key] if isinstance(base[key], (list, tuple)) else [base[key]]
        base[key] = tuple(kind(x) for x in values)
    return base


def check_models(models) -> tuple[str, ...]:
    """None → all three; a name or a list of names → that tuple; an unknown name → PruneRecError."""
    models = tuple(MODELS if models is None else ([models] if isinstance(models, str) else models))
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise PruneRecError(f"unknown baseline model {', '.join(map(repr, bad)) or '(none)'}; "
                            f"choose from {', '.join(MODELS)}")
    return models


# -- data ---------------------------------------------------------------------------------------

def to_dataset(df: pd.DataFrame) -> Dataset:
    """A split (``history_item_id`` lists, ``item_id``) → ``datasets.Dataset`` with history / labels."""
    return Dataset.from_dict({"history": [list(map(int, h)) for h in df["history_item_id"]],
                              "labels": [int(i) for i in df["item_id"]]})


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


def rank_metrics(model: SequentialRecommender, df: pd.DataFrame) -> dict:
    """HR/NDCG@10/20 of ``df``'s next items by full ranking over item ids."""
    histories, targets = df["history_item_id"].tolist(), torch.tensor(df["item_id"].tolist())
    ranks = torch.cat([target_ranks(s, targets[i * EVAL_BATCH:(i + 1) * EVAL_BATCH])
                       for i, s in enumerate(score_histories(model, histories))])
    return metrics_from_ranks(ranks.numpy())


# -- training -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BaselineConfig:
    """One grid point and everything else that decides its training (stored with the result)."""

    model: str
    lr: float
    emb: int
    epochs: int
    patience: int
    batch_size: int
    negatives: int = 1
    dropout: float = 0.2
    max_len: int = 10
    seed: int = 42

    @property
    def tag(self) -> str:
        return f"lr{self.lr:g}_d{self.emb}"


def training_args(out_dir: Path, cfg: BaselineConfig, progress: bool) -> TrainingArguments:
    """Adam (AdamW, weight decay 0), constant lr, no clipping; evaluate and save every epoch, keep the
    best epoch by validation NDCG@20."""
    return TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=cfg.epochs, learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=EVAL_BATCH,
        optim="adamw_torch", weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="ndcg@20", greater_is_better=True, save_total_limit=2, save_only_model=True,
        report_to=[], seed=cfg.seed, data_seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress, remove_unused_columns=False, dataloader_num_workers=0)


def _ndcg_metrics(pred) -> dict:
    """``compute_metrics``: the predictions are already the targets' ranks (see :func:`target_ranks`)."""
    return metrics_from_ranks(pred.predictions)


def train_baseline(cfg: BaselineConfig, n_items: int, train_ds: Dataset, valid_ds: Dataset, out_dir: str | Path,
                   progress: bool = True, inputs: dict | None = None, lock: str | Path | None = None) -> dict:
    """Train one grid point with ``transformers.Trainer``; keep the best epoch (validation NDCG@20).

    A cached step (:func:`prunerec_utils.pipeline.steps.folder_step`): ``out_dir`` receives
    ``model.safetensors`` and ``summary.json`` (settings — the configuration, the sizes and
    ``inputs``, e.g. the data's identity —, validation metrics of the best epoch, epochs run,
    seconds), written atomically; the Trainer's epoch checkpoints (``<out_dir>.ckpt``) are deleted
    afterwards. A model trained with the same settings is reused; with other settings it is trained
    again (one printed line); an interrupted run starts over. ``lock``: the run folder held while
    training (default: ``out_dir``'s parent).
    """
    out_dir = Path(out_dir)
    config = {**asdict(cfg), "n_items": n_items}
    settings = {**config, "train_rows": len(train_ds), "valid_rows": len(valid_ds), **(inputs or {})}
    ckpt = out_dir.parent / f"{out_dir.name}.ckpt"

    def train(tmp: Path) -> dict:
        shutil.rmtree(ckpt, ignore_errors=True)
        model = build_model(cfg.model, n_items, cfg.emb, cfg.dropout, cfg.max_len, cfg.seed)
        trainer = Trainer(model=model, args=training_args(ckpt, cfg, progress), train_dataset=train_ds,
                          eval_dataset=valid_ds,
                          data_collator=NegativeSamplingCollator(n_items, cfg.max_len, cfg.negatives, cfg.seed),
                          compute_metrics=_ndcg_metrics, preprocess_logits_for_metrics=target_ranks,
                          callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)])
        trainer.remove_callback(PrinterCallback)
        if not progress:
            trainer.remove_callback(ProgressCallback)
        t0 = time.time()
        trainer.train()
        seconds = time.time() - t0
        evals = [h for h in trainer.state.log_history if "eval_ndcg@20" in h]
        best = max(evals, key=lambda h: h["eval_ndcg@20"])  # first of equals: the epoch the Trainer kept
        save_file({k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}, tmp / WEIGHTS)
        return {"config": config, "train_rows": len(train_ds), "seconds": round(seconds, 1), "epochs_run": len(evals),
                "best_epoch": int(round(best["epoch"])),
                "valid": {k[len("eval_"):]: best[k] for k in ("eval_hr@10", "eval_ndcg@10", "eval_hr@20",
                                                               "eval_ndcg@20")},
                "params": sum(p.numel() for p in model.parameters()),
                "history": [{"epoch": h["epoch"], "ndcg@20": h["eval_ndcg@20"], "hr@20": h["eval_hr@20"],
                             "loss": h["eval_loss"]} for h in evals]}

    if not (out_dir / WEIGHTS).exists():
        shutil.rmtree(out_dir, ignore_errors=True)  # a summary without its weights is not a model
    summary = folder_step(out_dir, SUMMARY, settings, train, on_change="rebuild", lock=lock)
    shutil.rmtree(ckpt, ignore_errors=True)
    return summary


def load_baseline(folder: str | Path) -> SequentialRecommender:
    """A trained baseline back from ``folder`` (``model.safetensors`` + ``summary.json``), eval mode."""
    folder = Path(folder)
    s = read_json(folder / SUMMARY)["config"]
    model = build_model(s["model"], s["n_items"], s["emb"], s["dropout"], s["max_len"], s["seed"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval()


# -- the profile's grid and test results --------------------------------------------------------

def _rows(df: pd.DataFrame, rows, teacher_rows: int | None, seed: int) -> pd.DataFrame:
    """``rows``: "all", "teacher" (``teacher_rows``, the profile's sample size) or an int → seeded subset."""
    n = {"all": None, "teacher": teacher_rows}.get(rows, rows) if isinstance(rows, str) else rows
    if isinstance(n, str):
        raise PruneRecError(f"rows must be 'all', 'teacher' or a number, got {rows!r}")
    return sample_rows(df, None if n is None else int(n), seed)


def grid_table(run, models=None, progress: bool = True, **overrides) -> pd.DataFrame:
    """One row per (model, lr, emb): validation NDCG@20 / HR@20 of its best epoch, best epoch,
    epochs run, training seconds, parameters, and ``chosen`` (the best configuration per model, first
    of equals). Trains whatever grid point is not stored yet; ``overrides``: budget fields."""
    prof = run.prof
    models, budget = check_models(models), budgets(prof, **overrides)
    n_items = int(read_items(run.splits)["item_id"].max()) + 1
    train = to_dataset(_rows(run.split("train"), budget["train_rows"], prof.max_train, prof.seed))
    valid = to_dataset(_rows(run.split("valid"), budget["valid_rows"], prof.max_valid, prof.seed))
    root = run.folder / "baselines"
    inputs = {"data_id": run.data_id()}
    rows = []
    for name in models:
        for lr in budget["lrs"]:
            for emb in budget["embs"]:
                cfg = BaselineConfig(name, lr, emb, int(budget["epochs"]), int(budget["patience"]),
                                     int(budget["batch_size"]), int(budget["negatives"]), float(budget["dropout"]),
                                     seed=prof.seed)
                s = train_baseline(cfg, n_items, train, valid, root / name / cfg.tag, progress, inputs, run.folder)
                rows.append({"model": name, "lr": lr, "emb": emb, "valid ndcg@20": s["valid"]["ndcg@20"],
                             "valid hr@20": s["valid"]["hr@20"], "best epoch": s["best_epoch"],
                             "epochs run": s["epochs_run"], "seconds": s["seconds"], "params": s["params"],
                             "train rows": s["train_rows"], "folder": str(root / name / cfg.tag)})
    table = pd.DataFrame(rows)
    best = table.groupby("model", sort=False)["valid ndcg@20"].idxmax()  # first of equals
    table["chosen"] = table.index.isin(best.values)
    return table


def evaluate_baseline(model: SequentialRecommender, test: pd.DataFrame, titles: list[str], name: str,
                      exclude_seen: bool = False) -> EvalResult:
    """Full ranking for every row of ``test`` → the project's :class:`EvalResult` (top-20 titles)."""
    t0 = time.time()
    lists = []
    histories = test["history_item_id"].tolist()
    seen = test["history_item_title"].tolist() if exclude_seen else None
    for i, block in enumerate(score_histories(model, histories)):
        lists += top_titles(block, titles, 20, seen[i * EVAL_BATCH:(i + 1) * EVAL_BATCH] if seen else None)
    return _result(test, lists, {"num_beams": 20, "length_penalty": None, "engine": name,
                                 "exclude_seen": exclude_seen, "seconds": round(time.time() - t0, 1)})


def result_name(model: str, exclude_seen: bool = False) -> str:
    return f"baseline_{model}" + ("_exclude_seen" if exclude_seen else "")


def baseline_results(run, models=None, progress: bool = True, exclude_seen: bool = False,
                     **overrides) -> dict[str, EvalResult]:
    """Train the grid (or read it), keep each model's best configuration by validation NDCG@20,
    and evaluate it on the profile's fixed test users by full ranking over all items.

    Results are stored as ``results/baseline_<model>[_exclude_seen].json`` + ``ranks/…csv`` in the
    run folder and reused when made from the same configuration and users. ``overrides``: any
    budget field (see :data:`BUDGETS`).
    """
    models = check_models(models)
    table = grid_table(run, models, progress, **overrides)
    folder = run.folder
    titles = read_items(run.splits).sort_values("item_id")["item_title"].tolist()
    test = fixed_test_users(run)
    out = {}
    for name in models:
        chosen = table[(table["model"] == name) & table["chosen"]].iloc[0]
        config = read_json(Path(chosen["folder"]) / SUMMARY)["config"]
        settings = {"users": len(test), "users_id": users_identity(test), "exclude_seen": exclude_seen, "engine": name,
                    "model": config, "model_id": files_identity([Path(chosen["folder"]) / WEIGHTS]),
                    "data_id": run.data_id()}
        res = cached_result(folder, result_name(name, exclude_seen), settings)
        if res is None:
            res = evaluate_baseline(load_baseline(chosen["folder"]), test, titles, name, exclude_seen)
            res.metrics.update({"config": config, "valid_ndcg@20": float(chosen["valid ndcg@20"]),
                                "train_seconds": float(chosen["seconds"])})
            save_result(res, folder, result_name(name, exclude_seen), settings)
        out[name] = res
    return out


def best_baseline(results: dict[str, EvalResult]) -> str:
    """The model whose chosen configuration has the highest validation NDCG@20 (test metrics unused)."""
    return max(results, key=lambda m: (results[m].metrics.get("valid_ndcg@20", -math.inf), -list(results).index(m)))


def validation_histories(table: pd.DataFrame) -> dict[str, list[dict]]:
    """``{"<model>, lr <lr>, emb <d>": [{epoch, ndcg@20, hr@20, loss}, …]}`` (validation per epoch) from
    the stored summaries of a :func:`grid_table`."""
    return {f"{r['model']}, lr {r['lr']:g}, emb {r['emb']}": read_json(Path(r["folder"]) / SUMMARY)
            ["history"] for _, r in table.iterrows()}


def teacher_reference(run, exclude_seen: bool = False) -> EvalResult | None:
    """The LLM teacher's stored evaluation (notebook 01) on the same fixed test users and seen-item
    rule as the baselines, or None where there is none (``teacher`` /
    ``teacher_exclude_seen_n<users>``; a longer evaluation is cut to the same first users)."""
    test = fixed_test_users(run)
    name = f"teacher_exclude_seen_n{len(test)}" if exclude_seen else "teacher"
    res = load_result(run.folder, name)
    if res is None or res.metrics.get("exclude_seen", False) != exclude_seen or res.metrics["n"] < len(test):
        return None
    same = res.per_user["user_id"].iloc[:len(test)].tolist() == test["user_id"].tolist()
    return (res if res.metrics["n"] == len(test) else first_users(res, len(test))) if same else None
