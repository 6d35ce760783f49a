"""Ablation variants: naming shares common points, head choices, links to the main run, resumption."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from prunerec_utils import PruneRecError
from prunerec_utils.method.heads import global_ranking, random_heads
from prunerec_utils.method.metrics import TIE, bootstrap_ci, detectable_difference
from prunerec_utils.pipeline import ablations, stages
from prunerec_utils.pipeline.ablations import Variant
from prunerec_utils.pipeline.evaluate import fixed_test_rows
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies import scorecard


def test_equal_settings_share_one_folder_name():
    prof = get_profile("ci")
    full = {ablations.table3()[-1].name(prof), ablations.fig5a()[0].name(prof),
            ablations.alpha_sweep((prof.alpha,))[0].name(prof), ablations.lambda_sweep((prof.kd_lambda,))[0].name(prof)}
    assert full == {"stage1_full"}
    names = [v.name(prof) for v in ablations.table3() + ablations.fig5a() + ablations.fig5b() + ablations.fig5c()]
    assert "stage2_full" in names and "stage3_full" in names
    assert "stage1_hidden_variantgradient" in names and "stage2_mlp_keep_factor4" in names
    assert len(set(names)) == len(names) - 1  # only fig5a's eq. 7 point repeats Table 3's full method


def test_bad_variants_are_refused():
    with pytest.raises(PruneRecError, match="head choice"):
        Variant(1, "x", heads="best")
    with pytest.raises(PruneRecError, match="stages 1, 2 or 3"):
        Variant(4, "x")
    with pytest.raises(PruneRecError, match="in order"):
        Variant(3, "x", through=2)
    with pytest.raises(PruneRecError, match="no_such_field"):
        Variant(1, "x", (("no_such_field", 1),)).profile(get_profile("ci"))


def test_variant_profile_takes_the_reduced_budget():
    prof = get_profile("ci", ablation_max_train=32)
    vprof = ablations.alpha_sweep((0.3,))[0].profile(prof)
    assert (vprof.alpha, vprof.distill_max_train, vprof.kd_lambda) == (0.3, 32, prof.kd_lambda)
    assert vprof.max_train == prof.max_train  # the teacher's budget is not the variant's
    unset = replace(get_profile("ci"), ablation_max_train=None)
    assert Variant(1, "x").profile(unset).distill_max_train == unset.max_train


def test_global_ranking_and_random_heads():

    scores = torch.tensor([[0.9, 0.1, 0.5, 0.0], [0.8, 0.2, 0.0, 0.1]])  # mean: .85 .15 .25 .05
    assert global_ranking(scores, 2) == [1, 3]
    a, b = random_heads(6, 8, 3, seed=1), random_heads(6, 8, 3, seed=1)
    assert a == b and all(len(set(p)) == 3 and max(p) < 8 for p in a)
    assert len({tuple(p) for p in a}) > 1  # chosen per layer, not one set for all
    assert a != random_heads(6, 8, 3, seed=2)


def test_variants_run_in_linked_folders_and_resume(tmp_path, ml100k_splits, monkeypatch):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_train=48, max_valid=16, max_test=12, epochs=1, importance_samples=3,
                       ablation_max_train=24, ablation_rows=8)
    main = tmp_path / "ml-100k" / "ci"
    # a fresh run folder: a Stage II variant starts from the run's Stage I, which is made first (and its teacher)
    row = ablations.run_variant(Run("ml-100k", prof, tmp_path), ablations.fig5b((1.0,))[0])
    assert all((main / "models" / m / "training_summary.json").exists() for m in ("teacher", "stage1"))
    assert row["result"].metrics["n"] == 8 and (main / "ablations" / row["variant"]).is_dir()

    table = ablations.run_group(Run("ml-100k", prof, tmp_path), "t3", [Variant(1, "random heads", heads="random"),
                                                                       Variant(1, "no layer-wise", heads="global"),
                                                                       Variant(1, "λ = 0", (("kd_lambda", 0.0),))])
    assert list(table.index) == ["random heads", "no layer-wise", "λ = 0"]
    assert (table["n"] == 8).all()
    root = main / "ablations"
    rand = json.loads((root / "stage1_heads_random/ml-100k/ci/models/stage1_pruned/surgery.json").read_text())
    assert rand["kept_heads"] == [[h for h in range(4) if h not in p] for p in random_heads(4, 4, 2, prof.seed + 5)]
    glob = json.loads((root / "stage1_heads_global/ml-100k/ci/models/stage1_pruned/surgery.json").read_text())
    assert all(k == glob["kept_heads"][0] for k in glob["kept_heads"])  # one ranking, every layer
    lam = root / "stage1_kd_lambda0/ml-100k/ci/models"
    assert (lam / "stage1_pruned").is_symlink() and (lam / "teacher").is_symlink()  # only the restoration changed
    summary = json.loads((lam / "stage1" / "training_summary.json").read_text())
    assert summary["profile"]["kd_lambda"] == 0.0 and summary["profile"]["distill_max_train"] == 24
    assert summary["train_samples"] == 24 and summary["settings"]["max_train"] == 24  # the reduced restoration
    assert not (main / "models" / "stage1" / "training_summary.json").read_text() == json.dumps(summary)
    doc = json.loads((main / "results" / "ablation_t3.json").read_text())
    assert [r["index"] for r in doc["rows"]] == list(table.index) and doc["test_rows"] == 8
    first8 = fixed_test_rows(Run("ml-100k", prof, tmp_path)).iloc[:8]
    assert doc["users"] == first8["user_id"].nunique()  # users, not rows
    stored = ablations.load_group(Run("ml-100k", prof, tmp_path), "t3")  # what the claims pair up
    assert all(r == first8["user_id"].astype(str).tolist() for r in stored["row users"])
    assert all(len(r) == 8 and all(-1 <= x < prof.num_beams for x in r) for r in stored["ranks"])
    assert stored["ranks"].tolist() == table["ranks"].tolist()
    t = doc["teacher"]  # retention is against the teacher on the same 8 users (NaN where it has no hit)
    want = sum(table.loc["λ = 0", k] / t[k] if t[k] else float("nan") for k in ablations.METRICS) / 4
    assert table.loc["λ = 0", "avg retention"] == pytest.approx(want, nan_ok=True)

    monkeypatch.setattr(stages, "distill", lambda *a, **k: pytest.fail("a finished variant must not train again"))
    monkeypatch.setattr(stages, "head_importance", lambda *a, **k: pytest.fail("nor score heads again"))
    again = ablations.run_group(Run("ml-100k", prof, tmp_path), "t3", [Variant(1, "random heads", heads="random")])
    assert again.loc["random heads", "hr@20"] == table.loc["random heads", "hr@20"]


def _table(column, values, hr, users=100, per_user=10, hits=None, blocks=False):
    """A stored ablation table: variant i hits rows 0 .. hr_i·N − 1 (nested sets, so the variants'
    differences are consistent row by row); row j belongs to user j mod ``users`` (``blocks``: to
    user j // ``per_user``, each user's rows side by side). ``hits`` (optional, one row-index list
    per variant) replaces the nested sets."""
    n = users * per_user
    hits = hits or [range(round(h * n)) for h in hr]
    ranks = [[-1] * n for _ in hr]
    for r, hit in zip(ranks, hits):
        for j in hit:
            r[j] = 0
    row_users = [f"u{j // per_user if blocks else j % users}" for j in range(n)]
    return pd.DataFrame({column: values, "hr@20": [sum(x == 0 for x in r) / n for r in ranks],
                         "ranks": ranks, "row users": [row_users] * len(hr)}, index=[f"r{i}" for i in range(len(hr))])


def test_cut_head_overlap_compares_the_stored_choices(tmp_path):
    prof = get_profile("ci")
    choices = {"global_no_alpha": [[1, 2], [1, 2]], "global": [[1, 2], [1, 2]], "greedy": [[1, 3], [0, 2]]}
    for v in ablations.table3():
        if v.heads in choices:  # random heads: not prepared yet
            path = ablations.variant_run(Run("ml-100k", prof, tmp_path), v).result_file("stage1_heads")
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"pruned": choices[v.heads]}))
    m = ablations.cut_head_overlap(Run("ml-100k", prof, tmp_path), ablations.table3())
    assert m.loc["no layer-wise importance", "no layer-wise importance, no α"] == 1.0  # the same model
    assert m.loc["full method", "no layer-wise importance"] == 0.5  # (0, 1) and (1, 2) of four pairs
    assert m.loc["full method", "full method"] == 1.0
    assert m["random heads"].isna().all() and m.loc["random heads"].isna().all()


def test_claims_follow_the_numbers():
    prof = get_profile("ci")
    heads = ["random", "global_no_alpha", "global", "greedy"]

    def groups(table3, fig5b, fig5c):
        return {"table3": _table("heads", heads, table3),
                "fig5b": _table("mlp_keep_factor", [4.0, 2.0, 1.0, 0.5], fig5b),
                "fig5c": _table("layers_removed_share", [1 / 2, 2 / 3, 5 / 6], fig5c)}

    good = groups([0.10, 0.11, 0.12, 0.13], [0.10, 0.12, 0.09, 0.05], [0.12, 0.11, 0.05])
    table = scorecard.ablation_claims(good, prof).set_index("claim")
    c = table["verdict"]
    assert c.filter(like="Table 3").tolist() == ["holds", "holds"]
    assert table.loc["Table 3: α helps a global ranking", "ours (HR@20)"] == "r1 0.1100; r2 0.1200"  # the pair only
    assert table.loc["Table 3: α helps a global ranking", "paired contrast"].startswith("+0.0100 [")
    assert c.filter(like="Fig 5b").iloc[0] == "holds" and c.filter(like="Fig 5c").iloc[0] == "holds"
    # Fig 5c's contrast: the drop past 2/3 (0.06) minus the drop before it (0.01)
    assert table.filter(like="Fig 5c", axis=0)["paired contrast"].iloc[0].startswith("+0.0500 [")
    assert (c.filter(like="Fig 5a") == "not measured here").all() and (c.filter(like="λ") == "not measured here").all()
    bad = groups([0.10, 0.13, 0.12, 0.11], [0.13, 0.12, 0.09, 0.05], [0.12, 0.06, 0.05])
    c = scorecard.ablation_claims(bad, prof).set_index("claim")["verdict"]
    assert c.filter(like="Table 3").tolist() == ["does not hold", "does not hold"]
    assert c.filter(like="Fig 5b").iloc[0] == "does not hold" and c.filter(like="Fig 5c").iloc[0] == "does not hold"
    flat = {"table3": _table("heads", heads, [0.0] * 4),
            "fig5c": _table("layers_removed_share", [1 / 2, 2 / 3, 5 / 6], [0.06] * 3)}
    c = scorecard.ablation_claims(flat, prof).set_index("claim")["verdict"]
    assert c.filter(like="Table 3").tolist() == [TIE, TIE]  # the same rows hit: no order to claim
    assert c.filter(like="Fig 5c").iloc[0] == "does not hold"  # no drop at all is no sharp drop


def test_claims_are_decided_by_the_paired_interval_not_by_overlapping_ones():
    prof = get_profile("ci")
    # 0.10 vs 0.11 on 1,000 rows from 100 users: 10 users hit on every row, so each single interval
    # is about ±0.06 wide and they overlap; yet the 0.11 variant hits every row the other hits plus
    # one row of each of 10 more users: decided
    base = list(range(100))
    nested = _table("alpha", [0.0, prof.alpha], [0.10, 0.11], blocks=True,
                    hits=[base, base + [200 + 10 * u for u in range(10)]])
    ci = {lab: bootstrap_ci(r["ranks"], r["row users"])["hr@20"] for lab, r in nested.iterrows()}
    assert ci["r1"][0] < ci["r0"][1]  # the single intervals overlap
    claim = scorecard.ablation_claims({"alpha": nested}, prof).set_index("claim").filter(like="α mixing", axis=0)
    assert claim["verdict"].iloc[0] == "holds"
    # the same HR@20 numbers, but no user is hit by both: 10 users by one, 11 others by the other
    swapped = _table("alpha", [0.0, prof.alpha], [0.10, 0.11], blocks=True, hits=[range(0, 100), range(100, 210)])
    claim = scorecard.ablation_claims({"alpha": swapped}, prof).set_index("claim").filter(like="α mixing", axis=0)
    lo, hi = (float(x) for x in claim["paired contrast"].iloc[0].split("[")[1].rstrip("]").split(","))
    assert lo < 0 < hi
    assert claim["verdict"].iloc[0] == f"not decided at this budget (detectable ≥ {detectable_difference(lo, hi):.4f})"
    assert float(claim["detectable"].iloc[0]) == pytest.approx(detectable_difference(lo, hi), abs=1e-4)


def test_claims_on_a_table_stored_without_ranks_are_not_measured():
    prof = get_profile("ci")
    old = _table("alpha", [0.0, prof.alpha], [0.10, 0.11]).drop(columns=["ranks", "row users"])
    claim = scorecard.ablation_claims({"alpha": old}, prof).set_index("claim").filter(like="α mixing", axis=0)
    assert claim["verdict"].iloc[0] == scorecard.NO_RANKS and scorecard.verdict_kind(scorecard.NO_RANKS) == "not measured"
    other = _table("alpha", [0.0, prof.alpha], [0.10, 0.11])
    other.at["r1", "row users"] = ["someone else"] * len(other.at["r1", "ranks"])
    with pytest.raises(PruneRecError, match="same test rows"):
        scorecard.ablation_claims({"alpha": other}, prof)


def test_a_depth_variant_continues_the_main_runs_layer_search(tmp_path, ml100k_splits, tiny_model_dir):
    import shutil

    from prunerec_utils.pipeline.finetune import SUMMARY
    from prunerec_utils.steps import record

    prof = get_profile("ci")
    main = tmp_path / "ml-100k" / "ci"
    (tmp_path / "ml-100k" / "splits").parent.mkdir(parents=True)
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    for stage in ("teacher", "stage1", "stage2"):
        shutil.copytree(tiny_model_dir, main / "models" / stage)
        (main / "models" / stage / SUMMARY).write_text("{}")

    def prefix(vrun):
        return stages.layer_search_prefix(vrun, stages.stage3_settings(vrun, vrun.stage("stage2")))

    half = ablations.fig5c()[0]
    run = Run("ml-100k", prof, tmp_path)
    assert prefix(ablations.linked_variant_run(run, half)) is None  # the main run has no Stage III yet
    settings = stages.stage3_settings(Run("ml-100k", prof, tmp_path), main / "models" / "stage2")
    search = record(settings, {"removed": [3, 1], "base_ppl": 9.0,
                               "steps": [{"removed": 3, "ppl": 9.5, "delta": {"3": 0.5}}]})
    (main / "models" / "stage3_pruned").mkdir(parents=True)
    (main / "models" / "stage3_pruned" / stages.SURGERY).write_text(json.dumps(search))
    for variant in (half, Variant(3, "fewer samples", (("calibration_samples", prof.calibration_samples + 1),))):
        vrun = ablations.linked_variant_run(run, variant)
        link = vrun.folder / "results" / stages.LAYER_SEARCH
        assert link.resolve() == (main / "models" / "stage3_pruned" / stages.SURGERY).resolve()
        assert prefix(vrun) == (search if variant is half else None)  # other calibration samples: a new search
    assert not (ablations.linked_variant_run(run, ablations.fig5b()[0]).folder / "results" / stages.LAYER_SEARCH).exists()  # a width variant changes Stage II


def test_restoration_curve_changes_only_the_restoration_budget(tmp_path):
    prof = get_profile("ci", ablation_max_train=32, ablation_rows=8)
    curve = ablations.restoration_curve((64, 128), rows=20)
    assert [v.profile(prof).distill_max_train for v in curve] == [64, 128]
    assert [v.test_rows(prof) for v in curve] == [20, 20] and ablations.table3()[0].test_rows(prof) == 8
    assert [v.name(prof) for v in curve] == ["stage1_restore64", "stage1_restore128"]
    run = Run("ml-100k", prof, tmp_path)
    from prunerec_utils.pipeline.finetune import SUMMARY

    run.model("teacher").mkdir(parents=True)
    (run.model("teacher") / SUMMARY).write_text("{}")  # links() only needs the teacher to exist
    shared = ablations.links(run, curve[0])
    assert shared[ablations.variant_run(run, curve[0]).model("stage1_pruned")] == run.model("stage1_pruned")  # one cut
    own = ablations.restoration_curve((prof.max_train,), rows=20)[0]  # the main run's own budget
    assert ablations.links(run, own)[ablations.variant_run(run, own).model("stage1")] == run.model("stage1")
    assert ablations.variant_run(run, curve[0]).model("stage1") not in shared


def test_restoration_summary_reads_both_ends_of_the_curve():
    curve = _table("distill_max_train", [8192, 2048], [0.11, 0.05])  # the larger budget hits 60 more rows
    curve["best_kd_loss"], curve["hr@20 95% CI"] = [1.5, 2.0], ["[0.09, 0.13]", "[0.03, 0.07]"]
    line = ablations.restoration_summary(curve, 8192)
    assert line.startswith("From 2,048 to 8,192 samples: validation KD loss 2.000 → 1.500, HR@20 0.0500")
    assert "paired difference +0.0600 [" in line and "8,192 ahead of 2,048" in line and line.endswith("on 8,192 samples.")
    swapped = _table("distill_max_train", [8192, 2048], [0.11, 0.10], blocks=True,
                     hits=[range(0, 110), range(110, 210)])  # no user hit by both: the ends trade users
    swapped["best_kd_loss"], swapped["hr@20 95% CI"] = [1.5, 2.0], ["[a]", "[b]"]
    assert "not decided at this budget (detectable ≥ " in ablations.restoration_summary(swapped, None)
    old = curve.drop(columns=["ranks", "row users"])
    assert "no paired difference: stored without per-row ranks" in ablations.restoration_summary(old, None)


@pytest.mark.parametrize("stage", [2, 3])
def test_a_later_stage_s_restoration_curve_shares_that_stage_s_cut(tmp_path, stage):
    from prunerec_utils.pipeline.finetune import SUMMARY

    run = Run("ml-100k", get_profile("ci"), tmp_path)
    for name in ("teacher", "stage1", "stage2"):  # finished stages: links() only needs them to exist
        run.model(name).mkdir(parents=True)
        (run.model(name) / SUMMARY).write_text("{}")
    point = ablations.restoration_curve((64,), rows=20, stage=stage)[0]
    child = ablations.variant_run(run, point)
    shared = ablations.links(run, point)
    assert shared[child.model(f"stage{stage}_pruned")] == run.model(f"stage{stage}_pruned")  # one cut, restored anew
    assert shared[child.model(f"stage{stage - 1}")] == run.model(f"stage{stage - 1}")  # from the main run's stage
    assert child.model(f"stage{stage}") not in shared
    width = ablations.fig5b()[0] if stage == 2 else ablations.fig5c()[0]  # a variant that changes the cut itself
    assert ablations.variant_run(run, width).model(f"stage{stage}_pruned") not in ablations.links(run, width)
