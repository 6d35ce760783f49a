"""PruneRec companion: data, BIGRec fine-tune, evaluation and (later) pruning stages.

Modules mirror the paper and the notebooks: ``data`` ↔ 00_preprocess,
``finetune`` ↔ 01_bigrec_finetune, ``evaluate`` for every stage's metrics.
"""

__version__ = "0.1.0"


class PruneRecError(RuntimeError):
    """A user-facing error: its message is one line that says what to fix."""
