"""A run: one dataset × one profile in one folder, ``<runs root>/<dataset>/<profile>/``.

:class:`Run` owns the folder layout (``models/<name>``, ``results/<name>.json``,
``ranks/<name>.csv``, ``figures/``), the dataset's splits and their identity, the named seeded
samples every step draws, and the cached steps (:mod:`prunerec_utils.steps`) stored in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from .. import PruneRecError, steps
from ..data import get_dataset_config, prepare, read_split, sample_rows
from ..hardware import for_this_machine
from ..identity import data_identity
from ..paths import resolve, runs_root
from .finetune import SUMMARY

# Seed offsets of the named samples (added to the profile's seed), so that no two purposes share a
# sample by accident. "budget": the profile's training / validation budget and its fixed test rows.
SAMPLES = {"budget": 0, "importance": 1, "mlp": 2, "calibration": 3, "observe": 4, "random_heads": 5}

# The stages of the method: the model each one starts from, its output, the notebook that makes it.
STAGES = {
    "teacher": {"source": None, "notebook": "01"},
    "stage1": {"source": "teacher", "notebook": "03"},
    "stage2": {"source": "stage1", "notebook": "04"},
    "stage3": {"source": "stage2", "notebook": "05"},
}


SHARD_MODELS = "shard_models"  # a merged run's records of models whose weights stayed on a shard
IDENTITIES = "identities.json"  # in SHARD_MODELS: the identity of every model and of the splits merged so far


def model_record(folder: Path, name: str, record: str) -> Path:
    """Where the run folder ``folder`` keeps ``record`` (e.g. ``surgery.json``) of model ``name``: its own
    ``models/<name>/``, or, for a model made on a shard and merged here without its weights,
    ``shard_models/<name>/``; the own path when neither has it."""
    own = folder / "models" / name / record
    merged = folder / SHARD_MODELS / name / record
    return merged if not own.exists() and merged.exists() else own


def splits_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The D3 splits of ``dataset`` under a runs root: shared by every profile (they differ only
    in how much of them they use)."""
    return (resolve(root) if root else runs_root()) / dataset / "splits"


@dataclass(frozen=True)
class Run:
    dataset: str
    prof: object  # a :class:`prunerec_utils.profiles.Profile`
    root: str | os.PathLike | None = None  # runs root; None: ``runs/`` or ``$PRUNEREC_RUNS``
    config: object = None  # the dataset's recipe (a DatasetConfig); None: the named dataset's

    def __post_init__(self):  # the profile as this machine runs it (bf16 only where it is fast)
        object.__setattr__(self, "prof", for_this_machine(self.prof))

    @cached_property
    def cfg(self):
        """The dataset's :class:`~prunerec_utils.data.DatasetConfig` (prompt words, recipe)."""
        return self.config if self.config is not None else get_dataset_config(self.dataset)

    @cached_property
    def base(self) -> Path:
        return resolve(self.root) if self.root else runs_root()

    @property
    def folder(self) -> Path:
        return self.base / self.dataset / self.prof.name

    @property
    def splits(self) -> Path:
        """The D3 splits of the dataset, shared by every profile of the runs root."""
        return splits_dir(self.dataset, self.base)

    def model(self, name: str) -> Path:
        return self.folder / "models" / name

    def model_record(self, name: str, record: str) -> Path:
        """:func:`model_record` of this run's folder: a model's record, made here or merged from a shard."""
        return model_record(self.folder, name, record)

    def merged_identities(self) -> dict[str, str]:
        """``{"models/<name>": identity, "splits": identity}`` of what the shards merged (or seeded) into this run
        folder made; empty where none was merged."""
        path = self.folder / SHARD_MODELS / IDENTITIES
        return steps.read_json(path) if path.exists() else {}

    def merged_identity(self, name: str) -> str | None:
        """The content identity that the merged shards hold for model ``name``; None where no shard made it."""
        return self.merged_identities().get(f"models/{name}")

    def result_file(self, name: str) -> Path:
        return self.folder / "results" / f"{name}.json"

    def figure(self, name: str) -> Path:
        return self.folder / "figures" / name

    def stage(self, name: str) -> Path:
        """A finished (trained or distilled) stage folder, or one line naming the notebook that makes it."""
        folder = self.model(name)
        if not (folder / SUMMARY).exists():
            notebook = STAGES.get(name, {}).get("notebook")
            hint = f"run notebook {notebook} first" if notebook else "make it first"
            raise PruneRecError(f"no {name} model at {folder}: {hint}")
        return folder

    # ---- inputs and their identities ------------------------------------------------------------

    def ensure_splits(self) -> None:
        """Make the splits from the raw data where the runs root has none (a fresh run folder: a shard)."""
        if not (self.splits / "stats.json").exists():
            prepare(self.cfg, self.splits)

    def data_id(self) -> str:
        """Content hash of the splits (:func:`prunerec_utils.identity.data_identity`)."""
        return data_identity(self.splits)

    def split(self, name: str):
        return read_split(self.splits, name)

    def rows(self, purpose: str, n: int | None, split: str = "train"):
        """The seeded sample of ``n`` rows of ``split`` drawn for ``purpose`` (see :data:`SAMPLES`)."""
        if purpose not in SAMPLES:
            raise PruneRecError(f"unknown sample {purpose!r}; one of {', '.join(SAMPLES)}")
        return sample_rows(self.split(split), n, self.prof.seed + SAMPLES[purpose])

    # ---- cached steps ---------------------------------------------------------------------------

    def step(self, name: str, settings: dict, build: Callable[[], dict], on_change: str = "refuse") -> dict:
        """``results/<name>.json`` as a cached step (:func:`prunerec_utils.steps.json_step`)."""
        return steps.json_step(self.result_file(name), settings, build, on_change, lock=self.folder)

    def model_step(self, name: str, record_name: str, settings: dict, build: Callable[[Path], dict],
                   on_change: str = "refuse") -> tuple[Path, dict]:
        """``models/<name>/`` as a cached step (:func:`prunerec_utils.steps.folder_step`)."""
        out = self.model(name)
        return out, steps.folder_step(out, record_name, settings, build, on_change, lock=self.folder)
