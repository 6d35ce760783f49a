"""The rendered book, as a reader's browser gets it: built offline with warnings as errors, nothing
loaded from the network, no reference to files a reader does not have, long printed lines wrapped."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = re.compile(r'<(script|img|link|iframe)\b[^>]*\b(src|href)="(https?:)?//', re.I)
SCRIPT_URL = re.compile(r"<script\b[^>]*>[^<]*https?://[^<]*</script>", re.I)  # inline scripts naming a URL


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--path-output", str(out), "-W",
           "--keep-going"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out / "_build" / "html"


def _pages(html: Path) -> dict[str, str]:
    pages = {str(p.relative_to(html)): p.read_text() for p in html.rglob("*.html")
             if not p.name.startswith(("genindex", "search")) and p.parent.name != "_static"
             and p.name != "index.html"}  # index.html only redirects to the intro
    assert "book/intro.html" in pages and len(pages) >= 12
    return pages


def test_no_page_loads_anything_from_the_network(html):
    found = {name: EXTERNAL.findall(text) + SCRIPT_URL.findall(text) for name, text in _pages(html).items()}
    assert not {k: v for k, v in found.items() if v}


def test_no_page_points_readers_to_the_developers_spec(html):
    hits = {name: re.findall(r".{40}\bSPEC\b.{40}", re.sub(r"<[^>]+>", " ", text))
            for name, text in _pages(html).items()}
    assert not {k: v for k, v in hits.items() if v}


def test_printed_lines_wrap_in_their_output_box(html):
    css = (html / "_static" / "companion.css").read_text()
    rule = re.search(r"div\.cell_output pre[^{]*\{[^}]*\}", css)
    assert rule and "white-space: pre-wrap" in rule.group(0)
    missing = [name for name, text in _pages(html).items() if "_static/companion.css" not in text]
    assert not missing


def test_the_intro_shows_the_runs_findings_table(html):
    intro = (html / "book" / "intro.html").read_text()
    assert "What this run found" in intro and "Teacher vs most popular" in intro
    assert re.search(r"<table[^>]*>.*Scorecard", intro, re.S)  # a rendered table, not Markdown source
