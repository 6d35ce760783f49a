"""What every benchmark script prints: the machine it ran on, then its JSON (also to ``--json``)."""

import json
from pathlib import Path

import torch

from prunerec_utils.hardware import cpu_isa, cpu_model
from prunerec_utils.paths import atomic_write_text


def machine(device: str) -> dict:
    """Device, CPU (model and widest matmul instruction set: the CPU differs from machine to machine),
    threads and torch version, the header of every result file."""
    return {"device": device if device == "cpu" else torch.cuda.get_device_name(),
            "cpu": cpu_model(), "cpu_isa": cpu_isa(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def emit(out: dict, path: str | None) -> None:
    """Print ``out`` as indented JSON and write the same text to ``path`` when given."""
    text = json.dumps(out, indent=1)
    print(text)
    if path:
        atomic_write_text(Path(path), text + "\n")
