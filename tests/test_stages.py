"""Stage I end to end on the ci profile: stock-loadable pruned and distilled folders, resumable."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunerec_utils import PruneRecError
from prunerec_utils.method.surgery import param_counts, param_formula
from prunerec_utils.pipeline import stages
from prunerec_utils.pipeline.run import Run
from prunerec_utils.pipeline.stages import train_teacher
from prunerec_utils.profiles import get_profile


def test_stages_prune_distil_resume_and_stay_stock_loadable(tmp_path, ml100k_splits, monkeypatch):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_train=64, max_valid=16, epochs=1, importance_samples=3)
    out = stages.stage1(Run("ml-100k", prof, tmp_path))  # a fresh run folder: Stage I makes the teacher first
    assert (tmp_path / "ml-100k" / "ci" / "models" / "teacher" / "training_summary.json").exists()
    rec = out["surgery"]
    assert all(len(k) == prof.kept_heads for k in rec["kept_heads"]) and len(rec["hidden_dims"]) == 32
    for folder in (out["pruned_dir"], out["distilled_dir"]):
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert (model.config.hidden_size, model.config.num_attention_heads) == (32, 2)
        assert param_counts(model) == param_formula(model.config) == rec["params"]["stage1"]
    assert rec["params"]["stage1"]["non_embedding"] < rec["params"]["teacher"]["non_embedding"] / 2
    heads = json.loads((tmp_path / "ml-100k" / "ci" / "results" / "stage1_heads.json").read_text())
    assert heads["kept"] == rec["kept_heads"] and torch.tensor(heads["raw"]).shape == (4, 4)
    s2 = stages.stage2(Run("ml-100k", prof, tmp_path))
    assert s2["surgery"]["k"] == 64 and len(s2["surgery"]["tau"]) == 4
    s3 = stages.stage3(Run("ml-100k", prof, tmp_path))
    assert s3["surgery"]["n_remove"] == 3 and len(set(s3["surgery"]["removed"])) == 3
    final = AutoModelForCausalLM.from_pretrained(s3["distilled_dir"])
    assert (final.config.num_hidden_layers, final.config.intermediate_size, final.config.hidden_size) == (1, 64, 32)
    assert param_counts(final) == param_formula(final.config) == s3["surgery"]["params"]["stage3"]
    assert s3["distill"]["profile"]["kd_lambda"] == prof.kd_lambda
    monkeypatch.setattr(stages, "distill", lambda *a, **k: pytest.fail("re-run must not train again"))
    monkeypatch.setattr(stages, "greedy_layer_removal", lambda *a, **k: pytest.fail("re-run must not search"))
    assert stages.stage3(Run("ml-100k", prof, tmp_path))["surgery"] == s3["surgery"]
    monkeypatch.setattr(stages, "head_importance", lambda *a, **k: pytest.fail("re-run must not re-score"))
    assert stages.stage1(Run("ml-100k", prof, tmp_path))["surgery"] == rec

    with pytest.raises(PruneRecError, match="alpha"):  # a stored step made with other settings is not reused
        stages.stage1(Run("ml-100k", get_profile("ci", max_train=64, max_valid=16, epochs=1, importance_samples=3,
                                             alpha=0.5), tmp_path))
    with pytest.raises(PruneRecError, match="kd_lambda"):
        stages.stage1(Run("ml-100k", get_profile("ci", max_train=64, max_valid=16, epochs=1, importance_samples=3,
                                             kd_lambda=0.5), tmp_path))


def _perturb_in_place(folder):
    """The model folder retrained in place: same files, same shapes, other weights."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    save_file({k: v + 0.01 for k, v in tensors.items()}, folder / "model.safetensors", metadata={"format": "pt"})


def test_a_stored_step_is_refused_once_the_model_it_read_changed(tmp_path, ml100k_splits):
    """Stage II's cut records the Stage I model it read; the head scores and Stage I's cut record
    the teacher: a model retrained in its folder makes them stale, refused with one line."""
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_train=32, max_valid=16, epochs=1, importance_samples=3)
    train_teacher(Run("ml-100k", prof, tmp_path), progress=False)
    s1 = stages.stage1(Run("ml-100k", prof, tmp_path))
    stages.stage2_prune(Run("ml-100k", prof, tmp_path))
    _perturb_in_place(s1["distilled_dir"])
    with pytest.raises(PruneRecError, match=r"stage2_pruned/surgery.json was made with other settings: source_id") as err:
        stages.stage2_prune(Run("ml-100k", prof, tmp_path))
    assert "\n" not in str(err.value) and str(err.value).endswith(
        "delete " + str(tmp_path / "ml-100k" / "ci" / "models" / "stage2_pruned") + " (and what was made from it) "
        "or use another runs_root")
    _perturb_in_place(Run("ml-100k", prof, tmp_path).stage("teacher"))
    with pytest.raises(PruneRecError, match=r"stage1_heads.json was made with other settings: teacher_id"):
        stages.stage1(Run("ml-100k", prof, tmp_path))
    with pytest.raises(PruneRecError, match=r"stage1/training_summary.json was made with other settings: .*teacher_id"):
        stages.distill_stage(Run("ml-100k", prof, tmp_path), s1["pruned_dir"], "stage1")


def test_model_identity_ignores_the_transformers_version_that_saved_it(tmp_path, tiny_model_dir):
    import shutil

    from prunerec_utils.identity import model_identity

    shutil.copytree(tiny_model_dir, tmp_path / "m")
    before = model_identity(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "transformers_version": "9.9.9"}, indent=4))
    assert model_identity(tmp_path / "m") == before  # re-saved by another release: the same model
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "rms_norm_eps": 1e-3}))
    assert model_identity(tmp_path / "m") != before  # another model


def _res(hr, n):
    from types import SimpleNamespace

    return SimpleNamespace(metrics={"hr@10": hr, "hr@20": hr, "ndcg@10": hr / 2, "ndcg@20": hr / 2, "n": n})


def test_stage_retention_reads_the_undistilled_row_against_the_teacher_on_its_rows():
    results = {"teacher": _res(0.2, 48), stages.first_rows_label(16): _res(0.4, 16),
               stages.undistilled_label("stage II"): _res(0.1, 16), "stage II": _res(0.1, 48),
               "most popular": _res(0.05, 48)}
    ret = stages.stage_retention(results, "stage II")
    assert list(ret.index) == ["teacher", "stage II", "most popular", "stage II, no distillation"]
    assert ret.loc["stage II", "avg"] == pytest.approx(0.5)  # 0.1 of the teacher's 0.2 on all rows
    assert ret.loc["stage II, no distillation", "avg"] == pytest.approx(0.25)  # 0.1 of 0.4 on its 16 rows
    without = stages.stage_retention({k: results[k] for k in ("teacher", "stage II")}, "stage II")
    assert list(without.index) == ["teacher", "stage II"]  # no evaluation right after surgery: no such row


def test_stage_param_counts_read_each_folder_or_name_the_missing_one(tmp_path, tiny_model_dir):
    import shutil

    from transformers import AutoConfig

    run = Run("ml-100k", get_profile("ci"), tmp_path)
    shutil.copytree(tiny_model_dir, run.model("teacher"))
    counts = stages.stage_param_counts(run, {"the teacher": "teacher"})
    assert counts.loc["the teacher"].to_dict() == param_formula(AutoConfig.from_pretrained(tiny_model_dir))
    with pytest.raises(PruneRecError, match="no model at .*stage1"):
        stages.stage_param_counts(run, {"teacher": "teacher", "stage I": "stage1"})


def test_ensure_makes_a_missing_stage_and_what_it_needs_in_a_fresh_run_folder(tmp_path, monkeypatch, capsys):
    """A shard that starts at chapter 04 in a fresh run folder: Stage II's input (Stage I) is made, which
    first makes the teacher; a stage the folder has is read back without work."""
    from prunerec_utils.pipeline.finetune import SUMMARY

    run = Run("ml-100k", get_profile("ci"), tmp_path)
    made = []

    def maker(name, needs=None):
        def make(run, progress=False):
            if needs:
                stages.ensure(run, needs, progress)
            made.append(name)
            run.model(name).mkdir(parents=True)
            (run.model(name) / SUMMARY).write_text("{}")
        return make

    monkeypatch.setitem(stages.MAKERS, "teacher", maker("teacher"))
    monkeypatch.setitem(stages.MAKERS, "stage1", maker("stage1", "teacher"))
    assert stages.ensure(run, "stage1") == run.model("stage1") and made == ["teacher", "stage1"]
    assert "no stage1 in" in capsys.readouterr().out
    assert stages.ensure(run, "stage1") == run.model("stage1") and made == ["teacher", "stage1"]  # no work now
    with pytest.raises(PruneRecError, match="no stage3_vocab model"):
        stages.ensure(run, "stage3_vocab")  # not a stage ensure makes: the one-line error of Run.stage


def test_notebooks_and_studies_reach_stages_through_ensure():
    """Every page and study that needs a stage makes it where it is missing (shards), none only looks it up."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [*sorted((root / "notebooks").glob("*.ipynb")), *sorted((root / "prunerec_utils").rglob("*.py"))]
    lookups = [f"{f.relative_to(root)}" for f in files if f.name not in ("run.py", "stages.py")
               and re.search(r"\brun\.stage\(", f.read_text())]
    assert not lookups, lookups


def test_a_teacher_in_a_fresh_runs_root_makes_the_splits_first(tmp_path):
    run = Run("ml-100k", get_profile("ci", max_train=16, max_valid=8, epochs=1), tmp_path)
    folder, summary = train_teacher(run, progress=False)
    assert (run.splits / "stats.json").exists() and summary["train_samples"] == 16
    assert (folder / "training_summary.json").exists()
