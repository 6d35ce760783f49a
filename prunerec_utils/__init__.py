"""PruneRec companion: data, BIGRec fine-tune, evaluation and the pruning stages.

Modules mirror the paper and the notebooks: ``data`` ↔ 00_preprocess,
``finetune`` ↔ 01_bigrec_finetune, ``heads`` / ``hidden`` / ``surgery`` / ``distill`` ↔
03_stage1_heads, ``evaluate`` for every stage's metrics.
"""

import functools
import sys

__version__ = "0.1.0"


class PruneRecError(RuntimeError):
    """A user-facing error: its message is one line that says what to fix."""


def cli(main):
    """Decorator for a CLI ``main(argv) -> int``: a :class:`PruneRecError` prints one line, exits 2."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except PruneRecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run
