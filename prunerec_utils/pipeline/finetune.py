"""BIGRec fine-tune and the restoration's distillation (book/method.md, method-recommender, method-restoration) as
cached steps over a run folder, through ``transformers.Trainer``.

The losses and the collator are the method's (:mod:`prunerec_utils.method.training`,
:mod:`prunerec_utils.method.distill`); here: the profile's training settings, ``TrainingArguments``, the training
precision, resumable checkpoints, the wall clock across interruptions, and the folder each training leaves.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

from ..master_adamw import MasterWeightAdamW
from ..method.distill import DistillTrainer
from ..method.training import LeftPadCollator, ResponseLossTrainer
from ..paths import atomic_write_text
from ..profiles import Profile
from ..prompts import encode_example
from ..recipe import DatasetConfig
from ..steps import folder_step, read_json, record, stored

log = logging.getLogger(__name__)
SUMMARY = "training_summary.json"
CHECKPOINTS = "checkpoints.json"  # the settings of the training a checkpoint folder belongs to


def tokenize_split(df, tokenizer, cfg: DatasetConfig, cutoff_len: int) -> Dataset:
    """pandas split → ``datasets.Dataset`` with input_ids / attention_mask / labels."""
    ds = Dataset.from_pandas(df[["history_item_title", "item_title"]].reset_index(drop=True))
    return ds.map(lambda r: encode_example(tokenizer, r["history_item_title"], r["item_title"], cfg, cutoff_len),
                  remove_columns=ds.column_names, desc="tokenise", load_from_cache_file=False)


WALL = "prunerec_wall.json"  # a checkpoint's training seconds so far (all sessions of the training)


def spent_before(checkpoint: Path | None) -> float:
    """Training seconds a resumed run had already spent when ``checkpoint`` was saved (0 without one,
    or for a checkpoint saved before this was recorded)."""
    if checkpoint is None or not (Path(checkpoint) / WALL).exists():
        return 0.0
    return float(json.loads((Path(checkpoint) / WALL).read_text())["seconds"])


class WallClock(TrainerCallback):
    """Writes into every checkpoint the training seconds so far, earlier sessions included, so that
    a training resumed after an interruption reports its whole wall time."""

    def __init__(self, before: float):
        self.before, self.t0 = before, time.time()

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            (folder / WALL).write_text(json.dumps({"seconds": round(self.before + time.time() - self.t0, 1)}))
        return control


class SaveEverySteps(TrainerCallback):
    """Save a resumable checkpoint every ``steps`` optimizer steps *without* evaluating, so a long
    epoch cut short resumes mid-way while the best checkpoint is still chosen at epoch ends only
    (``load_best_model_at_end`` forbids step saves with epoch evaluation in ``TrainingArguments``)."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if self.steps > 0 and state.global_step % self.steps == 0:
            control.should_save = True
        return control


def training_args(out_dir: Path, prof: Profile, progress: bool, **extra) -> TrainingArguments:
    """Profile → ``TrainingArguments``: AdamW, warm-up + linear decay, eval/save per epoch, best by val loss.

    ``prof.train_precision``: "autocast" turns on Trainer's bf16 autocast over fp32 weights; "bf16"
    (weights already bf16, see :func:`prepare_precision`) needs no autocast and draws batches of
    similar lengths (``group_by_length``: less padding). ``prof.train_compile`` hands the model to
    ``torch.compile`` (Trainer's ``torch_compile``, inductor): the elementwise work of the step
    (norms, activations, rotary, casts, softmax) is fused into a few kernels. Compiling costs one
    to four minutes per process (inductor caches its kernels on disk for the next one).
    """
    use_cuda = torch.cuda.is_available()
    if prof.train_precision == "bf16":
        extra.setdefault("train_sampling_strategy", "group_by_length")
    return TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=prof.epochs, learning_rate=prof.lr,
        per_device_train_batch_size=prof.batch_size, per_device_eval_batch_size=prof.batch_size,
        gradient_accumulation_steps=prof.grad_accum, warmup_steps=prof.warmup_steps,
        lr_scheduler_type="linear", optim="adamw_torch", weight_decay=extra.pop("weight_decay", 0.0),
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=2,
        logging_steps=extra.pop("logging_steps", 5), report_to="none", seed=prof.seed, data_seed=prof.seed,
        bf16=prof.train_precision == "autocast", torch_compile=prof.train_compile, use_cpu=not use_cuda,
        # on CUDA: deterministic algorithms, cuBLAS workspace and cuDNN settings (Trainer's ``full_determinism``),
        # so the same step re-derived on a fresh machine of the same kind has the same content hash; the CPU's
        # kernels are deterministic already (tests/test_finetune.py trains twice and compares the hashes)
        full_determinism=use_cuda,
        disable_tqdm=not progress,
        remove_unused_columns=False, dataloader_num_workers=0, prediction_loss_only=True, **extra,
    )


def prepare_precision(model, prof: Profile) -> dict:
    """Put ``model`` in the profile's training precision and attention; the Trainer keyword
    arguments that go with it.

    "bf16": weights in bf16, so every matmul of forward and backward runs on the AMX units (CPU) or
    tensor cores, with no fp32→bf16 weight casts per step as under autocast. Plain bf16 AdamW
    would lose updates smaller than a weight's rounding step (lr·update ≪ 2⁻⁸·|w|), so the
    optimizer is :class:`~prunerec_utils.master_adamw.MasterWeightAdamW`: fp32 master weights and
    moments updated by torch's fused AdamW, rounded back into the bf16 weights. Same
    hyper-parameters as ``adamw_torch``.
    """
    model.set_attn_implementation(prof.train_attention)
    if prof.train_precision != "bf16":
        return {}
    model.to(torch.bfloat16)
    kwargs = {"lr": prof.lr, "betas": (0.9, 0.999), "eps": 1e-8}
    return {"optimizer_cls_and_kwargs": (MasterWeightAdamW, kwargs)}


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process as ``torchrun`` / ``accelerate launch`` set them; (0, 1) alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def finetune(model, tokenizer, train_ds: Dataset, valid_ds: Dataset, out_dir: str | Path, prof: Profile,
             progress: bool = True, trainer_cls=ResponseLossTrainer, keep_checkpoints: bool = False,
             callbacks=(), settings: dict | None = None, lock: str | Path | None = None, **extra) -> dict:
    """Fine-tune ``model`` and save the best epoch as a plain HF folder at ``out_dir``; its summary.

    A cached step (:func:`prunerec_utils.steps.folder_step`): ``out_dir/training_summary.json``
    records :func:`training_settings` plus ``settings`` (the identities of the models and data the
    caller read); a finished folder with the same settings is returned without training, one with
    other settings is refused. Resumes from the newest complete ``out_dir/../<name>.ckpt/checkpoint-*``
    (saved per epoch, and every ``prof.save_steps`` optimizer steps when set; one cut off mid-save
    is removed with a printed line). The checkpoints (weights + optimizer state) are deleted once
    the final folder is written, unless ``keep_checkpoints``. ``callbacks``: extra
    ``TrainerCallback``s; ``lock``: the run folder held while training (default: ``out_dir``'s parent).

    Under ``torchrun --nproc_per_node N`` (or ``accelerate launch``) every process trains its share
    of each batch (Trainer's DDP); only rank 0 manages the checkpoints and writes the folder and its
    record, the others train into a throwaway folder and return the record rank 0 wrote.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir.parent / f"{out_dir.name}.ckpt"
    full = training_settings(prof, **(settings or {}))
    rank, world = process_rank()

    def train(tmp: Path) -> dict:
        torch.manual_seed(prof.seed)
        trainer = trainer_cls(model=model, args=training_args(ckpt_dir, prof, progress, **extra),
                              train_dataset=train_ds, eval_dataset=valid_ds,
                              data_collator=LeftPadCollator(tokenizer.pad_token_id, count_response=True),
                              processing_class=tokenizer,
                              **prepare_precision(model, prof))
        trainer.remove_callback(PrinterCallback)  # log dicts go to log_history, not stdout
        if prof.save_steps:
            trainer.add_callback(SaveEverySteps(prof.save_steps))
        for callback in callbacks:
            trainer.add_callback(callback)
        if not progress:
            trainer.remove_callback(ProgressCallback)
        if rank == 0:  # manages the checkpoints: those of another training are removed
            resume = complete_checkpoint(ckpt_dir, full)
        if world > 1:  # the others look only once rank 0 has cleaned them up
            trainer.accelerator.wait_for_everyone()
        if rank != 0:
            resume = complete_checkpoint(ckpt_dir)
        before = spent_before(resume)
        trainer.add_callback(WallClock(before))
        t0 = time.time()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"wall_seconds": round(before + time.time() - t0, 1), "resumed": resume is not None,
                "seconds_before_resume": before,
                "train_samples": len(train_ds), "valid_samples": len(valid_ds), "steps": trainer.state.global_step,
                "best_checkpoint": Path(trainer.state.best_model_checkpoint or "").name or None,
                "best_eval_loss": min((h["eval_loss"] for h in evals), default=None),
                "log_history": trainer.state.log_history, "profile": prof.to_dict()}

    if rank == 0:
        summary = folder_step(out_dir, SUMMARY, full, train, lock=lock)
    elif stored(out_dir / SUMMARY, full, quiet=True) is None:  # rank 0 writes; this one only trains
        with tempfile.TemporaryDirectory() as tmp:
            train(Path(tmp))
    if world > 1:
        _barrier()  # rank 0's folder and record are written
        summary = read_json(out_dir / SUMMARY)
    if not keep_checkpoints and rank == 0:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def complete_checkpoint(ckpt_dir: Path, settings: dict | None = None) -> Path | None:
    """The newest ``checkpoint-N`` of ``ckpt_dir`` that was saved completely (its
    ``trainer_state.json`` is written last), or None. Newer ones cut off mid-save are removed,
    each with one printed line, so that the Trainer neither resumes from nor rotates them.

    With ``settings``, the checkpoints are themselves a cached step: ``ckpt_dir/checkpoints.json``
    records the settings of the training they belong to, and checkpoints of another training (or
    without a record) are removed with one line instead of being resumed."""
    if settings is not None:
        record_file = ckpt_dir / CHECKPOINTS
        if stored(record_file, settings, on_change="rebuild", quiet=True) is None:
            if any(ckpt_dir.glob("checkpoint-*")):
                print(f"[finetune] removing the checkpoints in {ckpt_dir}: made by another training", flush=True)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            atomic_write_text(record_file, json.dumps(record(settings, {})))
    found = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                   if p.name.split("-")[-1].isdigit() else -1)
    for path in reversed(found):
        if (path / "trainer_state.json").exists():
            return path
        print(f"[finetune] removing {path}: cut off mid-save (no trainer_state.json); resuming from the one before",
              flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return None


TRAINING_FIELDS = ("max_train", "max_valid", "epochs", "batch_size", "grad_accum", "lr", "warmup_steps",
                   "cutoff_len", "seed", "train_precision", "train_compile")


def training_settings(prof: Profile, **identities) -> dict:
    """The settings a trained model depends on, as stored in its summary: the profile fields it was trained
    with (:data:`TRAINING_FIELDS`) and ``identities`` (``base_id``, ``student_id``, ``teacher_id``, ``data_id``,
    a distillation's ``kd_lambda`` and budget): the model is identified by content, not by its name or path.
    The one place a profile becomes a training's settings; applying it again to its own output changes nothing."""
    return {**{k: getattr(prof, k) for k in TRAINING_FIELDS}, **identities}


def distill(student, teacher, tokenizer, train_ds, valid_ds, out_dir: str | Path, prof, kd_lambda: float = 0.8,
            progress: bool = True, settings: dict | None = None, **extra) -> dict:
    """Distil ``student`` from ``teacher``; saves the best epoch at ``out_dir`` (resumes, skips if done:
    a cached step like :func:`finetune`, whose settings gain ``kd_lambda``).

    Unless the profile trains in fp32, ``teacher`` is cast to bf16 in place (it only runs forward);
    with ``prof.train_compile`` its forward is compiled as the student's is.
    """
    if prof.train_precision != "fp32":
        teacher = teacher.to(torch.bfloat16)
    if prof.train_compile:
        teacher = torch.compile(teacher)
    trainer_cls = partial(DistillTrainer, teacher=teacher, kd_lambda=kd_lambda)
    return finetune(student, tokenizer, train_ds, valid_ds, out_dir, prof, progress=progress,
                    trainer_cls=trainer_cls, settings={"kd_lambda": kd_lambda, **(settings or {})},
                    weight_decay=extra.pop("weight_decay", 0.01), **extra)
