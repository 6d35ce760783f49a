"""The reproduction scorecard: each claim of the paper, our number, the paper's, a verdict.

Everything is read from the run folder's results files; nothing is computed or typed in. A
claim whose files are missing reads "not measured here". A comparison of two models reads
"holds" or "does not hold" by the sign of the difference ("tie" when it is zero to the four decimals shown), and
"(within noise)" is added when the paired bootstrap over users
(:func:`prunerec_utils.pipeline.evaluate.compare`) gives a 95% interval of the difference that contains zero.
"""

from __future__ import annotations

import pandas as pd

from ..pipeline import ablations
from ..pipeline.evaluate import compare, load_result, retention
from ..pipeline.stages import surgery_params
from ..pipeline.steps import read_json

NOT_MEASURED = "not measured here"
NO_HIT = "not measurable: the teacher has no hit on these users"
PAPER_RETENTION, PAPER_PARAM_SHARE = 0.88, 0.05  # SPEC §8 headline
PAPER_ATTENTION_DROP, PAPER_ATTENTION_CUT = 0.08, 0.83
DOMINANCE = 2.0  # Obs. 2: top-10% share at least this multiple of the uniform 10% (our reading)


def _row(section: str, claim: str, paper: str, ours: str = "—", verdict: str = NOT_MEASURED) -> dict:
    return {"section": section, "claim": claim, "paper": paper, "ours": ours, "verdict": verdict}


def paired_verdict(a, b, metric: str = "ndcg@20") -> tuple[str, str]:
    """Is model A better than B on ``metric`` (same users)? → (our numbers, verdict)."""
    d = compare(a, b).loc[metric]
    ours = f"{metric} {a.metrics[metric]:.4f} vs {b.metrics[metric]:.4f}, difference {d['difference']:+.4f} {d['95% CI']}"
    return ours, ablations.order_word(d["difference"]) + ("" if d["significant"] else " (within noise)")


def observation_rows(folder) -> list[dict]:
    """Observations 1-3 (paper §2.2) from ``results/observations.json`` (notebook 02).

    Obs. 2 ("a few units dominate", Fig 2-3) has no number in the paper; we read it as: in the
    fine-tuned model the top 10% of units hold at least ``DOMINANCE`` times their uniform share
    (10%) of Σ|activation|, on the mean over layers, for MLP units and attention outputs alike."""
    path = folder / "results" / "observations.json"
    claims = [("Obs. 1 (Fig 1a)", "fine-tuning concentrates the MLP activations (top 10% share above the base LM's)",
               "higher in the fine-tuned recommender"),
              ("Obs. 1 (Fig 1a)", "…and the attention outputs (top 10% share above the base LM's)",
               "higher in the fine-tuned recommender"),
              ("Obs. 2 (Fig 2-3)", f"a few units dominate: the top 10% hold ≥ {DOMINANCE:g}× their uniform share "
               "of Σ|activation| (MLP units and attention outputs)", "a few units dominate"),
              ("Obs. 3 (Fig 1b)", "Wanda prunes the recommender worse than random unstructured pruning",
               "Wanda below random")]
    if not path.exists():
        return [_row(*c) for c in claims]
    doc = read_json(path)
    rows, top = [], {}
    for (section, claim, paper), key in zip(claims[:2], ("mlp_concentration", "attention_concentration")):
        r = next(x for x in doc[key] if abs(x["K"] - 0.1) < 1e-9)
        ft, base = r["mean share, fine-tuned"], r["mean share, base"]
        top[key] = ft
        ours = (f"{ft:.3f} vs {base:.3f} (mean over layers; higher in {int(r['layers where fine-tuned is higher'])} "
                f"of {int(r['layers'])} layers)")
        rows.append(_row(section, claim, paper, ours, "holds" if ft > base else "does not hold"))
    mlp, att = top["mlp_concentration"], top["attention_concentration"]
    ours = f"top 10% hold {mlp:.1%} (MLP) and {att:.1%} (attention outputs) of Σ|a|, fine-tuned, mean over layers"
    rows.append(_row(*claims[2], ours, "holds" if min(mlp, att) >= DOMINANCE * 0.1 else "does not hold"))
    levels = doc["wanda_vs_random"]
    below = sum(v["wanda vs random"] == "below" for v in levels)
    ours = ", ".join(f"{v['sparsity']:.0%}: {v['wanda']:.3f} vs {v['random']:.3f}" for v in levels)
    equal = sum(v["wanda vs random"] == "equal" for v in levels)
    verdict = ("holds" if below == len(levels) else f"holds at {below} of {len(levels)} levels" if below
               else "cannot be checked: equal at every level" if equal == len(levels) else "does not hold")
    rows.append(_row(*claims[3], f"{doc['basis']}, Wanda vs random: {ours}", verdict))
    return rows


def headline_rows(folder) -> list[dict]:
    """The attention-stage trade-off and the ≈ 88% retention at < 5% of the parameters (SPEC §8)."""
    teacher, s1, s3 = (load_result(folder, n) for n in ("teacher", "stage1", "stage3"))
    models = folder / "models"
    p1, p3 = surgery_params(models / "stage1_pruned", "stage1"), surgery_params(models / "stage3_pruned", "stage3")
    p0 = surgery_params(models / "stage1_pruned", "teacher")
    rows = []
    attn = _row("Stage I", "the attention stage costs little quality for most of the attention parameters",
                f"≈ {PAPER_ATTENTION_DROP:.0%} drop, ≈ {PAPER_ATTENTION_CUT:.0%} fewer attention parameters")
    if teacher is not None and s1 is not None and p1 and p0:
        ret = retention(s1.metrics, teacher.metrics)["avg"]
        cut = 1 - p1["attention"] / p0["attention"]
        attn.update(ours=f"{1 - ret:+.1%} drop (avg retention {ret:.1%}), {cut:.0%} fewer attention parameters",
                    verdict=NO_HIT if pd.isna(ret) else "holds" if 1 - ret <= PAPER_ATTENTION_DROP else "does not hold")
    rows.append(attn)
    head = _row("Headline", "≈ 88% average retention of the teacher's metrics after Stages I-III",
                f"≈ {PAPER_RETENTION:.0%} (Games, CDs, Sports)")
    share = _row("Headline", "…with under 5% of the non-embedding parameters",
                 f"< {PAPER_PARAM_SHARE:.0%} (Qwen2-0.5B: ≈ 358M → ≈ 14M)")
    if teacher is not None and s3 is not None:
        ret = retention(s3.metrics, teacher.metrics)["avg"]
        head.update(ours=f"{ret:.1%} (HR/NDCG@10/20, {teacher.metrics['n']} users)",
                    verdict=NO_HIT if pd.isna(ret) else "holds" if ret >= PAPER_RETENTION else "does not hold")
    if p3 and p0:
        frac = p3["non_embedding"] / p0["non_embedding"]
        share.update(ours=f"{frac:.1%} ({p0['non_embedding']:,} → {p3['non_embedding']:,})",
                     verdict=("holds" if frac < PAPER_PARAM_SHARE else "does not hold")
                     + " (set by the profile's shapes, not measured)")
    return rows + [head, share]


def comparison_rows(run) -> list[dict]:
    """PruneRec's final model against both pruned-LLM baselines and the ID baselines (paired, NDCG@20),
    from the Table 2 rows stored in the run folder (:func:`prunerec_utils.studies.llm_baselines.stored_rows`)."""
    from .id_models import MODELS
    from .llm_baselines import stored_rows

    rows = {label: res for label, (res, _) in stored_rows(run).items()}
    ours = rows.get("PruneRec (ours)")
    others = [("SLMRec-style layer-only pruning", "SLMRec-style"),
              ("random structured pruning at the same shapes", "random structured"),
              *((m, m) for m in MODELS)]  # (what the claim names, its Table 2 row)
    out = []
    for claim_of, label in others:
        claim = f"PruneRec beats {claim_of}"
        other = rows.get(label)
        if ours is None or other is None or other.metrics["n"] != ours.metrics["n"]:
            out.append(_row("Table 2", claim, "PruneRec ahead"))
            continue
        out.append(_row("Table 2", claim, "PruneRec ahead", *paired_verdict(ours, other)))
    return out


def ablation_rows(run) -> list[dict]:
    """Table 3 and Fig 5 claims from ``results/ablation_<group>.json`` (notebook 06)."""
    tables = {g: ablations.load_group(run, g) for g in ("table3", "fig5a", "fig5b", "fig5c", "alpha", "lambda")}
    return [_row("Ablations", r["claim"], r["paper"], r["ours (HR@20)"], r["verdict"])
            for _, r in ablations.claims(tables, run.prof).iterrows()]


def scorecard(run) -> pd.DataFrame:
    """Every claim, in the paper's order: observations, stages and headline, ablations, Table 2."""
    rows = observation_rows(run.folder) + headline_rows(run.folder) + ablation_rows(run) + comparison_rows(run)
    return pd.DataFrame(rows)
