"""PruneRec companion: data, BIGRec fine-tune, evaluation and the pruning stages.

Three layers, each a subpackage:

* :mod:`prunerec_utils.method` — the method, tensors in and tensors out (heads, hidden
  dimensions, MLP neurons, layers, surgery, distillation loss, vocabulary, constrained beam
  search, metrics): what a user imports to prune a model of their own;
* :mod:`prunerec_utils.pipeline` — one run folder: :class:`~prunerec_utils.pipeline.run.Run`,
  the cached fine-tune and distillation, the stages, evaluation, ablation variants, banners;
* :mod:`prunerec_utils.studies` — the paper's sections: observations, ID and pruned-LLM
  baselines, efficiency, learning curve, scorecard, plots.

Below them: ``steps`` (the one cached-step primitive), ``profiles`` (one dataclass of sizes),
``recipe`` (which dataset is which, the title rule), ``loaders`` and ``own_log`` (raw files to a log),
``data`` (D3 recipe, CLI), ``prompts``, ``assets`` (offline models and data), ``identity`` (content
hashes), ``paths``. Above them: ``runner`` (the notebooks over a run; writes the book's findings),
``shards`` (chapters run apart, packed and merged), ``bundle`` (what an offline machine lacks, in checked
parts) and ``prune`` (the CLI that prunes a user's own model).
"""

import functools
import sys

__version__ = "0.1.0"


class PruneRecError(RuntimeError):
    """A user-facing error: its message is one line that says what to fix."""


INTERRUPTED = "interrupted; the same command continues: every finished step is kept"


def cli(main):
    """Decorator for a CLI ``main(argv) -> int``: a :class:`PruneRecError` prints one line, exits 2;
    Ctrl-C prints one line saying how to continue, exits 130 (the shell's code for an interrupt)."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except PruneRecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(INTERRUPTED, file=sys.stderr)
            return 130

    return run
