"""Vocabulary pruning's corpus pass: whole texts vs their distinct pieces, same texts, one run.

    python benchmarks/vocab_check.py --dataset ml-1m
    python benchmarks/vocab_check.py --dataset ml-100k --limit 50000 --json benchmarks/results/vocab_check.json

Chapter 07 keeps the tokens that a dataset's prompts (all splits) and titles use, then checks that
each of them encodes as before. Whole texts: every text encoded to collect the ids, then encoded
again by both tokenizers for the check (three encodings of the corpus). Pieces: every text split
once (normaliser + pre-tokenizer, in worker processes), the model run once per distinct piece for
the ids and for the check. Prints the seconds of each route, their ratio, and whether both keep the
same ids and pass the check.
"""

import argparse
import sys
import time

from _report import emit, machine

from prunerec_utils import cli
from prunerec_utils.assets import load_tokenizer, resolve_model
from prunerec_utils.cli_args import positive_int
from prunerec_utils.data import prepare
from prunerec_utils.method.pretokens import default_workers, distinct_pieces
from prunerec_utils.method.vocab import (changed_encodings, closure, corpus_token_ids, encoding_mismatches,
                                         restrict_tokenizer)
from prunerec_utils.pipeline.run import Run
from prunerec_utils.pipeline.stages import dataset_texts
from prunerec_utils.profiles import get_profile
from prunerec_utils.prompts import target_text


def whole_texts(tok, texts: list[str], batch: int = 2048) -> tuple[list[int], int]:
    """The ids every text uses, encoded whole, and how many texts the restricted tokenizer changes."""
    used = {i for s in range(0, len(texts), batch)
            for ids in tok(texts[s:s + batch], add_special_tokens=False)["input_ids"] for i in ids}
    keep = closure(tok, used | {tok.eos_token_id})
    new_tok, old_of_new = restrict_tokenizer(tok, keep)
    return keep, encoding_mismatches(tok, new_tok, old_of_new, texts, batch)


def pieces(tok, texts: list[str]) -> tuple[list[int], int, int]:
    """The same through the distinct pieces; also how many pieces there were."""
    found = distinct_pieces(tok, texts)
    keep = closure(tok, corpus_token_ids(tok, found) | {tok.eos_token_id})
    new_tok, old_of_new = restrict_tokenizer(tok, keep)
    return keep, len(changed_encodings(tok, new_tok, old_of_new, found)), len(found.distinct)


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--model", default="smollm2-135m", help="model folder or name whose tokenizer is pruned")
    ap.add_argument("--runs", default=None, help="runs root holding the dataset's splits (default: runs/)")
    ap.add_argument("--limit", type=positive_int, default=None, help="first N texts only")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    run = Run(args.dataset, get_profile("ci"), args.runs)
    prepare(args.dataset, run.splits)
    prompts, titles = dataset_texts(run)
    texts = (prompts + [target_text(t) for t in titles])[:args.limit]
    tok = load_tokenizer(resolve_model(args.model))
    t_pieces, (keep_pieces, changed, n_pieces) = timed(pieces, tok, texts)
    t_whole, (keep_whole, mismatches) = timed(whole_texts, tok, texts)
    emit({**machine("cpu"), "dataset": args.dataset, "texts": len(texts), "distinct_pieces": n_pieces,
          "workers": default_workers(len(texts)), "kept_tokens": len(keep_pieces),
          "seconds": {"whole_texts": round(t_whole, 1), "pieces": round(t_pieces, 1)},
          "texts_per_second": {"whole_texts": round(len(texts) / t_whole), "pieces": round(len(texts) / t_pieces)},
          "speedup_pieces_vs_whole_texts": round(t_whole / t_pieces, 1),
          "same_kept_ids": keep_pieces == keep_whole, "changed": {"whole_texts": mismatches, "pieces": changed}},
         args.json)


if __name__ == "__main__":
    sys.exit(main())
