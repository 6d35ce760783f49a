"""Shared fixtures. Runs and model caches of the tests live in a temp dir, never in runs/."""

import os
import tempfile
from pathlib import Path

import pytest

# Set before any kernel (nbval) or subprocess starts, so they inherit it.
os.environ.setdefault("PRUNEREC_RUNS", tempfile.mkdtemp(prefix="prunerec-test-runs-"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A notebook the runner could not finish is kept as <name>.failed.ipynb (its traceback): never a
# copy for nbval to compare against.
collect_ignore_glob = ["notebooks/*.failed.ipynb"]

# nbval compares each display's MIME bundle; a DataFrame's text/plain repr wraps at 80 columns
# by the width of its numbers, which tests/nbval_sanitize.cfg masks. Compare tables through
# their HTML (same rows, columns and labels) and skip the plain-text repr.
NBVAL_SKIPPED_MIME = ("text/plain",)


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        nb = getattr(item, "parent", None)
        if hasattr(nb, "skip_compare") and not set(NBVAL_SKIPPED_MIME) <= set(nb.skip_compare):
            nb.skip_compare = tuple(nb.skip_compare) + NBVAL_SKIPPED_MIME


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from prunerec_utils.assets import tiny_qwen2_dir

    return tiny_qwen2_dir()


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    from prunerec_utils.assets import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from prunerec_utils.assets import load_model

    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def ml100k_splits(tmp_path_factory) -> Path:
    from prunerec_utils.data import prepare

    out = tmp_path_factory.mktemp("splits") / "ml-100k"
    prepare("ml-100k", out)
    return out


@pytest.fixture
def kernel_calls(monkeypatch):
    """``patch(stop_at=None)``: count the users of every constrained-beam-search call (the list it
    returns) and raise KeyboardInterrupt at call ``stop_at`` (1-based), as a user pressing Ctrl-C would."""
    from prunerec_utils.pipeline import evaluate

    real = evaluate.kernel_beams

    def patch(stop_at: int | None = None) -> list[int]:
        calls = []

        def counted(*args, **kwargs):
            calls.append(len(args[2]))
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(evaluate, "kernel_beams", counted)
        return calls

    return patch


@pytest.fixture
def bf16_units(monkeypatch):
    """Treat this CPU as one with bf16 matmul units (AMX / AVX512-BF16), so that a test of the bf16
    path runs it on any CPU instead of being turned to fp32 (:func:`prunerec_utils.hardware.for_this_machine`)."""
    from prunerec_utils import hardware

    monkeypatch.setattr(hardware, "bf16_is_fast", lambda device="cpu": True)
