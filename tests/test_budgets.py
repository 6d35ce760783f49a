"""This run's budgets come from its steps' records; a step that has not run says so."""

import json

import pandas as pd

from prunerec_utils.pipeline.evaluate import _result, save_result
from prunerec_utils.pipeline.finetune import SUMMARY
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies import budgets


def _res(n, users):
    df = pd.DataFrame({"user_id": [str(i % users) for i in range(n)], "item_title": ["t"] * n})
    return _result(df, [["t"] + [f"x{j}" for j in range(19)]] * n, {})


def _summary(run, name, samples, steps, batch, accum):
    folder = run.model(name)
    folder.mkdir(parents=True)
    (folder / SUMMARY).write_text(json.dumps({"train_samples": samples, "steps": steps,
                                              "profile": {"batch_size": batch, "grad_accum": accum}}))


def test_an_empty_run_says_every_budget_is_not_run(tmp_path):
    table = budgets.budgets_table(Run("ml-100k", get_profile("ci"), tmp_path))
    assert (table["this run"] == budgets.NOT_RUN).all() and len(table) == 10


def test_budgets_are_read_from_the_records(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path)
    _summary(run, "teacher", 16384, 1024, 16, 1)
    _summary(run, "stage2", 2048, 128, 8, 2)
    save_result(_res(500, 103), run.folder, "teacher", {})
    save_result(_res(200, 40), run.folder, "stage1", {})
    table = budgets.budgets_table(run)["this run"]
    assert table["Teacher fine-tune"] == "16,384 samples, 1,024 optimizer steps of 16 (16 × 1)"
    assert table["Stage II restoration (distillation)"] == "2,048 samples, 128 optimizer steps of 16 (8 × 2)"
    assert table["Stage I restoration (distillation)"] == budgets.NOT_RUN
    assert table["Teacher and most popular evaluated on"] == "500 test rows from 103 users"
    assert table["Pruned stages evaluated on"] == "200 test rows from 40 users"  # stage III not yet: stage I's rows


def test_the_readme_block_between_this_runs_markers_is_rewritten_and_nothing_else(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path / "runs")
    begin, end = budgets.marker(run)
    readme = tmp_path / "README.md"
    other = "<!-- budgets default/ml-1m -->\nkept\n<!-- /budgets default/ml-1m -->"
    readme.write_text(f"# title\n{begin}\nold numbers\n{end}\ntext after\n{other}\n")
    md = budgets.write_budgets(run, tmp_path, readme)
    text = readme.read_text()
    assert text == f"# title\n{begin}\n{md}{end}\ntext after\n{other}\n" and "old numbers" not in text
    assert (tmp_path / "budgets.md").read_text() == md and md.startswith("**The budgets of this run (profile `ci`")
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    budgets.write_budgets(run, tmp_path, plain)
    assert plain.read_text() == "no markers\n"


def test_the_restoration_curve_and_ablation_budgets_come_from_their_stored_groups(tmp_path):
    run = Run("ml-100k", get_profile("ci"), tmp_path)
    run.result_file("x").parent.mkdir(parents=True)
    curve = [{"index": f"{b:,} samples", "distill_max_train": b, "n": 500} for b in (8192, 2048)]
    run.result_file("ablation_restoration_stage1").write_text(json.dumps({"rows": curve}))
    variants = [{"index": v, "distill_max_train": 1024, "n": 300} for v in ("ours", "random")]
    run.result_file("ablation_fig5a").write_text(json.dumps({"rows": variants}))
    table = budgets.budgets_table(run)["this run"]
    assert table["Stage I restoration curve"] == "2,048, 8,192 distillation samples, each evaluated on 500 test rows"
    assert table["Stage II restoration curve"] == budgets.NOT_RUN
    assert table["Ablation variants"] == "1 group (fig5a); each variant restored on 1,024 samples, evaluated on 300 test rows"
