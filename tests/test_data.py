"""D3 recipe on a hand-checked Amazon-format fixture, on real MovieLens-100k, and the CLI."""

import dataclasses
import json
import subprocess
import sys

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.data import (build_splits, clean_title, get_dataset_config, kcore, load_amazon,
                                 read_split, sample_rows)
from tests.fixtures import amazon_fixture


@pytest.mark.parametrize("raw, expected", [
    ("  Zeta Game  ", "Zeta Game"),
    ("&quot;Quoted &amp; Co&quot;", "Quoted & Co"),
    ('Great <span id="x">Game</span>', None),
    ("X", None),
    (" ".join(["w"] * 21), None),
    (" ".join(["w"] * 20), " ".join(["w"] * 20)),
    (None, None),
])
def test_clean_title(raw, expected):
    assert clean_title(raw) == expected


@pytest.fixture()
def fixture_splits(tmp_path):
    amazon_fixture.write(tmp_path)
    cfg = dataclasses.replace(get_dataset_config("amazon-Fixture"), min_items=7)
    log, titles = load_amazon(tmp_path, "Fixture")
    return build_splits(log, titles, cfg)


def test_fixture_counts_by_hand(fixture_splits):
    splits, stats = fixture_splits
    # u1..u5 survive (u6 has 3, u7 falls in the L/M/N cascade); items A-F and I (7): the first
    # window keeps 6, so its start moves back one year to reach F.
    assert (stats["users"], stats["items"], stats["interactions"]) == (5, 7, 35)
    assert stats["window"] == ["2016-10-01", "2018-12-01"]
    assert (stats["samples"], stats["train"], stats["valid"], stats["test"]) == (30, 24, 3, 3)
    # The last targets in time are I for u1..u5 (June 2018), just before them E for u5.
    assert splits["test"]["user_id"].tolist() == ["u3", "u4", "u5"]
    assert set(splits["test"]["item_title"]) == {"Quoted & Co"}
    assert splits["valid"]["user_id"].tolist() == ["u5", "u1", "u2"]
    assert splits["valid"]["item_title"].tolist() == ["Epsilon Game", "Quoted & Co", "Quoted & Co"]


def test_fixture_ties_keep_file_order_and_history(fixture_splits):
    splits, _ = fixture_splits
    u1 = splits["valid"].iloc[1]
    assert u1["history_item_title"] == ["Zeta Game", "Alpha Game", "Beta Game", "Delta Game", "Gamma Game",
                                        "Epsilon Game"]
    assert len(u1["history_timestamp"]) == len(u1["history_item_id"]) == 6


def test_fixture_item_ids_are_a_permutation(fixture_splits):
    splits, _ = fixture_splits
    ids = set()
    for df in splits.values():
        ids |= set(df["item_id"]) | {i for h in df["history_item_id"] for i in h}
    assert ids == set(range(7))


def test_kcore_cascades():
    import pandas as pd

    log = pd.DataFrame({"user": ["a"] * 2 + ["b"] * 2 + ["c"], "item": ["x", "y", "x", "y", "x"], "timestamp": 0})
    assert kcore(log, 2)["user"].tolist() == ["a", "a", "b", "b"]
    assert kcore(log, 3).empty


def test_unknown_dataset_is_one_clear_error():
    with pytest.raises(PruneRecError, match="unknown dataset"):
        get_dataset_config("netflix")


def test_movielens_splits_are_temporal_and_bounded(ml100k_splits):
    train, valid, test = (read_split(ml100k_splits, s) for s in ("train", "valid", "test"))
    stats = json.loads((ml100k_splits / "stats.json").read_text())
    assert stats["users"] == 943 and stats["train"] == len(train) and stats["test"] == len(test)
    assert train["timestamp"].max() <= valid["timestamp"].min() <= valid["timestamp"].max() <= test["timestamp"].min()
    assert train["history_item_id"].map(len).max() == 10
    for df in (train, valid, test):  # MovieLens has no repeat ratings: the target is never in the history
        assert not any(t in h for t, h in zip(df["item_id"], df["history_item_id"]))
        assert all(ht <= t for hts, t in zip(df["history_timestamp"], df["timestamp"]) for ht in hts)


def test_sample_rows_is_seeded(ml100k_splits):
    test = read_split(ml100k_splits, "test")
    a, b, c = sample_rows(test, 50, 1), sample_rows(test, 50, 1), sample_rows(test, 50, 2)
    assert a.equals(b) and not a.equals(c) and len(a) == 50


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "prunerec_utils.data", *args], capture_output=True, text=True)


def test_cli_writes_d3_columns(tmp_path):
    amazon_fixture.write(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("--dataset", "amazon-Fixture", "--raw-dir", str(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    header = (out / "train.csv").read_text().splitlines()[0].split(",")
    assert header == ["user_id", "history_item_id", "item_id", "history_item_title", "item_title",
                      "history_timestamp", "timestamp"]
    assert json.loads(proc.stdout)["items"] >= 6


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "netflix"], "unknown dataset"),
    (["--dataset", "amazon-Video_Games"], "meta_Video_Games.json.gz"),
])
def test_cli_bad_input_fails_cleanly(tmp_path, args, needle):
    out = tmp_path / "out"
    proc = run_cli(*args, "--raw-dir", str(tmp_path), "--out", str(out))
    assert proc.returncode != 0
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_empty_or_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(PruneRecError, match="not found: run"):
        read_split(tmp_path, "test")
    (tmp_path / "test.csv").write_text(",".join(["user_id", "history_item_id", "item_id", "history_item_title",
                                                 "item_title", "history_timestamp", "timestamp"]) + "\n")
    with pytest.raises(PruneRecError, match="is empty"):
        read_split(tmp_path, "test")
