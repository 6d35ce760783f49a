"""The one primitive for a cached step: a record of everything an output depends on, kept beside it.

Every stored output of a run — the splits, a fine-tuned or pruned model folder, importance
scores, an evaluation (finished or interrupted), a baseline — is a *step*. Its record file holds
``{"settings": {...}, ...payload}``, where ``settings`` is everything the output depends on: the
settings it was made with **and the identity of every input it read** (the content hash of a
model folder, :func:`prunerec_utils.identity.model_identity`, or of the data,
:func:`prunerec_utils.identity.data_identity`). A re-run asks for the step with the settings it
would make it with now:

* no record: the step is built (inside a lock on the run folder, written atomically, so a crash
  leaves nothing that looks complete);
* a record with equal settings: the stored output is reused (resume);
* a record with other settings: refused with one line naming the file, the settings that differ
  and what to delete (``on_change="refuse"``, for outputs other steps were built from), or built
  again after one printed line (``on_change="rebuild"``, for leaves such as evaluations).

Nothing else in the package reads or writes a record's ``settings``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from . import PruneRecError
from .paths import atomic_dir, atomic_write_text

SETTINGS = "settings"
ON_CHANGE = ("refuse", "rebuild")
LOCK_FILE = ".lock"


def canonical(settings: dict) -> dict:
    """``settings`` as they read back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(settings))


def read_json(path: str | Path) -> dict:
    """A JSON file, or a one-line error naming it when it is unreadable."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PruneRecError(f"{path} is corrupt ({type(exc).__name__}: {exc}); delete it to make it again") from None
    if not isinstance(doc, dict):
        raise PruneRecError(f"{path} is corrupt (a JSON {type(doc).__name__}, not an object); delete it")
    return doc


def differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """``"key <stored> (asked <wanted>)"`` for every setting that differs, keys of either side;
    nested settings are named by their path (``recipe.history_len``)."""
    out = []
    for k in list(wanted) + [k for k in stored if k not in wanted]:
        a, b = stored.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} (asked {b!r})")
    return out


def record(settings: dict, payload: dict) -> dict:
    """The record a step stores: its settings first, then what it made."""
    if SETTINGS in payload:
        raise ValueError(f"a step's payload may not hold its own {SETTINGS!r}")
    return {SETTINGS: canonical(settings), **payload}


def stored(path: str | Path, settings: dict, on_change: str = "refuse", remove: str | Path | None = None,
           quiet: bool = False, ignore: tuple = (),
           remedy: str = "(and what was made from it) or use another runs_root") -> dict | None:
    """The record at ``path`` if it was made with ``settings``; None if there is none.

    A record made with other settings (or by a version that kept no settings) is refused with a
    :class:`PruneRecError` that says to delete ``remove`` (default: the record's own file), or, with
    ``on_change="rebuild"``, answered with None after one printed line (none if ``quiet``).
    ``ignore``: settings not compared (a step reused in part, e.g. the first steps of a search);
    ``remedy``: what the refusal suggests besides deleting.
    """
    if on_change not in ON_CHANGE:
        raise ValueError(f"on_change must be one of {ON_CHANGE}")
    path = Path(path)
    if not path.exists():
        return None
    rec = read_json(path)
    if SETTINGS in rec:
        diff = differences({k: v for k, v in rec[SETTINGS].items() if k not in ignore},
                           {k: v for k, v in canonical(settings).items() if k not in ignore})
        if not diff:
            return rec
        why = f"was made with other settings: {', '.join(diff)}"
    else:
        why = "was made by an older version that kept no settings record"
    if on_change == "rebuild":
        if not quiet:
            print(f"[cache] {path} {why}: making it again", flush=True)
        return None
    raise PruneRecError(f"{path} {why}; delete {remove or path} {remedy}")


def json_step(path: str | Path, settings: dict, build: Callable[[], dict], on_change: str = "refuse",
              lock: str | Path | None = None) -> dict:
    """A step whose output is its record (``results/<name>.json``): reused, refused or built.

    ``build()`` returns the payload; the record is written atomically. ``lock``: the run folder
    held while building (default: the record's folder).
    """
    path = Path(path)
    rec = stored(path, settings, on_change)
    if rec is not None:
        return rec
    with run_lock(lock or path.parent):
        rec = stored(path, settings, on_change, quiet=True)  # made by another process meanwhile?
        if rec is not None:
            return rec
        rec = record(settings, build())
        atomic_write_text(path, json.dumps(rec))
    return rec


def folder_step(folder: str | Path, record_name: str, settings: dict, build: Callable[[Path], dict],
                on_change: str = "refuse", lock: str | Path | None = None) -> dict:
    """A step whose output is a folder (a model) holding its record as ``record_name``.

    ``build(tmp)`` writes the folder's files into ``tmp`` and returns the payload; ``tmp`` becomes
    ``folder`` only once the record is in it. ``lock``: the run folder held while building
    (default: the folder's parent).
    """
    folder = Path(folder)
    rec = stored(folder / record_name, settings, on_change, remove=folder)
    if rec is not None:
        return rec
    with run_lock(lock or folder.parent):
        rec = stored(folder / record_name, settings, on_change, remove=folder, quiet=True)  # made meanwhile?
        if rec is not None:
            return rec
        with atomic_dir(folder, record_name) as tmp:
            rec = record(settings, build(tmp))
            (tmp / record_name).write_text(json.dumps(rec, indent=1))
    return rec


# ---- one writer per run folder ------------------------------------------------------------------

_held: dict[str, tuple[int, int]] = {}  # lock file → (file descriptor, depth) held by this process


@contextmanager
def run_lock(folder: str | Path):
    """Hold ``folder/.lock`` (an advisory ``flock``) while a step is built; re-entrant in a process.

    A second process building in the same folder gets one line naming the holder's PID instead of
    writing into the same checkpoint folders.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str((folder / LOCK_FILE).resolve())
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise PruneRecError(f"run folder {folder} in use by PID {holder} (lock {key}); wait for it to finish "
                                f"or use another runs_root") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        if _held[key][1] <= 1:
            del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

