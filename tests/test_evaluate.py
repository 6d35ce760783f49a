"""Title trie, metrics on hand examples, constrained beam search (vs plain generate), CLI."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.data import get_dataset_config, read_items, read_split, sample_rows
from prunerec_utils.pipeline.evaluate import (TitleTrie, beam_search_generate, bootstrap_ci, evaluate_model,
                                              first_rows, metrics_from_ranks, most_popular, rank_of)
from prunerec_utils.pipeline.run import Run
from prunerec_utils.prompts import prompt_ids, target_ids

CFG = get_dataset_config("ml-100k")
TITLES = ["Heat (1995)", "Heat Wave (1990)", "Fargo (1996)", "Toy Story (1995)", "Toy Soldiers (1991)"]


def test_trie_walks_every_title_to_eos(tokenizer):
    trie = TitleTrie(tokenizer, TITLES + ["Heat (1995)"])  # duplicates collapse
    assert len(trie.titles) == len(TITLES)
    for title in TITLES:
        ids = target_ids(tokenizer, title)
        for i, tok in enumerate(ids):
            assert tok in trie.allowed(tuple(ids[:i]))
        assert trie.title_of(ids + [tokenizer.eos_token_id] * 2) == title
    assert trie.allowed(tuple(target_ids(tokenizer, "Fargo (1996)"))) == [tokenizer.eos_token_id]
    assert trie.title_of(target_ids(tokenizer, "Fargo (1997)")) is None


def test_metrics_by_hand():
    m = metrics_from_ranks([0, 5, 15, -1])
    assert m["hr@10"] == 0.5 and m["hr@20"] == 0.75
    assert math.isclose(m["ndcg@10"], (1 + 1 / math.log2(7)) / 4)
    assert math.isclose(m["ndcg@20"], (1 + 1 / math.log2(7) + 1 / math.log2(17)) / 4)
    assert rank_of("b", ["a", "b", "b"]) == 1 and rank_of("z", ["a"]) == -1


def test_bootstrap_interval_brackets_the_estimate():
    ranks = [0] * 30 + [-1] * 70
    ci = bootstrap_ci(ranks, list(range(100)), n_boot=300)
    assert ci["hr@10"][0] < 0.3 < ci["hr@10"][1]
    assert bootstrap_ci([-1] * 10, list(range(10)), n_boot=50)["hr@20"] == (0.0, 0.0)
    with pytest.raises(Exception, match="user id"):
        bootstrap_ci(ranks, list(range(99)))


def clustered(users: int = 20, rows: int = 50):
    """``users`` users of ``rows`` rows each; each user's rows all hit (even users) or all miss."""
    ids = [u for u in range(users) for _ in range(rows)]
    return [0 if u % 2 == 0 else -1 for u in ids], ids


def test_intervals_resample_users_with_all_their_rows():
    """Rows of one user move together: resampling rows as if independent makes the interval
    several times too narrow; resampling users keeps the mean over rows as the estimate."""
    ranks, ids = clustered()
    by_user = bootstrap_ci(ranks, ids)["hr@10"]
    by_row = bootstrap_ci(ranks, list(range(len(ranks))))["hr@10"]  # each row its own "user": the old interval
    assert by_user[0] < 0.5 < by_user[1]
    assert (by_user[1] - by_user[0]) > 4 * (by_row[1] - by_row[0])
    # the estimate is the mean over rows, whatever the users' row counts
    m = bootstrap_ci([0, 0, 0, -1], ["a", "a", "a", "b"], n_boot=200)["hr@10"]
    assert m[0] >= 0.0 and m[1] == 1.0


def test_a_difference_the_row_bootstrap_calls_significant_is_not_decided_over_users():
    from prunerec_utils.method.metrics import UNDECIDED, decision, paired_bootstrap

    ranks_b, ids = clustered()
    # A: one more user of the 20 is all hits (rows 50-99); B: as clustered()
    ranks_a = [0 if 50 <= i < 100 else r for i, r in enumerate(ranks_b)]
    _, lo_r, hi_r = paired_bootstrap(ranks_a, ranks_b, list(range(len(ranks_b))))["hr@10"]
    d, lo, hi = paired_bootstrap(ranks_a, ranks_b, ids)["hr@10"]
    assert d == pytest.approx(0.05) and lo_r > 0  # rows alone: "significant"
    assert lo <= 0 <= hi and decision(lo, hi).startswith(UNDECIDED + " (detectable ≥ ")
    assert decision(0.01, 0.03, "teacher", "most popular") == "teacher ahead of most popular"
    assert decision(0.0, 0.0) == "tie: no row differs"
    assert decision(-0.03, -0.01, "teacher", "most popular") == "teacher behind most popular"


def test_a_share_contrast_is_the_paired_hit_rate_when_the_flags_are_hits():
    """share_contrast over 0/1 flags is the same user-resampled statistic as a paired metric: with the hit@10
    flags of two models it gives contrast_bootstrap's HR@10 difference and interval (same draws)."""
    from prunerec_utils.method.metrics import paired_bootstrap, share_contrast

    ranks_b, ids = clustered()
    ranks_a = [0 if 50 <= i < 100 else r for i, r in enumerate(ranks_b)]
    hits = [[0 <= r < 10 for r in ranks] for ranks in (ranks_a, ranks_b)]
    assert share_contrast(hits, (1, -1), ids) == pytest.approx(paired_bootstrap(ranks_a, ranks_b, ids)["hr@10"])
    assert share_contrast([[1, 1, 0, 0]], (1,), ["a", "a", "b", "b"], n_boot=300) == (0.5, 0.0, 1.0)
    with pytest.raises(PruneRecError, match="one flag per row of every model"):
        share_contrast([[1, 0], [1]], (1, -1), ["a", "b"])


def test_most_popular_ranks_by_training_frequency():
    train = pd.DataFrame({"item_title": ["a", "b", "b", "c", "c", "c"]})
    test = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_title": ["c", "a", "z"]})
    res = most_popular(train, test)
    assert res.per_user["rank"].tolist() == [0, 2, -1]


@pytest.fixture(scope="module")
def small_eval(tiny_model, tokenizer, ml100k_splits):
    titles = read_items(ml100k_splits)["item_title"].tolist()
    test = sample_rows(read_split(ml100k_splits, "test"), 6, 0)
    return titles, test


def test_constrained_beams_are_valid_distinct_and_sorted(tiny_model, tokenizer, small_eval):
    titles, test = small_eval
    trie = TitleTrie(tokenizer, titles)
    prompts = [prompt_ids(tokenizer, h, CFG) for h in test["history_item_title"][:3]]
    for beams in beam_search_generate(tiny_model, tokenizer, prompts, trie, num_beams=20):
        names = [t for t, _ in beams]
        assert None not in names and len(set(names)) == 20 and set(names) <= set(titles)
        scores = [s for _, s in beams]
        assert scores == sorted(scores, reverse=True)


def test_shared_prompt_cache_equals_plain_generate(tiny_model, tokenizer, small_eval):
    titles, test = small_eval
    trie = TitleTrie(tokenizer, titles)
    prompts = [prompt_ids(tokenizer, h, CFG) for h in test["history_item_title"]]  # unequal lengths
    shared = beam_search_generate(tiny_model, tokenizer, prompts, trie, 20, 0.0, share_prompt=True)
    plain = beam_search_generate(tiny_model, tokenizer, prompts, trie, 20, 0.0, share_prompt=False)
    for a, b in zip(shared, plain):
        assert [t for t, _ in a] == [t for t, _ in b]
        assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4


def test_batching_does_not_change_ranks(tiny_model, tokenizer, small_eval):
    titles, test = small_eval
    one = evaluate_model(tiny_model, tokenizer, test, CFG, titles, batch_size=1, progress=False)
    many = evaluate_model(tiny_model, tokenizer, test, CFG, titles, batch_size=6, progress=False)
    assert one.per_user["top"].tolist() == many.per_user["top"].tolist()
    assert first_rows(many, 3).metrics["n"] == 3


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "prunerec_utils.pipeline.evaluate", *args], capture_output=True, text=True)


def test_cli_prints_metrics_json(tiny_model_dir, ml100k_splits):
    proc = run_cli("--model", str(tiny_model_dir), "--dataset", "ml-100k", "--splits", str(ml100k_splits),
                   "--limit", "2", "--profile", "ci")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"hr@10", "hr@20", "ndcg@10", "ndcg@20", "n", "invalid", "dtype"} and out["n"] == 2
    assert out["dtype"] == "fp32"  # the ci profile's eval_dtype


def test_cli_bf16_evaluation_runs_in_bf16(tiny_model_dir, ml100k_splits):
    proc = run_cli("--model", str(tiny_model_dir), "--dataset", "ml-100k", "--splits", str(ml100k_splits),
                   "--limit", "2", "--profile", "ci", "--dtype", "bf16")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["dtype"] == "bf16" and out["n"] == 2 and out["invalid"] == 0
    bad = run_cli("--model", str(tiny_model_dir), "--dataset", "ml-100k", "--dtype", "fp16")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_cli_unreadable_model_is_one_line_error(tmp_path, ml100k_splits):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    proc = run_cli("--model", str(bad), "--dataset", "ml-100k", "--splits", str(ml100k_splits))
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_paired_bootstrap_sees_a_consistent_difference():
    from prunerec_utils.pipeline.evaluate import paired_bootstrap

    better = [0] * 40 + [-1] * 60
    worse = [0] * 30 + [-1] * 70  # the same users, ten fewer hits
    users = list(range(100))
    diff, lo, hi = paired_bootstrap(better, worse, users, n_boot=300)["hr@10"]
    assert math.isclose(diff, 0.1) and 0 < lo <= diff <= hi
    same = paired_bootstrap(better, better, users, n_boot=50)["hr@20"]
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(Exception):
        paired_bootstrap([0, 1], [0], [0, 1])


def test_a_contrast_of_three_models_resamples_their_users_jointly():
    from prunerec_utils.method.metrics import contrast_bootstrap, paired_bootstrap

    users = [u // 4 for u in range(200)]  # 50 users, 4 rows each
    a = [0] * 120 + [-1] * 80
    b = [0] * 100 + [-1] * 100
    c = [0] * 40 + [-1] * 160
    assert contrast_bootstrap([a, b], (1, -1), users) == paired_bootstrap(a, b, users)
    value, lo, hi = contrast_bootstrap([a, b, c], (-1, 2, -1), users)["hr@20"]  # (b − c) − (a − b)
    assert math.isclose(value, (0.5 - 0.2) - (0.6 - 0.5)) and lo <= value <= hi
    # one model alone with weight 1 is its own interval: the joint resampling changes nothing
    assert contrast_bootstrap([a], (1,), users)["hr@20"][1:] == bootstrap_ci(a, users)["hr@20"]
    with pytest.raises(PruneRecError, match="same rows"):
        contrast_bootstrap([a, b[:-1]], (1, -1), users)
    with pytest.raises(PruneRecError, match="same rows"):
        contrast_bootstrap([a, b], (1, -1, 1), users)


def test_budget_power_shows_what_fewer_rows_and_users_could_decide():
    from prunerec_utils.pipeline.evaluate import EvalResult, budget_power

    users = [f"u{j % 40}" for j in range(400)]  # 400 rows from 40 users, interleaved
    better = pd.DataFrame({"user_id": users, "rank": [0 if j % 4 else -1 for j in range(400)]})
    worse = pd.DataFrame({"user_id": users, "rank": [0 if j % 2 else -1 for j in range(400)]})
    a, b = EvalResult(better, {}), EvalResult(worse, {})
    t = budget_power(a, b, labels=("teacher", "most popular"))
    assert list(t.index) == [50, 100, 200, 400] and t.loc[50, "users"] == 40 and t.loc[400, "users"] == 40
    assert t.loc[400, "difference"] == 0.25 and t.loc[400, "verdict"] == "teacher ahead of most popular"
    assert t.loc[400, "detectable (80% power)"] < t.loc[50, "detectable (80% power)"]  # more rows, finer
    few = budget_power(a, b, sizes=[3, 10_000])
    assert list(few.index) == [3, 400] and few.loc[3, "users"] == 3
    with pytest.raises(PruneRecError, match="same test rows"):
        budget_power(a, EvalResult(worse.iloc[::-1].reset_index(drop=True), {}))


def test_most_popular_can_skip_seen_items():
    train = pd.DataFrame({"item_title": ["a", "b", "b", "c", "c", "c"]})
    test = pd.DataFrame({"user_id": ["u1"], "item_title": ["a"], "history_item_title": [["c"]]})
    assert json.loads(most_popular(train, test, k=2, exclude_seen=True).per_user["top"][0]) == ["b", "a"]
    assert json.loads(most_popular(train, test, k=2).per_user["top"][0]) == ["c", "b"]


def test_retention_is_the_ratio_to_the_reference_and_its_mean():
    import pandas as pd

    from prunerec_utils.pipeline.evaluate import EvalResult, retention_table

    mk = lambda hr, nd: EvalResult(pd.DataFrame(), {"hr@10": hr, "hr@20": 2 * hr, "ndcg@10": nd, "ndcg@20": 2 * nd})  # noqa: E731
    t = retention_table({"teacher": mk(0.1, 0.05), "pruned": mk(0.05, 0.04)}, "teacher")
    assert t.loc["teacher"].tolist() == [1, 1, 1, 1, 1]
    assert t.loc["pruned", "hr@20"] == 0.5 and abs(t.loc["pruned", "avg"] - 0.65) < 1e-12


def test_list_agreement_counts_identical_lists_top1_and_overlap():
    import json

    from prunerec_utils.pipeline.evaluate import EvalResult, list_agreement

    def res(lists):
        return EvalResult(pd.DataFrame({"top": [json.dumps(x) for x in lists]}), {})

    a = res([["x", "y", "z", "w"], ["p", "q", "r", "s"]])
    b = res([["x", "y", "z", "w"], ["q", "p", "t", "u"]])
    got = list_agreement(a, b, k=4)
    assert got == {"users": 2, "identical": 0.5, "same_top1": 0.5, "mean_overlap": (1.0 + 0.5) / 2}


def test_an_interrupted_evaluation_resumes_where_it_stopped(tiny_model_dir, ml100k_splits, tmp_path, kernel_calls):
    from prunerec_utils.pipeline import evaluate
    from prunerec_utils.profiles import get_profile

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_test=12, eval_batch=4)
    run = lambda name: evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), name, tiny_model_dir, progress=False)  # noqa: E731
    whole = run("whole")
    kernel_calls(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        run("cut")
    partial = tmp_path / "ml-100k" / "ci" / "ranks" / ".cut.partial.json"
    assert len(json.loads(partial.read_text())["ranked"]) == 8  # two batches of 4 kept
    calls = kernel_calls()
    resumed = run("cut")
    assert calls == [4] and resumed.metrics["resumed_after_users"] == 8 and not partial.exists()
    assert resumed.per_user["top"].tolist() == whole.per_user["top"].tolist()
    assert resumed.metrics["hr@20"] == whole.metrics["hr@20"]


def test_a_stored_evaluation_is_not_reused_in_another_precision(tiny_model_dir, ml100k_splits, tmp_path, kernel_calls,
                                                                bf16_units):
    from prunerec_utils.pipeline import evaluate
    from prunerec_utils.profiles import get_profile

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    fp32 = get_profile("ci", max_test=4, eval_batch=4)
    bf16 = get_profile("ci", max_test=4, eval_batch=4, eval_dtype="bf16")
    first = evaluate.evaluate_cached(Run("ml-100k", fp32, tmp_path), "t", tiny_model_dir, progress=False)
    calls = kernel_calls()
    again = evaluate.evaluate_cached(Run("ml-100k", fp32, tmp_path), "t", tiny_model_dir, progress=False)
    assert calls == [] and again.per_user["top"].tolist() == first.per_user["top"].tolist()  # read back
    other = evaluate.evaluate_cached(Run("ml-100k", bf16, tmp_path), "t", tiny_model_dir, progress=False)
    assert calls == [4] and first.metrics["dtype"] == "fp32" and other.metrics["dtype"] == "bf16"
    with pytest.raises(PruneRecError, match="eval_dtype"):
        get_profile("ci", eval_dtype="fp16")


def _retrained(src, dst, seed=1):
    """A copy of the model folder ``src`` at ``dst`` with other weights (same shapes, same path kind)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    g = torch.Generator().manual_seed(seed)
    save_file({k: v + 0.05 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in tensors.items()},
              dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_a_stored_evaluation_is_not_reused_for_another_model_in_the_same_folder(tiny_model_dir, ml100k_splits,
                                                                                 tmp_path, kernel_calls):
    """The teacher is retrained in place (same folder, same settings): its stored result must not
    be read back as the new teacher's."""
    import shutil

    from prunerec_utils.pipeline import evaluate
    from prunerec_utils.profiles import get_profile

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_test=4, eval_batch=4)
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, folder)
    first = evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", folder, progress=False)
    shutil.rmtree(folder)
    _retrained(tiny_model_dir, folder)
    calls = kernel_calls()
    second = evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", folder, progress=False)
    assert calls == [4]  # evaluated again
    assert second.metrics["model_id"] != first.metrics["model_id"]
    assert evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", folder, progress=False) is not None
    assert calls == [4]  # and now read back


def test_an_interrupted_evaluation_is_not_resumed_for_another_model(tiny_model_dir, ml100k_splits, tmp_path,
                                                                    kernel_calls):
    """An evaluation cut after its first batch, then the model folder retrained in place: the
    re-run must not keep the old model's first users (it would mix two models in one result)."""
    import shutil

    from prunerec_utils.pipeline import evaluate
    from prunerec_utils.profiles import get_profile

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    prof = get_profile("ci", max_test=8, eval_batch=4)
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_model_dir, folder)
    kernel_calls(stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "cut", folder, progress=False)
    assert (tmp_path / "ml-100k" / "ci" / "ranks" / ".cut.partial.json").exists()
    shutil.rmtree(folder)
    _retrained(tiny_model_dir, folder)
    calls = kernel_calls()
    rerun = evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "cut", folder, progress=False)
    assert calls == [4, 4] and "resumed_after_users" not in rerun.metrics
    fresh = evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "fresh", folder, progress=False)
    assert rerun.per_user["top"].tolist() == fresh.per_user["top"].tolist()


def test_a_stored_evaluation_is_not_reused_once_the_splits_were_made_again(tiny_model_dir, ml100k_splits, tmp_path,
                                                                           kernel_calls):
    """Same model, same users, but the item catalogue of the splits changed (e.g. the recipe was
    re-run on other raw data): the constrained search ranges over other titles, so evaluate again."""
    import shutil

    from prunerec_utils.pipeline import evaluate
    from prunerec_utils.profiles import get_profile

    splits = tmp_path / "ml-100k" / "splits"
    shutil.copytree(ml100k_splits, splits)
    prof = get_profile("ci", max_test=4, eval_batch=4)
    evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", tiny_model_dir, progress=False)
    calls = kernel_calls()
    evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", tiny_model_dir, progress=False)
    assert calls == []
    with open(splits / "items.csv", "a") as f:
        f.write("999999,A Title Nobody Watched (1999)\n")
    evaluate.evaluate_cached(Run("ml-100k", prof, tmp_path), "teacher", tiny_model_dir, progress=False)
    assert calls == [4]


def test_metrics_table_shows_each_metric_with_its_interval_in_one_cell():
    from prunerec_utils.pipeline.evaluate import EvalResult, metrics_table

    ci = {k: (0.01, 0.09) for k in ("hr@10", "hr@20", "ndcg@10", "ndcg@20")}
    m = {"hr@10": 0.04, "hr@20": 0.05, "ndcg@10": 0.02, "ndcg@20": 0.025, "ci95": ci, "n": 100, "invalid": 0,
         "distinct_top10": 37, "modal_top1_share": 0.21}
    t = metrics_table({"teacher": EvalResult(pd.DataFrame(), m)})
    assert t.loc["teacher", "HR@20"] == "0.0500 [0.0100, 0.0900]"
    assert list(t.columns) == ["HR@10", "HR@20", "NDCG@10", "NDCG@20", "rows", "users", "invalid",
                               "distinct top-10", "modal top-1"]


def test_compare_states_the_smallest_difference_the_users_could_detect():
    from prunerec_utils.method.metrics import decision, detectable_difference
    from prunerec_utils.pipeline.evaluate import EvalResult, compare

    assert detectable_difference(-0.02, 0.02) == pytest.approx(0.02 / 1.959964 * 2.801585, rel=1e-5)
    users = [str(u) for u in range(400)]
    a = EvalResult(pd.DataFrame({"user_id": users, "rank": [0] * 60 + [-1] * 340}), {})
    b = EvalResult(pd.DataFrame({"user_id": users, "rank": [-1] * 30 + [0] * 30 + [5] * 20 + [-1] * 320}), {})
    row = compare(a, b).loc["hr@10"]
    lo, hi = (float(x) for x in row["95% CI"].strip("[]").split(","))
    assert row["detectable (80% power)"] == pytest.approx(detectable_difference(lo, hi), abs=1e-4)
    assert row["detectable (80% power)"] > 0
    assert compare(a, a).loc["hr@10", "detectable (80% power)"] == 0  # identical lists: no spread
    assert (row["rows"], row["users"]) == (400, 400) and row["verdict"] == decision(lo, hi)
    assert compare(a, EvalResult(pd.DataFrame({"user_id": users, "rank": [-1] * 400}), {}),
                   labels=("teacher", "nothing")).loc["hr@10", "verdict"] == "teacher ahead of nothing"


def test_a_verdict_that_states_its_detectable_difference_is_not_followed_by_it_again():
    from prunerec_utils.method.metrics import TIE, decision, detectable_clause

    open_verdict = decision(-0.01, 0.02)
    assert detectable_clause(open_verdict, 0.0420) == ""
    assert detectable_clause(TIE, 0.0) == ""
    assert detectable_clause(decision(0.01, 0.03, "teacher", "most popular"), 0.028) == "; smallest detectable 0.0280"


def test_the_modal_first_title_ignores_invalid_answers_and_empty_lists():
    from prunerec_utils.method.metrics import list_diversity, modal_first

    lists = [[None, "A"], [None, "B"], [None], ["A", "B"], ["B"], ["A"], []]
    title, flags = modal_first(lists)
    assert title == "A" and flags.tolist() == [0, 0, 0, 1, 0, 1, 0]  # None is no title, however often it comes first
    assert list_diversity(lists)["modal_top1_share"] == pytest.approx(2 / 7)
    assert list_diversity([[], [None]]) == {"distinct_top10": 0, "modal_top1_share": 0.0}  # no title anywhere


@pytest.mark.parametrize("lo, hi, side", [(0.01, 0.05, 1), (-0.05, -0.01, -1), (0.0, 0.0, 0), (-0.02, 0.03, None),
                                          (0.0, 0.04, None), (-0.04, 0.0, None)])
def test_every_comparison_of_the_book_reads_its_interval_by_one_rule(lo, hi, side):
    from prunerec_utils.method.metrics import TIE, decision, detectable_difference
    from prunerec_utils.studies.gates import _verdict
    from prunerec_utils.studies.scorecard import claim_verdict

    undecided = f"not decided at this budget (detectable ≥ {detectable_difference(lo, hi):.4f})"
    words = {1: ("a ahead of b", "holds"), -1: ("a behind b", "does not hold"), 0: (TIE, TIE)}
    assert (decision(lo, hi, "a", "b"), claim_verdict(lo, hi)) == words.get(side, (undecided, undecided))
    # the teacher's gates read it against a line, which belongs to the "at or under" side: "above 0" holds only
    # above it and fails at or under it; "a share at or under a limit" holds at or under it and fails above it
    assert _verdict(lo, hi, 0.0, above=True) == ("holds" if lo > 0 else "fails" if hi <= 0 else undecided)
    assert _verdict(lo, hi, 0.0, above=False) == ("holds" if hi <= 0 else "fails" if lo > 0 else undecided)
    assert _verdict(lo + 0.25, hi + 0.25, 0.25, above=False) == _verdict(lo, hi, 0.0, above=False)
