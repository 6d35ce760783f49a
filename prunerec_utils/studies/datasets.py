"""Datasets side by side: each dataset's findings and every claim's verdict, and which dataset decides it.

Each dataset's run is published on its own (``book/<profile>/<dataset>/findings.json``, written with its
``findings.md``: :func:`prunerec_utils.studies.findings.findings_record`); this page reads those records only,
so two runs made in different sessions or on different machines sit side by side without re-running either.
A column is headed by the test rows and users its run evaluated the teacher on: the users are what its
intervals resample, so they say how much the column can decide (ml-100k's 9,834 test rows come from 166
users; ml-1m's from 1,206).

A claim is *decided* on a dataset when its verdict holds or does not hold there (an interval on one side of
zero); "decided by" names the datasets that decide it, and says when two decided datasets disagree.

    python -m prunerec_utils.studies.datasets book/default     # writes book/default/datasets.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from .. import PruneRecError, cli
from ..paths import atomic_write_text
from .scorecard import NOT_MEASURED, verdict_kind

RECORD = "findings.json"
DECIDED = ("holds", "does not hold", "partly")
NOT_RUN = "not run yet"


def read_records(folder: Path) -> dict[str, dict]:
    """``{dataset: record}`` of every dataset folder under ``folder`` (``book/<profile>``) with a record, in
    the datasets' name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PruneRecError(f"no book folder at {folder}")
    docs = {}
    for path in sorted(folder.glob(f"*/{RECORD}")):
        try:
            docs[path.parent.name] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PruneRecError(f"{path} is not a findings record ({exc.msg}): publish that run again") from None
    return docs


def heading(dataset: str, doc: dict) -> str:
    """``ml-100k (9,834 rows, 166 users)``: the dataset and the power of its column."""
    if doc.get("rows") is None:
        return dataset
    return f"{dataset} ({doc['rows']:,} rows, {doc['users']:,} users)"


def findings_by_dataset(docs: dict[str, dict]) -> pd.DataFrame:
    """One row per finding (in the first record's order), one column per dataset."""
    order = list(dict.fromkeys(k for doc in docs.values() for k in doc["findings"]))
    return pd.DataFrame({heading(ds, doc): [doc["findings"].get(k, NOT_RUN) for k in order]
                         for ds, doc in docs.items()}, index=order)


def decided_by(verdicts: dict[str, str]) -> str:
    """Which datasets decide a claim (``verdicts``: dataset → verdict): "none", one name, "both agree" / "all
    agree", or "they disagree (…)" naming each decided dataset's kind of verdict."""
    kinds = {ds: verdict_kind(v) for ds, v in verdicts.items()}
    decided = {ds: k for ds, k in kinds.items() if k in DECIDED}
    if not decided:
        return "none"
    if len(decided) == 1:
        return next(iter(decided))
    if len(set(decided.values())) == 1:
        return ("both" if len(decided) == 2 else "all") + " agree" + (
            "" if len(decided) == len(kinds) else f" ({', '.join(decided)})")
    return "they disagree (" + "; ".join(f"{ds}: {k}" for ds, k in decided.items()) + ")"


def claims_by_dataset(docs: dict[str, dict]) -> pd.DataFrame:
    """One row per claim of the scorecard (in the first record's order): its verdict on each dataset ("not
    measured here" where that run's scorecard lacks it), and :func:`decided_by`."""
    verdicts = {ds: {c["claim"]: c["verdict"] for c in doc["claims"]} for ds, doc in docs.items()}
    order = list(dict.fromkeys(c["claim"] for doc in docs.values() for c in doc["claims"]))
    out = pd.DataFrame({heading(ds, docs[ds]): [v.get(claim, NOT_MEASURED) for claim in order]
                        for ds, v in verdicts.items()}, index=order)
    out["decided by"] = [decided_by({ds: v.get(claim, NOT_MEASURED) for ds, v in verdicts.items()})
                         for claim in order]
    return out


def _cells(values) -> str:
    return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"


def _markdown(table: pd.DataFrame, first: str) -> list[str]:
    """``table`` as Markdown rows, its index under the heading ``first``."""
    return [_cells([first, *table.columns]), _cells(["---"] * (len(table.columns) + 1)),
            *(_cells([index, *row]) for index, row in zip(table.index, table.itertuples(index=False)))]


def datasets_markdown(folder: Path) -> str:
    """The findings and the claims of every published dataset under ``folder``, side by side, captioned."""
    docs = read_records(folder)
    if not docs:
        return f"No dataset's run is published under `{Path(folder).name}` yet.\n"
    names = ", ".join(f"`{ds}`" for ds in docs)
    lines = [f"**What each dataset's run found ({names}; generated from their findings records)**", "",
             *_markdown(findings_by_dataset(docs), "finding"), "",
             f"**Every claim of the paper on each dataset, and which dataset decides it ({names})**", "",
             *_markdown(claims_by_dataset(docs), "claim")]
    return "\n".join(lines) + "\n"


def write_datasets(folder: Path) -> Path:
    """``folder/datasets.md`` from the records under ``folder``."""
    path = Path(folder) / "datasets.md"
    atomic_write_text(path, datasets_markdown(folder))
    return path


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.datasets", description=__doc__.split("\n")[0])
    ap.add_argument("folder", help="a profile's book folder, e.g. book/default")
    path = write_datasets(Path(ap.parse_args(argv).folder))
    print(f"datasets side by side -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
