"""Every verdict of the book: each claim of the paper, our number, the paper's, a verdict.

The verdicts printed by the chapters — the observations of notebook 02
(:func:`concentration_claim`, :func:`wanda_vs_random`, :func:`pruning_claim`), the ablation
claims of notebook 06 (:func:`ablation_claims`) — and the scorecard of notebook 09 that gathers
them are made here, by one set of rules. The scorecard reads everything from the run folder's
results files; nothing is computed or typed in. A
claim whose files are missing reads "not measured here". A comparison of two models is decided by the
paired bootstrap of the difference (:func:`prunerec_utils.pipeline.evaluate.compare`: the same test rows,
users resampled with all their rows): "holds" or "does not hold" when its 95% interval excludes zero, else
"not decided at this budget (detectable ≥ X)", X the smallest difference those rows could have detected
(80% power); every such row states X. A retention claim is made only against a teacher worth retaining:
one that beats most popular on HR@20 with a paired interval above zero (:func:`retention_gate`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import PruneRecError
from ..method.metrics import TIE, UNDECIDED, contrast_bootstrap, detectable_difference, interval_text, read_interval
from ..pipeline import ablations
from ..pipeline.evaluate import compare, load_result, retention
from ..pipeline.stages import recorded_params
from ..steps import read_json
from .id_models import MODELS
from .llm_baselines import stored_rows
from .observe import METHODS

NOT_MEASURED = "not measured here"
NO_HIT = "not measurable: the teacher has no hit on these users"
NOT_MEANINGFUL = "not meaningful: the teacher does not beat most popular"
NO_RANKS = "not measured: stored without per-row ranks (rerun notebook 06 to keep them)"
PAPER_RETENTION, PAPER_PARAM_SHARE = 0.88, 0.05  # the paper's headline claim
PAPER_ATTENTION_DROP, PAPER_ATTENTION_CUT = 0.08, 0.83
DOMINANCE = 2.0  # Obs. 2: top-10% share at least this multiple of the uniform 10% (our reading)


def _row(section: str, claim: str, paper: str, ours: str = "—", verdict: str = NOT_MEASURED) -> dict:
    return {"section": section, "claim": claim, "paper": paper, "ours": ours, "verdict": verdict}


def paired_verdict(a, b, metric: str = "ndcg@20") -> tuple[str, str]:
    """Is model A better than B on ``metric`` (same test rows)? → (our numbers, verdict): "holds" /
    "does not hold" when the paired interval excludes 0, else "not decided at this budget (detectable ≥ X)"."""
    d = compare(a, b).loc[metric]
    ours = (f"{metric} {a.metrics[metric]:.4f} vs {b.metrics[metric]:.4f}, difference {d['difference']:+.4f} "
            f"{d['95% CI']} ({d['rows']:,} rows from {d['users']:,} users); smallest detectable "
            f"{d['detectable (80% power)']:.4f}")
    return ours, order_word(d["difference"]) if d["significant"] else d["verdict"]


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
    """The attention-stage trade-off and the ≈ 88% retention at < 5% of the parameters (the paper's headline)."""
    teacher, s1, s3, popular = (load_result(folder, n) for n in ("teacher", "stage1", "stage3", "most_popular"))
    gate = retention_gate(teacher, popular)
    p1, p3 = recorded_params(folder, "stage1_pruned", "stage1"), recorded_params(folder, "stage3_pruned", "stage3")
    p0 = recorded_params(folder, "stage1_pruned", "teacher")
    rows = []
    attn = _row("Stage I", "the attention stage costs little quality for most of the attention parameters",
                f"≈ {PAPER_ATTENTION_DROP:.0%} drop, ≈ {PAPER_ATTENTION_CUT:.0%} fewer attention parameters")
    if teacher is not None and s1 is not None and p1 and p0:
        ret = retention(s1.metrics, teacher.metrics)["avg"]
        cut = 1 - p1["attention"] / p0["attention"]
        drop = "drop not measurable" if pd.isna(ret) else f"{1 - ret:+.1%} drop (avg retention {ret:.1%})"
        attn.update(ours=f"{drop}, {cut:.0%} fewer attention parameters",
                    verdict=NO_HIT if pd.isna(ret) else gate or ("holds" if 1 - ret <= PAPER_ATTENTION_DROP
                                                                 else "does not hold"))
    rows.append(attn)
    head = _row("Headline", "≈ 88% average retention of the teacher's metrics after Stages I-III",
                f"≈ {PAPER_RETENTION:.0%} (Games, CDs, Sports)")
    share = _row("Headline", "…with under 5% of the non-embedding parameters",
                 f"< {PAPER_PARAM_SHARE:.0%} (Qwen2-0.5B: ≈ 358M → ≈ 14M)")
    if teacher is not None and s3 is not None:
        ret = retention(s3.metrics, teacher.metrics)["avg"]
        kept = "not measurable" if pd.isna(ret) else f"{ret:.1%}"
        head.update(ours=f"{kept} (HR/NDCG@10/20, {rows_text(teacher.metrics)})",
                    verdict=NO_HIT if pd.isna(ret) else gate or ("holds" if ret >= PAPER_RETENTION else "does not hold"))
    if p3 and p0:
        frac = p3["non_embedding"] / p0["non_embedding"]
        share.update(ours=f"{frac:.1%} ({p0['non_embedding']:,} → {p3['non_embedding']:,})",
                     verdict=("holds" if frac < PAPER_PARAM_SHARE else "does not hold")
                     + " (set by the profile's shapes, not measured)")
    return rows + [head, share]


def rows_text(metrics: dict) -> str:
    """"9,834 rows from 166 users": what an evaluation's numbers rest on."""
    return f"{metrics['n']:,} rows from {metrics['users']:,} users"


def retention_gate(teacher, popular) -> str | None:
    """None when a retention against ``teacher`` means something: the teacher beats most popular on
    HR@20 with a paired 95% interval above 0 (same test rows, users resampled). Else the verdict
    every retention claim reads instead: :data:`NOT_MEANINGFUL` (with the comparison's numbers),
    or "not measured here" when most popular was not evaluated on the same rows."""
    if teacher is None or popular is None or not teacher.per_user["user_id"].equals(popular.per_user["user_id"]):
        return NOT_MEASURED + " (most popular not evaluated on the teacher's rows)"
    d = compare(teacher, popular).loc["hr@20"]
    if d["significant"] and d["difference"] > 0:
        return None
    return (f"{NOT_MEANINGFUL} (HR@20 {teacher.metrics['hr@20']:.4f} vs {popular.metrics['hr@20']:.4f}, "
            f"paired difference {d['difference']:+.4f} {d['95% CI']})")


def comparison_rows(run) -> list[dict]:
    """PruneRec's final model against both pruned-LLM baselines and the ID baselines (paired, NDCG@20),
    from the Table 2 rows stored in the run folder (:func:`prunerec_utils.studies.llm_baselines.stored_rows`)."""
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
    return [_row("Ablations", r["claim"], r["paper"],
                 r["ours (HR@20)"] + ("" if r["detectable"] == "—" else
                                      f"; paired contrast {r['paired contrast']}, smallest detectable {r['detectable']}"),
                 r["verdict"]) for _, r in ablation_claims(tables, run.prof).iterrows()]


def scorecard(run) -> pd.DataFrame:
    """Every claim, in the paper's order: observations, stages and headline, ablations, Table 2."""
    rows = observation_rows(run.folder) + headline_rows(run.folder) + ablation_rows(run) + comparison_rows(run)
    return pd.DataFrame(rows)


KINDS = ("holds", "does not hold", "partly", "not decided", "set by the profile", "not meaningful", "not measured")


def verdict_kind(verdict: str) -> str:
    """How decisive a verdict is: "holds" / "does not hold" (decided), "partly" (holds at some
    levels), "not decided" (the interval of the difference contains 0: the sign could flip with
    other users or seeds; ties too), "set by the profile" (a number we chose, not measured), "not
    meaningful" (a retention of a teacher that does not beat most popular), "not measured"
    (missing or not measurable)."""
    if verdict.startswith(("not measur", "cannot")):
        return "not measured"
    if verdict.startswith("not meaningful"):
        return "not meaningful"
    if "set by the profile" in verdict:
        return "set by the profile"
    if verdict.startswith(UNDECIDED) or verdict.startswith("tie"):
        return "not decided"
    if verdict.startswith("holds at"):
        return "partly"
    return "does not hold" if verdict.startswith("does not hold") else "holds"


def tally(card: pd.DataFrame) -> pd.DataFrame:
    """Verdicts counted per section by :func:`verdict_kind`: decided ones apart from those within
    noise, set by the profile or not measured; a "total" row at the bottom."""
    kinds = card["verdict"].map(verdict_kind)
    t = pd.crosstab(card["section"], kinds).reindex(columns=list(KINDS), fill_value=0)
    t = t.reindex(list(dict.fromkeys(card["section"])))  # the scorecard's order, not alphabetical
    t.loc["total"] = t.sum()
    t.columns.name = t.index.name = None
    return t


# ---- observations (notebook 02) --------------------------------------------------------------

def wanda_vs_random(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per sparsity, Wanda's and random's value and whether Wanda is below, equal or above random.
    Compared on ``retention`` when it is defined everywhere, else on the mean of the four metrics
    (same users and same teacher, so the teacher's metric only rescales). Returns the table and
    the name of the quantity compared.
    """
    pruned = table[table["method"].isin(METHODS)]
    basis = "retention" if pruned["retention"].notna().all() else "mean metric"
    wide = pruned.pivot(index="sparsity", columns="method", values=basis)[list(METHODS)]
    wide["wanda vs random"] = np.select([wide["wanda"] < wide["random"], wide["wanda"] > wide["random"]],
                                        ["below", "above"], "equal")
    return wide, basis


def concentration_claim(summary: pd.DataFrame, what: str = "MLP units") -> str:
    """One line per K: does the fine-tuned model concentrate ``what`` more than the base (mean over layers)?"""
    lines = []
    for k, r in summary.iterrows():
        ft, base = r["mean share, fine-tuned"], r["mean share, base"]
        lines.append(f"top {k:.0%} of {what}: fine-tuned {ft:.3f} vs base {base:.3f} of Σ|a| (mean over "
                     f"layers), fine-tuned higher in {int(r['layers where fine-tuned is higher'])} of "
                     f"{int(r['layers'])} layers -> the paper's claim {'holds' if ft > base else 'does not hold'} here")
    return "\n".join(lines)


def pruning_claim(verdict: pd.DataFrame, basis: str) -> str:
    """Does Wanda fall below random (the paper's Fig 1b finding)? From :func:`wanda_vs_random`."""
    n = len(verdict)
    count = verdict["wanda vs random"].value_counts()
    below, equal, above = (int(count.get(v, 0)) for v in ("below", "equal", "above"))
    if below == n:
        finding = "holds at every level"
    elif below:
        finding = f"holds at {below} of {n} levels"
    elif equal == n:
        finding = "cannot be checked here (both methods score the same at every level)"
    else:
        finding = "does not hold at any level"
    return (f"compared on {basis}: Wanda below random at {below}, equal at {equal}, above at {above} of {n} "
            f"sparsity levels -> the paper's finding {finding}")


# ---- ablations (notebook 06) -----------------------------------------------------------------

def claim_interval(rows, weights) -> tuple[float, float, float] | None:
    """HR@20 of Σᵢ wᵢ · (compared row i), with its 95% interval over the users of the rows they
    share (:func:`~prunerec_utils.method.metrics.contrast_bootstrap`: users resampled with all
    their rows, jointly for every compared variant) → (value, lo, hi); None when a row was stored
    without its per-row ranks (a results file from before they were kept)."""
    if any(not isinstance(r.get("ranks"), list) for r in rows):
        return None
    users = rows[0]["row users"]
    if any(r["row users"] != users for r in rows):
        raise PruneRecError("the compared ablation variants were not evaluated on the same test rows")
    return contrast_bootstrap([r["ranks"] for r in rows], weights, users)["hr@20"]


def claim_verdict(lo: float, hi: float, tie: str = TIE) -> str:
    """A claim read off the paired interval [lo, hi] of its HR@20 contrast (positive = the claimed
    order): "holds" above 0, "does not hold" below 0, ``tie`` when no row differs ([0, 0]), else
    "not decided at this budget (detectable ≥ X)" (:func:`~prunerec_utils.method.metrics.read_interval`;
    never decided from overlapping single-variant intervals)."""
    return read_interval(lo, hi, "holds", "does not hold", tie)


def order_word(margin: float, tie: str = "tie") -> str:
    """"holds" when ``margin`` > 0 (the claimed order), "does not hold" when < 0, ``tie`` at 0."""
    return "holds" if margin > 0 else "does not hold" if margin < 0 else tie


def _best(table: pd.DataFrame, expected) -> list:
    """[the row of ``expected`` (an index label), the other row with the highest HR@20]."""
    others = table.drop(index=expected)
    return [table.loc[expected], others.loc[others["hr@20"].idxmax()]]


def _at(table: pd.DataFrame, column: str, value) -> pd.Series | None:
    hit = table[(table[column] - value).abs() < 1e-9] if column in table else table.iloc[:0]
    return hit.iloc[0] if len(hit) else None


def _fmt(table: pd.DataFrame) -> str:
    return "; ".join(f"{label} {r['hr@20']:.4f}" for label, r in table.iterrows())


def ablation_claims(tables: dict[str, pd.DataFrame | None], prof) -> pd.DataFrame:
    """The paper's ablation claims beside ours (HR@20): claim, paper, ours, the paired contrast that
    decides it with its 95% interval (:func:`claim_interval`: positive = the claimed order), the
    smallest contrast those rows and users could detect (80% power), verdict (:func:`claim_verdict`).
    ``tables``: group → table (:func:`~prunerec_utils.pipeline.ablations.run_group` /
    :func:`~prunerec_utils.pipeline.ablations.load_group`), None if not run. A "best" claim compares
    the claimed variant with the best of the others; Fig 5c compares the drop past 2/3 with the drop
    before it (with the drop alone when there is none before it)."""
    rows = []

    def add(claim, paper, table=None, compared=None, weights=(1, -1), tie=TIE):
        row = {"claim": claim, "paper": paper, "ours (HR@20)": "—", "paired contrast": "—", "detectable": "—",
               "verdict": NOT_MEASURED}
        if table is not None and compared is not None:
            row["ours (HR@20)"] = _fmt(table)
            ci = claim_interval(compared, weights)
            if ci is None:
                row["verdict"] = NO_RANKS
            else:
                value, lo, hi = ci
                row.update({"paired contrast": f"{value:+.4f} {interval_text(lo, hi)}",
                            "detectable": f"{detectable_difference(lo, hi):.4f}", "verdict": claim_verdict(lo, hi, tie)})
        rows.append(row)

    t3 = tables.get("table3")
    by_heads = t3.set_index("heads", drop=False) if t3 is not None else None
    add("Table 3: the full method chooses the best heads", ".1166 vs .1111 / .1034 / .1029", t3,
        _best(by_heads, "greedy") if by_heads is not None else None)
    if by_heads is not None and {"global", "global_no_alpha"} <= set(by_heads.index):
        g, n = by_heads.loc["global"], by_heads.loc["global_no_alpha"]
        pair = t3[t3["heads"].isin(["global", "global_no_alpha"])]  # only the two compared rows
        add("Table 3: α helps a global ranking", ".1111 vs .1029", pair, [g, n])
    else:
        add("Table 3: α helps a global ranking", ".1111 vs .1029")
    t5a = tables.get("fig5a")
    hv = t5a.set_index("hidden_variant", drop=False) if t5a is not None and "hidden_variant" in t5a else None
    add("Fig 5a: weight × gradient scores hidden dimensions best", "best of three", t5a,
        _best(hv, "weight_x_grad") if hv is not None else None)
    t5b = tables.get("fig5b")
    two = _at(t5b, "mlp_keep_factor", 2.0) if t5b is not None else None
    add("Fig 5b: K_MLP = 2·d' is the best width", "best at 896 = 2 × 448", t5b,
        _best(t5b, two.name) if two is not None and len(t5b) > 1 else None)
    t5c = tables.get("fig5c")
    pts = [_at(t5c, "layers_removed_share", s) if t5c is not None else None for s in (1 / 2, 2 / 3, 5 / 6)]
    if all(p is not None for p in pts):
        drop_before = pts[0]["hr@20"] - pts[1]["hr@20"]
        weights = (-1, 2, -1) if drop_before > 0 else (0, 1, -1)  # (2/3 − 5/6) − (1/2 − 2/3), or 2/3 − 5/6
        add("Fig 5c: removing more than 2/3 of the layers drops sharply", "sharp drop past 16 of 24", t5c,
            pts, weights, tie="does not hold")  # no drop at all is no sharp drop
    else:
        add("Fig 5c: removing more than 2/3 of the layers drops sharply", "sharp drop past 16 of 24")
    for group, column, ours, base, claim in (("alpha", "alpha", prof.alpha, 0.0, "α mixing across layers helps"),
                                             ("lambda", "kd_lambda", prof.kd_lambda, 0.0,
                                              "distillation beats fine-tuning alone (λ = 0)")):
        t = tables.get(group)
        a, b = (_at(t, column, ours), _at(t, column, base)) if t is not None else (None, None)
        paper = f"the paper uses {column.replace('kd_', '')} = {ours:g}"
        if a is None or b is None:
            add(f"{claim} ({ours:g} vs {base:g})", paper)
        else:
            add(f"{claim} ({ours:g} vs {base:g})", paper, t, [a, b])
    return pd.DataFrame(rows)
