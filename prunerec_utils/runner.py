"""Papermill driver: execute the numbered notebooks for one dataset × profile.

    python -m prunerec_utils.runner --profile default --dataset ml-100k            # book copies
    python -m prunerec_utils.runner --profile ci --out tests/notebooks             # nbval copies

Each executed copy gets a first markdown cell recording profile, dataset, commit, wall time
and machine; copies are written to a temporary name and renamed, so a failed run never leaves
a complete-looking notebook. A failing cell stops the run with a one-line error and exit status 2;
the cells executed up to it, with the traceback, are kept as ``<name>.failed.ipynb`` beside the
copies (removed when the notebook later succeeds). ``--param`` names are checked against the
notebooks' parameters cells before anything runs.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import papermill as pm

from . import PruneRecError, cli
from .data import get_dataset_config
from .hardware import device_facts, device_name
from .identity import code_commit
from .paths import cli_path, resolve
from .pipeline.banners import NOTEBOOKS, RECORD_TAG, run_facts
from .pipeline.run import Run
from .profiles import get_profile
from .studies.publish import publish


def notebook_paths(selection: list[str] | None = None) -> list[Path]:
    """Notebooks in order; ``selection`` filters by number prefix ("00", "01", ...)."""
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        found = [p for p in found if p.name[:2] in selection]
        missing = set(selection) - {p.name[:2] for p in found}
        if missing:
            raise PruneRecError(f"no notebook numbered {', '.join(sorted(missing))} in {NOTEBOOKS}")
    return found


def _record_cell(nb, params: dict, seconds: float, commit: str) -> None:
    text = (f"```{{note}}\nExecuted by `prunerec_utils.runner` with profile **{params['profile']}** on "
            f"**{params['dataset']}** (seed {params['seed']}), commit `{commit}`, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, wall time of this execution "
            f"**{seconds / 60:.1f} min** on {device_name()}. Stages found "
            f"complete in the run folder are reused; their own compute times are printed below.\n```")
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = [RECORD_TAG]
    nb.cells = [c for c in nb.cells if RECORD_TAG not in c.metadata.get("tags", [])]
    pos = next((i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), 0)
    nb.cells.insert(pos, cell)  # under the notebook's title
    for c in nb.cells:  # the book folds the parameter cells (still one click away)
        tags = c.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "hide-cell" not in tags:
            tags.append("hide-cell")


def run_notebook(src: Path, out_dir: Path, params: dict, facts=None) -> float:
    """Execute ``src`` into ``out_dir/<same name>``; returns the wall time in seconds. ``facts``
    (optional, a callable): the run the copy shows (:func:`~prunerec_utils.pipeline.banners.run_facts`),
    recorded in its metadata for the book's banners."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".running.{src.name}"
    failed = failed_copy(out_dir, src)
    t0 = time.time()
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, progress_bar=False, log_output=False,
                            cwd=str(src.parent), kernel_name="python3")
    except pm.PapermillExecutionError as exc:
        where = ""
        if tmp.exists():  # papermill wrote the cells up to the failing one, with its traceback
            tmp.replace(failed)
            where = f" (executed copy with the traceback: {failed})"
        evalue = " ".join(str(exc.evalue).split())
        raise PruneRecError(f"{src.name} failed in cell {exc.exec_count}: {exc.ename}: {evalue}{where}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.time() - t0
    nb = nbformat.read(tmp, as_version=4)
    _record_cell(nb, params, seconds, code_commit())
    nb.metadata["prunerec"] = {"device": device_facts(), **({"run": facts()} if facts is not None else {})}
    nbformat.write(nb, tmp)
    tmp.replace(out_dir / src.name)
    failed.unlink(missing_ok=True)  # an earlier failure's copy is stale now
    return seconds


def failed_copy(out_dir: Path, src: Path) -> Path:
    """Where a failed execution of ``src`` is kept: ``<name>.failed.ipynb``, never the complete name."""
    return out_dir / f"{src.stem}.failed.ipynb"


# Parameters the runner sets from its own flags (None: no flag, the runner always sets it).
RUNNER_PARAMS = {"profile": "--profile", "dataset": "--dataset", "seed": "--seed", "runs_root": "--runs-root",
                 "progress": None}
_JSON_LIKE = re.compile(r'[\[{"]|[-+]?\.?\d')  # starts like a JSON list, object, string or number


def parse_params(pairs: list[str]) -> dict:
    """``["max_train=16384", "note=x"]`` -> ``{"max_train": 16384, "note": "x"}``.
    A value that starts like JSON (``[``, ``{``, ``"`` or a number) must parse as JSON; any other
    value is JSON where it parses (``true``, ``null``) and text otherwise."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise PruneRecError(f"--param wants NAME=VALUE, got {pair!r}")
        if name in RUNNER_PARAMS:
            flag = RUNNER_PARAMS[name]
            raise PruneRecError(f"--param {name}: {name} is set by the runner; "
                                + (f"use {flag} instead" if flag else f"{name} is always False in runner logs"))
        if name in out:
            raise PruneRecError(f"--param {name} given twice")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            if _JSON_LIKE.match(value.strip()):
                raise PruneRecError(f"--param {name}={value} looks like JSON but does not parse ({exc.msg} at "
                                    f"character {exc.pos + 1}); write lists as [0.1, 0.3] and text as plain "
                                    "words or JSON strings") from None
            out[name] = value
    return out


def notebook_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters`` (papermill's injection point)."""
    nb = json.loads(Path(path).read_text())
    names = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            try:
                tree = ast.parse(source)
            except SyntaxError as exc:
                raise PruneRecError(f"{path}: the parameters cell is not valid Python ({exc.msg})") from None
            names |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    return names


def check_params(params: dict, notebooks: list[Path]) -> None:
    """Every name of ``params`` must be a parameter of at least one of ``notebooks``; one-line error else."""
    known = {nb: notebook_parameters(nb) for nb in notebooks}
    for name in params:
        if not any(name in names for names in known.values()):
            close = difflib.get_close_matches(name, set().union(*known.values()), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise PruneRecError(f"--param {name}: no such parameter in {', '.join(nb.name for nb in notebooks)}"
                                f"{hint}")


def execute(profile: str, dataset: str | None = None, selection: list[str] | None = None, out: Path | None = None,
            runs_root: Path | None = None, seed: int = 42, param_pairs: list[str] = ()) -> Run:
    """Execute the selected notebooks (all by default) for one dataset × profile into ``out`` (default
    ``book/<profile>/<dataset>``), in the run folder under ``runs_root``; returns that run. Parameters are
    checked before anything runs. In a book folder, banners and findings follow, and for the book's own run its
    results files (:func:`~prunerec_utils.studies.publish.publish`)."""
    extra = parse_params(list(param_pairs))
    notebooks = notebook_paths(selection)
    check_params(extra, notebooks)  # before anything runs
    prof = get_profile(profile)
    dataset = dataset or prof.dataset
    get_dataset_config(dataset)
    out = Path(out) if out is not None else resolve(f"book/{prof.name}/{dataset}")
    runs_root = str(runs_root) if runs_root is not None else None
    params = {"dataset": dataset, "profile": prof.name, "seed": seed, "runs_root": runs_root,
              "progress": False, **extra}

    run = Run(dataset, get_profile(prof.name, seed=seed), runs_root)
    for nb in notebooks:
        print(f"[runner] {nb.name} ({prof.name}, {dataset}) ...", flush=True)
        seconds = run_notebook(nb, out, params, facts=lambda: run_facts(run))
        print(f"[runner] {nb.name} done in {seconds / 60:.1f} min -> {out / nb.name}", flush=True)
    publish(run, out)
    return run


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.runner", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default=None, help="default: the profile's dataset")
    ap.add_argument("--notebooks", nargs="+", default=None, help="numbers to run, e.g. 00 01 (default: all)")
    ap.add_argument("--out", default=None, help="folder for executed copies (default book/<profile>/<dataset>)")
    ap.add_argument("--runs-root", default=None, help="run folders (default runs/ or $PRUNEREC_RUNS)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="papermill parameter of the selected notebooks (the names in their parameters cell; "
                         "profile, dataset, seed and runs_root have their own flags), e.g. max_train=16384. "
                         "VALUE is JSON when it starts with [ { \" or a digit (it must then parse: "
                         "observe_sparsities=[0.1,0.3], note='\"a b\"'), true/false/null are JSON too, any other "
                         "value is text (train_rows=all)")
    args = ap.parse_args(argv)
    out = cli_path(args.out) if args.out else None  # a flag: from the current folder
    execute(args.profile, args.dataset, args.notebooks, out, cli_path(args.runs_root) if args.runs_root else None,
            args.seed, args.param)
    return 0


if __name__ == "__main__":
    sys.exit(main())
