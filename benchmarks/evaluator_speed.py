"""Constrained beam search: our kernel vs ``transformers.generate``, same prompts, one run.

    python benchmarks/evaluator_speed.py --model runs/ml-100k/default/models/teacher --users 8

Prints seconds per user for (a) ``generate`` + ``prefix_allowed_tokens_fn`` at batch 1 (the
plain reference), (b) ``generate`` with the prompt prefilled once and its cache shared by the
beams, (c) our kernel at ``--batch`` users per call, the speed ratios against (a), and whether
the ranked lists agree (where ``generate`` pads its list with sentinel beams, the kernel's list
must contain every real hypothesis of it; see ``prunerec_utils/beam_search.py``). Median of ``--repeats`` runs after one warm-up user.
"""

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from prunerec_utils.assets import load_model, load_tokenizer, resolve_model
from prunerec_utils.beam_search import TensorTrie
from prunerec_utils.data import get_dataset_config, prepare, read_items, read_split, sample_rows
from prunerec_utils.evaluate import TitleTrie, beam_search_generate, kernel_beams
from prunerec_utils.paths import splits_dir
from prunerec_utils.prompts import prompt_ids


def timed(fn, prompts, batch, repeats):
    runs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = []
        for i in range(0, len(prompts), batch):
            res += fn(prompts[i:i + batch])
        runs.append((time.perf_counter() - t0) / len(prompts))
        out = res
    return statistics.median(runs), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    folder = resolve_model(args.model)
    model, tok = load_model(folder).to(args.device), load_tokenizer(folder)
    cfg = get_dataset_config(args.dataset)
    splits = splits_dir(args.dataset)
    prepare(args.dataset, splits)
    trie = TitleTrie(tok, read_items(splits)["item_title"].tolist())
    tt = TensorTrie(trie, args.device)
    rows = sample_rows(read_split(splits, "test"), args.users, 7)
    prompts = [prompt_ids(tok, h, cfg) for h in rows["history_item_title"]]
    kernel_beams(model, tok, prompts[:1], trie, args.beams, 0.0, tt)  # warm-up
    plain, ref = timed(lambda p: beam_search_generate(model, tok, p, trie, args.beams, 0.0, share_prompt=False),
                       prompts, 1, args.repeats)
    shared, _ = timed(lambda p: beam_search_generate(model, tok, p, trie, args.beams, 0.0, share_prompt=True),
                      prompts, args.batch, args.repeats)
    ours, mine = timed(lambda p: kernel_beams(model, tok, p, trie, args.beams, 0.0, tt), prompts, args.batch,
                       args.repeats)
    normal = [(a, b) for a, b in zip(mine, ref) if min(s for _, s in b) > -1e6]
    same = sum([t for t, _ in a] == [t for t, _ in b] for a, b in normal)
    superset = sum({t for t, s in b if s > -1e6} <= {t for t, _ in a} for a, b in zip(mine, ref))
    print(json.dumps({
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "model": str(args.model), "users": len(prompts), "beams": args.beams, "batch": args.batch,
        "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
        "s_per_user": {"generate_batch1": round(plain, 3), "generate_shared_prompt": round(shared, 3),
                       "kernel": round(ours, 3)},
        "speedup_vs_generate_batch1": {"generate_shared_prompt": round(plain / shared, 2),
                                       "kernel": round(plain / ours, 2)},
        "lists": {"generate_finished_all_beams": len(normal), "identical_there": same,
                  "kernel_contains_generate_hypotheses": f"{superset}/{len(prompts)}"},
    }, indent=1))


if __name__ == "__main__":
    sys.exit(main())
