"""The cached-step primitive: reuse, refusal, rebuild, corrupt records, the run-folder lock, temp names."""

import json
import subprocess
import sys
import textwrap

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.paths import atomic_write_text
from prunerec_utils import steps


def test_a_step_is_built_once_then_reused_with_equal_settings(tmp_path):
    calls = []
    build = lambda: calls.append(1) or {"value": len(calls)}  # noqa: E731
    first = steps.json_step(tmp_path / "r.json", {"a": 1, "shape": (2, 3)}, build)
    again = steps.json_step(tmp_path / "r.json", {"a": 1, "shape": [2, 3]}, build)  # a tuple reads back as a list
    assert calls == [1] and first == again == {"settings": {"a": 1, "shape": [2, 3]}, "value": 1}


def test_other_settings_are_refused_in_one_line_naming_file_setting_and_what_to_delete(tmp_path):
    steps.json_step(tmp_path / "r.json", {"a": 1, "model_id": "x"}, lambda: {})
    with pytest.raises(PruneRecError) as err:
        steps.json_step(tmp_path / "r.json", {"a": 1, "model_id": "y"}, lambda: pytest.fail("must not build"))
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "r.json") in msg and "model_id 'x' (asked 'y')" in msg
    assert f"delete {tmp_path / 'r.json'}" in msg
    with pytest.raises(PruneRecError, match="new_setting None .asked 3."):  # a setting the record never had
        steps.json_step(tmp_path / "r.json", {"a": 1, "model_id": "x", "new_setting": 3}, lambda: {})


def test_rebuild_makes_it_again_after_one_line(tmp_path, capsys):
    steps.json_step(tmp_path / "r.json", {"a": 1}, lambda: {"v": 1})
    rec = steps.json_step(tmp_path / "r.json", {"a": 2}, lambda: {"v": 2}, on_change="rebuild")
    assert rec["v"] == 2 and json.loads((tmp_path / "r.json").read_text())["settings"] == {"a": 2}
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "a 1 (asked 2): making it again" in out


def test_records_without_settings_or_corrupt_are_refused_in_one_line(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"alpha": 0.7}))
    with pytest.raises(PruneRecError, match="older version that kept no settings record"):
        steps.stored(tmp_path / "old.json", {"alpha": 0.7})
    (tmp_path / "bad.json").write_text('{"settings": {')
    with pytest.raises(PruneRecError, match=r"bad.json is corrupt .*delete it") as err:
        steps.stored(tmp_path / "bad.json", {})
    assert "\n" not in str(err.value)


def test_a_folder_step_appears_only_complete(tmp_path):
    def crash(tmp):
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        steps.folder_step(tmp_path / "m", "record.json", {"a": 1}, crash)
    assert not (tmp_path / "m").exists() and [p.name for p in tmp_path.iterdir()] == [".lock"]
    rec = steps.folder_step(tmp_path / "m", "record.json", {"a": 1}, lambda tmp: (tmp / "w").write_text("w") and {})
    assert (tmp_path / "m" / "w").exists() and rec["settings"] == {"a": 1}
    with pytest.raises(PruneRecError, match=f"delete {tmp_path / 'm'} "):  # the folder, not only its record
        steps.folder_step(tmp_path / "m", "record.json", {"a": 2}, lambda tmp: {})


def test_a_second_process_building_in_the_same_run_folder_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from prunerec_utils.steps import run_lock
        with run_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PruneRecError, match=f"run folder {tmp_path} in use by PID {holder.pid}"):
            steps.json_step(tmp_path / "r.json", {}, lambda: pytest.fail("must not build"), lock=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert steps.json_step(tmp_path / "r.json", {}, lambda: {"v": 1})["v"] == 1  # free again once it ended


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with steps.run_lock(tmp_path):
        rec = steps.json_step(tmp_path / "inner.json", {}, lambda: {"v": 1}, lock=tmp_path)
    assert rec["v"] == 1


def test_two_writers_never_share_a_temporary_name(tmp_path, monkeypatch):
    """atomic_write_text used to write every file through the fixed name ``.<name>.tmp``."""
    seen = []
    from pathlib import Path

    real = Path.write_text

    def spy(self, text, *a, **k):
        seen.append(self.name)
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", spy)
    atomic_write_text(tmp_path / "r.json", "1")
    atomic_write_text(tmp_path / "r.json", "2")
    assert len(set(seen)) == 2 and all(n.startswith(".r.json.") for n in seen)
    assert (tmp_path / "r.json").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
