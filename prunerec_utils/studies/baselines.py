"""ID-based sequential baselines (the paper's Table 2): SASRec, GRU4Rec and Caser on the LLM's splits and metrics.

Every baseline sees exactly what the LLM recommender sees: one D3 sample per training row (the
up-to-10 previous item ids → the next item id), model selection on the validation rows, and the
profile's fixed test rows (:func:`prunerec_utils.pipeline.evaluate.fixed_test_rows`). Only the item ids
are used — never the titles — so these models learn from co-occurrence alone.

The models, their loss and their full ranking live in :mod:`prunerec_utils.studies.id_models`;
here they are trained (``transformers.Trainer``), selected on validation NDCG@20 and evaluated. The test
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
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .. import PruneRecError
from ..data import read_items, sample_rows
from ..identity import files_identity
from ..pipeline.evaluate import (EvalResult, _result, cached_result, first_rows, fixed_test_rows, load_result,
                                 metrics_from_ranks, save_result, users_settings)
from ..steps import folder_step, read_json
from .id_models import (EVAL_BATCH, NegativeSamplingCollator, SequentialRecommender, build_model, check_models,
                        score_histories, target_ranks, top_titles)

SUMMARY = "summary.json"
WEIGHTS = "model.safetensors"
BUDGET_FIELDS = ("lrs", "embs", "epochs", "patience", "batch_size", "negatives", "dropout", "train_rows", "valid_rows")


def grid_budget(prof) -> dict:
    """The grid and training budget of the ID baselines, read from the profile's ``baseline_*`` fields
    (train_rows / valid_rows: "all", an int (seeded sample), or "teacher": the very rows the LLM teacher was
    fine-tuned / validated on)."""
    return {field: getattr(prof, f"baseline_{field}") for field in BUDGET_FIELDS}


# -- data ---------------------------------------------------------------------------------------

def to_dataset(df: pd.DataFrame) -> Dataset:
    """A split (``history_item_id`` lists, ``item_id``) → ``datasets.Dataset`` with history / labels."""
    return Dataset.from_dict({"history": [list(map(int, h)) for h in df["history_item_id"]],
                              "labels": [int(i) for i in df["item_id"]]})


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

    A cached step (:func:`prunerec_utils.steps.folder_step`): ``out_dir`` receives
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


def grid_table(run, models=None, progress: bool = True) -> pd.DataFrame:
    """One row per (model, lr, emb): validation NDCG@20 / HR@20 of its best epoch, best epoch,
    epochs run, training seconds, parameters, and ``chosen`` (the best configuration per model, first
    of equals). Trains whatever grid point is not stored yet; the grid is the profile's (:func:`grid_budget`)."""
    prof = run.prof
    models, budget = check_models(models), grid_budget(prof)
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


def baseline_results(run, models=None, progress: bool = True, exclude_seen: bool = False) -> dict[str, EvalResult]:
    """Train the grid (or read it), keep each model's best configuration by validation NDCG@20,
    and evaluate it on the profile's fixed test rows by full ranking over all items.

    Results are stored as ``results/baseline_<model>[_exclude_seen].json`` + ``ranks/…csv`` in the
    run folder and reused when made from the same configuration and rows. The grid is the profile's
    (:func:`grid_budget`).
    """
    models = check_models(models)
    table = grid_table(run, models, progress)
    folder = run.folder
    titles = read_items(run.splits).sort_values("item_id")["item_title"].tolist()
    test = fixed_test_rows(run)
    out = {}
    for name in models:
        chosen = table[(table["model"] == name) & table["chosen"]].iloc[0]
        config = read_json(Path(chosen["folder"]) / SUMMARY)["config"]
        settings = {**users_settings(run, test, name, exclude_seen), "model": config,
                    "model_id": files_identity([Path(chosen["folder"]) / WEIGHTS])}
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
    """The LLM teacher's stored evaluation (notebook 01) on the same fixed test rows and seen-item
    rule as the baselines, or None where there is none (``teacher`` /
    ``teacher_exclude_seen_n<users>``; a longer evaluation is cut to the same first users)."""
    test = fixed_test_rows(run)
    name = f"teacher_exclude_seen_n{len(test)}" if exclude_seen else "teacher"
    res = load_result(run.folder, name)
    if res is None or res.metrics.get("exclude_seen", False) != exclude_seen or res.metrics["n"] < len(test):
        return None
    same = res.per_user["user_id"].iloc[:len(test)].tolist() == test["user_id"].tolist()
    return (res if res.metrics["n"] == len(test) else first_rows(res, len(test))) if same else None
