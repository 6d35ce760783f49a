"""argparse types shared by the CLIs and the benchmark scripts: a bad value fails in one line
(``argument --limit: 0 is not positive ...``) before any work starts."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """``type=`` for counts and sizes: a whole number of at least 1."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive (give 1 or more)")
    return value


def device(text: str) -> str:
    """``type=`` for ``--device``: ``cpu``, or ``cuda`` when a CUDA device is present."""
    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu or cuda")
    if text == "cuda":
        # lazy: parsing a flag does not load torch unless it asks about CUDA
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError("cuda asked for, but this machine has no CUDA device: use cpu")
    return text
