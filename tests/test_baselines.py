"""ID-based baselines (the paper's Table 2): model shapes, padding invariance, the sampled BCE loss, full-ranking
ranks, learning a toy next-item rule through ``transformers.Trainer``, caching and seeding."""

import json
import math
import random
from dataclasses import replace

import pandas as pd
import pytest
import torch

from prunerec_utils import PruneRecError
from prunerec_utils.method.metrics import metrics_from_ranks
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies import baselines, id_models
from prunerec_utils.studies.baselines import BaselineConfig, to_dataset
from prunerec_utils.studies.id_models import (MODELS, build_model, pad_histories, ranked_items, sample_negatives,
                                              sampled_bce, target_ranks, top_titles)

N_ITEMS = 30


def rank_metrics(model, df: pd.DataFrame) -> dict:
    """HR/NDCG@10/20 of ``df``'s next items by full ranking over item ids."""
    histories, targets = df["history_item_id"].tolist(), torch.tensor(df["item_id"].tolist())
    batch = id_models.EVAL_BATCH
    ranks = torch.cat([id_models.target_ranks(s, targets[i * batch:(i + 1) * batch])
                       for i, s in enumerate(id_models.score_histories(model, histories))])
    return metrics_from_ranks(ranks.numpy())



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _histories():
    return [[3, 7, 1], [5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [29, 4]]


@pytest.mark.parametrize("name", MODELS)
def test_scores_have_one_column_per_item(name):
    model = build_model(name, N_ITEMS, 16).eval()
    h = pad_histories(_histories(), N_ITEMS, 10)  # [4, 10]
    assert h[0].tolist() == [N_ITEMS] * 7 + [3, 7, 1]  # left padding, newest item last
    scores = model.scores(h)
    assert scores.shape == (4, N_ITEMS) and torch.isfinite(scores).all()
    out = model(h, labels=torch.tensor([0, 1, 2, 3]), negatives=torch.tensor([[4], [5], [6], [7]]))
    assert set(out) == {"loss", "scores"} and torch.equal(out["scores"], scores)
    assert set(model.train()(h, torch.tensor([0, 1, 2, 3]), torch.tensor([[4], [5], [6], [7]]))) == {"loss"}


@pytest.mark.parametrize("name", MODELS)
def test_extra_left_padding_does_not_change_the_scores(name):
    model = build_model(name, N_ITEMS, 16, seed=1).eval()
    hists = _histories()
    tight = torch.cat([model.scores(pad_histories([h], N_ITEMS, len(h))) for h in hists])  # no padding at all
    wide = model.scores(pad_histories(hists, N_ITEMS, 10))  # one batch, padded to 10
    assert torch.allclose(tight, wide, atol=1e-5)
    other = model.scores(pad_histories([[1, 7, 3]], N_ITEMS, 10))  # order matters: not a bag of items
    assert not torch.allclose(other[0], wide[0], atol=1e-3)


def test_sampled_bce_matches_a_hand_computation():
    pos = torch.tensor([2.0, -1.0])
    neg = torch.tensor([[0.5, -0.3], [1.5, 0.0]])

    def nll(x, label):  # −log σ(x) for a positive, −log(1 − σ(x)) for a negative
        p = 1 / (1 + math.exp(-x))
        return -math.log(p if label else 1 - p)

    by_hand = ((nll(2.0, 1) + nll(0.5, 0) + nll(-0.3, 0)) + (nll(-1.0, 1) + nll(1.5, 0) + nll(0.0, 0))) / 2
    assert sampled_bce(pos, neg).item() == pytest.approx(by_hand, rel=1e-6)
    # and the model's forward uses it on the dot products of the user vector with the item embeddings
    model = build_model("gru4rec", N_ITEMS, 8).eval()
    h = pad_histories([[1, 2], [3]], N_ITEMS, 10)
    user = model.encode(h)
    emb = model.item_emb.weight
    labels, negs = torch.tensor([4, 5]), torch.tensor([[6, 7], [8, 9]])
    expected = sampled_bce((user * emb[labels]).sum(-1), (user[:, None] * emb[negs]).sum(-1))
    assert model(h, labels, negs)["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_negatives_are_other_items_uniformly_and_seeded():
    pos = torch.tensor([0, 4, 9] * 2000)
    draws = sample_negatives(pos, 10, 2, torch.Generator().manual_seed(0))
    assert draws.shape == (6000, 2) and (draws != pos[:, None]).all() and draws.min() >= 0 and draws.max() <= 9
    counts = torch.bincount(draws[pos == 4].flatten(), minlength=10)
    others = counts[[i for i in range(10) if i != 4]].float() / counts.sum()
    assert counts[4] == 0 and (others - 1 / 9).abs().max() < 0.03
    again = sample_negatives(pos, 10, 2, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_full_ranking_ranks_with_ties_to_the_smaller_id():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9, 0.2],
                           [1.0, 1.0, 1.0, 1.0, 1.0],
                           [0.3, 0.2, 0.1, 0.0, 0.4]])
    targets = torch.tensor([3, 2, 4])
    # row 0: 0.9 (id 1) ties with the target and has a smaller id → rank 1; row 1: all tie → rank = id
    assert target_ranks(scores, targets).tolist() == [1, 2, 0]
    assert ranked_items(scores).tolist() == [[1, 3, 2, 4, 0], [0, 1, 2, 3, 4], [4, 0, 1, 2, 3]]
    order = ranked_items(scores)
    positions = [order[b].tolist().index(int(t)) for b, t in enumerate(targets)]
    assert positions == target_ranks(scores, targets).tolist()


def test_top_titles_count_a_duplicated_title_once_and_can_exclude_seen():
    titles = ["A", "B", "A", "C", "D"]  # items 0 and 2 share a title
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.0]])
    assert top_titles(scores, titles, k=3) == [["A", "C", "B"]]
    assert top_titles(scores, titles, k=3, seen=[["C"]]) == [["A", "B", "D"]]


def _cycle_rows(n_rows: int, n_items: int, seed: int) -> pd.DataFrame:
    """Toy data with a fixed rule: item i is always followed by item i + 1 (mod n_items)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n_rows):
        length, last = rng.randint(1, 6), rng.randrange(n_items)
        rows.append({"history_item_id": [(last - length + 1 + j) % n_items for j in range(length)],
                     "item_id": (last + 1) % n_items})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", MODELS)
def test_each_model_learns_a_deterministic_next_item_rule(name, tmp_path):
    n_items = 40  # chance: HR@10 = 0.25, NDCG@10 ≈ 0.09
    train, valid = _cycle_rows(480, n_items, 0), _cycle_rows(80, n_items, 1)
    cfg = BaselineConfig(name, 1e-2, 16, epochs=6, patience=2, batch_size=32, seed=0)
    before = rank_metrics(build_model(name, n_items, 16, seed=0), valid)
    summary = baselines.train_baseline(cfg, n_items, to_dataset(train), to_dataset(valid), tmp_path / name,
                                       progress=False)
    assert summary["valid"]["ndcg@10"] > 0.6 > before["ndcg@10"]
    assert summary["valid"]["hr@10"] > 0.9
    # the stored best epoch is what comes back from disk, and the Trainer's checkpoints are gone
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == [name]
    assert rank_metrics(baselines.load_baseline(tmp_path / name), valid) == pytest.approx(summary["valid"])


def test_bad_model_or_budget_is_a_one_line_error():
    with pytest.raises(PruneRecError, match="unknown baseline model 'bert4rec'"):
        id_models.check_models(["sasrec", "bert4rec"])
    with pytest.raises(PruneRecError, match="unknown profile field"):
        get_profile("ci", baseline_learning_rate=1e-3)
    with pytest.raises(PruneRecError, match="baseline_lrs must be a list of numbers"):
        get_profile("ci", baseline_lrs=["fast"])
    with pytest.raises(PruneRecError, match="rows must be"):
        baselines._rows(pd.DataFrame({"a": [1]}), "half", 10, 0)


def test_the_grid_budget_is_the_profiles():
    ci = baselines.grid_budget(get_profile("ci"))
    assert ci == {"lrs": (1e-2,), "embs": (16,), "epochs": 2, "patience": 1, "batch_size": 64, "negatives": 1,
                  "dropout": 0.2, "train_rows": "teacher", "valid_rows": 256}
    assert baselines.grid_budget(get_profile("ci", baseline_epochs=None))["epochs"] == 2  # None keeps the profile's
    assert baselines.grid_budget(get_profile("default", baseline_lrs=[1e-4]))["lrs"] == (1e-4,)
    assert baselines.grid_budget(get_profile("default", baseline_lrs=0.01, baseline_embs=32))["embs"] == (32,)
    paper = baselines.grid_budget(get_profile("paper"))  # the paper's grid: 3 x 3
    assert paper["lrs"] == (1e-2, 1e-3, 1e-4) and paper["embs"] == (64, 128, 256)


def _runs_root(tmp_path, splits):
    root = tmp_path / "runs"
    (root / "ml-100k").mkdir(parents=True)
    (root / "ml-100k" / "splits").symlink_to(splits)
    return root


TINY = {"baseline_lrs": [1e-2], "baseline_embs": [8], "baseline_epochs": 1, "baseline_train_rows": 192,
        "baseline_valid_rows": 64}


def test_results_are_seeded_cached_and_comparable(ml100k_splits, tmp_path, monkeypatch):
    prof = get_profile("ci", max_test=24, **TINY)
    first = baselines.baseline_results(Run("ml-100k", prof, _runs_root(tmp_path / "a", ml100k_splits)), "gru4rec",
                                       progress=False)["gru4rec"]
    assert first.metrics["n"] == 24 and first.metrics["engine"] == "gru4rec" and first.metrics["invalid"] == 0
    assert all(len(json.loads(t)) == 20 for t in first.per_user["top"])
    # the same profile and seed in a fresh run folder → the same lists and metrics
    root_b = _runs_root(tmp_path / "b", ml100k_splits)
    second = baselines.baseline_results(Run("ml-100k", prof, root_b), "gru4rec", progress=False)["gru4rec"]
    assert second.per_user.equals(first.per_user)
    drop = ("seconds", "train_seconds")
    assert {k: v for k, v in second.metrics.items() if k not in drop} == \
        {k: v for k, v in first.metrics.items() if k not in drop}

    # a re-run trains nothing and scores nothing: the stored model and result are read back
    def forbidden(*args, **kwargs):
        raise AssertionError("retrained or re-evaluated instead of reading the stored result")

    monkeypatch.setattr(baselines, "Trainer", forbidden)
    monkeypatch.setattr(baselines, "evaluate_baseline", forbidden)
    cached = baselines.baseline_results(Run("ml-100k", prof, root_b), ["gru4rec"], progress=False)["gru4rec"]
    assert cached.metrics == json.loads(json.dumps(second.metrics))
    table = baselines.grid_table(Run("ml-100k", prof, root_b), ["gru4rec"], progress=False)
    assert table["chosen"].tolist() == [True] and table["train rows"].tolist() == [192]
    # another budget is another model: that one has to be trained
    with pytest.raises(AssertionError, match="retrained"):
        baselines.baseline_results(Run("ml-100k", replace(prof, baseline_epochs=2), root_b), ["gru4rec"],
                                   progress=False)


def test_exclude_seen_never_recommends_the_history(ml100k_splits, tmp_path):
    prof = get_profile("ci", max_test=16, **TINY)
    res = baselines.baseline_results(Run("ml-100k", prof, _runs_root(tmp_path, ml100k_splits)), ["caser"],
                                     progress=False, exclude_seen=True)["caser"]
    test = baselines.fixed_test_rows(Run("ml-100k", prof, tmp_path / "runs"))
    assert res.metrics["exclude_seen"] is True
    for top, hist in zip(res.per_user["top"], test["history_item_title"]):
        assert not set(json.loads(top)) & set(hist)


def test_teacher_reference_is_on_the_same_users_or_none(ml100k_splits, tmp_path):
    from prunerec_utils.pipeline.evaluate import popularity_cached, save_result

    root = _runs_root(tmp_path, ml100k_splits)
    prof = get_profile("ci", max_test=12)
    assert baselines.teacher_reference(Run("ml-100k", prof, root)) is None
    folder = Run("ml-100k", prof, root).folder
    # most-popular results stand in for the teacher's evaluation
    save_result(popularity_cached(Run("ml-100k", get_profile("ci", max_test=30), root)), folder, "teacher", {})
    assert baselines.teacher_reference(Run("ml-100k", prof, root)) is None  # other users (another sample size)
    same = popularity_cached(Run("ml-100k", prof, root))
    save_result(same, folder, "teacher", {})
    assert baselines.teacher_reference(Run("ml-100k", prof, root)).per_user.equals(same.per_user)
    assert baselines.teacher_reference(Run("ml-100k", prof, root), exclude_seen=True) is None
