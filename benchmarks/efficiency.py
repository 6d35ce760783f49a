"""Speed, memory and size of the pruned recommenders vs the teacher, beside the FLOP bound.

    python benchmarks/efficiency.py --profile default                     # CPU, the run's models
    python benchmarks/efficiency.py --profile default --paper-geometry    # + Qwen2-0.5B shapes
    python benchmarks/efficiency.py --profile default --device cuda --out benchmarks/results/efficiency_h200.json

Every model of the run folder (teacher, stage1, stage2, stage3, stage3_vocab — those that
exist) is measured in its own process on the same first ``--users`` rows of the fixed test
sample (default: the profile's ``bench_rows``): prefill, cached decode step, 20-beam step, the whole constrained beam search per user,
throughput, peak memory and weights on disk (``prunerec_utils/studies/efficiency.py`` defines each).
``--paper-geometry`` adds Qwen2-0.5B's architecture with random weights, cut to the paper's
shapes (7/14 heads, hidden 448, MLP 896, 8/24 layers): structure, not accuracy, sets speed, so
no beam search there (its length would depend on the random weights).
Prints one table per family: each speed-up beside its FLOP bound.
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from prunerec_utils import cli
from prunerec_utils.cli_args import device, positive_int
from prunerec_utils.paths import atomic_write_text
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies.efficiency import benchmark_run, tables


@cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default=None, help="default: the profile's dataset")
    ap.add_argument("--runs-root", default=None)
    ap.add_argument("--device", default="cpu", type=device, help="cpu or cuda")
    ap.add_argument("--users", type=positive_int, default=None,
                    help="test rows for the search latency and throughput (default: the profile's bench_rows)")
    ap.add_argument("--repeats", type=positive_int, default=None, help="default: the profile's bench_repeats")
    ap.add_argument("--paper-geometry", action="store_true")
    ap.add_argument("--out", default=None, help="write the raw measurements as JSON here")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile, bench_rows=args.users, bench_repeats=args.repeats)
    bench = benchmark_run(Run(args.dataset or prof.dataset, prof, args.runs_root), args.device, prof.bench_rows,
                          prof.bench_repeats, paper=args.paper_geometry)
    print(f"device: {bench['device']}; {bench['users']} test rows, {bench['num_beams']} beams, "
          f"median of {bench['repeats']} after {bench['warmup']} warm-up")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3g}".format):
        for name, table in tables(bench).items():
            print(f"\n== {name} ==")
            print(table.T.to_string())
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(bench, indent=1))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
