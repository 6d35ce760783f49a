"""The teacher's science gates: decided by intervals over users, never by point values alone."""

import pandas as pd
import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.pipeline.evaluate import _result
from prunerec_utils.studies import gates


def _eval(targets, firsts, hit):
    """One row per user: the list starts with ``firsts[i]`` and holds the target at rank 0 where ``hit[i]``."""
    df = pd.DataFrame({"user_id": range(len(targets)), "item_title": targets})
    ranked = [[t if h else f] + [f"pad{j}" for j in range(19)] for t, f, h in zip(targets, firsts, hit)]
    return _result(df, ranked, {})


N = 60
TARGETS = [f"film {i}" for i in range(N)]


def test_a_personal_teacher_that_beats_popularity_passes_every_gate():
    teacher = _eval(TARGETS, [f"other {i}" for i in range(N)], [i % 2 == 0 for i in range(N)])
    popular = _eval(TARGETS, ["blockbuster"] * N, [False] * N)
    table = gates.teacher_gates(teacher, popular)
    assert list(table["verdict"]) == [gates.HOLDS] * 3 and gates.all_hold(table)
    assert table.iloc[0]["value"] == 0.5 and table.iloc[0]["rows"] == N and table.iloc[0]["users"] == N
    assert table.iloc[2]["value"] == round(teacher.metrics["modal_top1_share"], 4)
    assert gates.gates_line(table).startswith("Science gates: 3 of 3 hold")


def test_a_teacher_that_sends_everyone_to_one_title_fails_the_share_gate():
    teacher = _eval(TARGETS, ["blockbuster"] * N, [False] * (N // 2) + [True] * (N // 2))
    popular = _eval(TARGETS, ["blockbuster"] * N, [False] * N)
    table = gates.teacher_gates(teacher, popular)
    assert list(table["verdict"]) == [gates.HOLDS, gates.HOLDS, gates.FAILS]
    assert table.iloc[2]["value"] == 0.5  # the hit rows start with their own target
    line = gates.gates_line(table, teacher)
    assert "2 of 3 hold" in line and "fails (0.5000" in line and "blockbuster (30 of 60 rows)" in line


def test_an_interval_across_the_line_decides_nothing_and_says_what_it_could_detect():
    teacher = _eval(TARGETS, [f"o{i}" for i in range(N)], [i == 0 for i in range(N)])
    popular = _eval(TARGETS, [f"p{i}" for i in range(N)], [i == 1 for i in range(N)])
    table = gates.teacher_gates(teacher, popular)
    assert table.iloc[0]["verdict"].startswith("not decided at this budget (detectable ≥ ")
    assert not gates.all_hold(table)
    behind = gates.teacher_gates(popular, _eval(TARGETS, [f"q{i}" for i in range(N)], [True] * N))
    assert behind.iloc[0]["verdict"] == gates.FAILS


def test_the_gates_need_both_evaluations_on_the_same_rows():
    teacher = _eval(TARGETS, TARGETS, [True] * N)
    with pytest.raises(PruneRecError, match="same|teacher's test rows"):
        gates.teacher_gates(teacher, _eval(TARGETS[:-1], TARGETS[:-1], [True] * (N - 1)))


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    assert gates.main(["--runs-root", str(tmp_path)]) == 2
    assert "no stored teacher and most popular evaluation" in capsys.readouterr().err
    teacher = _eval(TARGETS, [f"other {i}" for i in range(N)], [i % 2 == 0 for i in range(N)])
    found = {"teacher": teacher, "most_popular": _eval(TARGETS, ["blockbuster"] * N, [False] * N)}
    monkeypatch.setattr(gates, "load_result", lambda folder, name: found[name])
    assert gates.main(["--runs-root", str(tmp_path)]) == 0
    assert "Science gates: 3 of 3 hold" in capsys.readouterr().out
    found["teacher"] = _eval(TARGETS, ["blockbuster"] * N, [i % 2 == 0 for i in range(N)])
    assert gates.main(["--runs-root", str(tmp_path)]) == 1
