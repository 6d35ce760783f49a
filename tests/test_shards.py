"""Shards (prunerec_utils.shards): chapters run apart, packed without weights, merged into one run only
where they agree on every model they share; a bad shard is one line and nothing is merged."""

import json
from pathlib import Path

import pytest

from prunerec_utils import PruneRecError, runner, shards
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.steps import SETTINGS
from tests.cli_checks import one_line_error


def _made(tmp_path, name, chapters, teacher_weights=b"w1", results=("teacher",), setting="a", copies=None):
    """A run folder as a shard leaves it (tiny fake files) and its executed chapters in ``copies``."""
    run = Run("ml-100k", get_profile("ci"), tmp_path / name / "runs")
    run.splits.mkdir(parents=True)
    (run.splits / "train.csv").write_text("user_id\n1\n")
    teacher = run.model("teacher")
    teacher.mkdir(parents=True)
    (teacher / "config.json").write_text('{"model_type": "qwen2"}')
    (teacher / "model.safetensors").write_bytes(teacher_weights)
    (teacher / "training_summary.json").write_text(json.dumps(
        {SETTINGS: {"seed": 42}, "train_samples": 256, "steps": 16, "profile": {"batch_size": 8, "grad_accum": 2}}))
    (run.folder / "results").mkdir()
    (run.folder / "ranks").mkdir()
    for r in results:
        metrics = {"n": 48, "users": 35, "hr@10": 0.05, "ndcg@10": 0.02, "hr@20": 0.1, "ndcg@20": 0.03}
        (run.folder / "results" / f"{r}.json").write_text(json.dumps({SETTINGS: {"rows": 48, "x": setting},
                                                                      **metrics}))
        (run.folder / "ranks" / f"{r}.csv").write_text("user_id,target,rank\n1,2,3\n")
    copies = Path(copies or tmp_path / name / "copies")
    copies.mkdir(exist_ok=True)
    for c in chapters:
        (copies / f"{c}_chapter.ipynb").write_text(json.dumps({"cells": [], "chapter": c}))
    return run, copies


def _shard(tmp_path, name, chapters, **made):
    """:func:`_made`, packed into ``<name>/shard``."""
    run, copies = _made(tmp_path, name, chapters, **made)
    out = tmp_path / name / "shard"
    shards.pack(run, copies, out)
    return out


def test_packed_shards_merge_into_one_run_and_one_book(tmp_path):
    a = _shard(tmp_path, "a", ["01"])
    b = _shard(tmp_path, "b", ["03", "04"], results=("teacher", "stage1"))
    manifest = json.loads((a / shards.MANIFEST).read_text())
    assert "run/models/teacher/model.safetensors" not in manifest["files"]  # never weights
    assert manifest["chapters"] == ["01"] and set(manifest["models"]) == {"models/teacher"}
    dest = Run("ml-100k", get_profile("ci"), tmp_path / "dest")
    book = tmp_path / "book"
    assert shards.main(["merge", str(a), str(b), "--runs-root", str(tmp_path / "dest"), "--copies", str(book)]) == 0
    assert sorted(p.name for p in book.iterdir()) == ["01_chapter.ipynb", "03_chapter.ipynb", "04_chapter.ipynb"]
    assert sorted(p.name for p in (dest.folder / "results").iterdir()) == ["stage1.json", "teacher.json"]
    assert (dest.folder / "shard_models" / "teacher" / "training_summary.json").exists()
    assert not (dest.folder / "models").exists()  # no record of a model whose weights stayed behind


def _refused(capsys, args, *words):
    return one_line_error(shards.main, capsys, args, *words)


def test_shards_that_made_another_teacher_are_refused_and_nothing_is_merged(tmp_path, capsys):
    a = _shard(tmp_path, "a", ["01"])
    c = _shard(tmp_path, "c", ["03"], teacher_weights=b"other weights")
    ids = [json.loads((s / shards.MANIFEST).read_text())["models"]["models/teacher"] for s in (a, c)]
    dest = tmp_path / "dest"
    _refused(capsys, ["merge", str(a), str(c), "--runs-root", str(dest), "--copies", str(tmp_path / "book")],
             "models/teacher", ids[0], ids[1], "merge nothing")
    assert not dest.exists() and not (tmp_path / "book").exists()


def test_records_of_other_settings_or_a_chapter_twice_are_refused(tmp_path, capsys):
    a = _shard(tmp_path, "a", ["01"])
    d = _shard(tmp_path, "d", ["03"], setting="b")
    e = _shard(tmp_path, "e", ["01"])
    dest, book = str(tmp_path / "dest"), str(tmp_path / "book")
    _refused(capsys, ["merge", str(a), str(d), "--runs-root", dest, "--copies", book],
             "results/teacher.json", "x 'a' in", "'b' in")
    _refused(capsys, ["merge", str(a), str(e), "--runs-root", dest, "--copies", book],
             "chapter 01_chapter.ipynb was executed in two shards")


@pytest.mark.parametrize("damage, needle", [
    (lambda s: (s / "run" / "results" / "teacher.json").write_text("{}"), "differs from its checksum"),
    (lambda s: (s / "book" / "01_chapter.ipynb").unlink(), "01_chapter.ipynb is missing"),
    (lambda s: (s / shards.MANIFEST).unlink(), "not a shard"),
])
def test_a_damaged_shard_is_one_line(tmp_path, capsys, damage, needle):
    a = _shard(tmp_path, "a", ["01"])
    damage(a)
    _refused(capsys, ["merge", str(a), "--runs-root", str(tmp_path / "dest"), "--copies", str(tmp_path / "book")],
             needle)
    assert not (tmp_path / "dest").exists()


def test_pack_refuses_a_folder_without_chapters_or_a_foreign_out(tmp_path, capsys):
    run = Run("ml-100k", get_profile("ci"), tmp_path / "runs")
    (tmp_path / "copies").mkdir()
    with pytest.raises(PruneRecError, match="no executed chapter"):
        shards.pack(run, tmp_path / "copies", tmp_path / "shard")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(PruneRecError, match="notes.txt"):
        shards.pack(run, tmp_path / "copies", tmp_path / "mine")


def test_a_shard_travels_as_one_archive_and_a_broken_archive_is_one_line(tmp_path, capsys):
    a = _shard(tmp_path, "a", ["01"])
    run = Run("ml-100k", get_profile("ci"), tmp_path / "a" / "runs")
    archive = tmp_path / "shard-01.tgz"
    assert shards.main(["pack", "--runs-root", str(run.base), "--profile", "ci", "--dataset", "ml-100k",
                        "--copies", str(tmp_path / "a" / "copies"), "--out", str(archive)]) == 0
    b = _shard(tmp_path, "b", ["03"])
    book = tmp_path / "book"
    assert shards.main(["merge", str(archive), str(b), "--runs-root", str(tmp_path / "dest"),
                        "--copies", str(book)]) == 0
    assert sorted(p.name for p in book.iterdir()) == ["01_chapter.ipynb", "03_chapter.ipynb"]
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(archive.read_bytes()[:200])
    _refused(capsys, ["merge", str(cut), "--runs-root", str(tmp_path / "d2"), "--copies", str(tmp_path / "b2")],
             "cut.tgz")
    assert not (tmp_path / "d2").exists()
    assert a.exists()


def test_a_later_merge_is_checked_against_what_earlier_merges_brought(tmp_path, capsys):
    a = _shard(tmp_path, "a", ["01"])
    c = _shard(tmp_path, "c", ["03"], teacher_weights=b"other weights")
    dest, book = str(tmp_path / "dest"), str(tmp_path / "book")
    assert shards.main(["merge", str(a), "--runs-root", dest, "--copies", book]) == 0
    _refused(capsys, ["merge", str(c), "--runs-root", dest, "--copies", book], "models/teacher", "an earlier merge")
    assert sorted(p.name for p in (tmp_path / "book").iterdir()) == ["01_chapter.ipynb"]


def test_a_shard_run_refuses_its_archive_name_before_anything_runs(tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(runner, "execute", lambda *args: ran.append(args))
    (tmp_path / "old.tgz").write_bytes(b"an earlier shard")
    for name, words in (("shard.zip", ".tar or .tgz"), ("old.tgz", "exists")):
        _refused(capsys, ["run", "--notebooks", "03", "--archive", str(tmp_path / name)], name, words)
    assert not ran


def test_a_shard_run_packs_what_it_executed_and_refuses_an_archive_too_big_to_travel(tmp_path, capsys, monkeypatch):
    def execute(profile, dataset, notebooks, out, runs_root, seed, params):  # the runner, as far as a shard sees it
        assert (profile, notebooks, params) == ("ci", ["03"], ["observe_rows=8"])
        return _made(tmp_path, f"run{len(list(tmp_path.glob('run*')))}", notebooks, copies=out)[0]

    monkeypatch.setattr(runner, "execute", execute)
    args = ["run", "--profile", "ci", "--notebooks", "03", "--param", "observe_rows=8", "--archive"]
    assert shards.main([*args, str(tmp_path / "back" / "s.tgz")]) == 0
    with shards.opened(tmp_path / "back" / "s.tgz") as folder:
        assert shards.read_shard(folder)["chapters"] == ["03"]
    _refused(capsys, [*args, str(tmp_path / "big.tgz"), "--max-mib", "0.0001"], "big.tgz", "MiB, over --max-mib",
             "fewer chapters")


def test_a_merge_into_the_book_s_own_folder_writes_its_findings_and_results(tmp_path, monkeypatch):
    from prunerec_utils.studies import publish

    monkeypatch.setattr(publish, "REPO_ROOT", tmp_path)  # this test's repository: book/ and results/ under tmp
    a = _shard(tmp_path, "a", ["01"])
    book = tmp_path / "book" / "ci" / "ml-100k"
    assert shards.main(["merge", str(a), "--runs-root", str(tmp_path / "dest"), "--copies", str(book)]) == 0
    assert "What this run found" in (book / "findings.md").read_text()
    assert (tmp_path / "results" / "ci" / "ml-100k").is_dir()
    assert "The budgets of this run" in (book / "budgets.md").read_text()
    record = json.loads((book / "findings.json").read_text())  # for the page of datasets side by side
    assert record["dataset"] == "ml-100k" and "Teacher vs most popular" in record["findings"]
    assert record["claims"] and "`ml-100k`" in (book.parent / "datasets.md").read_text()
    elsewhere = tmp_path / "copies-elsewhere"  # not a book folder: chapters only
    assert shards.main(["merge", str(_shard(tmp_path, "b", ["03"])), "--runs-root", str(tmp_path / "d2"),
                        "--copies", str(elsewhere)]) == 0
    assert sorted(p.name for p in elsewhere.iterdir()) == ["03_chapter.ipynb"]


def _stage_records(run):
    """The surgery records (parameter counts) a shard's Stage I and III cuts leave."""
    counts = {"teacher": {"non_embedding": 1000, "total": 1500, "attention": 400},
              "stage1": {"non_embedding": 700, "total": 1200, "attention": 100},
              "stage3": {"non_embedding": 50, "total": 550, "attention": 10}}
    for name in ("stage1_pruned", "stage3_pruned"):
        folder = run.model(name)
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "qwen2"}')
        (folder / "surgery.json").write_text(json.dumps({SETTINGS: {"seed": 42}, "params": counts}))


def test_a_merged_run_reads_the_records_of_models_whose_weights_stayed_on_the_shard(tmp_path):
    from prunerec_utils.studies import budgets, findings, scorecard

    run, copies = _made(tmp_path, "a", ["01"], results=("teacher", "stage1", "stage3"))
    _stage_records(run)
    shards.pack(run, copies, tmp_path / "a" / "shard")
    dest = Run("ml-100k", get_profile("ci"), tmp_path / "dest")
    assert shards.main(["merge", str(tmp_path / "a" / "shard"), "--runs-root", str(tmp_path / "dest"),
                        "--copies", str(tmp_path / "chapters")]) == 0
    assert not dest.model("teacher").exists()  # the weights did not travel, nor a folder claiming them
    assert budgets.budgets_table(dest).loc["Teacher fine-tune", "this run"] == \
        "256 samples, 16 optimizer steps of 16 (8 × 2)"
    assert findings.findings_table(dest).loc["Final model (Stage III): size"].iloc[0].startswith("50 of 1,000")
    ours = [r["ours"] for r in scorecard.headline_rows(dest.folder)]
    assert "75% fewer attention parameters" in ours[0] and ours[2].startswith("5.0% (1,000 → 50)")


def test_a_shard_run_after_earlier_shards_starts_from_their_records_not_their_chapters(tmp_path, capsys, monkeypatch):
    from prunerec_utils.pipeline import stages

    a = _shard(tmp_path, "a", ["01"])  # the teacher (its records) and its evaluation
    seen = {}

    def execute(profile, dataset, notebooks, out, runs_root, seed, params):  # the runner, as far as a shard sees it
        run = Run("ml-100k", get_profile("ci"), runs_root)
        seen["teacher result"] = run.result_file("teacher").exists()
        seen["teacher weights"] = run.model("teacher").exists()
        seen["identity"] = run.merged_identity("teacher")
        seen["chapters"] = sorted(p.name for p in Path(out).iterdir())
        (Path(out) / "08_chapter.ipynb").write_text(json.dumps({"cells": []}))
        return run

    def splits(root, rows):  # the splits a shard's machine has (made from its raw data: here, written)
        folder = Run("ml-100k", get_profile("ci"), root).splits
        folder.mkdir(parents=True)
        (folder / "train.csv").write_text(rows)
        (folder / "stats.json").write_text("{}")

    monkeypatch.setattr(runner, "execute", execute)
    splits(tmp_path / "b", "user_id\n1\n")  # the same data as shard a's
    args = ["run", "--profile", "ci", "--notebooks", "08", "--runs-root", str(tmp_path / "b"), "--archive"]
    assert shards.main([*args, str(tmp_path / "b.tgz"), "--after", str(a)]) == 0
    with shards.opened(tmp_path / "a" / "shard") as folder:
        teacher = shards.read_shard(folder)["models"]["models/teacher"]
    assert seen == {"teacher result": True, "teacher weights": False, "identity": teacher, "chapters": []}
    with shards.opened(tmp_path / "b.tgz") as folder:
        assert shards.read_shard(folder)["chapters"] == ["08"]  # not 01: the seed's chapters stay in its shard

    # a model made again must be the one the earlier shard made: refused in one line before anything uses it
    run = Run("ml-100k", get_profile("ci"), tmp_path / "b")
    run.model("teacher").mkdir(parents=True)
    (run.model("teacher") / "config.json").write_text('{"model_type": "qwen2"}')
    (run.model("teacher") / "model.safetensors").write_bytes(b"other weights")
    (run.model("teacher") / "training_summary.json").write_text("{}")
    with pytest.raises(PruneRecError, match=f"identity .* made teacher as {teacher}"):
        stages.ensure(run, "teacher")
    (run.model("teacher") / "model.safetensors").write_bytes(b"w1")  # the same weights: the same model
    assert stages.ensure(run, "teacher") == run.model("teacher")

    _refused(capsys, [*args, str(tmp_path / "c.tgz"), "--after", str(tmp_path / "missing.tgz")], "missing.tgz",
             "no such shard")
    splits(tmp_path / "other", "user_id\n2\n")  # other raw data: refused before any chapter runs
    seen.clear()
    _refused(capsys, ["run", "--profile", "ci", "--notebooks", "08", "--runs-root", str(tmp_path / "other"),
                      "--archive", str(tmp_path / "d.tgz"), "--after", str(a)], "splits", "raw data differ")
    assert not seen
