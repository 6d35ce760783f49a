"""Head-importance kernel vs the naive one-forward-per-head loop: same inputs, one run.

    python benchmarks/head_importance_speed.py --model runs/ml-100k/default/models/teacher --layers 4
    python benchmarks/head_importance_speed.py --random-init smollm2-135m --device cuda

Both engines run the same greedy Stage I selection (eq. 3-6) on the same B training samples;
prints seconds for each, the speed ratio, and the largest score difference. ``--layers N``
scores only N layers spread evenly over the depth (the naive loop is slow on a CPU; the kernel's
cost per layer falls with depth, so an even spread gives the whole model's ratio).
``--random-init``: the named model's architecture with random weights (speed needs no trained
weights). Median of ``--repeats`` runs after a warm-up.
"""

import argparse
import json
import sys

import torch
from _report import machine

from prunerec_utils import cli
from prunerec_utils.assets import load_model, load_tokenizer, resolve_model
from prunerec_utils.cli_args import device, positive_int
from prunerec_utils.data import get_dataset_config, prepare, read_split, sample_rows
from prunerec_utils.method.heads import head_importance, scoring_batch
from prunerec_utils.pipeline.run import splits_dir
from prunerec_utils.studies.efficiency import median_time


def build(args):
    folder = resolve_model(args.random_init or args.model)
    tok = load_tokenizer(folder)
    if args.random_init:
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).eval()
    else:
        model = load_model(folder)
    return model.to(args.device), tok


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-init", default=None, help="model name/folder whose architecture to use, random weights")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--samples", type=positive_int, default=10, help="B")
    ap.add_argument("--kept", type=positive_int, default=None, help="heads kept per layer (default: about half)")
    ap.add_argument("--layers", type=positive_int, default=None, help="score only N layers spread over the depth")
    ap.add_argument("--repeats", type=positive_int, default=1)
    ap.add_argument("--device", default="cpu", type=device, help="cpu or cuda")
    args = ap.parse_args(argv)
    model, tok = build(args)
    H = model.config.num_attention_heads
    L = model.config.num_hidden_layers
    if (args.kept or 0) > H or (args.layers or 0) > L:
        ap.error(f"--kept must be at most the {H} heads and --layers at most the {L} layers of the model")
    cfg = get_dataset_config(args.dataset)
    splits = splits_dir(args.dataset)
    prepare(args.dataset, splits)
    rows = sample_rows(read_split(splits, "train"), args.samples, 43)
    batch = scoring_batch(tok, rows["history_item_title"], rows["item_title"], cfg)
    prune = H - (args.kept or (H + 1) // 2)
    only = None if not args.layers else {round(i * (L - 1) / max(args.layers - 1, 1)) for i in range(args.layers)}
    run = lambda engine: head_importance(model, batch, prune, engine=engine, only_layers_scored=only)  # noqa: E731
    run("kernel")  # warm-up
    out = {}  # each engine's last result
    times = {engine: median_time(lambda e=engine: out.__setitem__(e, run(e)), args.repeats, warmup=0,
                                 device=args.device) for engine in ("naive", "kernel")}
    diff = float((out["kernel"].raw - out["naive"].raw).abs().max())
    print(json.dumps({
        **machine(args.device),
        "model": str(args.random_init or args.model) + (" (random init)" if args.random_init else ""),
        "layers_scored": sorted(only) if only else "all", "layers": L,
        "heads": H, "samples": args.samples, "tokens_per_sample": batch.input_ids.shape[1],
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "speedup_kernel_vs_naive": round(times["naive"] / times["kernel"], 2),
        "max_abs_score_difference": diff, "max_score": float(out["naive"].raw.abs().max()),
        "same_heads_pruned": out["kernel"].pruned == out["naive"].pruned,
    }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
