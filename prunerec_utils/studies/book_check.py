"""The rendered book as a reader meets it: what on a page would mislead or annoy, found in its HTML.

Two passes over ``book/_build/html`` (after ``make book``):

* **static** (:func:`page_problems`, the page's HTML only): a missing value shown as ``NaN`` / ``<NA>`` /
  ``NaT`` / ``None`` in an output or a table; a printed dict (raw JSON, the Trainer's log lines); an
  error, traceback or warning in an output (a stale import shows up here); "not run yet"; a banner
  saying the chapter shows another run than chapter 01; a table without a caption (a ``<caption>``,
  or a bold line or ``prunerec-caption`` paragraph directly above it); a figure without a caption
  (a ``<figure>`` with ``<figcaption>``, or an italic line or ``prunerec-figcaption`` paragraph
  directly under it);
* **layout** (:func:`layout_problems`, headless Chromium at a window 1280 px wide): a table, output,
  image or formula wider than the text column, scrolling sideways inside its box or spilling out of it,
  and a page that scrolls sideways.

    python -m prunerec_utils.studies.book_check book/_build/html [--pages 'book/default/*/*'] [--json OUT]

prints one line per problem and exits 1 when there is any (0 when none, 2 on bad input). The layout
pass needs Chromium (Debian's ``chromium``; ``--browser`` names another binary, ``--no-browser`` skips
the pass and says so).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bs4 import BeautifulSoup, Tag

from .. import PruneRecError, cli

WIDTH = 1280  # px: the window the layout pass opens each page in
MISSING_CELLS = {"NaN", "nan", "<NA>", "NaT", "None", "null"}
MISSING_IN_TEXT = re.compile(r"(?<![\w.])(?:NaN|nan|NaT)(?![\w(])|<NA>")
ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(?:Error|Exception)\b.*:|\b\w+Warning\b:",
                        re.MULTILINE)
BANNER_CELL = "tag_run-banner"  # the runner's banner cell (pipeline.banners.BANNER_TAG)
REDIRECT = re.compile(r'<meta http-equiv="Refresh"', re.IGNORECASE)  # index.html only forwards to the first page
CONTENT = ["p", "table", "img", "pre", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol"]


@dataclass(frozen=True)
class Problem:
    page: str  # the page's path under the HTML folder
    kind: str  # what is wrong, e.g. "uncaptioned table"
    where: str  # a short excerpt that finds it on the page

    def line(self) -> str:
        return f"{self.page}: {self.kind}: {self.where}"


def _excerpt(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _is_dict_print(line: str) -> bool:
    """Whether ``line`` (one line or several) is a printed dict or list of dicts (JSON or a Python literal)."""
    line = line.strip()
    if not line.startswith(("{", "[")):
        return False
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))
    return False


def _dict_blocks(lines: list[str], longest: int = 200) -> list[tuple[int, int]]:
    """Spans [i, j) of ``lines`` that are a printed dict or list of dicts, on one line or over several (an
    indented ``json.dumps``, a ``pprint``), none inside another. A span is parsed only where it could close: its
    last line ends with "}" or "]" (a log line that merely starts with "[" costs no parse)."""
    spans, i = [], 0
    while i < len(lines):
        end = None
        if lines[i].strip().startswith(("{", "[")):
            end = next((j for j in range(i + 1, min(len(lines), i + longest) + 1)
                        if lines[j - 1].rstrip().endswith(("}", "]")) and _is_dict_print("\n".join(lines[i:j]))),
                       None)
        if end is None:
            i += 1
            continue
        spans.append((i, end))
        i = end
    return spans


def _is_caption(el: Tag | None, cls: str, emphasis: tuple[str, ...]) -> bool:
    """``el`` is a caption paragraph: class ``cls``, or a paragraph that is all one ``emphasis`` element."""
    if el is None or el.name != "p":
        return False
    if cls in (el.get("class") or []):
        return True
    children = [c for c in el.children if not (isinstance(c, str) and not c.strip())]
    return len(children) == 1 and getattr(children[0], "name", None) in emphasis


def _table_captioned(table: Tag) -> bool:
    """A ``<caption>``, or a bold (``prunerec-caption``) paragraph directly above the table."""
    if table.find("caption") is not None:
        return True
    return _is_caption(table.find_previous(CONTENT), "prunerec-caption", ("strong", "b"))


def _figure_captioned(img: Tag) -> bool:
    """A ``<figure>`` with a ``<figcaption>``, or an italic (``prunerec-figcaption``) paragraph directly under
    the image."""
    figure = img.find_parent("figure")
    if figure is not None and figure.find("figcaption") is not None:
        return True
    return _is_caption(img.find_next(CONTENT), "prunerec-figcaption", ("em", "i"))


def page_problems(html_text: str, page: str) -> list[Problem]:
    """The static problems of one rendered page (see the module docstring), in page order by kind."""
    soup = BeautifulSoup(html_text, "html.parser")
    body = soup.find("article") or soup.body or soup
    found: list[Problem] = []

    def add(kind: str, where: str) -> None:
        found.append(Problem(page, kind, _excerpt(where)))

    for cell in body.select(f"div.{BANNER_CELL}"):
        add("shows another run (banner)", cell.get_text(" "))
    text = body.get_text(" ")
    for match in re.finditer(r"not run yet", text, re.IGNORECASE):
        add("not run yet", text[max(0, match.start() - 50): match.end()])
    for td in body.find_all(["td", "th"]):
        if td.get_text().strip() in MISSING_CELLS:
            row = td.find_parent("tr")
            add("missing value in a table", row.get_text(" | ") if row else td.get_text())
    for output in body.select("div.cell_output"):
        for block in output.find_all(["pre", "div"], class_=re.compile("traceback|error")):
            add("error in an output", block.get_text())
        for pre in output.find_all("pre"):
            lines = pre.get_text().splitlines()
            in_dict = set()
            for i, j in _dict_blocks(lines):
                add("raw dict printed", "\n".join(lines[i:j]))
                in_dict.update(range(i, j))
            for line in (ln for k, ln in enumerate(lines) if k not in in_dict):
                if ERROR_LINE.search(line):
                    add("error or warning in an output", line)
                elif MISSING_IN_TEXT.search(line):
                    add("missing value in an output", line)
    for table in body.find_all("table"):
        if not _table_captioned(table):
            first = table.find("tr")
            add("uncaptioned table", first.get_text(" | ") if first else "(empty table)")
    for img in body.find_all("img"):
        if not _figure_captioned(img):
            add("uncaptioned figure", img.get("alt") or img.get("src", ""))
    return found


# ---- layout, in a browser --------------------------------------------------------------------------

# Run in the page after it loaded (and MathJax had time): every table, output, image or formula of the
# article that sticks out of the text column or scrolls inside its box; only the innermost of nested
# offenders is kept. A notebook's code may scroll, as code listings do; what it printed may not. The result
# goes on <body> as JSON, which --dump-dom prints.
LAYOUT_JS = """
(function () {
  function check() {
    var art = document.querySelector('article') || document.body, box = art.getBoundingClientRect();
    var sel = 'table, pre, img, mjx-container, .MathJax_Display, div.cell_output, div.output, div.highlight';
    var bad = [];
    art.querySelectorAll(sel).forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (r.width === 0 || el.closest('div.cell_input')) return;  // code may scroll, as in any listing
      if ((el.tagName === 'PRE' || el.matches('div.highlight')) && !el.closest('div.cell_output, div.prunerec-wrap'))
        return;  // so may a command or code block in the text
      var sticks = r.right > box.right + 1;
      var ox = getComputedStyle(el).overflowX;
      var scrolling = ox === 'auto' || ox === 'scroll';
      // a formula's glyphs always reach a little past their inline box: only a formula that scrolls counts
      var over = el.scrollWidth > el.clientWidth + 2 && (scrolling || el.tagName !== 'MJX-CONTAINER');
      if (sticks || over) bad.push({el: el, how: sticks ? 'wider than the text column'
                                               : scrolling ? 'scrolls sideways' : 'spills out of its box',
        width: Math.round(Math.max(r.width, el.scrollWidth)),
        box: Math.round(sticks ? box.width : el.clientWidth)});
    });
    var inner = bad.filter(function (a) {
      return !bad.some(function (b) { return b !== a && a.el.contains(b.el); });
    });
    var out = inner.map(function (a) {
      return {tag: a.el.tagName.toLowerCase(), how: a.how, width: a.width, box: a.box,
              text: (a.el.innerText || a.el.getAttribute('alt') || a.el.parentElement.className || '')
                    .trim().slice(0, 200)};
    });
    var doc = document.scrollingElement || document.documentElement;
    if (doc.scrollWidth > window.innerWidth + 1)
      out.push({tag: 'page', how: 'the page scrolls sideways', width: doc.scrollWidth, box: window.innerWidth,
                text: ''});
    document.body.setAttribute('data-prunerec-layout', JSON.stringify(out));
  }
  window.addEventListener('load', function () { setTimeout(check, 1500); });
})();
"""
LAYOUT_ATTR = "data-prunerec-layout"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]


def find_browser(name: str | None = None) -> str | None:
    """The Chromium binary: ``name`` if given (a path or a command), else chromium / chromium-browser /
    google-chrome on PATH; None when there is none."""
    for candidate in [name] if name else ["chromium", "chromium-browser", "google-chrome"]:
        found = shutil.which(candidate)
        if found:
            return found
    if name:
        raise PruneRecError(f"no browser {name!r}: install Debian's chromium, or pass --no-browser")
    return None


def layout_problems(page_file: Path, page: str, browser: str, width: int = WIDTH) -> list[Problem]:
    """The layout problems of one rendered page, opened in ``browser`` (headless) at ``width`` px.

    A copy of the page with :data:`LAYOUT_JS` added sits beside it while the browser reads it (its
    relative links to styles and images must resolve) and is removed after."""
    source = page_file.read_text(encoding="utf-8")
    probe = page_file.with_name(f".layout-check-{page_file.name}")
    script = f"<script>{LAYOUT_JS}</script>"
    probe.write_text(source.replace("</body>", script + "</body>") if "</body>" in source else source + script,
                     encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                   f"--window-size={width},900", "--dump-dom", probe.resolve().as_uri()],
                                  capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise PruneRecError(f"{browser} did not lay out {page} within 120 s") from None
    finally:
        probe.unlink(missing_ok=True)
    body = BeautifulSoup(done.stdout, "html.parser").body
    if body is None or not body.has_attr(LAYOUT_ATTR):
        raise PruneRecError(f"{browser} did not lay out {page} (exit {done.returncode}): "
                            f"{_excerpt(done.stderr or 'no output', 160)}")
    return [Problem(page, f"{p['how']} ({p['tag']}, {p['width']} px in {p['box']} px)", _excerpt(p["text"]))
            for p in json.loads(body[LAYOUT_ATTR])]


# ---- the whole book ----------------------------------------------------------------------------------

def book_pages(html_dir: Path, patterns: list[str] | None = None) -> list[Path]:
    """The book's own pages under ``html_dir`` (the theme's genindex and search pages and the redirecting
    index left out), or
    those matching one of ``patterns`` (globs relative to ``html_dir``, ``.html`` added where missing)."""
    if not html_dir.is_dir():
        raise PruneRecError(f"no rendered book at {html_dir}: run `make book` first")
    if patterns:
        pages = sorted({p for pat in patterns for p in html_dir.glob(pat if pat.endswith(".html") else pat + ".html")})
        if not pages:
            raise PruneRecError(f"no page of {html_dir} matches {' '.join(patterns)}")
        return pages
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(p for p in html_dir.rglob("*.html")
                  if p.name not in skip and not p.name.startswith(".")
                  and not any(part.startswith("_") for part in p.relative_to(html_dir).parts)
                  and not REDIRECT.search(p.read_text(encoding="utf-8", errors="replace")[:2000]))


def check_book(html_dir: Path, patterns: list[str] | None = None, browser: str | None = None,
               width: int = WIDTH) -> tuple[list[Path], list[Problem]]:
    """(pages checked, their problems): the static pass on every page, the layout pass too when
    ``browser`` is given."""
    pages = book_pages(html_dir, patterns)
    problems: list[Problem] = []
    for page_file in pages:
        page = page_file.relative_to(html_dir).as_posix()
        problems += page_problems(page_file.read_text(encoding="utf-8"), page)
        if browser:
            problems += layout_problems(page_file, page, browser, width)
    return pages, problems


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.studies.book_check",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("html", nargs="?", default="book/_build/html", help="the rendered book (default: %(default)s)")
    ap.add_argument("--pages", nargs="+", help="globs of pages under it, e.g. 'book/default/ml-100k/*'")
    ap.add_argument("--browser", help="the Chromium binary (default: chromium on PATH)")
    ap.add_argument("--no-browser", action="store_true", help="the static pass only")
    ap.add_argument("--width", type=int, default=WIDTH, help="window width in px (default: %(default)s)")
    ap.add_argument("--json", help="also write the problems to this JSON file")
    args = ap.parse_args(argv)
    browser = None if args.no_browser else find_browser(args.browser)
    if browser is None and not args.no_browser:
        raise PruneRecError("no chromium on PATH for the layout pass: install Debian's chromium, or pass --no-browser")
    pages, problems = check_book(Path(args.html), args.pages, browser, args.width)
    for problem in problems:
        print(problem.line())
    passes = "static and layout" if browser else "static only (layout not checked: --no-browser)"
    print(f"{len(pages)} pages, {passes}: {len(problems)} problems"
          + (f" on {len({p.page for p in problems})} pages" if problems else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"pages": [p.relative_to(args.html).as_posix() for p in pages],
                                               "width": args.width if browser else None,
                                               "problems": [asdict(p) for p in problems]}, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
