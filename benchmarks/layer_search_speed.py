"""Stage III layer search: the cached engine vs one full forward per candidate, same inputs, one run.

    python benchmarks/layer_search_speed.py --model runs/ml-100k/default/models/stage2 --steps 2
    python benchmarks/layer_search_speed.py --random-init smollm2-135m --device cuda --steps 4

Both engines run the first ``--steps`` greedy ΔPPL steps (eq. 12) on the same ``--samples``
calibration samples (prompt + answer); prints seconds for each, the speed ratio, the largest
ΔPPL difference and whether the same layers were chosen. Median of ``--repeats`` runs after a
warm-up step.
"""

import argparse
import json
import sys

from _report import machine
from head_importance_speed import build

from prunerec_utils import cli
from prunerec_utils.cli_args import device, positive_int
from prunerec_utils.data import get_dataset_config, prepare, read_split, sample_rows
from prunerec_utils.method.layers import greedy_layer_removal
from prunerec_utils.pipeline.run import splits_dir
from prunerec_utils.pipeline.stages import _collated
from prunerec_utils.studies.efficiency import median_time


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-init", default=None, help="model name/folder whose architecture to use, random weights")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--samples", type=positive_int, default=16, help="calibration samples (the profiles use 16)")
    ap.add_argument("--steps", type=positive_int, default=2, help="greedy removal steps to time")
    ap.add_argument("--repeats", type=positive_int, default=1)
    ap.add_argument("--device", default="cpu", type=device, help="cpu or cuda")
    args = ap.parse_args(argv)
    model, tok = build(args)
    splits = splits_dir(args.dataset)
    prepare(args.dataset, splits)
    rows = sample_rows(read_split(splits, "train"), args.samples, 45)
    batch = _collated(tok, rows, get_dataset_config(args.dataset), 512)
    run = lambda engine: greedy_layer_removal(model, batch, args.steps, engine=engine)  # noqa: E731
    greedy_layer_removal(model, batch, 1)  # warm-up
    out = {}  # each engine's last result
    times = {engine: median_time(lambda e=engine: out.__setitem__(e, run(e)), args.repeats, warmup=0,
                                 device=args.device) for engine in ("naive", "cached")}
    diff = max(abs(a["delta"][k] - b["delta"][k]) for a, b in zip(out["cached"]["steps"], out["naive"]["steps"])
               for k in a["delta"])
    print(json.dumps({
        **machine(args.device),
        "model": str(args.random_init or args.model) + (" (random init)" if args.random_init else ""),
        "layers": model.config.num_hidden_layers, "steps": args.steps, "samples": args.samples,
        "tokens_per_sample": batch["input_ids"].shape[1], "seconds": {k: round(v, 2) for k, v in times.items()},
        "speedup_cached_vs_naive": round(times["naive"] / times["cached"], 2),
        "max_abs_delta_ppl_difference": diff, "base_ppl": out["naive"]["base_ppl"],
        "same_layers_removed": out["cached"]["removed"] == out["naive"]["removed"],
    }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
