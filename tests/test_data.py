"""D3 recipe on a hand-checked Amazon-format fixture, on real MovieLens-100k, and the CLI."""

import dataclasses
import json
import subprocess
import sys

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.data import (build_splits, clean_title, get_dataset_config, kcore, prepare, read_split,
                                 sample_rows)
from prunerec_utils.loaders import load_amazon
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


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "prunerec_utils.data", *args], capture_output=True, text=True,
                          cwd=cwd)


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


def test_out_holding_someone_elses_files_is_refused_and_left_alone(tmp_path):
    amazon_fixture.write(tmp_path)
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.txt").write_text("two years of work")
    proc = run_cli("--dataset", "amazon-Fixture", "--raw-dir", str(tmp_path), "--out", str(out))
    assert proc.returncode == 2 and "chapter1.txt" in proc.stderr and "nothing was changed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["chapter1.txt"]
    assert (out / "chapter1.txt").read_text() == "two years of work"


def test_out_and_raw_dir_are_relative_to_the_current_folder(tmp_path):
    (tmp_path / "raw").mkdir()
    amazon_fixture.write(tmp_path / "raw")
    proc = run_cli("--dataset", "amazon-Fixture", "--raw-dir", "raw", "--out", "splits-here", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "splits-here" / "stats.json").exists()
    # made by this command: the same command reuses it
    again = run_cli("--dataset", "amazon-Fixture", "--raw-dir", "raw", "--out", "splits-here", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_text("x"), "is a file"),
    (lambda p: (p.parent / "afile").write_text("x"), "is a file"),
])
def test_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path, make, needle):
    amazon_fixture.write(tmp_path)
    out = tmp_path / "out"
    make(out)
    target = out if out.exists() else tmp_path / "afile" / "out"
    proc = run_cli("--dataset", "amazon-Fixture", "--raw-dir", str(tmp_path), "--out", str(target))
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_empty_or_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(PruneRecError, match="not found: run"):
        read_split(tmp_path, "test")
    (tmp_path / "test.csv").write_text(",".join(["user_id", "history_item_id", "item_id", "history_item_title",
                                                 "item_title", "history_timestamp", "timestamp"]) + "\n")
    with pytest.raises(PruneRecError, match="is empty"):
        read_split(tmp_path, "test")


# ---------------------------------------------------------------- bad input (issue #22)

def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _empty_reviews(d):
    (d / "Fixture.json.gz").unlink()
    (d / "Fixture.json").write_text("")


def _wrong_schema(d):
    (d / "Fixture.json.gz").unlink()
    _lines(d / "Fixture.json", [{"user": "u1", "item": "A", "time": 1}] * 3)


def _not_json_line(d):
    (d / "Fixture.json.gz").unlink()
    (d / "Fixture.json").write_text('{"reviewerID": "u1", "asin": "A", "unixReviewTime": 1}\n{"reviewerID": oops\n')


def _bad_time(d):
    (d / "Fixture.json.gz").unlink()
    _lines(d / "Fixture.json", [{"reviewerID": "u1", "asin": "A", "unixReviewTime": "yesterday"}])


def _truncated_gz(d):
    data = (d / "Fixture.json.gz").read_bytes()
    (d / "Fixture.json.gz").write_bytes(data[: len(data) // 2])


def _meta_without_titles(d):
    _lines(d / "meta_Fixture.json", [{"asin": item, "brand": "x"} for item in amazon_fixture.TITLES])


def _meta_empty(d):
    (d / "meta_Fixture.json").write_text("\n")


def _meta_titles_of_other_items(d):
    _lines(d / "meta_Fixture.json", [{"asin": "Z1", "title": "Some Game"}])


@pytest.mark.parametrize("corrupt, needle", [
    (_empty_reviews, r"Fixture\.json is empty"),
    (_wrong_schema, r"Fixture\.json: no line has .*reviewerID"),
    (_not_json_line, r"Fixture\.json line 2 is not JSON"),
    (_bad_time, r"Fixture\.json line 1: unixReviewTime 'yesterday' is not"),
    (_truncated_gz, r"Fixture\.json\.gz is truncated or corrupt"),
    (_meta_without_titles, r"meta_Fixture\.json: no item has a title"),
    (_meta_empty, r"meta_Fixture\.json is empty"),
    (_meta_titles_of_other_items, r"none of the .* items reviewed in .*Fixture\.json\.gz has a usable title in "
                                  r".*meta_Fixture\.json"),
])
def test_bad_amazon_files_are_one_line_errors_naming_the_file(tmp_path, capsys, corrupt, needle):
    import re

    from prunerec_utils import data

    raw = tmp_path / "raw"
    raw.mkdir()
    amazon_fixture.write(raw)
    corrupt(raw)
    out = tmp_path / "out"
    assert data.main(["--dataset", "amazon-Fixture", "--raw-dir", str(raw), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert re.search(needle, err), err
    assert str(raw) in err  # the full path of the file
    assert not out.exists()


def test_empty_interaction_log_does_not_walk_back_to_year_zero():
    import pandas as pd

    cfg = get_dataset_config("amazon-Fixture")
    with pytest.raises(PruneRecError, match="no interactions survive"):
        build_splits(pd.DataFrame(columns=["user", "item", "timestamp"]), {"A": "Alpha Game"}, cfg)


HEADER = ",".join(["user_id", "history_item_id", "item_id", "history_item_title", "item_title",
                   "history_timestamp", "timestamp"])


@pytest.mark.parametrize("content, needle", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01", "is not a UTF-8 CSV file"),
    (b"", "is empty"),
    (b"user_id,item_id\nu1,3\n", "lacks the columns history_item_id, history_item_title, history_timestamp, "
                                   "item_title, timestamp"),
    (b"just some words\nand more words\n", "lacks the columns"),
    (b"a,b\n1,2\n1,2,3,4,5\n", "is not a readable CSV file (Error tokenizing data"),
    ((HEADER + '\nu1,"[1, 2",3,"[""a"", ""b""]",c,"[1, 2]",3\n').encode(),
     "data row 1, column history_item_id: '[1, 2' is not a JSON list"),
    ((HEADER + '\nu1,"[1, 2]",3,"[""a"", ""b""]",c,"[1, 2]",3\nu2,"[1, 2]",3,"[""a"", ""b""]",c,"7",3\n').encode(),
     "data row 2, column history_timestamp: '7' is not a JSON list"),
    ((HEADER + '\nu1,"[1, 2]",x,"[""a"", ""b""]",c,"[1, 2]",3\n').encode(),
     "column item_id holds values that are not whole numbers"),
])
def test_corrupt_split_file_is_one_line_error_naming_it(tmp_path, content, needle):
    (tmp_path / "test.csv").write_bytes(content)
    with pytest.raises(PruneRecError) as err:
        read_split(tmp_path, "test")
    msg = str(err.value)
    assert str(tmp_path / "test.csv") in msg and needle in msg and "\n" not in msg, msg


def test_corrupt_or_missing_items_file_is_one_line_error_naming_it(tmp_path):
    from prunerec_utils.data import read_items

    with pytest.raises(PruneRecError, match=r"items\.csv not found: run"):
        read_items(tmp_path)
    (tmp_path / "items.csv").write_text("id,name\n1,x\n")
    with pytest.raises(PruneRecError, match=r"items\.csv lacks the columns item_id, item_title"):
        read_items(tmp_path)
    (tmp_path / "items.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    with pytest.raises(PruneRecError, match=r"items\.csv is not a UTF-8 CSV file"):
        read_items(tmp_path)
    (tmp_path / "items.csv").write_text("item_id,item_title\n0,Alpha\n")
    assert read_items(tmp_path)["item_title"].tolist() == ["Alpha"]


def test_split_files_changed_after_they_were_made_are_made_again(tmp_path, ml100k_splits, capsys):
    """``prepare`` used to trust ``stats.json`` alone: a header-only ``train.csv`` beside it was reused."""
    import shutil

    out = tmp_path / "ml-100k" / "splits"
    shutil.copytree(ml100k_splits, out)
    header = (out / "train.csv").read_text().splitlines()[0]
    full = (out / "train.csv").read_text()
    (out / "train.csv").write_text(header + "\n")
    stats = prepare("ml-100k", out)
    assert "changed since they were made: making them again" in capsys.readouterr().out
    assert (out / "train.csv").read_text() == full and stats["train"] == len(read_split(out, "train"))
    assert prepare("ml-100k", out) == stats and capsys.readouterr().out == ""  # now reused, silently


def test_splits_made_by_another_recipe_are_made_again(tmp_path, ml100k_splits, capsys):
    import shutil

    out = tmp_path / "splits"
    shutil.copytree(ml100k_splits, out)
    rec = json.loads((out / "stats.json").read_text())
    rec["settings"]["recipe"]["history_len"] = 3
    (out / "stats.json").write_text(json.dumps(rec))
    prepare("ml-100k", out)
    assert "other settings: recipe.history_len 3 (asked 10): making it again" in capsys.readouterr().out


def test_existing_splits_are_used_when_the_raw_files_are_gone(tmp_path, ml100k_splits, monkeypatch):
    """A copied run folder (or raw dumps deleted after preprocessing): the splits made with the same
    recipe are still usable; only a forced rebuild needs the raw files."""
    import shutil

    from prunerec_utils import data

    out = tmp_path / "splits"
    shutil.copytree(ml100k_splits, out)

    def gone(cfg, raw_dir=None):
        raise PruneRecError("raw files missing: put them into data/raw")

    monkeypatch.setattr(data, "raw_files", gone)
    assert prepare("ml-100k", out)["train"] == len(read_split(out, "train"))
    with pytest.raises(PruneRecError, match="raw files missing"):
        prepare("ml-100k", out, force=True)


def test_a_log_edited_in_place_at_the_same_size_makes_new_splits(tmp_path, capsys):
    from prunerec_utils.identity import data_identity
    from prunerec_utils.own_log import log_config, synthetic_log

    log, items = synthetic_log(tmp_path / "log", users=40, items=36, per_user=8)
    cfg = log_config(log, items, category="book")
    prepare(cfg, tmp_path / "splits")
    before, size = data_identity(tmp_path / "splits"), log.stat().st_size
    lines = log.read_text().splitlines()
    user, item, ts = lines[1].split(",")
    lines[1] = f"{user},{item},{int(ts) - 10**8}"  # one interaction moved three years back: same byte count
    log.write_text("\n".join(lines) + "\n")
    assert log.stat().st_size == size
    capsys.readouterr()
    prepare(cfg, tmp_path / "splits")
    assert "making it again" in capsys.readouterr().out
    assert data_identity(tmp_path / "splits") != before  # the splits now follow the edited log


def test_recipe_table_says_how_many_users_the_test_rows_come_from(ml100k_splits):
    from prunerec_utils.data import recipe_table

    stats = json.loads((ml100k_splits / "stats.json").read_text())
    splits = {s: read_split(ml100k_splits, s) for s in ("train", "valid", "test")}
    table = recipe_table(stats, splits)["value"]
    assert table["test rows: from how many users"] == \
        f"{len(splits['test']):,} rows from {splits['test']['user_id'].nunique():,} users"
    assert table["time window"] == "the whole log" and table["interactions after the 5-core filter"] == \
        f"{stats['interactions']:,}"
    assert "test rows: from how many users" not in recipe_table(stats).index  # no splits given: no such row


def test_a_split_is_parsed_once_per_process_until_its_file_changes(tmp_path, ml100k_splits, monkeypatch):
    import shutil

    from prunerec_utils import data

    for f in ("test.csv", "stats.json"):
        shutil.copy(ml100k_splits / f, tmp_path / f)
    parsed = []
    real = data._json_list
    monkeypatch.setattr(data, "_json_list", lambda *a: parsed.append(1) or real(*a))
    first = read_split(tmp_path, "test")
    n = len(parsed)
    assert n > 0
    first["item_title"] = "changed by a caller"  # the caller's frame: the next read is not affected
    again = read_split(tmp_path, "test")
    assert len(parsed) == n and again["item_title"].iloc[0] != "changed by a caller"
    lines = (tmp_path / "test.csv").read_text().splitlines(keepends=True)
    (tmp_path / "test.csv").write_text("".join(lines[:11]))  # the file rewritten: parsed again
    assert len(read_split(tmp_path, "test")) == 10 and len(parsed) > n
