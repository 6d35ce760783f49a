"""The run's small results, in a folder a reader can check against the book (committed under
``results/<profile>/<dataset>/``).

* ``evaluations/<name>.json``: every evaluation of the run folder (and of its ablation and
  baseline child runs, as ``<child>/<name>.json``) with its settings, metrics, 95% intervals and
  the per-row ranks with their user ids (``user_id``, ``target``, ``rank``; 0-based, -1 = not in the 20 beams), so
  that any metric can be recomputed from the ranks;
* ``surgery/<model>.json``: the record of every cut (what was removed, scores, parameter counts);
* ``training/<model>.json``: the record of every fine-tune and distillation (settings, loss curve,
  wall time);
* ``results/<name>.json``: the run's other result files (observations, ablation groups, head
  scores, learning curve points, efficiency), as they are.

``python -m prunerec_utils.studies.export --profile default --dataset ml-100k`` writes them; the
runner does after every chapter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from .. import cli
from ..paths import REPO_ROOT, atomic_write_text
from ..pipeline.run import SHARD_MODELS, Run
from ..profiles import get_profile

RANK_COLUMNS = ("user_id", "target", "rank")


def _evaluations(folder: Path) -> dict[str, Path]:
    """``{name: results/<name>.json}`` of the evaluations stored in a run folder (those with ranks)."""
    return {p.stem: p for p in sorted((folder / "results").glob("*.json")) if (folder / "ranks" / f"{p.stem}.csv").exists()}


def _child_runs(folder: Path) -> dict[str, Path]:
    """``{variant: run folder}`` of the ablation / baseline child runs inside a run folder."""
    found = {}
    for child in sorted((folder / "ablations").glob("*")):
        runs = [p.parent for p in child.glob("*/*/results")]  # <child>/<dataset>/<profile>/results
        if runs:
            found[child.name] = runs[0]
    return found


def export_evaluation(folder: Path, name: str, out: Path) -> None:
    rec = json.loads((folder / "results" / f"{name}.json").read_text())
    ranks = pd.read_csv(folder / "ranks" / f"{name}.csv", dtype={"user_id": str}, keep_default_na=False)
    rec["ranks"] = ranks[list(RANK_COLUMNS)].to_dict(orient="list")
    atomic_write_text(out, json.dumps(rec))


def export_run(run: Run, out: str | Path) -> dict[str, int]:
    """Write the run's results into ``out`` (see the module docstring); returns the counts written."""
    out = Path(out)
    counts = {"evaluations": 0, "surgery": 0, "training": 0, "results": 0}
    sources = {"": run.folder, **{f"{k}/": v for k, v in _child_runs(run.folder).items()}}
    for prefix, folder in sources.items():
        evals = _evaluations(folder)
        for name in evals:
            target = out / "evaluations" / f"{prefix}{name}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            export_evaluation(folder, name, target)
            counts["evaluations"] += 1
        for kind, record in (("surgery", "surgery.json"), ("training", "training_summary.json")):
            # models/ of a run folder, and shard_models/: the records of models trained on a shard (prunerec_utils.shards)
            for path in sorted([*(folder / "models").glob(f"*/{record}"), *(folder / SHARD_MODELS).glob(f"*/{record}")]):
                if path.parent.is_symlink():
                    continue  # a linked model belongs to the run it links to
                target = out / kind / f"{prefix}{path.parent.name}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                counts[kind] += 1
        for path in sorted((folder / "results").glob("*.json")):
            if path.stem in evals or path.is_symlink():
                continue
            target = out / "results" / f"{prefix}{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            counts["results"] += 1
    return counts


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.export", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--out", default=None, help="default results/PROFILE/DATASET in the repository")
    args = ap.parse_args(argv)
    run = Run(args.dataset, get_profile(args.profile))
    out = Path(args.out) if args.out else REPO_ROOT / "results" / args.profile / args.dataset
    counts = export_run(run, out)
    print(f"wrote {', '.join(f'{n} {k}' for k, n in counts.items())} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
