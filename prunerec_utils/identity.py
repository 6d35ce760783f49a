"""Identity of a model folder or of a dataset's splits: a content hash, so a cached result is tied to the model it measured.

A run folder's ``models/teacher`` can be retrained in place (same path, same settings, other
weights); a result keyed by the path would then be read back as the new model's. The identity
hashes what decides a model's outputs: ``config.json``, every weights file and the tokenizer
files (a vocabulary-pruned model differs from its source by its tokenizer too). Run records
beside them (training summaries, surgery records) are left out: two folders with the same
weights are the same model however they were made.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from . import PruneRecError
from .paths import REPO_ROOT, resolve

MODEL_FILES = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer*",
               "vocab*", "merges*", "special_tokens_map.json", "added_tokens.json", "chat_template*")
_CHUNK = 1 << 22
VERSIONED = ("config.json", "generation_config.json")  # hashed without their transformers_version
_memo: dict[tuple, str] = {}


def model_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that :func:`model_identity` hashes, sorted by name."""
    return sorted({p for pattern in MODEL_FILES for p in folder.glob(pattern) if p.is_file()})


def model_identity(folder: str | Path) -> str:
    """16 hex digits of the SHA-256 over the names and contents of :func:`model_files`.

    Memoised per process on each file's size and modification time (hashing a 0.5B model's
    weights takes about a second).
    """
    folder = resolve(folder)
    files = model_files(folder)
    if not any(p.name == "config.json" for p in files):
        raise PruneRecError(f"no model at {folder}: config.json missing")
    return files_identity(files)


def data_identity(folder: str | Path) -> str:
    """16 hex digits of the SHA-256 over a splits folder's CSV files (``train`` / ``valid`` /
    ``test`` / ``items``): every step that read the data records it, so re-made splits are
    never read under results of the old ones."""
    folder = resolve(folder)
    files = sorted(p for p in folder.glob("*.csv") if p.is_file())
    if not files:
        raise PruneRecError(f"no splits at {folder}: run notebook 00 (or `python -m prunerec_utils.data`) first")
    return files_identity(files)


def files_identity(files: list[Path]) -> str:
    """16 hex digits of the SHA-256 over the names and contents of ``files`` (memoised per process
    on each file's path, size and modification time). A model's JSON configs are hashed without
    the ``transformers_version`` that saved them: the same weights saved by another release are
    the same model."""
    stamp = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _memo:
        h = hashlib.sha256()
        for p in files:
            if p.name in VERSIONED:
                data = json.loads(p.read_text())
                data.pop("transformers_version", None)
                content = json.dumps(data, sort_keys=True).encode()
                h.update(f"{p.name}\0{len(content)}\0".encode() + content)
                continue
            h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
            with p.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        _memo[stamp] = h.hexdigest()[:16]
    return _memo[stamp]


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of one file's bytes, in full (the checksum a shard or a bundle part travels with)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


BUNDLED_COMMIT = "COMMIT"  # in a tree unpacked from an offline bundle: the commit its code was taken from


def code_commit() -> str:
    """The commit of this code (short SHA, ``+local-changes`` where tracked files differ from it; executed copies
    in ``book/`` and ``tests/notebooks`` are outputs, not code). In a tree unpacked from an offline bundle (no git
    repository of its own) the commit the bundle was built from; ``unknown`` where neither says."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() == REPO_ROOT.resolve():
            dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)book",
                        ":(exclude)tests/notebooks")
            return git("rev-parse", "--short", "HEAD") + ("+local-changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    stamp = REPO_ROOT / BUNDLED_COMMIT
    return f"{stamp.read_text().strip()} (offline bundle)" if stamp.is_file() else "unknown"
