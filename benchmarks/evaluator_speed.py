"""Constrained beam search: our kernel vs the layout it replaced vs ``transformers.generate``, one run.

    python benchmarks/evaluator_speed.py --model runs/ml-100k/default/models/teacher --users 16 \
        [--json benchmarks/results/evaluator_speed_cpu.json] [--device cuda] [--no-generate]

Prints seconds per user, on the same prompts, for

* ``generate`` + ``prefix_allowed_tokens_fn`` at batch 1 (the plain reference) and with the prompt
  prefilled once and its cache shared by the beams (fp32; skipped with ``--no-generate``);
* the reference kernel layout (``prompt_cache="copied"``: the prompt cache copied to every beam,
  reordered and appended to at every step; the evaluator until this benchmark's rows were added)
  at ``--reference-batch`` users per call, in fp32 and bf16;
* the kernel (prompt keys/values shared by a user's beams) at ``--batch`` users per call, fp32 and bf16;

then each row's speed-up over the reference kernel in fp32, and each row's ranked lists against
the reference kernel's fp32 lists: identical lists, same top-1, mean top-20 overlap. (Where
``generate`` pads its list with sentinel beams, its list is shorter; see
``prunerec_utils/method/beam_search.py``.) Median of ``--repeats`` runs after one warm-up call.
"""

import argparse
import statistics
import sys
import time

import torch
from _report import emit, machine

from prunerec_utils import cli
from prunerec_utils.assets import load_model, load_tokenizer, resolve_model
from prunerec_utils.cli_args import device, positive_int
from prunerec_utils.data import get_dataset_config, prepare, read_items, read_split, sample_rows
from prunerec_utils.method.beam_search import TensorTrie
from prunerec_utils.pipeline.evaluate import DTYPES, TitleTrie, beam_search_generate, kernel_beams, lists_agreement
from prunerec_utils.pipeline.run import splits_dir
from prunerec_utils.prompts import prompt_ids


def timed(fn, prompts, batch, repeats, device):
    fn(prompts[:batch])  # warm-up
    runs, out = [], None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = []
        for i in range(0, len(prompts), batch):
            res += fn(prompts[i:i + batch])
        if device == "cuda":
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - t0) / len(prompts))
        out = [[t for t, _ in user] for user in res]
    return statistics.median(runs), out


def agreement(lists, ref) -> dict:
    """Identical lists, same top-1 and mean top-20 overlap of ``lists`` against ``ref``."""
    same = lists_agreement(lists, ref, 20)
    return {"identical": same["identical"], "same_top1": same["same_top1"], "top20_overlap": same["mean_overlap"]}


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=positive_int, default=16)
    ap.add_argument("--batch", type=positive_int, default=8, help="users per call of the kernel")
    ap.add_argument("--reference-batch", type=positive_int, default=4, help="users per call of the reference layout")
    ap.add_argument("--beams", type=positive_int, default=20)
    ap.add_argument("--repeats", type=positive_int, default=1)
    ap.add_argument("--device", default="cpu", type=device, help="cpu or cuda")
    ap.add_argument("--no-generate", action="store_true", help="skip the two generate rows (slow on a CPU)")
    ap.add_argument("--json", default=None, help="also write the result to this file")
    args = ap.parse_args(argv)
    folder = resolve_model(args.model)
    tok = load_tokenizer(folder)
    cfg = get_dataset_config(args.dataset)
    splits = splits_dir(args.dataset)
    prepare(args.dataset, splits)
    trie = TitleTrie(tok, read_items(splits)["item_title"].tolist())
    tt = TensorTrie(trie, args.device)
    rows = sample_rows(read_split(splits, "test"), args.users, 7)
    prompts = [prompt_ids(tok, h, cfg) for h in rows["history_item_title"]]
    seconds, lists = {}, {}
    for dtype in DTYPES:
        model = load_model(folder, dtype=DTYPES[dtype]).to(args.device)
        for layout, batch in (("copied", args.reference_batch), ("shared", args.batch)):
            name = f"kernel_{dtype}" if layout == "shared" else f"reference_kernel_{dtype}"
            seconds[name], lists[name] = timed(
                lambda p: kernel_beams(model, tok, p, trie, args.beams, 0.0, tt, prompt_cache=layout),
                prompts, batch, args.repeats, args.device)
            print(f"{name}: {seconds[name]:.3f} s/user", file=sys.stderr, flush=True)
        if dtype == "fp32" and not args.no_generate:
            for name, share, batch in (("generate_batch1", False, 1), ("generate_shared_prompt", True, args.batch)):
                seconds[name], lists[name] = timed(
                    lambda p: beam_search_generate(model, tok, p, trie, args.beams, 0.0, share_prompt=share),
                    prompts, batch, args.repeats, args.device)
                print(f"{name}: {seconds[name]:.3f} s/user", file=sys.stderr, flush=True)
    ref = seconds["reference_kernel_fp32"]
    out = {
        **machine(args.device), "model": str(args.model), "users": len(prompts), "beams": args.beams,
        "batch": args.batch, "reference_batch": args.reference_batch,
        "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
        "s_per_user": {k: round(v, 3) for k, v in seconds.items()},
        "speedup_vs_reference_kernel_fp32": {k: round(ref / v, 2) for k, v in seconds.items()},
        "lists_vs_reference_kernel_fp32": {k: {m: round(x, 3) for m, x in agreement(v, lists["reference_kernel_fp32"]).items()}
                                           for k, v in lists.items() if k != "reference_kernel_fp32"},
    }
    emit(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
