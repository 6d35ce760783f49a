"""The pruning stages as resumable steps over one run folder (``runs/<dataset>/<profile>/``).

Stage I (:func:`stage1`): head importance on the teacher → remove heads → hidden-dimension
importance on the head-pruned model → remove dimensions → ``models/stage1_pruned`` → distil
from the teacher → ``models/stage1``. Stage II (:func:`stage2`): MLP neuron counts on
``models/stage1`` → ``models/stage2_pruned`` → distil → ``models/stage2``. Stage III
(:func:`stage3`): greedy ΔPPL layer search on ``models/stage2`` → ``models/stage3_pruned`` →
distil → ``models/stage3``. The teacher is the fine-tuned unpruned model in every stage.

After Stage III, :func:`vocab_prune` keeps only the tokens the dataset uses
(``models/stage3_vocab``, no distillation: the kept rows are unchanged).

Each step is skipped when its output is complete, so a re-run resumes where the last one
stopped (a distillation resumes from its last epoch checkpoint); a stored step made with other
settings is refused, not silently reused. Importance scores go to ``results/stage1_*.json``;
each pruned folder holds its surgery record (``surgery.json``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from . import PruneRecError
from .assets import load_model, load_tokenizer
from .data import get_dataset_config, read_items, read_split, sample_rows
from .distill import distill
from .finetune import SUMMARY, TRAINING_FIELDS, LeftPadCollator, tokenize_split
from .heads import HeadImportance, head_importance, scoring_batch
from .hidden import hidden_importance, top_dims
from .identity import model_identity
from .layers import greedy_layer_removal
from .mlp import mlp_scores
from .paths import atomic_dir, atomic_write_text, run_dir, splits_dir
from .prompts import encode_example, prompt_text, target_ids, target_text
from .surgery import head_dim, param_counts, prune_heads, prune_hidden, prune_mlp, prune_vocab, remove_layers

SURGERY = "surgery.json"
LAYER_SEARCH = "layer_search.json"  # a ΔPPL search to continue (see layer_search_prefix)


def _same(where: Path, wanted: dict, stored: dict) -> None:
    """Refuse to reuse a stored step made with other settings (its downstream steps depend on it)."""
    diff = [f"{k} {stored.get(k)!r} (asked {v!r})" for k, v in wanted.items() if stored.get(k) != v]
    if diff:
        raise PruneRecError(f"{where} was made with other settings: {', '.join(diff)}; delete it (and the stages "
                            f"after it) or use another runs_root")


def teacher_dir(dataset: str, prof, runs_root=None) -> Path:
    return stage_dir(dataset, prof, "teacher", runs_root, "01")


def importance_rows(dataset: str, prof, runs_root=None):
    """The B seeded training samples every importance score of this run is computed on."""
    return sample_rows(read_split(splits_dir(dataset, runs_root), "train"), prof.importance_samples, prof.seed + 1)


def head_scores(dataset: str, prof, runs_root=None, alpha: float | None = None, name: str | None = None,
                progress: bool = False, **kwargs) -> tuple[HeadImportance, dict]:
    """Head importance of the teacher (cached as ``results/<name>.json``); returns scores + record."""
    alpha = prof.alpha if alpha is None else alpha
    name = name or ("stage1_heads" if alpha == prof.alpha else f"stage1_heads_alpha{alpha:g}")
    out = run_dir(dataset, prof.name, runs_root) / "results" / f"{name}.json"
    tdir = teacher_dir(dataset, prof, runs_root)
    teacher_id = model_identity(tdir)
    if out.exists():
        rec = json.loads(out.read_text())
        _same(out, {"alpha": alpha, "epsilon": prof.epsilon, "samples": prof.importance_samples,
                    "kept heads": prof.kept_heads, "teacher_id": teacher_id},
              {**rec, "kept heads": len(rec["kept"][0])})
        return HeadImportance.from_dict(rec), rec
    model, tok = load_model(tdir), load_tokenizer(tdir)
    rows = importance_rows(dataset, prof, runs_root)
    batch = scoring_batch(tok, rows["history_item_title"], rows["item_title"], get_dataset_config(dataset),
                          prof.cutoff_len, quirk_last_padded=kwargs.pop("quirk_last_padded", False))
    num_prune = model.config.num_attention_heads - prof.kept_heads
    t0 = time.time()
    imp = head_importance(model, batch, num_prune, alpha, prof.epsilon, progress=progress, **kwargs)
    rec = {**imp.to_dict(), "kept": imp.kept(model.config.num_attention_heads), "alpha": alpha,
           "epsilon": prof.epsilon, "samples": prof.importance_samples, "teacher_id": teacher_id,
           "seconds": round(time.time() - t0, 1)}
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
    tdir = teacher_dir(dataset, prof, runs_root)
    wanted = {"kept_heads": head_rec["kept"], "hidden_variant": prof.hidden_variant, "source_id": model_identity(tdir)}
    rec = _stored(out, wanted)
    if rec:
        return out, rec
    model, tok = load_model(tdir), load_tokenizer(tdir)
    before = param_counts(model)
    original = {"hidden_size": model.config.hidden_size, "num_attention_heads": model.config.num_attention_heads,
                "num_key_value_heads": model.config.num_key_value_heads}
    prune_heads(model, head_rec["kept"])
    after_heads = param_counts(model)
    rows = importance_rows(dataset, prof, runs_root)
    t0 = time.time()
    hid = hidden_importance(model, _collated(tok, rows, get_dataset_config(dataset), prof.cutoff_len),
                            prof.hidden_variant, seed=prof.seed)
    dims = top_dims(hid, prof.kept_heads * head_dim(model.config))
    prune_hidden(model, dims)
    rec = {**wanted, "original": original, "hidden_dims": dims, "hidden_importance": hid.tolist(),
           "hidden_seconds": round(time.time() - t0, 1), "params": {"teacher": before, "heads_removed": after_heads,
                                                                    "stage1": param_counts(model)}}
    return out, _save_pruned(model, tok, out, rec)


def _save_pruned(model, tok, out: Path, rec: dict) -> dict:
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SURGERY).write_text(json.dumps(rec))
    return rec


def _stored(out: Path, wanted: dict, legacy: dict | None = None) -> dict | None:
    """The surgery record of a finished pruned folder (checked against ``wanted``), else None.
    ``legacy``: values of settings that records written before the setting existed had."""
    if not (out / SURGERY).exists():
        return None
    rec = json.loads((out / SURGERY).read_text())
    _same(out, wanted, {**(legacy or {}), **rec})
    return rec


def surgery_params(pruned_dir: Path, key: str) -> dict | None:
    """Parameter counts ``key`` (e.g. "teacher", "stage3") of a pruned folder's surgery record,
    or None if the folder has none."""
    path = Path(pruned_dir) / SURGERY
    return json.loads(path.read_text())["params"][key] if path.exists() else None


def stage_dir(dataset: str, prof, name: str, runs_root=None, notebook: str = "") -> Path:
    """A finished (distilled) stage folder, or a one-line error naming the notebook that makes it."""
    folder = run_dir(dataset, prof.name, runs_root) / "models" / name
    if not (folder / SUMMARY).exists():
        raise PruneRecError(f"no {name} model at {folder}: run notebook {notebook} first")
    return folder


def _samples(dataset: str, prof, n: int, offset: int, runs_root, tok) -> dict:
    rows = sample_rows(read_split(splits_dir(dataset, runs_root), "train"), n, prof.seed + offset)
    return _collated(tok, rows, get_dataset_config(dataset), prof.cutoff_len)


def stage2_prune(dataset: str, prof, runs_root=None) -> tuple[Path, dict]:
    """MLP neurons of the distilled Stage I model → ``models/stage2_pruned`` (SPEC §4)."""
    out = run_dir(dataset, prof.name, runs_root) / "models" / "stage2_pruned"
    src = stage_dir(dataset, prof, "stage1", runs_root, "03")
    wanted = {"variant": prof.mlp_variant, "tau_quantile": prof.mlp_tau_quantile, "samples": prof.mlp_samples,
              "keep_factor": prof.mlp_keep_factor, "source_id": model_identity(src)}
    rec = _stored(out, wanted)
    if rec:
        return out, rec
    model, tok = load_model(src), load_tokenizer(src)
    t0 = time.time()
    scores = mlp_scores(model, _samples(dataset, prof, prof.mlp_samples, 2, runs_root, tok),
                        prof.mlp_tau_quantile, prof.mlp_variant, seed=prof.seed)
    k = round(prof.mlp_keep_factor * model.config.hidden_size)
    keep = scores.keep(k)
    before = param_counts(model)
    prune_mlp(model, keep)
    rec = {**wanted, "k": k, "intermediate_before": int(scores.scores.shape[1]), "kept": keep,
           "tau": scores.tau.tolist(), "scores": scores.scores.tolist(),
           "abs_activation_quantiles": torch.quantile(scores.activations.abs().reshape(len(keep), -1),
                                                      torch.tensor([0.5, 0.9, 0.99]), dim=1).T.tolist(),
           "seconds": round(time.time() - t0, 1), "params": {"stage1": before, "stage2": param_counts(model)}}
    return out, _save_pruned(model, tok, out, rec)


def stage3_prune(dataset: str, prof, runs_root=None, progress: bool = False) -> tuple[Path, dict]:
    """Greedy ΔPPL layer removal on the distilled Stage II model → ``models/stage3_pruned`` (SPEC §5);
    ``prof.layer_variant = "random"`` removes seeded random layers instead (a baseline)."""
    out = run_dir(dataset, prof.name, runs_root) / "models" / "stage3_pruned"
    src = stage_dir(dataset, prof, "stage2", runs_root, "04")
    wanted = {"share": prof.layers_removed_share, "calibration_samples": prof.calibration_samples,
              "layer_variant": prof.layer_variant, "source_id": model_identity(src)}
    rec = _stored(out, wanted, legacy={"layer_variant": "ppl"})
    if rec:
        return out, rec
    model, tok = load_model(src), load_tokenizer(src)
    L = model.config.num_hidden_layers
    n_remove = min(round(prof.layers_removed_share * L), L - 1)
    t0 = time.time()
    if prof.layer_variant == "random":
        search = {"removed": random.Random(prof.seed).sample(range(L), n_remove), "base_ppl": None, "steps": []}
    elif prof.layer_variant == "ppl":
        search = greedy_layer_removal(model, _samples(dataset, prof, prof.calibration_samples, 3, runs_root, tok),
                                      n_remove, progress, prefix=layer_search_prefix(dataset, prof, runs_root))
    else:
        raise PruneRecError(f"unknown layer_variant {prof.layer_variant!r}; use ppl or random")
    before = param_counts(model)
    remove_layers(model, search["removed"])
    rec = {**wanted, "layers_before": L, "n_remove": n_remove, **search, "seconds": round(time.time() - t0, 1),
           "params": {"stage2": before, "stage3": param_counts(model)}}
    rec["steps"] = [{**st, "delta": {str(k): v for k, v in st["delta"].items()}} for st in rec["steps"]]
    return out, _save_pruned(model, tok, out, rec)


def layer_search_prefix(dataset: str, prof, runs_root=None) -> dict | None:
    """An earlier ΔPPL search on this run's Stage II model, ``results/layer_search.json`` (an
    ablation links the main run's Stage III surgery record there), if it used the same calibration
    samples; :func:`greedy_layer_removal` reuses its first steps."""
    path = run_dir(dataset, prof.name, runs_root) / "results" / LAYER_SEARCH
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if rec.get("layer_variant", "ppl") != "ppl" or rec.get("calibration_samples") != prof.calibration_samples:
        return None
    return rec


def dataset_texts(dataset: str, runs_root=None) -> tuple[list[str], list[str]]:
    """Every prompt of every split, as the evaluator and trainer write it, and every item title."""
    cfg, splits = get_dataset_config(dataset), splits_dir(dataset, runs_root)
    prompts = [prompt_text(h, cfg) for s in ("train", "valid", "test")
               for h in read_split(splits, s)["history_item_title"]]
    return prompts, read_items(splits)["item_title"].tolist()


def vocab_prune(dataset: str, prof, runs_root=None, source: str = "stage3", progress: bool = False
                ) -> tuple[Path, dict]:
    """Keep the tokens of the dataset's prompts and titles (+ merge closure, bytes, specials) in the
    distilled ``source`` model → ``models/<source>_vocab``; checks that every prompt and answer
    encodes as before."""
    from .vocab import closure, dataset_token_ids, encoding_mismatches, restrict_tokenizer

    out = run_dir(dataset, prof.name, runs_root) / "models" / f"{source}_vocab"
    src = stage_dir(dataset, prof, source, runs_root, "05")
    wanted = {"source": source, "source_id": model_identity(src)}
    rec = _stored(out, wanted)
    if rec:
        return out, rec
    model, tok = load_model(src), load_tokenizer(src)
    t0 = time.time()
    prompts, titles = dataset_texts(dataset, runs_root)
    used = dataset_token_ids(tok, prompts, [target_ids(tok, t) for t in titles], progress=progress)
    new_tok, old_of_new = restrict_tokenizer(tok, closure(tok, used))
    checked = prompts + [target_text(t) for t in titles]
    bad = encoding_mismatches(tok, new_tok, old_of_new, checked)
    if bad:
        raise PruneRecError(f"{bad} prompts/titles encode differently after vocabulary pruning (tokenizer not "
                            f"plain byte-level BPE?)")
    before = param_counts(model)
    prune_vocab(model, old_of_new)
    rec = {**wanted, "vocab_before": len(tok), "used_tokens": len(used), "vocab_after": len(old_of_new),
           "texts_checked": len(checked), "seconds": round(time.time() - t0, 1),
           "kept_token_ids": old_of_new.tolist(),
           "params": {source: before, f"{source}_vocab": param_counts(model)}}
    return out, _save_pruned(model, new_tok, out, rec)


def stage2(dataset: str, prof, runs_root=None, progress: bool = False) -> dict:
    pruned, surgery = stage2_prune(dataset, prof, runs_root)
    final, summary = distill_stage(pruned, "stage2", dataset, prof, runs_root, progress)
    return {"pruned_dir": pruned, "surgery": surgery, "distilled_dir": final, "distill": summary}


def stage3(dataset: str, prof, runs_root=None, progress: bool = False) -> dict:
    pruned, surgery = stage3_prune(dataset, prof, runs_root, progress)
    final, summary = distill_stage(pruned, "stage3", dataset, prof, runs_root, progress)
    return {"pruned_dir": pruned, "surgery": surgery, "distilled_dir": final, "distill": summary}


def distill_stage(student_dir: Path, out_name: str, dataset: str, prof, runs_root=None,
                  progress: bool = False) -> tuple[Path, dict]:
    """Distil ``student_dir`` from the teacher on the teacher's own training samples → ``models/<out_name>``."""
    out = run_dir(dataset, prof.name, runs_root) / "models" / out_name
    tdir = teacher_dir(dataset, prof, runs_root)
    inputs = {"student_id": model_identity(student_dir), "teacher_id": model_identity(tdir)}
    if (out / SUMMARY).exists():
        summary = json.loads((out / SUMMARY).read_text())
        fields = ("kd_lambda", *TRAINING_FIELDS)
        _same(out, {**{k: getattr(prof, k) for k in fields}, **inputs},
              {**{k: summary["profile"].get(k) for k in fields}, **summary.get("inputs", {})})
        return out, summary
    tok, cfg = load_tokenizer(tdir), get_dataset_config(dataset)
    splits = splits_dir(dataset, runs_root)
    train = sample_rows(read_split(splits, "train"), prof.max_train, prof.seed)
    valid = sample_rows(read_split(splits, "valid"), prof.max_valid, prof.seed)
    summary = distill(load_model(student_dir), load_model(tdir), tok, tokenize_split(train, tok, cfg, prof.cutoff_len),
                      tokenize_split(valid, tok, cfg, prof.cutoff_len), out, prof, prof.kd_lambda, progress,
                      inputs=inputs)
    return out, summary


def stage1(dataset: str, prof, runs_root=None, progress: bool = False) -> dict:
    """Stage I end to end; returns the folders and records of every step."""
    pruned, surgery = stage1_prune(dataset, prof, runs_root, progress)
    final, summary = distill_stage(pruned, "stage1", dataset, prof, runs_root, progress)
    return {"pruned_dir": pruned, "surgery": surgery, "distilled_dir": final, "distill": summary}


def stage_results(label: str, name: str, pruned_dir: Path, distilled_dir: Path, dataset: str, prof, runs_root=None,
                  pruned_users: int = 0, progress: bool = False) -> dict:
    """Evaluations for a stage's page: the teacher; if ``pruned_users``, the teacher and the
    undistilled model on the first users; the distilled model on the full test sample."""
    from .evaluate import evaluate_cached, first_users

    teacher = evaluate_cached("teacher", teacher_dir(dataset, prof, runs_root), dataset, prof, runs_root,
                              progress=progress)
    out = {"teacher": teacher}
    if pruned_users:
        n = min(pruned_users, teacher.metrics["n"])
        out[f"teacher (first {n})"] = first_users(teacher, n)
        out[f"{label}, no distillation"] = evaluate_cached(f"{name}_pruned_n{n}", pruned_dir, dataset, prof, runs_root,
                                                           limit=n, progress=progress)
    out[label] = evaluate_cached(name, distilled_dir, dataset, prof, runs_root, progress=progress)
    return out
