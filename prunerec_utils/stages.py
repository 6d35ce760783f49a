"""The pruning stages as resumable steps over one run folder (``runs/<dataset>/<profile>/``).

Stage I (:func:`stage1`): head importance on the teacher → remove heads → hidden-dimension
importance on the head-pruned model → remove dimensions → ``models/stage1_pruned`` → distil
from the teacher → ``models/stage1``. Each step is skipped when its output is complete, so a
re-run resumes where the last one stopped (the distillation resumes from its last epoch
checkpoint). Importance scores and the surgery record go to ``results/stage1_*.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import PruneRecError
from .assets import load_model, load_tokenizer
from .data import get_dataset_config, read_split, sample_rows
from .distill import distill
from .finetune import SUMMARY, TRAINING_FIELDS, LeftPadCollator, tokenize_split
from .heads import HeadImportance, head_importance, scoring_batch
from .hidden import hidden_importance, top_dims
from .paths import atomic_dir, atomic_write_text, run_dir, splits_dir
from .prompts import encode_example
from .surgery import head_dim, param_counts, prune_heads, prune_hidden

SURGERY = "surgery.json"


def _same(where: Path, wanted: dict, stored: dict) -> None:
    """Refuse to reuse a stored step made with other settings (its downstream steps depend on it)."""
    diff = [f"{k} {stored.get(k)!r} (asked {v!r})" for k, v in wanted.items() if stored.get(k) != v]
    if diff:
        raise PruneRecError(f"{where} was made with other settings: {', '.join(diff)}; delete it (and the stages "
                            f"after it) or use another runs_root")


def teacher_dir(dataset: str, prof, runs_root=None) -> Path:
    folder = run_dir(dataset, prof.name, runs_root) / "models" / "teacher"
    if not (folder / SUMMARY).exists():
        raise PruneRecError(f"no teacher at {folder}: run notebook 01 (or prunerec_utils.runner --notebooks 01) first")
    return folder


def importance_rows(dataset: str, prof, runs_root=None):
    """The B seeded training samples every importance score of this run is computed on."""
    return sample_rows(read_split(splits_dir(dataset, runs_root), "train"), prof.importance_samples, prof.seed + 1)


def head_scores(dataset: str, prof, runs_root=None, alpha: float | None = None, name: str | None = None,
                progress: bool = False, **kwargs) -> tuple[HeadImportance, dict]:
    """Head importance of the teacher (cached as ``results/<name>.json``); returns scores + record."""
    alpha = prof.alpha if alpha is None else alpha
    name = name or ("stage1_heads" if alpha == prof.alpha else f"stage1_heads_alpha{alpha:g}")
    out = run_dir(dataset, prof.name, runs_root) / "results" / f"{name}.json"
    if out.exists():
        rec = json.loads(out.read_text())
        _same(out, {"alpha": alpha, "epsilon": prof.epsilon, "samples": prof.importance_samples,
                    "kept heads": prof.kept_heads}, {**rec, "kept heads": len(rec["kept"][0])})
        return HeadImportance.from_dict(rec), rec
    tdir = teacher_dir(dataset, prof, runs_root)
    model, tok = load_model(tdir), load_tokenizer(tdir)
    rows = importance_rows(dataset, prof, runs_root)
    batch = scoring_batch(tok, rows["history_item_title"], rows["item_title"], get_dataset_config(dataset),
                          prof.cutoff_len, quirk_last_padded=kwargs.pop("quirk_last_padded", False))
    num_prune = model.config.num_attention_heads - prof.kept_heads
    t0 = time.time()
    imp = head_importance(model, batch, num_prune, alpha, prof.epsilon, progress=progress, **kwargs)
    rec = {**imp.to_dict(), "kept": imp.kept(model.config.num_attention_heads), "alpha": alpha,
           "epsilon": prof.epsilon, "samples": prof.importance_samples, "seconds": round(time.time() - t0, 1)}
    atomic_write_text(out, json.dumps(rec))
    return imp, rec


def _collated(tok, rows, cfg, cutoff_len: int) -> dict:
    feats = [encode_example(tok, h, t, cfg, cutoff_len) for h, t in zip(rows["history_item_title"], rows["item_title"])]
    return LeftPadCollator(tok.pad_token_id)(feats)


def stage1_prune(dataset: str, prof, runs_root=None, progress: bool = False) -> tuple[Path, dict]:
    """Heads then hidden dimensions cut from the teacher → ``models/stage1_pruned`` (not distilled)."""
    folder = run_dir(dataset, prof.name, runs_root)
    out = folder / "models" / "stage1_pruned"
    imp, head_rec = head_scores(dataset, prof, runs_root, progress=progress)
    if (out / SURGERY).exists():
        rec = json.loads((out / SURGERY).read_text())
        _same(out, {"kept_heads": head_rec["kept"], "hidden_variant": prof.hidden_variant}, rec)
        return out, rec
    tdir = teacher_dir(dataset, prof, runs_root)
    model, tok = load_model(tdir), load_tokenizer(tdir)
    before = param_counts(model)
    original = {"hidden_size": model.config.hidden_size, "num_attention_heads": model.config.num_attention_heads,
                "num_key_value_heads": model.config.num_key_value_heads}
    prune_heads(model, head_rec["kept"])
    after_heads = param_counts(model)
    rows = importance_rows(dataset, prof, runs_root)
    t0 = time.time()
    hid = hidden_importance(model, _collated(tok, rows, get_dataset_config(dataset), prof.cutoff_len),
                            prof.hidden_variant)
    dims = top_dims(hid, prof.kept_heads * head_dim(model.config))
    prune_hidden(model, dims)
    rec = {"original": original, "kept_heads": head_rec["kept"], "hidden_dims": dims,
           "hidden_importance": hid.tolist(), "hidden_variant": prof.hidden_variant,
           "hidden_seconds": round(time.time() - t0, 1), "params": {"teacher": before, "heads_removed": after_heads,
                                                                    "stage1": param_counts(model)}}
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SURGERY).write_text(json.dumps(rec))
    return out, rec


def distill_stage(student_dir: Path, out_name: str, dataset: str, prof, runs_root=None,
                  progress: bool = False) -> tuple[Path, dict]:
    """Distil ``student_dir`` from the teacher on the teacher's own training samples → ``models/<out_name>``."""
    out = run_dir(dataset, prof.name, runs_root) / "models" / out_name
    if (out / SUMMARY).exists():
        summary = json.loads((out / SUMMARY).read_text())
        fields = ("kd_lambda", *TRAINING_FIELDS)
        _same(out, {k: getattr(prof, k) for k in fields}, {k: summary["profile"].get(k) for k in fields})
        return out, summary
    tdir = teacher_dir(dataset, prof, runs_root)
    tok, cfg = load_tokenizer(tdir), get_dataset_config(dataset)
    splits = splits_dir(dataset, runs_root)
    train = sample_rows(read_split(splits, "train"), prof.max_train, prof.seed)
    valid = sample_rows(read_split(splits, "valid"), prof.max_valid, prof.seed)
    summary = distill(load_model(student_dir), load_model(tdir), tok, tokenize_split(train, tok, cfg, prof.cutoff_len),
                      tokenize_split(valid, tok, cfg, prof.cutoff_len), out, prof, prof.kd_lambda, progress)
    return out, summary


def stage1(dataset: str, prof, runs_root=None, progress: bool = False) -> dict:
    """Stage I end to end; returns the folders and records of every step."""
    pruned, surgery = stage1_prune(dataset, prof, runs_root, progress)
    final, summary = distill_stage(pruned, "stage1", dataset, prof, runs_root, progress)
    return {"pruned_dir": pruned, "surgery": surgery, "distilled_dir": final, "distill": summary}
