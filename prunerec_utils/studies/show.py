"""What the chapters display: each table under its own caption, each figure above its caption, findings as
lines of text.

Printed lines and displays are two streams that the book merges apart (all printed lines of a cell
land above its displays), so a table's label printed with ``print`` drifts away from its table.
:func:`table` and :func:`line` are both displays, in the order they are called: a caption travels
with its table, a finding stays under the table it reads. Tables are shown readable: no
``NaN`` / ``<NA>`` (an em dash says "none"), a plain counter index dropped.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

MISSING = "—"


class Text:
    """One line for the notebook: plain text for nbval and terminals, a paragraph in the book
    (the book's CSS wraps it, however long). ``kind``: "line" (a finding or note), "caption" (bold,
    above its table) or "figcaption" (under its figure)."""

    def __init__(self, text: str, kind: str = "line"):
        self.text, self.kind = text, kind

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        body = html.escape(self.text).replace("\n", "<br>")
        inner = f"<strong>{body}</strong>" if self.kind == "caption" else body
        return f'<p class="prunerec-{self.kind}">{inner}</p>'


def readable(frame: pd.DataFrame, digits: int | dict | None = None) -> pd.DataFrame:
    """``frame`` rounded to ``digits`` (one number or per column), missing cells shown as an em dash,
    parameter counts with thousands separators (134,515,008), and a 0, 1, 2, … index (which says
    nothing) dropped from view."""
    out = frame.round(digits) if digits is not None else frame.copy()
    if isinstance(out.index, pd.RangeIndex):
        out.index = [""] * len(out)
    for column in out.columns:
        if "param" in str(column) and pd.api.types.is_integer_dtype(out[column]):
            out[column] = [MISSING if pd.isna(v) else f"{int(v):,}" for v in out[column]]
    gaps = out.isna()
    if gaps.any().any():
        out = out.astype(object).where(~gaps, MISSING)
    return out


def number(value, spec: str = ".1f", unit: str = "") -> str:
    """``value`` formatted by ``spec`` and followed by ``unit`` ("%"), or an em dash alone where it is missing (a
    retention of a teacher with no hit)."""
    return MISSING if value is None or pd.isna(value) else format(value, spec) + unit


def with_shares(frame: pd.DataFrame, reference: str, shares: dict[str, str], digits: int = 1) -> pd.DataFrame:
    """``frame`` with, for each ``{column: share column}`` of ``shares``, the column as a percentage of the row
    ``reference`` (e.g. parameters as "% of teacher"), rounded to ``digits``."""
    out = frame.copy()
    for column, name in shares.items():
        out[name] = (100 * out[column] / out.loc[reference, column]).round(digits)
    return out


def table(frame: pd.DataFrame, caption: str, digits: int | dict | None = None) -> None:
    """Display ``caption`` (bold) and directly under it :func:`readable` ``frame``."""
    display(Text(caption, "caption"), readable(frame, digits))


def figure(fig, caption: str) -> None:
    """Display ``fig`` and directly under it its ``caption`` (what it shows and how to read it); the figure is
    closed, so the notebook does not show it a second time at the end of the cell."""
    display(fig)
    plt.close(fig)
    display(Text(caption, "figcaption"))


def line(text: str) -> None:
    """Display one finding or note, in order with the tables around it."""
    display(Text(text))
