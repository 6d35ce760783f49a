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

import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoConfig

from .. import PruneRecError, steps
from ..assets import load_model, load_tokenizer, resolve_model
from ..data import read_items
from ..hardware import run_device
from ..identity import model_identity
from ..method.heads import HeadImportance, global_ranking, head_importance, random_heads, scoring_batch
from ..method.hidden import hidden_importance, top_dims
from ..method.layers import greedy_layer_removal, random_layers
from ..method.mlp import mlp_scores
from ..method.pretokens import distinct_pieces
from ..method.surgery import (head_dim, param_counts, param_formula, prune_heads, prune_hidden, prune_mlp, prune_vocab,
                              remove_layers)
from ..method.training import LeftPadCollator
from ..method.vocab import changed_encodings, closure, corpus_token_ids, restrict_tokenizer
from ..prompts import encode_example, prompt_text, target_text
from ..quiet import set_progress
from .evaluate import evaluate_cached, first_rows, retention_table
from .finetune import SUMMARY, distill, finetune, tokenize_split, training_settings
from .run import SAMPLES, Run, model_record

SURGERY = "surgery.json"
LAYER_SEARCH = "layer_search.json"  # a ΔPPL search to continue (see layer_search_prefix)


def train_teacher(run, progress: bool = True, name: str = "teacher") -> tuple[Path, dict]:
    """Notebook 01 in one call: the splits (notebook 00) where the run folder has none, then sample the profile's
    budget, tokenise, fine-tune, save ``models/<name>``.
    Returns the teacher folder and its training summary. Re-running resumes or skips; a stored
    teacher trained with other settings, from another base model or on other data is refused.
    """
    set_progress(progress)
    run.ensure_splits()  # a fresh run folder (a shard): the splits first
    prof, out = run.prof, run.model(name)
    base = resolve_model(prof.model)
    settings = training_settings(prof, base_id=model_identity(base), data_id=run.data_id())
    summary = steps.stored(out / SUMMARY, settings, remove=out)
    if summary is None:
        tok, cfg = load_tokenizer(base), run.cfg
        train_ds, valid_ds = (tokenize_split(run.rows("budget", n, split), tok, cfg, prof.cutoff_len)
                              for n, split in ((prof.max_train, "train"), (prof.max_valid, "valid")))
        summary = finetune(load_model(base), tok, train_ds, valid_ds, out, prof, progress=progress,
                           settings=settings, lock=run.folder)
    return out, summary


def head_scores(run: Run, alpha: float | None = None, name: str | None = None, progress: bool = False,
                greedy: bool = True, **kwargs) -> tuple[HeadImportance, dict]:
    """Stage I head choice on the teacher (cached as ``results/<name>.json``); returns scores + record.
    ``prof.head_variant``: "greedy" (the method: layer-wise KL scores, eq. 3-6, earlier choices
    suppressed), "global" / "global_no_alpha" (every layer scored with nothing else suppressed, one
    ranking by head index of the α-mixed / plain min-max scores, the same heads cut in every layer)
    or "random" (seeded random heads per layer). ``greedy=False`` is the independent scoring the
    global choices rank (cached as ``stage1_heads_independent``).
    """
    prof = run.prof
    alpha = prof.alpha if alpha is None else alpha
    variant = prof.head_variant if greedy else "independent"
    default = {"greedy": "stage1_heads", "independent": "stage1_heads_independent"}.get(variant, "stage1_heads")
    name = name or (default if alpha == prof.alpha else f"{default}_alpha{alpha:g}")
    tdir = ensure(run, "teacher", progress)
    settings = {"head_variant": variant, "alpha": alpha, "epsilon": prof.epsilon, "samples": prof.importance_samples,
                "kept_heads": prof.kept_heads, "seed": prof.seed, "cutoff_len": prof.cutoff_len,
                "quirk_last_padded": kwargs.get("quirk_last_padded", False),
                "options": {k: sorted(v) if isinstance(v, set) else v for k, v in kwargs.items()
                            if k != "quirk_last_padded"},
                "teacher_id": model_identity(tdir),
                "data_id": run.data_id()}

    def build() -> dict:
        cfg = load_config(tdir)
        L, H = cfg["num_hidden_layers"], cfg["num_attention_heads"]
        num_prune = H - prof.kept_heads
        t0 = time.time()
        if variant == "random":
            imp = HeadImportance.zeros(L, H, random_heads(L, H, num_prune, prof.seed + SAMPLES["random_heads"]))
        elif variant in ("global", "global_no_alpha"):
            ind = HeadImportance.from_dict(head_scores(run, alpha, greedy=False, progress=progress, **kwargs)[1])
            scores = ind.mixed if variant == "global" else ind.normalised
            imp = HeadImportance(ind.raw, ind.normalised, ind.mixed, [global_ranking(scores, num_prune)] * L)
        else:
            model, tok = scoring_model(tdir), load_tokenizer(tdir)
            rows = run.rows("importance", prof.importance_samples)
            batch = scoring_batch(tok, rows["history_item_title"], rows["item_title"], run.cfg,
                                  prof.cutoff_len, quirk_last_padded=kwargs.pop("quirk_last_padded", False))
            imp = head_importance(model, batch, num_prune, alpha, prof.epsilon, progress=progress,
                                  greedy=variant == "greedy", **kwargs)
        return {**imp.to_dict(), "kept": imp.kept(H), "head_variant": variant, "alpha": alpha, "epsilon": prof.epsilon,
                "samples": prof.importance_samples, "seconds": round(time.time() - t0, 1)}

    rec = run.step(name, settings, build)
    return HeadImportance.from_dict(rec), rec


def scoring_model(folder: Path):
    """The model of ``folder`` (fp32) on the run's device (:func:`~prunerec_utils.hardware.run_device`): head,
    hidden-dimension, MLP and ΔPPL scores run where the training runs; the surgery cuts it there and saves it."""
    return load_model(folder).to(run_device())


def load_config(folder: Path) -> dict:
    return steps.read_json(Path(folder) / "config.json")


def _collated(tok, rows, cfg, cutoff_len: int) -> dict:
    feats = [encode_example(tok, h, t, cfg, cutoff_len) for h, t in zip(rows["history_item_title"], rows["item_title"])]
    return LeftPadCollator(tok.pad_token_id)(feats)


def _save(model, tok, tmp: Path) -> None:
    model.to("cpu").save_pretrained(tmp)  # from the run's device: the GPU's memory is free for the next step
    tok.save_pretrained(tmp)


def stage1_prune(run: Run, progress: bool = False) -> tuple[Path, dict]:
    """Heads then hidden dimensions cut from the teacher → ``models/stage1_pruned`` (not distilled)."""
    prof = run.prof
    imp, head_rec = head_scores(run, progress=progress)
    tdir = ensure(run, "teacher", progress)
    settings = {"kept_heads": head_rec["kept"], "hidden_variant": prof.hidden_variant,
                "samples": prof.importance_samples,
                "seed": prof.seed, "cutoff_len": prof.cutoff_len, "source_id": model_identity(tdir),
                "data_id": run.data_id()}

    def build(tmp: Path) -> dict:
        model, tok = scoring_model(tdir), load_tokenizer(tdir)
        before = param_counts(model)
        original = {"hidden_size": model.config.hidden_size, "num_attention_heads": model.config.num_attention_heads,
                    "num_key_value_heads": model.config.num_key_value_heads}
        prune_heads(model, head_rec["kept"])
        after_heads = param_counts(model)
        rows = run.rows("importance", prof.importance_samples)
        t0 = time.time()
        hid = hidden_importance(model, _collated(tok, rows, run.cfg, prof.cutoff_len),
                                prof.hidden_variant, seed=prof.seed)
        dims = top_dims(hid, prof.kept_heads * head_dim(model.config))
        prune_hidden(model, dims)
        _save(model, tok, tmp)
        return {"kept_heads": head_rec["kept"], "hidden_variant": prof.hidden_variant, "original": original,
                "hidden_dims": dims, "hidden_importance": hid.tolist(), "hidden_seconds": round(time.time() - t0, 1),
                "params": {"teacher": before, "heads_removed": after_heads, "stage1": param_counts(model)}}

    return run.model_step("stage1_pruned", SURGERY, settings, build)


def surgery_params(pruned_dir: Path, key: str) -> dict | None:
    """Parameter counts ``key`` (e.g. "teacher", "stage3") of a pruned folder's surgery record,
    or None if the folder has none."""
    path = Path(pruned_dir) / SURGERY
    return steps.read_json(path)["params"][key] if path.exists() else None


def recorded_params(folder: Path, pruned: str, key: str) -> dict | None:
    """:func:`surgery_params` of the pruned model ``pruned`` of the run folder ``folder``, whether it was cut
    there or on a shard merged into it (:func:`~prunerec_utils.pipeline.run.model_record`)."""
    return surgery_params(model_record(Path(folder), pruned, SURGERY).parent, key)


def sample_batch(run: Run, n: int, purpose: str, tok) -> dict:
    """``n`` seeded training samples drawn for ``purpose`` (:data:`prunerec_utils.pipeline.run.SAMPLES`),
    tokenised as prompt + answer and left-padded: input_ids etc. ``[n, T]``."""
    return _collated(tok, run.rows(purpose, n), run.cfg, run.prof.cutoff_len)


def stage2_prune(run: Run) -> tuple[Path, dict]:
    """MLP neurons of the distilled Stage I model → ``models/stage2_pruned`` (eq. 8-11)."""
    prof = run.prof
    src = ensure(run, "stage1")
    settings = {"variant": prof.mlp_variant, "tau_quantile": prof.mlp_tau_quantile, "samples": prof.mlp_samples,
                "keep_factor": prof.mlp_keep_factor, "seed": prof.seed, "cutoff_len": prof.cutoff_len,
                "source_id": model_identity(src), "data_id": run.data_id()}

    def build(tmp: Path) -> dict:
        model, tok = scoring_model(src), load_tokenizer(src)
        t0 = time.time()
        scores = mlp_scores(model, sample_batch(run, prof.mlp_samples, "mlp", tok),
                            prof.mlp_tau_quantile, prof.mlp_variant, seed=prof.seed)
        k = round(prof.mlp_keep_factor * model.config.hidden_size)
        keep = scores.keep(k)
        before = param_counts(model)
        prune_mlp(model, keep)
        _save(model, tok, tmp)
        return {"variant": prof.mlp_variant, "tau_quantile": prof.mlp_tau_quantile, "samples": prof.mlp_samples,
                "keep_factor": prof.mlp_keep_factor, "k": k, "intermediate_before": int(scores.scores.shape[1]),
                "kept": keep, "tau": scores.tau.tolist(), "scores": scores.scores.tolist(),
                "abs_activation_quantiles": torch.quantile(
                    scores.activations.abs().reshape(len(keep), -1).float(),
                    torch.tensor([0.5, 0.9, 0.99], device=scores.activations.device), dim=1).T.tolist(),
                "seconds": round(time.time() - t0, 1), "params": {"stage1": before, "stage2": param_counts(model)}}

    return run.model_step("stage2_pruned", SURGERY, settings, build)


def stage3_settings(run: Run, src: Path) -> dict:
    prof = run.prof
    return {"share": prof.layers_removed_share, "calibration_samples": prof.calibration_samples,
            "layer_variant": prof.layer_variant, "seed": prof.seed, "cutoff_len": prof.cutoff_len,
            "source_id": model_identity(src), "data_id": run.data_id()}


def stage3_prune(run: Run, progress: bool = False) -> tuple[Path, dict]:
    """Greedy ΔPPL layer removal on the distilled Stage II model → ``models/stage3_pruned`` (eq. 12);
    ``prof.layer_variant = "random"`` removes seeded random layers instead (a baseline)."""
    prof = run.prof
    src = ensure(run, "stage2", progress)
    settings = stage3_settings(run, src)

    def build(tmp: Path) -> dict:
        model, tok = scoring_model(src), load_tokenizer(src)
        L = model.config.num_hidden_layers
        n_remove = min(round(prof.layers_removed_share * L), L - 1)
        t0 = time.time()
        if prof.layer_variant == "random":
            search = random_layers(L, n_remove, prof.seed)
        else:
            search = greedy_layer_removal(model, sample_batch(run, prof.calibration_samples, "calibration", tok),
                                          n_remove, progress, prefix=layer_search_prefix(run, settings))
        before = param_counts(model)
        remove_layers(model, search["removed"])
        _save(model, tok, tmp)
        rec = {"share": prof.layers_removed_share, "calibration_samples": prof.calibration_samples,
               "layer_variant": prof.layer_variant, "layers_before": L, "n_remove": n_remove, **search,
               "seconds": round(time.time() - t0, 1),
               "params": {"stage2": before, "stage3": param_counts(model)}}
        rec["steps"] = [{**st, "delta": {str(k): v for k, v in st["delta"].items()}} for st in rec["steps"]]
        return rec

    return run.model_step("stage3_pruned", SURGERY, settings, build)


def layer_search_prefix(run: Run, settings: dict) -> dict | None:
    """An earlier ΔPPL search on this run's Stage II model, ``results/layer_search.json`` (an
    ablation links the main run's Stage III surgery record there), made with the same settings
    but the share of layers removed; :func:`greedy_layer_removal` reuses its first steps."""
    return steps.stored(run.folder / "results" / LAYER_SEARCH, settings, "rebuild", quiet=True, ignore=("share",))


def dataset_texts(run: Run) -> tuple[list[str], list[str]]:
    """Every prompt of every split, as the evaluator and trainer write it, and every item title."""
    cfg = run.cfg
    prompts = [prompt_text(h, cfg) for s in ("train", "valid", "test") for h in run.split(s)["history_item_title"]]
    return prompts, read_items(run.splits)["item_title"].tolist()


def vocab_prune(run: Run, source: str = "stage3", progress: bool = False) -> tuple[Path, dict]:
    """Keep the tokens of the dataset's prompts and titles (+ merge closure, bytes, specials) in the
    distilled ``source`` model → ``models/<source>_vocab``; checks that every prompt and answer
    encodes as before."""
    src = ensure(run, source, progress)
    settings = {"source": source, "source_id": model_identity(src), "data_id": run.data_id()}

    def build(tmp: Path) -> dict:
        model, tok = load_model(src), load_tokenizer(src)
        t0 = time.time()
        prompts, titles = dataset_texts(run)
        checked = prompts + [target_text(t) for t in titles]
        pieces = distinct_pieces(tok, checked, progress=progress)
        used = corpus_token_ids(tok, pieces) | {tok.eos_token_id}  # an answer ends with EOS
        new_tok, old_of_new = restrict_tokenizer(tok, closure(tok, used))
        changed = changed_encodings(tok, new_tok, old_of_new, pieces)
        if changed:
            raise PruneRecError(f"{len(changed)} pieces of the prompts/titles (e.g. {changed[0]!r}) encode differently "
                                "after vocabulary pruning (tokenizer not plain byte-level BPE?)")
        before = param_counts(model)
        prune_vocab(model, old_of_new)
        _save(model, new_tok, tmp)
        return {"source": source, "vocab_before": len(tok), "used_tokens": len(used), "vocab_after": len(old_of_new),
                "texts_checked": len(checked),
                "pieces_checked": len(pieces.distinct) + len(pieces.whole), "seconds": round(time.time() - t0, 1),
                "kept_token_ids": old_of_new.tolist(),
                "params": {source: before, f"{source}_vocab": param_counts(model)}}

    return run.model_step(f"{source}_vocab", SURGERY, settings, build)


def distill_stage(run: Run, student_dir: Path, out_name: str, progress: bool = False) -> tuple[Path, dict]:
    """Distil ``student_dir`` from the teacher on a seeded sample of ``prof.distill_samples``
    training rows (the teacher's own when the budgets are equal) → ``models/<out_name>``.

    Stored with the training settings (:func:`prunerec_utils.pipeline.finetune.training_settings`), λ, and
    the identities of the student, the teacher and the data; another of any is refused."""
    prof, tdir = run.prof, ensure(run, "teacher", progress)
    budget = prof.distill_samples
    settings = training_settings(prof, max_train=budget, kd_lambda=prof.kd_lambda,
                                 student_id=model_identity(student_dir), teacher_id=model_identity(tdir),
                                 data_id=run.data_id())

    out = run.model(out_name)
    summary = steps.stored(out / SUMMARY, settings, remove=out)
    if summary is None:
        tok, cfg = load_tokenizer(tdir), run.cfg
        train_ds, valid_ds = (tokenize_split(run.rows("budget", n, split), tok, cfg, prof.cutoff_len)
                              for n, split in ((budget, "train"), (prof.max_valid, "valid")))
        summary = distill(load_model(student_dir), load_model(tdir), tok, train_ds, valid_ds, out, prof,
                          prof.kd_lambda, progress, settings=settings, lock=run.folder)
    return out, summary


def _stage(run: Run, number: int, pruned: tuple[Path, dict], progress: bool) -> dict:
    final, summary = distill_stage(run, pruned[0], f"stage{number}", progress)
    return {"pruned_dir": pruned[0], "surgery": pruned[1], "distilled_dir": final, "distill": summary}


def ensure(run: Run, name: str, progress: bool = False) -> Path:
    """The finished stage ``name`` ("teacher", "stage1", "stage2", "stage3") of the run, made here first where
    the run folder lacks it, with the splits and every stage it needs (each a cached step, so what exists is
    read back): a shard that starts at chapter 04 in a fresh run folder trains the teacher and Stage I itself.

    Where earlier shards were merged into the run folder (a shard run ``--after`` them), the model must be the
    one they made (:meth:`Run.merged_identity`): one that differs is refused in one line, before any result is
    computed from it, since neither its results nor its chapters could be merged with theirs."""
    if not (run.model(name) / SUMMARY).exists() and name in MAKERS:
        print(f"[stages] no {name} in {run.folder}: making it here (and what it needs)", flush=True)
        MAKERS[name](run, progress)
    folder = run.stage(name)
    want = run.merged_identity(name)
    if want is not None and (got := model_identity(folder)) != want:
        raise PruneRecError(f"{folder}: identity {got}, but the shards merged into this run made {name} as {want}: "
                            "this machine did not make the same model again (another device, library or setting); "
                            "run the chapters that need it in one shard with the ones that made it")
    return folder


def stage1(run: Run, progress: bool = False) -> dict:
    """Stage I end to end (cut, then distil); returns the folders and records of every step."""
    return _stage(run, 1, stage1_prune(run, progress), progress)


def stage2(run: Run, progress: bool = False) -> dict:
    """Stage II end to end (cut, then distil)."""
    return _stage(run, 2, stage2_prune(run), progress)


def stage3(run: Run, progress: bool = False) -> dict:
    """Stage III end to end (search and cut, then distil)."""
    return _stage(run, 3, stage3_prune(run, progress), progress)


def first_rows_label(n: int) -> str:
    """The row label of the teacher restricted to the first ``n`` test rows, as :func:`stage_results` names it."""
    return f"teacher (first {n})"


def undistilled_label(label: str) -> str:
    """The row label of a stage right after its surgery, before distillation."""
    return f"{label}, no distillation"


def stage_results(run: Run, label: str, name: str, pruned_rows: int = 0, progress: bool = False) -> dict:
    """Evaluations for a stage's page: the teacher; if ``pruned_rows``, the teacher and the
    undistilled model (``models/<name>_pruned``) on the first rows (:func:`first_rows_label`,
    :func:`undistilled_label`); the distilled model (``models/<name>``) on the full test sample."""
    teacher = evaluate_cached(run, "teacher", ensure(run, "teacher", progress), progress=progress)
    out = {"teacher": teacher}
    if pruned_rows:
        n = min(pruned_rows, teacher.metrics["n"])
        out[first_rows_label(n)] = first_rows(teacher, n)
        out[undistilled_label(label)] = evaluate_cached(run, f"{name}_pruned_n{n}", run.model(f"{name}_pruned"),
                                                        limit=n, progress=progress)
    out[label] = evaluate_cached(run, name, ensure(run, name, progress), progress=progress)
    return out


def stage_retention(results: dict, label: str) -> pd.DataFrame:
    """Retention (metric / teacher's metric on the same rows) of a stage page's results: every model
    evaluated on the full test sample against the teacher, and the undistilled ``label`` against the
    teacher on its first rows (when :func:`stage_results` evaluated it)."""
    undistilled = undistilled_label(label)
    first = first_rows_label(results[undistilled].metrics["n"]) if undistilled in results else None
    full = {k: v for k, v in results.items() if k not in (first, undistilled)}
    table = retention_table(full, "teacher")
    if first is not None:
        part = retention_table({first: results[first], undistilled: results[undistilled]}, first)
        table = pd.concat([table, part.drop(index=first)])
    return table


def stage_param_counts(run: Run, names: dict[str, str]) -> pd.DataFrame:
    """Parameter counts (:func:`~prunerec_utils.method.surgery.param_formula`: total, embedding,
    non-embedding, …) of the run's models, one row per ``{label: model name}``, read from each folder's
    ``config.json`` (one line naming the folder where it is missing)."""
    counts = {}
    for label, name in names.items():
        folder = run.model(name)
        if not (folder / "config.json").exists():
            raise PruneRecError(f"no model at {folder} (no config.json): make {name} first")
        counts[label] = param_formula(AutoConfig.from_pretrained(folder))
    return pd.DataFrame(counts).T


MAKERS = {"teacher": train_teacher, "stage1": stage1, "stage2": stage2, "stage3": stage3}  # what :func:`ensure` runs
