"""Run alone or under ``torchrun``: fine-tune the tiny model on a synthetic log through
:func:`prunerec_utils.pipeline.finetune.finetune` and write its training summary (rank 0) as JSON.

    python tests/scaleout_job.py OUT --grad-accum 2
    torchrun --standalone --nproc_per_node 2 tests/scaleout_job.py OUT --grad-accum 1
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunerec_utils.assets import load_model, load_tokenizer, tiny_qwen2_dir  # noqa: E402
from prunerec_utils.data import build_splits  # noqa: E402
from prunerec_utils.own_log import load_log, log_config, synthetic_log  # noqa: E402
from prunerec_utils.pipeline.finetune import finetune, process_rank, tokenize_split  # noqa: E402
from prunerec_utils.profiles import get_profile  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--grad-accum", type=int, required=True)
args = ap.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    cfg = log_config(*synthetic_log(Path(tmp) / "log", users=40, items=36, per_user=8), category="book")
    splits, _ = build_splits(*load_log(cfg), cfg)
prof = get_profile("ci", max_train=64, max_valid=16, epochs=1, batch_size=4, grad_accum=args.grad_accum,
                   warmup_steps=0, save_steps=0, train_compile=False)
tok = load_tokenizer(tiny_qwen2_dir())
train_ds, valid_ds = (tokenize_split(splits[s].iloc[:n], tok, cfg, prof.cutoff_len) for s, n in (("train", 64), ("valid", 16)))
summary = finetune(load_model(tiny_qwen2_dir()), tok, train_ds, valid_ds, Path(args.out) / "model", prof,
                   progress=False, logging_steps=1)
if process_rank()[0] == 0:
    (Path(args.out) / "summary.json").write_text(json.dumps(summary))
