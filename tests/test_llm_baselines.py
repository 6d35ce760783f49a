"""Pruned-LLM baselines (SLMRec-style, random structured), Table 2 and the scorecard on the ci profile."""

import json
import random

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from prunerec_utils.method.surgery import param_formula
from prunerec_utils.pipeline import stages
from prunerec_utils.pipeline.evaluate import evaluate_cached
from prunerec_utils.pipeline.run import Run
from prunerec_utils.pipeline.stages import train_teacher
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies import llm_baselines, scorecard


def test_layers_for_matches_the_closest_depth(tiny_model_dir):
    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    one = param_formula(cfg)["non_embedding"] // cfg.num_hidden_layers
    for n in (1, 2, 3):
        two = AutoConfig.from_pretrained(tiny_model_dir, num_hidden_layers=n)
        assert llm_baselines.layers_for(cfg, param_formula(two)["non_embedding"] + one // 4) == n
    assert llm_baselines.layers_for(cfg, 10**12) == cfg.num_hidden_layers and llm_baselines.layers_for(cfg, 0) == 1


def test_scorecard_without_results_measures_nothing(tmp_path):
    card = scorecard.scorecard(Run("ml-100k", get_profile("ci"), tmp_path))
    assert len(card) >= 14 and (card["verdict"] == scorecard.NOT_MEASURED).all()
    assert set(card["section"]) >= {"Obs. 1 (Fig 1a)", "Headline", "Ablations", "Table 2"}


def test_observation_verdicts_follow_the_stored_findings(tmp_path):
    def card(levels, ft=0.3, base=0.2):
        conc = [{"K": 0.1, "mean share, fine-tuned": ft, "mean share, base": base,
                 "layers where fine-tuned is higher": 3, "layers": 4}]
        (tmp_path / "results").mkdir(exist_ok=True)
        (tmp_path / "results" / "observations.json").write_text(json.dumps(
            {"mlp_concentration": conc, "attention_concentration": conc, "basis": "retention",
             "wanda_vs_random": [{"sparsity": s, "wanda": w, "random": r, "wanda vs random": v} for s, w, r, v in levels]}))
        return [r["verdict"] for r in scorecard.observation_rows(tmp_path)]

    assert card([(0.3, 0.5, 0.8, "below"), (0.6, 0.1, 0.4, "below")]) == ["holds"] * 4
    assert card([(0.3, 0.5, 0.8, "below"), (0.6, 0.5, 0.4, "above")])[3] == "holds at 1 of 2 levels"
    assert card([(0.3, 0.0, 0.0, "equal")])[3].startswith("cannot be checked")
    # fine-tuned below the base and its top 10% at 1.5x the uniform share: Obs. 1 and 2 fail
    assert card([(0.3, 0.9, 0.8, "above")], ft=0.15)[:4] == ["does not hold"] * 4


def test_baselines_table2_and_scorecard(tmp_path, ml100k_splits):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_train=48, max_valid=16, max_test=12, epochs=1, importance_samples=3)
    train_teacher(Run("ml-100k", prof, tmp_path), progress=False)
    for stage in (stages.stage1, stages.stage2, stages.stage3):
        final = stage(Run("ml-100k", prof, tmp_path))
    teacher_dir = Run("ml-100k", prof, tmp_path).stage("teacher")
    evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", teacher_dir, progress=False)
    evaluate_cached(Run("ml-100k", prof, tmp_path), "stage3", final["distilled_dir"], progress=False)

    slm = llm_baselines.slmrec(Run("ml-100k", prof, tmp_path))
    target = final["surgery"]["params"]["stage3"]["non_embedding"]
    teacher_cfg = AutoConfig.from_pretrained(teacher_dir)
    n = slm["surgery"]["layers_kept"]
    assert n == llm_baselines.layers_for(teacher_cfg, target) and slm["surgery"]["target_non_embedding"] == target
    pruned = AutoModelForCausalLM.from_pretrained(slm["pruned_dir"])
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    assert pruned.config.num_hidden_layers == n
    assert torch.equal(pruned.model.layers[n - 1].mlp.up_proj.weight, teacher.model.layers[n - 1].mlp.up_proj.weight)
    assert slm["result"].metrics["n"] == 12

    rnd = llm_baselines.random_structured(Run("ml-100k", prof, tmp_path))
    ours_cfg = AutoConfig.from_pretrained(final["distilled_dir"])
    rs = tmp_path / "ml-100k" / "ci" / "ablations" / "random_structured" / "ml-100k" / "ci" / "models"
    rnd_cfg = AutoConfig.from_pretrained(rs / "stage3")
    shape = ("hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers")
    assert [getattr(rnd_cfg, k) for k in shape] == [getattr(ours_cfg, k) for k in shape]  # same shapes
    assert rnd["non_embedding"] == target and rnd["result"].metrics["n"] == 12  # full budget: every test user
    s3 = json.loads((rs / "stage3_pruned" / "surgery.json").read_text())
    assert s3["removed"] == random.Random(prof.seed).sample(range(4), s3["n_remove"]) and s3["steps"] == []
    s1 = json.loads((rs / "stage1_pruned" / "surgery.json").read_text())
    assert s1["hidden_variant"] == "random" and s1["hidden_dims"] != final["surgery"].get("hidden_dims")
    assert json.loads((rs / "stage1" / "training_summary.json").read_text())["profile"]["max_train"] == prof.max_train

    rows = llm_baselines.stored_rows(Run("ml-100k", prof, tmp_path))
    assert list(rows) == ["teacher", "PruneRec (ours)", "SLMRec-style", "random structured"]
    t2 = llm_baselines.table2(rows)
    assert t2.loc["PruneRec (ours)", "non-embedding params"] == target
    assert t2.loc["teacher", "non-embedding params"] == param_formula(teacher_cfg)["non_embedding"]
    t = rows["teacher"][0].metrics
    want = 100 * sum(rows["SLMRec-style"][0].metrics[k] / t[k] if t[k] else float("nan")
                     for k in llm_baselines.METRICS) / 4
    assert t2.loc["SLMRec-style", "avg % of teacher"] == pytest.approx(want, nan_ok=True)

    card = scorecard.scorecard(Run("ml-100k", prof, tmp_path)).set_index("claim")
    for claim, other in [("SLMRec-style layer-only pruning", "SLMRec-style"),
                         ("random structured pruning at the same shapes", "random structured")]:
        row = card.loc[f"PruneRec beats {claim}"]
        assert row["verdict"] != scorecard.NOT_MEASURED
        assert f"vs {rows[other][0].metrics['ndcg@20']:.4f}" in row["ours"]  # read from that baseline's result
    assert card.loc["PruneRec beats sasrec", "verdict"] == scorecard.NOT_MEASURED  # notebook 08 not run here
    share = card.loc["…with under 5% of the non-embedding parameters"]
    assert share["verdict"].startswith("does not hold") and f"{target:,}" in share["ours"]
    head = card.loc["≈ 88% average retention of the teacher's metrics after Stages I-III", "verdict"]
    no_hit = any(t[k] == 0 for k in llm_baselines.METRICS)
    assert head == scorecard.NO_HIT if no_hit else head in ("holds", "does not hold")
    assert not any("nan" in text for text in card["ours"])  # a teacher without a hit reads "not measurable"


def test_paired_verdict_reads_the_sign_and_calls_equal_models_a_tie():
    import pandas as pd

    from prunerec_utils.pipeline.evaluate import EvalResult
    from prunerec_utils.studies.scorecard import paired_verdict

    def res(ranks):
        per_user = pd.DataFrame({"user_id": [str(i) for i in range(len(ranks))], "rank": ranks})
        return EvalResult(per_user, {"ndcg@20": 0.0})

    hits, misses = res([0] * 50), res([-1] * 50)
    assert paired_verdict(hits, misses)[1] == "holds"
    assert paired_verdict(misses, hits)[1] == "does not hold"
    # an interval that contains 0 decides nothing, and says what it could have detected
    assert paired_verdict(hits, res([0] * 50))[1] == "tie: no row differs"  # no spread: nothing to detect
    ours, word = paired_verdict(res([0] + [-1] * 49), misses)
    assert word.startswith("not decided at this budget (detectable ≥ 0.0") and "50 rows from 50 users" in ours
    assert word.endswith(f"{float(ours.rsplit('smallest detectable ', 1)[1]):.4f})")  # one number, stated once


def test_tally_keeps_decided_verdicts_apart_from_noise_profile_and_missing():
    import pandas as pd

    card = pd.DataFrame({"section": ["A", "A", "A", "B", "B", "B", "B"],
                         "verdict": ["holds", "not decided at this budget (detectable ≥ 0.0300)", "tie",
                                     "holds at 1 of 2 levels",
                                     "does not hold (set by the profile's shapes, not measured)",
                                     scorecard.NOT_MEASURED, "does not hold"]})
    t = scorecard.tally(card)
    assert list(t.index) == ["A", "B", "total"]
    assert t.loc["A"].to_dict() == {"holds": 1, "does not hold": 0, "partly": 0, "not decided": 2,
                                    "set by the profile": 0, "not meaningful": 0, "not measured": 0}
    assert t.loc["B", "does not hold"] == 1 and t.loc["B", "partly"] == 1 and t.loc["B", "set by the profile"] == 1
    assert t.loc["total"].sum() == len(card)


def test_retention_is_claimed_only_against_a_teacher_that_beats_most_popular():
    import pandas as pd

    from prunerec_utils.pipeline.evaluate import EvalResult

    def res(ranks):
        per_user = pd.DataFrame({"user_id": [str(i) for i in range(len(ranks))], "rank": ranks})
        return EvalResult(per_user, {"n": len(ranks), "hr@20": sum(r >= 0 for r in ranks) / len(ranks)})

    weak, strong = res([-1] * 180 + [3] * 20), res([2] * 100 + [-1] * 100)
    assert scorecard.retention_gate(strong, weak) is None  # ahead, paired interval above 0
    assert scorecard.retention_gate(weak, strong).startswith(scorecard.NOT_MEANINGFUL)  # behind
    # ahead by one hit in 100 rows: the interval contains 0, so retention means nothing yet
    assert scorecard.retention_gate(res([-1] * 98 + [3, 3]), res([-1] * 99 + [3])).startswith(scorecard.NOT_MEANINGFUL)
    assert scorecard.retention_gate(weak, None).startswith(scorecard.NOT_MEASURED)
    assert scorecard.verdict_kind(scorecard.retention_gate(weak, strong)) == "not meaningful"
