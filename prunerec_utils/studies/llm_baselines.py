"""Pruned-LLM baselines at our final model's size (the paper's Table 2 baselines) and the paper's Table 2 layout.

* **SLMRec-style** (:func:`slmrec`): depth only. Keep the teacher's first *n* decoder layers, as
  SLMRec's student does when it loads the teacher with fewer layers. *n* is chosen so that the
  non-embedding count is closest to our final (Stage III) model's. The result is distilled from
  the teacher with the same eq. 13 loss and budget as our stages. SLMRec's own feature-level,
  multi-signal distillation is not reproduced: the comparison isolates *what is pruned*.
* **Random structured** (:data:`RANDOM_STRUCTURED`): the same three stages at exactly our
  shapes, with random heads, hidden dimensions, MLP neurons and layers. Each stage gets the
  same restoration as ours. It runs as an ablation variant through stages I-III at the
  profile's full budget (``runs/<dataset>/<profile>/ablations/random_structured/``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd

from ..assets import load_model, load_tokenizer
from ..identity import model_identity
from ..method.surgery import param_counts, param_formula, remove_layers
from ..pipeline import stages
from ..pipeline.ablations import Variant, run_variant, variant_run
from ..pipeline.evaluate import METRICS, EvalResult, evaluate_cached, interval_text, load_result, retention
from ..pipeline.run import Run
from .baselines import result_name
from .id_models import MODELS

RANDOM_STRUCTURED = Variant(1, "random structured",
                            (("hidden_variant", "random"), ("mlp_variant", "random"), ("layer_variant", "random")),
                            heads="random", through=3, full_budget=True, tag="random_structured")


def layers_for(config, target_non_embedding: int) -> int:
    """The number of the teacher's first layers whose non-embedding count is closest to the target."""
    def count(n):
        c = copy.deepcopy(config)
        c.num_hidden_layers = n
        return param_formula(c)["non_embedding"]

    return min(range(1, config.num_hidden_layers + 1), key=lambda n: (abs(count(n) - target_non_embedding), n))


def slmrec_prune(run: Run) -> tuple[Path, dict]:
    """The teacher's first n layers, n matched to the Stage III model → ``models/slmrec_pruned``. The Stage III
    count is read from its cut's record — made here or merged from the shard that made it, whose weights need
    not be here; Stages I-III are made here only where neither has it."""
    if stages.recorded_params(run.folder, "stage3_pruned", "stage3") is None:
        stages.ensure(run, "stage3")  # made here (Stages I-III): notebook 05 has run nowhere yet
    target = stages.recorded_params(run.folder, "stage3_pruned", "stage3")["non_embedding"]
    tdir = stages.ensure(run, "teacher")

    def build(tmp: Path) -> dict:
        model, tok = load_model(tdir), load_tokenizer(tdir)
        L = model.config.num_hidden_layers
        n = layers_for(model.config, target)
        before = param_counts(model)
        if n < L:
            remove_layers(model, range(n, L))
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return {"target_non_embedding": target, "layers_before": L, "layers_kept": n,
                "params": {"teacher": before, "slmrec": param_counts(model)}}

    return run.model_step("slmrec_pruned", stages.SURGERY, {"target_non_embedding": target,
                                                            "source_id": model_identity(tdir)}, build)


def slmrec(run: Run, progress: bool = False) -> dict:
    """SLMRec-style baseline end to end: prune, distil (``models/slmrec``), evaluate (``results/slmrec``)."""
    pruned, surgery = slmrec_prune(run)
    final, summary = stages.distill_stage(run, pruned, "slmrec", progress)
    res = evaluate_cached(run, "slmrec", final, progress=progress)
    return {"pruned_dir": pruned, "surgery": surgery, "distilled_dir": final, "distill": summary, "result": res,
            "non_embedding": surgery["params"]["slmrec"]["non_embedding"]}


def random_structured(run: Run, progress: bool = False) -> dict:
    """Random structured baseline end to end (stages I-III at our shapes, same restorations)."""
    return run_variant(run, RANDOM_STRUCTURED, progress)


def table2(rows: dict[str, tuple[EvalResult, int | None]], teacher: str = "teacher") -> pd.DataFrame:
    """The paper's Table 2 layout for one dataset: HR/NDCG@10/20, non-embedding parameters and
    "avg %" = mean over the four metrics of metric / teacher's (same rows). ``rows``:
    label → (result, non-embedding count or None for ID models)."""
    ref = rows[teacher][0].metrics
    out = {}
    for label, (res, params) in rows.items():
        m = res.metrics
        if m["n"] != ref["n"]:
            raise ValueError(f"{label} was evaluated on {m['n']} test rows, the teacher on {ref['n']}")
        row = {k: m[k] for k in METRICS}
        row["hr@20 95% CI"] = interval_text(*m["ci95"]["hr@20"])
        row["non-embedding params"] = params
        row["avg % of teacher"] = 100 * retention(m, ref)["avg"]
        out[label] = row
    table = pd.DataFrame.from_dict(out, orient="index")
    table["non-embedding params"] = table["non-embedding params"].astype("Int64")  # blank for ID models
    return table


def stored_rows(run: Run) -> dict[str, tuple[EvalResult, int | None]]:
    """Every Table 2 row whose evaluation is stored in the run folder (nothing is computed):
    teacher, ours (Stage III), SLMRec-style, random structured, the ID baselines, most popular."""
    def non_embedding(r: Run, pruned: str, key: str) -> int | None:
        params = stages.recorded_params(r.folder, pruned, key)
        return params and params["non_embedding"]

    wanted = [("teacher", "teacher", non_embedding(run, "stage1_pruned", "teacher")),
              ("PruneRec (ours)", "stage3", non_embedding(run, "stage3_pruned", "stage3")),
              ("SLMRec-style", "slmrec", non_embedding(run, "slmrec_pruned", "slmrec"))]
    out = {}
    for label, name, params in wanted:
        res = load_result(run.folder, name)
        if res is not None:
            out[label] = (res, params)
    n = out["teacher"][0].metrics["n"] if "teacher" in out else None
    rs = variant_run(run, RANDOM_STRUCTURED)
    res = load_result(rs.folder, f"stage3_n{n}") if n else None
    if res is not None:
        out["random structured"] = (res, non_embedding(rs, "stage3_pruned", "stage3"))
    for model in MODELS:
        res = load_result(run.folder, result_name(model))
        if res is not None:
            out[model] = (res, None)
    res = load_result(run.folder, "most_popular")
    if res is not None:
        out["most popular"] = (res, None)
    return out
