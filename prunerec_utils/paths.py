"""Where things live (the repository root, the runs root, the model cache) and atomic writes.

The layout inside a run folder belongs to :class:`prunerec_utils.pipeline.run.Run`."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str | os.PathLike) -> Path:
    """A relative path is taken from the repository root (notebooks run from anywhere)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def runs_root() -> Path:
    """Root of all run folders; ``PRUNEREC_RUNS`` overrides (tests use a temp dir)."""
    return resolve(os.environ.get("PRUNEREC_RUNS", "runs"))


def models_root() -> Path:
    """Cache of converted / generated model folders; ``PRUNEREC_MODELS`` overrides."""
    return resolve(os.environ.get("PRUNEREC_MODELS", "data/models"))


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary sibling folder; rename it to ``final`` only if the block succeeds.

    A crash leaves no folder at ``final`` that looks complete.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def unique_temp(path: Path) -> Path:
    """A new, empty, hidden temporary file beside ``path``: two writers never share a name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a unique temporary sibling, then rename it onto ``path``."""
    tmp = unique_temp(path)
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
