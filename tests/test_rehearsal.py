"""The GPU route rehearsed on this CPU with the ci profile, end to end: an offline bundle for a target that lacks a
package the shards need (papermill) → unpacked into an empty folder with that wheel in a private folder → two
shards run from the unpacked code (00, and 02, which must make the teacher itself) and a third after them (08, which
starts from 02's records: it shows the teacher's stored evaluation and makes no teacher) → merged here → the same
metrics, per-row ranks and model identities as a direct run of the same chapters in one run folder.

The bundle step downloads the one missing wheel with pip (from PyPI, which CI reaches to install anyway). The
direct run is the runner on the session's runs root, where nbval's execution of the ci series (collected before
this file) has made every step already: it re-executes the two chapters and reuses their steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

from prunerec_utils import bundle, shards
from prunerec_utils.identity import data_identity, model_identity
from prunerec_utils.paths import models_root
from prunerec_utils.runner import execute

MISSING = "papermill"  # what the rehearsal's target lacks: every shard needs it, its wheel is small and pure


def _target_env(dest: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PRUNEREC_RUNS", "PYTHONPATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the target's python3: this one
    env["PRUNEREC_MODELS"] = str(models_root())  # the tiny model's tokenizer cache, as the tests share it
    if dest is not None:
        env["PYTHONPATH"] = f"{dest / 'site'}{os.pathsep}{dest}"
    return env


def _ok(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def _outputs(notebook: Path) -> str:
    """Everything an executed notebook's cells printed or displayed (not its code)."""
    cells = json.loads(notebook.read_text())["cells"]
    return json.dumps([c.get("outputs", []) for c in cells if c["cell_type"] == "code"])


def _without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("seconds")}  # wall times vary run to run


def test_bundle_unpack_two_shards_merge_equal_a_direct_run(tmp_path):
    freeze = _ok([sys.executable, "-m", "pip", "freeze", "--all"], tmp_path, _target_env()).splitlines()
    have = tmp_path / "target-freeze.txt"
    have.write_text("".join(f"{ln}\n" for ln in freeze if bundle.canonical(ln.split("==")[0]) != MISSING))
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert bundle.main(["build", "--have", str(have), "--python", py, "--part-mib", "4",
                        "--out", str(tmp_path / "bundle")]) == 0
    manifest = json.loads((tmp_path / "bundle" / bundle.MANIFEST).read_text())
    assert [bundle.canonical(w.split("-")[0]) for w in manifest["wheels"]] == [MISSING]
    assert len(manifest["parts"]) >= 2  # the code alone is over 4 MiB: the parts are joined on the target

    # on the target: unpack into an empty folder and run shard A in one command; shard B from the unpacked code
    dest = tmp_path / "target"
    _ok(["bash", str(tmp_path / "bundle" / "unpack.sh"), str(dest), "--notebooks", "00", "--profile", "ci",
         "--archive", "back/a.tgz", "--runs-root", "runs-a"], tmp_path, _target_env())
    env = _target_env(dest)
    probe = f"import {MISSING}, prunerec_utils; print({MISSING}.__file__); print(prunerec_utils.__file__)"
    where = _ok([sys.executable, "-c", probe], tmp_path, env).split()
    assert Path(where[0]).is_relative_to(dest / "site") and Path(where[1]).is_relative_to(dest)
    _ok([sys.executable, "-m", "prunerec_utils.shards", "run", "--notebooks", "02", "--profile", "ci",
         "--archive", "back/b.tgz", "--runs-root", "runs-b"], tmp_path, env)
    assert "models/teacher" in json.loads(_ok(["tar", "-xzOf", "back/b.tgz", f"shard/{shards.MANIFEST}"],
                                                tmp_path, env))["models"]  # shard B made the teacher itself
    _ok([sys.executable, "-m", "prunerec_utils.shards", "run", "--notebooks", "08", "--profile", "ci",
         "--archive", "back/c.tgz", "--runs-root", "runs-c", "--after", "back/b.tgz"], tmp_path, env)
    c = json.loads(_ok(["tar", "-xzOf", "back/c.tgz", f"shard/{shards.MANIFEST}"], tmp_path, env))
    assert c["chapters"] == ["08"] and not c["models"]  # the teacher's evaluation came from B's records

    # back here: merge, then compare with a direct run of the same chapters
    copies = tmp_path / "book"
    assert shards.main(["merge", *(str(tmp_path / f"back/{s}.tgz") for s in "abc"),
                        "--runs-root", str(tmp_path / "merged"), "--copies", str(copies)]) == 0
    direct = execute("ci", None, ["00", "02", "08"], tmp_path / "direct-copies")
    merged = tmp_path / "merged" / direct.folder.relative_to(direct.folder.parents[1])
    results = sorted((merged / "results").glob("*.json"))
    assert any(r.name.startswith("obs_") for r in results) and (merged / "results" / "teacher.json").exists()
    for r in results:
        assert _without_timing(json.loads(r.read_text())) == \
            _without_timing(json.loads((direct.folder / "results" / r.name).read_text())), r.name
    for r in sorted((merged / "ranks").glob("*.csv")):
        assert r.read_bytes() == (direct.folder / "ranks" / r.name).read_bytes(), r.name
    identities = json.loads((merged / shards.SHARD_MODELS / shards.IDENTITIES).read_text())
    assert identities == {"models/teacher": model_identity(direct.model("teacher")),
                          "splits": data_identity(direct.splits)}
    assert sorted(p.name for p in copies.glob("*.ipynb")) == ["00_preprocess.ipynb", "02_observations.ipynb",
                                                               "08_baselines.ipynb"]
    shown = _outputs(copies / "08_baselines.ipynb")
    assert "no stored teacher evaluation" not in shown and "LLM teacher - " in shown  # paired with the teacher
    assert f"`{manifest['commit']} (offline bundle)`" in (copies / "02_observations.ipynb").read_text()
