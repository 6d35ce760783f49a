"""The committed results files: every evaluation with its ranks, so a metric recomputed from the
ranks equals the stored one; cut and training records; linked models not exported twice."""

import json

import pandas as pd

from prunerec_utils.method.metrics import metrics_from_ranks
from prunerec_utils.pipeline.evaluate import _result, save_result
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies.export import export_run


def _res(ranks):
    df = pd.DataFrame({"user_id": [str(u) for u in range(len(ranks))], "item_title": ["t"] * len(ranks)})
    ranked = [[f"x{j}" for j in range(20)] if r is None else [f"x{j}" for j in range(r)] + ["t"]
              + [f"y{j}" for j in range(19 - r)] for r in ranks]
    return _result(df, ranked, {})


def test_every_evaluation_is_exported_with_ranks_that_give_its_metrics(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path / "runs")
    save_result(_res([0, 3, None, 12, None, 1]), run.folder, "teacher", {"users": 6})
    child = run.folder / "ablations" / "stage1_full" / "ml-100k" / "ci"
    save_result(_res([None, 2, None, 5, None, None]), child, "stage1_n6", {"users": 6})
    (run.model("stage1_pruned")).mkdir(parents=True)
    (run.model("stage1_pruned") / "surgery.json").write_text(json.dumps({"settings": {}, "kept_heads": [[0, 1]]}))
    (child / "models").mkdir(parents=True)
    (child / "models" / "stage1_pruned").symlink_to(run.model("stage1_pruned"))  # linked: exported once
    (run.folder / "results" / "observations.json").write_text("{}")

    counts = export_run(run, tmp_path / "out")
    assert counts == {"evaluations": 2, "surgery": 1, "training": 0, "results": 1}
    for path in (tmp_path / "out" / "evaluations" / "teacher.json",
                 tmp_path / "out" / "evaluations" / "stage1_full" / "stage1_n6.json"):
        doc = json.loads(path.read_text())
        again = metrics_from_ranks(doc["ranks"]["rank"])
        assert all(abs(again[k] - doc[k]) < 1e-12 for k in ("hr@10", "hr@20", "ndcg@10", "ndcg@20"))
        assert doc["settings"] == {"users": 6} and len(doc["ranks"]["user_id"]) == 6
    assert json.loads((tmp_path / "out" / "surgery" / "stage1_pruned.json").read_text())["kept_heads"] == [[0, 1]]


def test_the_records_of_models_trained_on_a_shard_are_exported_too(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path / "runs")
    records = run.folder / "shard_models" / "teacher"
    records.mkdir(parents=True)
    (records / "training_summary.json").write_text(json.dumps({"settings": {"seed": 42}, "steps": 3}))
    counts = export_run(run, tmp_path / "out")
    assert counts["training"] == 1
    assert json.loads((tmp_path / "out" / "training" / "teacher.json").read_text())["steps"] == 3
