"""A user's own log (prunerec_utils.own_log): read right or refused in one line naming the file.

Each case starts from the reproduction that was accepted (or ended in a traceback) before these checks."""

import pandas as pd
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.data import build_splits
from prunerec_utils.own_log import _timestamps, load_log, log_config, synthetic_log


@pytest.fixture()
def files(tmp_path):
    return synthetic_log(tmp_path, users=60, items=40, per_user=8)


def _load(inter, items=None, **kw):
    return load_log(log_config(inter, items, category="book", **kw))


def _series(*values):
    return pd.Series(list(values))


def test_unix_seconds_and_dates_give_the_same_time(tmp_path):
    assert _timestamps(_series("1617311243", "1617311244"), tmp_path, "t").tolist() == [1617311243, 1617311244]
    # a date is read in UTC unless it names its zone; not 1,000 times too small (pandas 3 reads microseconds)
    assert _timestamps(_series("2021-04-01 21:07:23", "2021-04-01T23:07:23+02:00"), tmp_path, "t").tolist() == \
        [1617311243, 1617311243]
    assert _timestamps(_series("1969-07-20"), tmp_path, "t").tolist() == [-14256000]  # before 1970 is fine


@pytest.mark.parametrize("values, needle", [
    (("1617311243", "2021-04-01 21:07:23"), "mixes Unix times and dates; row 1 ('1617311243') is a Unix time"),
    (("9999-12-31", "2021-04-01"), "outside 1900-2100 at row 1 ('9999-12-31')"),
    (("1e30", "1617311243"), "outside 1900-2100 at row 1 ('1e30')"),
    (("1617311243000", "1617311244000"), "Unix milliseconds? divide them by 1,000"),
    (("1617311243", "soon"), "neither a Unix time nor a date at row 2 ('soon')"),
    (("1617311243", ""), "neither a Unix time nor a date at row 2 ('')"),
])
def test_times_that_are_not_one_clear_format_are_refused_with_the_first_row(tmp_path, values, needle):
    with pytest.raises(PruneRecError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        _timestamps(_series(*values), tmp_path / "log.csv", "timestamp")


@pytest.mark.parametrize("blank", ["", "NaN", "  ", "null"])
@pytest.mark.parametrize("column", ["user", "item"])
def test_blank_or_nan_ids_are_refused(files, blank, column):
    inter, items = files
    df = pd.read_csv(inter, dtype=str)
    df.loc[3, column] = blank
    df.to_csv(inter, index=False)
    with pytest.raises(PruneRecError, match=rf"column {column} is blank or NaN in 1 rows, first at row 4"):
        _load(inter, items)


def test_exact_duplicate_rows_are_removed_with_a_count(files, capsys):
    inter, items = files
    df = pd.read_csv(inter, dtype=str)
    pd.concat([df, df.iloc[:5], df.iloc[:1]]).to_csv(inter, index=False)
    log, _ = _load(inter, items)
    assert len(log) == len(df) and "6 exact duplicate rows" in capsys.readouterr().out


def test_one_item_repeated_at_one_time_does_not_pass_the_k_core(tmp_path):
    inter = tmp_path / "log.csv"
    rows = [("u0", "i0", 1_600_000_000, "A Book")] * 6 + [("u1", f"i{j}", 1_600_000_000 + j, f"Book {j}")
                                                          for j in range(1, 4)]
    pd.DataFrame(rows, columns=["user", "item", "timestamp", "title"]).to_csv(inter, index=False)
    log, titles = _load(inter)
    assert len(log) == 4  # u0's six copies are one interaction
    with pytest.raises(PruneRecError, match="no interactions survive the 5-core filter"):
        build_splits(log, titles, log_config(inter, category="book"))


def test_one_title_for_several_items_is_refused(files):
    inter, items = files
    pd.DataFrame({"item": [f"i{j}" for j in range(40)], "title": ["Same Title"] * 40}).to_csv(items, index=False)
    with pytest.raises(PruneRecError, match="1 titles name more than one item, e.g. 'Same Title': 'i"):
        _load(inter, items)


def test_two_titles_for_one_item_are_refused(files):
    inter, items = files
    df = pd.read_csv(items, dtype=str)
    pd.concat([df, pd.DataFrame({"item": ["i3"], "title": ["Another Name"]})]).to_csv(items, index=False)
    with pytest.raises(PruneRecError, match="1 items have more than one title, e.g. item 'i3'"):
        _load(inter, items)


def test_items_missing_from_the_items_file_are_counted_and_dropped(files, capsys):
    inter, items = files
    df = pd.read_csv(items, dtype=str)
    df[df["item"] != "i5"].to_csv(items, index=False)
    log, titles = _load(inter, items)
    out = capsys.readouterr().out
    assert "1 of 40 items have no row in it, e.g. 'i5'" in out and "% of the interactions are dropped" in out
    assert "i5" not in titles


def test_an_items_file_that_matches_no_log_item_is_refused(files):
    inter, items = files
    pd.DataFrame({"item": ["x1", "x2"], "title": ["One", "Two"]}).to_csv(items, index=False)
    with pytest.raises(PruneRecError, match="none of the log's 40 items can be used: they have no row in it"):
        _load(inter, items)


@pytest.mark.parametrize("titles", [[""] * 40, list(range(40))])
def test_empty_or_numeric_titles_are_named_not_a_k_core_mystery(files, titles):
    inter, items = files
    path = items.with_suffix(".parquet")
    pd.DataFrame({"item": [f"i{j}" for j in range(40)], "title": titles}).to_parquet(path)
    with pytest.raises(PruneRecError, match="none of the log's 40 items can be used: they have no usable title"):
        _load(inter, path)


def test_a_byte_order_mark_is_not_part_of_the_first_column(files):
    inter, items = files
    inter.write_bytes(b"\xef\xbb\xbf" + inter.read_bytes())
    log, _ = _load(inter, items)
    assert list(log.columns) == ["user", "item", "timestamp"] and len(log) == 60 * 8


def test_an_empty_file_is_one_line(files):
    inter, items = files
    inter.write_text("")
    with pytest.raises(PruneRecError, match="is empty .0 bytes."):
        _load(inter, items)
