"""Ablations of the paper's §4.3 — Table 3, Fig 5a-c and the α / λ sweeps — on a reduced budget.

Each configuration is a :class:`Variant`: the run's profile with a few fields changed (for
Table 3, the profile's ``head_variant``). A variant is a child :class:`~prunerec_utils.pipeline.run.Run`
in ``runs/<dataset>/<profile>/ablations/<name>/`` (laid out like a runs root) whose declared
:func:`links` share the main run's splits, teacher and the distilled stage it starts from
(``models/stage1`` for a Stage II variant, ``models/stage2`` for Stage III), plus the main run's
head scores and pruned model where the variant would make them alike. The ordinary stage
drivers (:func:`prunerec_utils.pipeline.stages.stage1` …) then run on the child run, so a variant pays
only for what it changes, resumes like any stage, and can be re-run alone; every linked output is
still checked against the variant's own settings before it is reused.

Every variant of a figure gets the *same* reduced restoration — ``prof.ablation_max_train``
distillation samples — including the full-method point, and is evaluated on the first
``prof.ablation_test_rows`` rows of the run's fixed test sample, beside the teacher on those rows.

Head choices for Table 3 (the paper's ablations; book/method.md, method-stage1):

* ``greedy`` — the method: layer-wise (greedy, earlier choices suppressed) KL scores, α-mixed;
* ``global`` — no layer-wise importance: every layer scored with nothing else suppressed, one
  global ranking by head index (mean over layers of the α-mixed scores), the same heads cut in
  every layer;
* ``global_no_alpha`` — the same with the plain min-max scores (no α);
* ``random`` — seeded random heads per layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .. import PruneRecError
from ..method.metrics import contrast_bootstrap, decision
from ..paths import atomic_write_text
from ..profiles import CHOICES
from ..steps import read_json
from . import stages
from .evaluate import METRICS, evaluate_cached, first_rows, fixed_test_rows, interval_text, retention
from .run import STAGES, Run

HEAD_CHOICES = CHOICES["head_variant"]
RESTORATION_ONLY = {"kd_lambda", "distill_max_train"}  # fields that change only the distillation, not the surgery

# Paper Table 3 (Stage I on Games, Qwen2-0.5B): HR@20, NDCG@20 (paper Table 3).
PAPER_TABLE3 = {"random": (0.1034, 0.0435), "global_no_alpha": (0.1029, 0.0424), "global": (0.1111, 0.0530),
                "greedy": (0.1166, 0.0562)}


@dataclass(frozen=True)
class Variant:
    stage: int  # the first stage it changes: 1, 2 or 3
    label: str
    overrides: tuple = ()  # (profile field, value) pairs
    heads: str = "greedy"  # Stage I head choice (see the module docstring)
    through: int = 0  # the last stage it runs (0: only ``stage``)
    full_budget: bool = False  # the profile's own restoration and test rows, not the reduced ablation budget
    tag: str = ""  # folder name ("" = derived from the settings)
    rows: int | None = None  # test rows it is evaluated on (None: by ``full_budget``)

    def __post_init__(self):
        if self.stage not in (1, 2, 3) or self.last not in (1, 2, 3) or self.last < self.stage:
            raise PruneRecError(f"a variant runs stages 1, 2 or 3 in order, not {self.stage!r}..{self.through!r}")
        if self.heads not in HEAD_CHOICES:
            raise PruneRecError(f"unknown head choice {self.heads!r}; choose one of {', '.join(HEAD_CHOICES)}")

    def _base(self, prof) -> dict:
        """The fields the variant sets before its overrides: its head choice and restoration budget
        (the profile's own with ``full_budget``, else the reduced ablation budget)."""
        return {"distill_max_train": prof.distill_samples if self.full_budget else prof.ablation_distill_samples,
                "head_variant": self.heads}

    def effective(self, prof) -> "Variant":
        """The same variant without the overrides that change nothing (equal to the value the
        field would have anyway)."""
        base = {**prof.to_dict(), **self._base(prof)}
        return replace(self, overrides=tuple((k, v) for k, v in self.overrides if base.get(k) != v))

    @property
    def last(self) -> int:
        return self.through or self.stage

    def name(self, prof) -> str:
        """Folder name; equal settings give equal names, so figures share their common points."""
        if self.tag:
            return self.tag
        v = self.effective(prof)
        parts = [f"{k}{val:g}" if isinstance(val, float) else f"{k}{val}" for k, val in v.overrides]
        parts += [] if v.heads == "greedy" else [f"heads_{v.heads}"]
        stages_ = f"stage{v.stage}" + (f"to{v.last}" if v.last != v.stage else "")
        return f"{stages_}_" + ("_".join(parts) or "full") + ("_full_budget" if v.full_budget else "")

    def profile(self, prof):
        """The variant's profile: overrides plus (unless ``full_budget``) the reduced restoration budget."""
        unknown = {k for k, _ in self.overrides} - set(prof.to_dict())
        if unknown:
            raise PruneRecError(f"unknown profile field(s) in a variant: {', '.join(sorted(unknown))}")
        return replace(prof, **{**self._base(prof), **dict(self.overrides)})  # an override of the budget wins

    def test_rows(self, prof) -> int | None:
        """Test rows it is evaluated on (the first ones of the run's fixed sample): its own
        ``rows``, else the profile's test rows (``full_budget``) or its ablation rows."""
        if self.rows:
            return self.rows
        return prof.max_test if self.full_budget else prof.ablation_test_rows


# ---- the paper's ablation groups -------------------------------------------------------------

def table3() -> list[Variant]:
    """Table 3: how Stage I chooses its heads."""
    return [Variant(1, "random heads", heads="random"),
            Variant(1, "no layer-wise importance, no α", heads="global_no_alpha"),
            Variant(1, "no layer-wise importance", heads="global"),
            Variant(1, "full method")]


def fig5a() -> list[Variant]:
    """Fig 5a: hidden-dimension scores (eq. 7) against gradient only and weight only."""
    return [Variant(1, "weight × gradient (eq. 7)", (("hidden_variant", "weight_x_grad"),)),
            Variant(1, "gradient only", (("hidden_variant", "gradient"),)),
            Variant(1, "weight only", (("hidden_variant", "weight"),))]


def fig5b(factors=(4.0, 2.0, 1.0, 0.5)) -> list[Variant]:
    """Fig 5b: K_MLP = factor × d' (paper 1792 / 896 / 448 / 224 for d' = 448)."""
    return [Variant(2, f"K_MLP = {f:g}·d'", (("mlp_keep_factor", float(f)),)) for f in factors]


def fig5c(shares=(1 / 2, 2 / 3, 5 / 6)) -> list[Variant]:
    """Fig 5c: share of layers removed (paper 12 / 16 / 20 of 24)."""
    return [Variant(3, f"{s:.0%} of layers removed", (("layers_removed_share", float(s)),)) for s in shares]


def alpha_sweep(alphas=(0.0, 0.4, 0.7, 1.0)) -> list[Variant]:
    """eq. 6 cross-layer mixing α (paper sweeps 0..1)."""
    return [Variant(1, f"α = {a:g}", (("alpha", float(a)),)) for a in alphas]


def restoration_curve(budgets=(2048, 8192, 16384), rows: int = 500, stage: int = 1) -> list[Variant]:
    """How many distillation samples restore a stage: the method's cut of ``stage`` (shared with the
    main run) restored on a seeded sample of each budget of training rows, evaluated on the first
    ``rows`` test rows. The budget of the profile's restorations is read off this curve."""
    return [Variant(stage, f"{b:,} samples", (("distill_max_train", int(b)),), full_budget=True,
                    tag=f"stage{stage}_restore{int(b)}", rows=rows) for b in budgets]


RESTORATION_COLUMNS = ["distill_max_train", "hr@20", "hr@20 95% CI", "ndcg@20", "avg retention", "best_kd_loss",
                       "distill_minutes"]  # what a chapter shows of a restoration curve


def restoration_group(run: Run, stage: int, teacher_rows: int, progress: bool = False) -> pd.DataFrame | None:
    """The restoration curve of ``stage`` at the profile's budgets (:attr:`Profile.restoration_curve_budgets`),
    evaluated on the first ``restoration_rows`` test rows (at most ``teacher_rows``, those the teacher was
    evaluated on), stored as the group ``restoration_stage<stage>``; None when the profile has no budgets."""
    budgets = run.prof.restoration_curve_budgets
    if not budgets:
        return None
    rows = min(run.prof.restoration_rows, teacher_rows)
    return run_group(run, f"restoration_stage{stage}", restoration_curve(budgets, rows, stage), progress=progress)


def lambda_sweep(lambdas=(0.0, 0.4, 0.8, 1.0)) -> list[Variant]:
    """eq. 13 KD weight λ of the Stage I restoration (paper sweeps 0..1 by 0.2)."""
    return [Variant(1, f"λ = {lam:g}", (("kd_lambda", float(lam)),)) for lam in lambdas]


# ---- one variant ---------------------------------------------------------------------------

def _link(src: Path, dst: Path) -> None:
    """``dst`` → ``src`` (a symlink), unless ``dst`` already holds something."""
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())


def variant_run(run: Run, variant: Variant) -> Run:
    """The variant's child run: its profile, in ``<run>/ablations/<variant name>/`` laid out like a
    runs root (``<dataset>/splits``, ``<dataset>/<profile>/…``)."""
    return Run(run.dataset, variant.profile(run.prof), run.folder / "ablations" / variant.name(run.prof), run.config)


def heads_file(run: Run, variant: Variant) -> Path:
    """A variant's Stage I head choice: ``results/stage1_heads.json`` of its run folder (made by
    :func:`prunerec_utils.pipeline.stages.head_scores` there, or linked from the main run's)."""
    return variant_run(run, variant).result_file("stage1_heads")


def _head_file(prof, alpha: float) -> str:
    return "stage1_heads.json" if alpha == prof.alpha else f"stage1_heads_alpha{alpha:g}.json"


def links(run: Run, variant: Variant) -> dict[Path, Path]:
    """What a variant's folder shares with the main run: ``{path in the variant folder: main run's
    path}``. Always the splits and the teacher; the distilled stage it starts from; the main run's cut of
    its stage where only the restoration changes (a restoration curve); for a Stage III variant the main
    run's ΔPPL search (its first steps are reused where the settings allow); for Stage I the main run's
    head scores it would compute alike; and the main run's distilled stage itself for a variant that changes
    nothing (a full-budget point equal to the main run). A linked output is still a cached step: the variant's own settings are
    checked against its record before it is reused."""
    v, child = variant.effective(run.prof), variant_run(run, variant)
    out = {child.splits: run.splits, child.model("teacher"): stages.ensure(run, "teacher")}
    if v.full_budget and not v.overrides and v.heads == "greedy":  # the main run's own stage, restored alike
        out[child.model(f"stage{v.stage}")] = run.model(f"stage{v.stage}")
    if v.heads == "greedy" and {k for k, _ in v.overrides} <= RESTORATION_ONLY:  # the same cut, restored otherwise
        out[child.model(f"stage{v.stage}_pruned")] = run.model(f"stage{v.stage}_pruned")
    source = STAGES[f"stage{v.stage}"]["source"]
    if source != "teacher":
        out[child.model(source)] = stages.ensure(run, source)
        if v.stage == 3:
            out[child.folder / "results" / stages.LAYER_SEARCH] = run.model("stage3_pruned") / stages.SURGERY
        return out
    if v.heads == "greedy":
        out[child.result_file("stage1_heads")] = run.folder / "results" / _head_file(run.prof, child.prof.alpha)
    elif v.heads in ("global", "global_no_alpha"):
        out[child.result_file("stage1_heads_independent")] = run.result_file("stage1_heads_independent")
    return out


def linked_variant_run(run: Run, variant: Variant) -> Run:
    """Create (or reuse) the variant's folder with its :func:`links` to what exists in the main run;
    returns the variant's run."""
    if variant.stage == 1 and variant.heads in ("global", "global_no_alpha"):
        stages.head_scores(run, greedy=False)  # scored once, in the main run
    for dst, src in links(run, variant).items():
        if src.exists():
            _link(src, dst)
    return variant_run(run, variant)


def cut_heads(run: Run, variant: Variant) -> list[list[int]] | None:
    """The heads a Stage I variant cut, per layer (its ``stage1_heads.json``), or None if not made yet."""
    path = heads_file(run, variant)
    return read_json(path)["pruned"] if path.exists() else None


def cut_head_overlap(run: Run, variants: list[Variant]) -> pd.DataFrame:
    """[variants × variants] share of the row variant's cut (layer, head) pairs that the column
    variant cuts too (every choice cuts as many heads per layer, so the matrix is symmetric).
    1.0 off the diagonal: the two choices give the same model before restoration. NaN where a
    variant's choice is not stored yet."""
    sets = {}
    for v in variants:
        heads = cut_heads(run, v)
        sets[v.label] = None if heads is None else {(layer, h) for layer, cut in enumerate(heads) for h in cut}
    labels = list(sets)
    return pd.DataFrame([[len(sets[a] & sets[b]) / len(sets[a]) if sets[a] and sets[b] else float("nan")
                          for b in labels] for a in labels], index=labels, columns=labels)


def run_variant(run: Run, variant: Variant, progress: bool = False) -> dict:
    """Prune + distil + evaluate one variant (each step resumes); returns its row for the tables."""
    child = linked_variant_run(run, variant)
    for stage in range(variant.stage, variant.last + 1):
        out = getattr(stages, f"stage{stage}")(child, progress)
    rows = min(variant.test_rows(run.prof) or 10**9, len(fixed_test_rows(run)))
    res = evaluate_cached(child, f"stage{variant.last}_n{rows}", out["distilled_dir"], limit=rows, progress=progress)
    params = out["surgery"]["params"][f"stage{variant.last}"]
    return {"variant": variant.name(run.prof), "label": variant.label, "stage": variant.stage,
            "heads": variant.heads, **dict(variant.overrides), "result": res,
            "non_embedding": params["non_embedding"], "total": params["total"],
            "best_kd_loss": out["distill"]["best_eval_loss"], "distill_minutes": out["distill"]["wall_seconds"] / 60}


# ---- a group of variants -------------------------------------------------------------------

def run_group(run: Run, group: str, variants: list[Variant], progress: bool = False) -> pd.DataFrame:
    """Run every variant of a figure / table; one row each, with retention against the teacher
    on the same rows. Also written to ``results/ablation_<group>.json`` (for the scorecard)."""
    rows = [run_variant(run, v, progress) for v in variants]
    n = rows[0]["result"].metrics["n"]
    teacher = first_rows(evaluate_cached(run, "teacher", stages.ensure(run, "teacher"), progress=progress), n)
    table = ablation_table(rows, teacher)
    atomic_write_text(run.result_file(f"ablation_{group}"),
                      json.dumps({"group": group, "test_rows": n, "users": teacher.metrics["users"],
                                  "max_train": variants[0].profile(run.prof).distill_samples,
                                  "teacher": {k: teacher.metrics[k] for k in METRICS},
                                  "rows": table.reset_index().to_dict(orient="records")}))
    return table


def restoration_summary(curve: pd.DataFrame, budget: int | None) -> str:
    """One line read off a :func:`restoration_curve` table (a ``distill_max_train`` column): the
    validation KD loss and HR@20 from the smallest to the largest budget, the paired HR@20
    difference of the two ends with its verdict (:func:`~prunerec_utils.method.metrics.decision`:
    same rows, users resampled jointly), and the budget this run's restorations use."""
    t = curve.sort_values("distill_max_train")
    lo, hi = t.iloc[0], t.iloc[-1]
    small, large = f"{int(lo['distill_max_train']):,}", f"{int(hi['distill_max_train']):,}"
    if isinstance(lo.get("ranks"), list) and isinstance(hi.get("ranks"), list):
        d, a, b = contrast_bootstrap([hi["ranks"], lo["ranks"]], (1, -1), hi["row users"])["hr@20"]
        paired = f"paired difference {d:+.4f} {interval_text(a, b)}: {decision(a, b, large, small)}"
    else:
        paired = "no paired difference: stored without per-row ranks"
    return (f"From {small} to {large} samples: validation KD loss "
            f"{lo['best_kd_loss']:.3f} → {hi['best_kd_loss']:.3f}, HR@20 {lo['hr@20']:.4f} {lo['hr@20 95% CI']} → "
            f"{hi['hr@20']:.4f} {hi['hr@20 95% CI']} ({paired}). "
            f"This run restores every stage on {f'{budget:,}' if budget else 'all'} samples.")


def ablation_table(rows: list[dict], teacher) -> pd.DataFrame:
    """Metrics, their retention against ``teacher`` (same rows), parameters, and each row's rank and
    user id (lists, for paired comparisons) — one row per variant."""
    out = {}
    for r in rows:
        m = r["result"].metrics
        row = {k: v for k, v in r.items() if k not in ("result", "label")}
        row.update({k: m[k] for k in METRICS})
        row["hr@20 95% CI"] = interval_text(*m["ci95"]["hr@20"])  # shown; the bounds stay numbers:
        row["hr@20 lo"], row["hr@20 hi"] = m["ci95"]["hr@20"]
        row["avg retention"] = retention(m, teacher.metrics)["avg"]
        row["n"] = m["n"]
        # per-row ranks and user ids: the paired intervals of the claims (scorecard.claim_interval)
        row["ranks"] = r["result"].per_user["rank"].astype(int).tolist()
        row["row users"] = r["result"].per_user["user_id"].astype(str).tolist()
        out[r["label"]] = row
    return pd.DataFrame.from_dict(out, orient="index")


def with_paper_table3(table: pd.DataFrame) -> pd.DataFrame:
    """Table 3 rows with the paper's HR@20 / NDCG@20 beside ours."""
    out = table[["heads", "hr@20", "ndcg@20", "avg retention"]].copy()
    out["paper hr@20"] = [PAPER_TABLE3[h][0] for h in out["heads"]]
    out["paper ndcg@20"] = [PAPER_TABLE3[h][1] for h in out["heads"]]
    return out


def load_group(run: Run, group: str) -> pd.DataFrame | None:
    """A group's table as :func:`run_group` stored it, or None if it was not run."""
    path = run.result_file(f"ablation_{group}")
    if not path.exists():
        return None
    return pd.DataFrame(read_json(path)["rows"]).set_index("index").rename_axis(None)


# ---- the paper's claims about its ablations ------------------------------------------------
