"""Datasets side by side: read from each run's findings record, each column headed by its power, and a
claim decided only where its interval is."""

import json

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.studies import datasets

HOLDS, FAILS = "holds", "does not hold (difference -0.0100 [-0.0200, -0.0010])"
UNDECIDED = "not decided at this budget (detectable ≥ 0.0300)"


def _record(folder, dataset, rows, users, claims, findings=None):
    path = folder / dataset
    path.mkdir(parents=True)
    doc = {"profile": "default", "dataset": dataset, "rows": rows, "users": users,
           "findings": findings or {"Teacher vs most popular": f"{dataset}: teacher ahead"},
           "claims": [{"section": "Headline", "claim": c, "verdict": v} for c, v in claims.items()]}
    (path / datasets.RECORD).write_text(json.dumps(doc))


def test_each_claim_says_which_dataset_decides_it(tmp_path):
    _record(tmp_path, "ml-100k", 9834, 166, {"a": UNDECIDED, "b": HOLDS, "c": HOLDS, "d": UNDECIDED})
    _record(tmp_path, "ml-1m", 99358, 1206, {"a": HOLDS, "b": HOLDS, "c": FAILS, "d": UNDECIDED})
    table = datasets.claims_by_dataset(datasets.read_records(tmp_path))
    assert list(table.columns) == ["ml-100k (9,834 rows, 166 users)", "ml-1m (99,358 rows, 1,206 users)", "decided by"]
    assert table.loc["a", "decided by"] == "ml-1m" and table.loc["b", "decided by"] == "both agree"
    assert table.loc["c", "decided by"] == "they disagree (ml-100k: holds; ml-1m: does not hold)"
    assert table.loc["d", "decided by"] == "none"


def test_a_claim_one_run_lacks_reads_not_run(tmp_path):
    _record(tmp_path, "ml-100k", 9834, 166, {"a": HOLDS, "only here": HOLDS})
    _record(tmp_path, "ml-1m", None, None, {"a": HOLDS}, findings={"Teacher vs most popular": "not run yet"})
    docs = datasets.read_records(tmp_path)
    table = datasets.claims_by_dataset(docs)
    assert table.loc["only here", "ml-1m"] == datasets.NOT_MEASURED and table.loc["only here", "decided by"] == "ml-100k"
    assert list(datasets.findings_by_dataset(docs).columns) == ["ml-100k (9,834 rows, 166 users)", "ml-1m"]


def test_the_page_is_written_with_captions_and_escaped_cells(tmp_path, capsys):
    _record(tmp_path, "ml-100k", 500, 103, {"x | y": HOLDS})
    assert datasets.main([str(tmp_path)]) == 0
    md = (tmp_path / "datasets.md").read_text()
    assert md.startswith("**What each dataset's run found (`ml-100k`; generated from their findings records)**")
    assert "| x \\| y | holds | ml-100k |" in md and "**Every claim of the paper on each dataset" in md
    assert "datasets side by side ->" in capsys.readouterr().out


def test_no_record_or_a_broken_one(tmp_path, capsys):
    assert datasets.datasets_markdown(tmp_path).startswith("No dataset's run is published")
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / datasets.RECORD).write_text("{half")
    with pytest.raises(PruneRecError, match="ml-1m/findings.json is not a findings record"):
        datasets.read_records(tmp_path)
    assert datasets.main([str(tmp_path / "nowhere")]) == 2
    assert "no book folder at" in capsys.readouterr().err
