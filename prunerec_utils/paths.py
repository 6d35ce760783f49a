"""Where things live (the repository root, the runs root, the model cache) and atomic writes.

The layout inside a run folder belongs to :class:`prunerec_utils.pipeline.run.Run`."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from . import PruneRecError

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve(path: str | os.PathLike) -> Path:
    """A relative path is taken from the repository root (notebooks run from anywhere)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def cli_path(text: str | os.PathLike) -> Path:
    """A path flag as the user typed it: a relative one is taken from the current folder, as every shell
    tool takes it (not from the repository, which :func:`resolve` uses for the project's own paths)."""
    return Path(text).expanduser().absolute()


def output_dir(path: str | os.PathLike, marker: str) -> Path:
    """``path`` checked as a folder a command may write into, before anything is written: new, empty, or one
    this project made (it holds ``marker``, the record a finished or started output leaves). A file, a path
    under a file, a folder that cannot be written, or a folder holding anything else is refused in one line
    that names it; nothing is changed."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PruneRecError(f"{path}: is a file, not a folder; choose a folder for the output")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PruneRecError(f"{path}: cannot be made, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PruneRecError(f"{path}: {existing} is not writable")
    if path.is_dir() and not (path / marker).exists():
        names = sorted(p.name for p in path.iterdir())
        if names:
            shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            raise PruneRecError(f"{path}: holds {len(names)} entr{'y' if len(names) == 1 else 'ies'} this command "
                                f"did not make ({shown}); choose a new or empty folder (nothing was changed)")
    return path


def runs_root() -> Path:
    """Root of all run folders; ``PRUNEREC_RUNS`` overrides (tests use a temp dir)."""
    return resolve(os.environ.get("PRUNEREC_RUNS", "runs"))


def models_root() -> Path:
    """Cache of converted / generated model folders; ``PRUNEREC_MODELS`` overrides."""
    return resolve(os.environ.get("PRUNEREC_MODELS", "data/models"))


@contextmanager
def atomic_dir(final: Path, marker: str):
    """Yield a temporary sibling folder; rename it to ``final`` only if the block succeeds.

    A crash leaves no folder at ``final`` that looks complete. An existing ``final`` is replaced only if it is
    empty or holds ``marker`` (the record this project's output leaves, :func:`output_dir`): never a folder of
    someone else's files.
    """
    final = output_dir(final, marker)
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
