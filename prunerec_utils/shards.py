"""Shards of one run: chapters executed on different machines (or one after another) merged into one run.

A shard is a chapter subset run in its own run folder (``python -m prunerec_utils.runner --notebooks 03 04
--runs-root R --out O``; every chapter makes the stages it needs, :func:`prunerec_utils.pipeline.stages.ensure`).
``pack`` turns it into a small folder that travels — never weights::

    SHARD/shard.json   dataset, profile, chapters, machine, commit, the content identity of every model
                       and of the splits, and the SHA-256 of every file below
    SHARD/run/         the run folder's records: results/ and ranks/ (per-row ranks with user ids),
                       figures/, models/<name>/ records (training summary, surgery, config), splits/stats.json,
                       the same for the ablation child runs
    SHARD/book/        the executed chapters

``merge`` checks every shard against its checksums, then refuses — in one line naming the model (or
record) and both identities — where two shards (or a shard and the destination) disagree on a model they
share (teacher, stages, splits) or on a record's settings; a chapter executed in two shards is refused too.
Only after every check passes is anything written: the run records go into the destination run folder, the
chapters into the destination book folder; a book folder then gets its banners, findings and (the book's own
run) ``results/`` files, as after the runner. Files that exist there already are never overwritten with other
bytes (their records were compared above; a figure or ranks file of equal settings keeps the first copy). The
records of a model go to ``shard_models/<name>/`` (its weights did not travel: the merged run folder never
claims a model it cannot load).

    python -m prunerec_utils.shards run --notebooks 03 04 --profile default --archive shard-03-04.tgz   # run + pack
    python -m prunerec_utils.shards pack --runs-root R --profile default --dataset ml-100k --copies O --out SHARD
    python -m prunerec_utils.shards merge SHARD_A SHARD_B --runs-root runs --copies book/default/ml-100k
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from . import PruneRecError, cli
from .hardware import device_facts
from .identity import code_commit, data_identity, file_sha256, model_identity
from .paths import atomic_write_text, cli_path, output_dir
from .pipeline.run import IDENTITIES, SHARD_MODELS, Run
from .profiles import get_profile
from .steps import SETTINGS
from .studies.publish import publish

MANIFEST = "shard.json"
MODEL_RECORDS = ("training_summary.json", "surgery.json", "checkpoints.json", "config.json", "generation_config.json")
RUN_FOLDERS = ("results", "ranks", "figures")  # copied whole (small files: JSON, CSV, PNG)


def _run_files(folder: Path) -> list[Path]:
    """The files of a run folder that a shard carries (relative paths): records, results, ranks and
    figures of the run and of its ablation child runs; never weights, checkpoints or split CSVs."""
    out = []
    for base in [folder, *sorted(p.parent for p in folder.glob("ablations/*/*/*/results"))]:
        rel = base.relative_to(folder)
        for sub in RUN_FOLDERS:
            out += [rel / p.relative_to(base) for p in sorted((base / sub).rglob("*")) if p.is_file()]
        for model in sorted((base / "models").glob("*")):
            if model.is_dir() and not model.is_symlink() and not model.name.endswith(".ckpt"):
                out += [rel / "models" / model.name / r for r in MODEL_RECORDS if (model / r).is_file()]
    return out


def _models(folder: Path) -> dict[str, str]:
    """``{models/<name>: content identity}`` of the trained or cut models of a run folder (not the links)."""
    found = {}
    for model in sorted(folder.glob("models/*")):
        if model.is_dir() and not model.is_symlink() and (model / "config.json").exists():
            found[f"models/{model.name}"] = model_identity(model)
    return found


def pack(run: Run, copies: Path, out: Path) -> dict:
    """Write the shard of ``run`` (its run folder) and the chapters executed into ``copies`` to ``out``."""
    out = output_dir(out, MANIFEST)
    chapters = sorted(p.name for p in copies.glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        raise PruneRecError(f"{copies}: no executed chapter to pack (run the runner with --out {copies} first)")
    files = {}
    for rel in _run_files(run.folder):
        files[f"run/{rel}"] = run.folder / rel
    if (run.splits / "stats.json").exists():
        files["run/splits/stats.json"] = run.splits / "stats.json"
    for name in chapters:  # (findings.md is written again from the merged run, not carried)
        files[f"book/{name}"] = copies / name
    manifest = {"dataset": run.dataset, "profile": run.prof.name, "chapters": [c[:2] for c in chapters],
                "device": device_facts(), "commit": code_commit(), "models": _models(run.folder),
                "splits": data_identity(run.splits), "files": {}}
    for rel, src in files.items():
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        manifest["files"][rel] = file_sha256(dest)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))  # last: a shard without it is incomplete
    return manifest


ARCHIVES = (".tar", ".tgz", ".tar.gz")  # a shard as one file (a GPU machine may send back only a few files)


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVES)


def refuse_unusable_archive(archive: Path) -> None:
    """One line where ``archive`` cannot be a new shard archive: another suffix, or a file already there."""
    if not is_archive(archive):
        raise PruneRecError(f"{archive}: a shard archive ends with {' or '.join(ARCHIVES)}")
    if archive.exists():
        raise PruneRecError(f"{archive}: exists; choose a new file name for the shard")


def pack_archive(run: Run, copies: Path, archive: Path) -> dict:
    """:func:`pack` into one tar file (gzip-compressed for ``.tgz`` / ``.tar.gz``), written atomically."""
    refuse_unusable_archive(archive)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = pack(run, copies, Path(tmp) / "shard")
        part = archive.with_name(f".{archive.name}.packing")
        with tarfile.open(part, "w:gz" if archive.name.endswith((".tgz", ".gz")) else "w") as tar:
            tar.add(Path(tmp) / "shard", arcname="shard")
        part.replace(archive)
    return manifest


@contextlib.contextmanager
def opened(path: Path):
    """A shard folder for ``path``: the folder itself, or an archive unpacked into a temporary folder."""
    if not is_archive(path):
        yield path
        return
    if not path.is_file():
        raise PruneRecError(f"{path}: no such shard archive")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")  # no absolute paths, links or devices out of the archive
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PruneRecError(f"{path}: not a readable shard archive ({exc})") from None
        yield Path(tmp) / "shard"


def read_shard(folder: Path) -> dict:
    """A shard's manifest, after every file it lists is checked (missing, truncated or altered: one line)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise PruneRecError(f"{folder}: not a shard (no {MANIFEST}; an interrupted pack leaves none)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PruneRecError(f"{path}: unreadable ({exc})") from None
    for rel, digest in manifest["files"].items():
        f = folder / rel
        if not f.is_file():
            raise PruneRecError(f"{folder}: {rel} is missing")
        if file_sha256(f) != digest:
            raise PruneRecError(f"{folder}: {rel} differs from its checksum (truncated or altered)")
    return manifest


def _disagreement(what: str, a: dict, b: dict, name_a: str, name_b: str) -> str | None:
    """One line naming ``what`` and the differing values of two records' settings, or None if they agree."""
    diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not diff:
        return None
    shown = "; ".join(f"{k} {a.get(k)!r} in {name_a}, {b.get(k)!r} in {name_b}" for k in diff[:3])
    return f"{what}: {shown}"


def _settings(path: Path) -> dict | None:
    if path.suffix != ".json":
        return None
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec.get(SETTINGS) if isinstance(rec, dict) and isinstance(rec.get(SETTINGS), dict) else None


def _destination(rel: str) -> str:
    """Where a shard's run file goes in the merged run folder. A model's records go to ``shard_models/<name>/``,
    not ``models/<name>/``: the weights did not travel, and a record there would make the run folder claim a
    model it cannot load (the export reads both places)."""
    parts = rel.split("/")
    if "models" in parts:
        i = parts.index("models")
        return "/".join(parts[:i] + [SHARD_MODELS] + parts[i + 1:])
    return rel


def plan(shards: list[Path], run_folder: Path, copies: Path) -> dict[Path, Path]:
    """``{destination: source}`` of every file the merge writes, after every check (see the module docstring)."""
    manifests = {folder: read_shard(folder) for folder in shards}
    first = next(iter(manifests.values()))
    for folder, m in manifests.items():
        if (m["dataset"], m["profile"]) != (first["dataset"], first["profile"]):
            raise PruneRecError(f"{folder}: a shard of {m['dataset']} / {m['profile']}, the others are of "
                                f"{first['dataset']} / {first['profile']}")
    # the models and splits they share: one identity each
    seen: dict[str, tuple[str, str]] = {}
    if (run_folder / "models").exists():
        seen.update({k: (v, str(run_folder)) for k, v in _models(run_folder).items()})
    merged = run_folder / SHARD_MODELS / IDENTITIES  # what earlier merges brought
    if merged.exists():
        seen.update({k: (v, f"an earlier merge ({merged})") for k, v in json.loads(merged.read_text()).items()})
    for folder, m in manifests.items():
        for name, ident in {**m["models"], "splits": m["splits"]}.items():
            if name in seen and seen[name][0] != ident:
                raise PruneRecError(f"{name}: identity {seen[name][0]} in {seen[name][1]}, {ident} in {folder}: "
                                    "the shards did not make the same model; merge nothing")
            seen.setdefault(name, (ident, str(folder)))
    writes: dict[Path, Path] = {}
    chapters: dict[str, Path] = {}
    for folder, m in manifests.items():
        for rel in m["files"]:
            src = folder / rel
            if rel.startswith("book/"):
                name = rel[len("book/"):]
                if name[:2].isdigit():
                    if name in chapters:
                        raise PruneRecError(f"chapter {name} was executed in two shards ({chapters[name]} and "
                                            f"{folder}): merge shards of disjoint chapters")
                    chapters[name] = folder
                writes[copies / name] = src
                continue
            if rel.startswith("run/splits/"):
                continue  # the splits are compared by identity above and re-made from the raw files where needed
            dest = run_folder / _destination(rel[len("run/"):])
            other = writes.get(dest, dest if dest.exists() else None)
            if other is None:
                writes[dest] = src
                continue
            a, b = _settings(other), _settings(src)
            if a is not None and b is not None:
                line = _disagreement(rel[len("run/"):], a, b, str(other), str(folder))
                if line:
                    raise PruneRecError(f"{line}; merge nothing")
            # equal settings (or not a record): the first copy stays
    return writes


def merge(shards: list[Path], run_folder: Path, copies: Path) -> int:
    """Merge ``shards`` into ``run_folder`` and ``copies`` (see :func:`plan`); returns the files written. The
    identities of the models and splits the shards made are kept (``shard_models/identities.json``), so a
    later merge into the same run is checked against them too."""
    writes = plan(shards, run_folder, copies)
    identities_path = run_folder / SHARD_MODELS / IDENTITIES
    identities = json.loads(identities_path.read_text()) if identities_path.exists() else {}
    for folder in shards:
        m = json.loads((folder / MANIFEST).read_text())
        identities.update({**m["models"], "splits": m["splits"]})
    written = 0
    for dest, src in sorted(writes.items()):
        if dest.exists() and dest.read_bytes() == src.read_bytes():
            continue
        if dest.exists() and dest.parent != copies:
            continue  # a record of equal settings already there: the first copy stays
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.merging")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
        written += 1
    identities_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(identities_path, json.dumps(identities, indent=1, sort_keys=True))
    return written


def seed_run(run: Run, earlier: list[Path]) -> int:
    """Merge the run records of ``earlier`` shards (folders or archives) into ``run``'s folder before its chapters
    run — results, per-row ranks, figures, model records and identities; their chapters and weights stay out —
    so that a chapter that reads a stored result (Table 2, the scorecard, the ID baselines' teacher row) finds
    it, a stored evaluation of a model made again with the same identity is reused, and a model made again with
    another identity is refused (:func:`prunerec_utils.pipeline.stages.ensure`). The splits, which every chapter
    reads, are made here from the raw data where the run has none, and must be the earlier shards' (their
    identity). Returns the files written."""
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="seed-chapters-") as chapters:
        folders = [stack.enter_context(opened(path)) for path in earlier]
        written = merge(folders, run.folder, Path(chapters))
    run.ensure_splits()
    want = run.merged_identities().get("splits")
    if want is not None and (got := run.data_id()) != want:
        raise PruneRecError(f"{run.splits}: identity {got}, the earlier shards' splits are {want}: this machine's "
                            "raw data differ; run on the same data")
    return written


def run_shard(profile: str, dataset: str | None, notebooks: list[str], archive: Path, runs_root: Path | None = None,
              seed: int = 42, params: list[str] = (), max_mib: float = 16.0, after: list[Path] = ()) -> dict:
    """Execute ``notebooks`` in the run folder under ``runs_root`` (every upstream step they need is made or
    reused there, :func:`prunerec_utils.pipeline.stages.ensure`) and pack them into ``archive``: one file of at
    most ``max_mib`` MiB, what a machine that sends back only a few small files returns. A run folder kept between
    commands serves the next shard too; ``after``: earlier shards whose records are merged in first
    (:func:`seed_run`), so a chapter that only reads their results does not make their models again. Refused
    before anything runs: an archive name that exists or is not ``.tar``/``.tgz``, an earlier shard that is
    damaged or disagrees with the run folder; refused after: an archive over ``max_mib`` (kept, the line names
    its size)."""
    from .runner import execute  # lazy: papermill and the notebook stack load only where a shard runs

    refuse_unusable_archive(archive)  # before anything runs
    if after:
        prof = get_profile(profile, seed=seed)
        seed_run(Run(dataset or prof.dataset, prof, runs_root), list(after))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shard-chapters-") as copies:
        run = execute(profile, dataset, notebooks, Path(copies), runs_root, seed, params)
        manifest = pack_archive(run, Path(copies), archive)
    size = archive.stat().st_size / 2**20
    if size > max_mib:
        raise PruneRecError(f"{archive}: {size:.1f} MiB, over --max-mib {max_mib:g} (it would not travel); run fewer "
                            "chapters per shard")
    return manifest


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.shards", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="a run folder's records and executed chapters → a shard folder (no weights)")
    p.add_argument("--runs-root", required=True)
    p.add_argument("--profile", default="default")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--copies", required=True, help="the folder the runner wrote the executed chapters to")
    p.add_argument("--out", required=True, help="the shard: a new or empty folder, or one file ending .tar / .tgz")
    r = sub.add_parser("run", help="execute chapters in a run folder and pack them into one archive (a target's "
                                   "command; upstream steps are made or reused)")
    r.add_argument("--notebooks", nargs="+", required=True, help="the chapters, e.g. 03 04")
    r.add_argument("--archive", required=True, help="the shard to write: a new file ending .tar or .tgz")
    r.add_argument("--profile", default="default")
    r.add_argument("--dataset", default=None, help="default: the profile's dataset")
    r.add_argument("--runs-root", default=None, help="run folders (default runs/ or $PRUNEREC_RUNS); keep it "
                                                    "between shards on one machine to reuse their steps")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="as the runner's --param")
    r.add_argument("--max-mib", type=float, default=16.0, help="largest archive that may travel back, MiB")
    r.add_argument("--after", nargs="+", default=[], metavar="SHARD", help="earlier shards of the run (folders or "
                   "archives): their records are merged in first, so chapters that only read their results do not "
                   "make their models again, and a model made again must be the one they made")
    m = sub.add_parser("merge", help="shards → one run folder and one book folder")
    m.add_argument("shards", nargs="+")
    m.add_argument("--runs-root", required=True, help="the destination runs root")
    m.add_argument("--copies", required=True, help="the destination folder of executed chapters")
    args = ap.parse_args(argv)
    if args.command == "run":
        man = run_shard(args.profile, args.dataset, args.notebooks, cli_path(args.archive),
                        cli_path(args.runs_root) if args.runs_root else None, args.seed, args.param, args.max_mib,
                        [cli_path(a) for a in args.after])
        print(f"shard of chapters {', '.join(man['chapters'])} ({man['profile']}, {man['dataset']}): "
              f"{len(man['files'])} files, models {', '.join(n.split('/')[-1] for n in man['models']) or 'none'} "
              f"-> {args.archive}")
        return 0
    if args.command == "pack":
        run = Run(args.dataset, get_profile(args.profile), str(cli_path(args.runs_root)))
        out = cli_path(args.out)
        man = (pack_archive if is_archive(out) else pack)(run, cli_path(args.copies), out)
        print(f"packed chapters {', '.join(man['chapters'])}: {len(man['files'])} files, models "
              f"{', '.join(n.split('/')[-1] for n in man['models']) or 'none'} -> {args.out}")
        return 0
    with contextlib.ExitStack() as stack:
        shards = [stack.enter_context(opened(cli_path(s))) for s in args.shards]
        first = read_shard(shards[0])
        run = Run(first["dataset"], get_profile(first["profile"]), str(cli_path(args.runs_root)))
        written = merge(shards, run.folder, cli_path(args.copies))
    print(f"merged {len(shards)} shards into {run.folder} and {args.copies}: {written} files written")
    publish(run, cli_path(args.copies))  # a book folder: banners, findings, and the book's own run's results/
    return 0


if __name__ == "__main__":
    sys.exit(main())
