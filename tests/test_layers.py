"""The package's floors, read from every module's imports (function-level ones included).

``method/`` holds tensors-in, tensors-out kernels: it must not reach the run folder (``pipeline/``), the paper's
studies (``studies/``) or the cached-step primitive (``steps``). ``pipeline/`` must not reach ``studies/``. No module
may import itself back through a circle, however deep the import hides inside a function.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prunerec_utils"


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path, name, known):
    """Names of package modules ``path`` imports anywhere in its body (``from x import y`` counts ``x.y`` when
    ``x.y`` is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m in known and m != name}


def graph():
    known = modules()
    return {name: imported(path, name, known) for name, path in known.items()}


def floor(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in ("method", "pipeline", "studies") else None


def test_the_reader_sees_function_level_and_relative_imports(tmp_path):
    fake = tmp_path / "prunerec_utils" / "method"
    fake.mkdir(parents=True)
    (fake / "a.py").write_text("def f():\n    from ..pipeline import run\n    from . import b\n")
    known = {"prunerec_utils.pipeline.run", "prunerec_utils.pipeline", "prunerec_utils.method.b"}
    got = imported(fake / "a.py", "prunerec_utils.method.a", known)
    assert got == {"prunerec_utils.pipeline.run", "prunerec_utils.method.b"}


@pytest.mark.parametrize("lower, upper", [("method", "pipeline"), ("method", "studies"), ("pipeline", "studies")])
def test_a_floor_imports_nothing_above_it(lower, upper):
    crossing = sorted(f"{a} -> {b}" for a, targets in graph().items() if floor(a) == lower
                      for b in targets if floor(b) == upper)
    assert not crossing, "\n".join(crossing)


def test_the_method_reaches_no_cached_step():
    g = graph()
    reach = {}

    def closure(name, seen):
        for b in g[name]:
            if b not in seen:
                seen.add(b)
                closure(b, seen)
        return seen
    for name in g:
        if floor(name) == "method":
            reach[name] = closure(name, set())
    bad = sorted(f"{a} reaches {b}" for a, seen in reach.items() for b in seen
                 if b == "prunerec_utils.steps" or floor(b) in ("pipeline", "studies"))
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    g = graph()
    circles = []
    state = {}

    def visit(name, stack):
        state[name] = "open"
        stack.append(name)
        for b in sorted(g[name]):
            if state.get(b) == "open":
                circles.append(" -> ".join(stack[stack.index(b):] + [b]))
            elif b not in state:
                visit(b, stack)
        stack.pop()
        state[name] = "done"
    for name in sorted(g):
        if name not in state:
            visit(name, [])
    assert not circles, "\n".join(circles)


def test_function_level_imports_say_why():
    """An import inside a function is allowed only where it buys start-up time, with a comment saying so."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        line, k = lines[inner.lineno - 1], inner.lineno - 2
                        while k >= 0 and (not lines[k].strip() or lines[k].strip().startswith(("from ", "import "))):
                            k -= 1  # a comment above a block of imports covers the block
                        if "#" not in line and not lines[k].strip().startswith("#"):
                            silent.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {line.strip()}")
    assert not silent, "\n".join(silent)


def test_every_package_path_the_docs_name_exists():
    docs = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md")), *sorted((ROOT / "notebooks").glob("*.ipynb")),
            *sorted((ROOT / "benchmarks").glob("*.py")), *sorted(PACKAGE.rglob("*.py"))]
    missing = []
    for doc in docs:
        for found in sorted(set(re.findall(r"prunerec_utils/[\w/]+\.py", doc.read_text()))):
            if not (ROOT / found).exists():
                missing.append(f"{doc.relative_to(ROOT)} names {found}")
    assert not missing, "\n".join(missing)


def test_every_module_imports():
    """A moved module whose relative imports still point one floor too high fails here, not in a user's hands."""
    import importlib

    for name in modules():
        importlib.import_module(name)


def test_every_package_name_a_notebook_uses_exists():
    """A renamed or moved function fails here in seconds, not minutes into a notebook's execution."""
    import importlib
    import json

    missing = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        tree = ast.parse(code)
        names = {}  # local name -> module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prunerec_utils"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    try:
                        names[alias.asname or alias.name] = importlib.import_module(full)
                    except ImportError:
                        if not hasattr(importlib.import_module(node.module), alias.name):
                            missing.append(f"{path.name}: {full}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
                if not hasattr(names[node.value.id], node.attr):
                    missing.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert not missing, "\n".join(sorted(set(missing)))
