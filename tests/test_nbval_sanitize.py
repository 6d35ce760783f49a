"""The nbval sanitizers mask what moves between CPUs (numbers, verdicts) and nothing else."""

import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

CFG = Path(__file__).parent / "nbval_sanitize.cfg"


def sanitize(text: str) -> str:
    for regex, replace in get_sanitize_patterns(CFG.read_text()):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize("a, b", [
    ("distillation: 32 steps, 1.2 min, best validation KD loss 1.539",
     "distillation: 32 steps, 0.9 min, best validation KD loss 1.540"),
    ("the KV copies cost 0 parameters (0.0% of the count)", "the KV copies cost 1,056 parameters (1.2% of the count)"),
    ("<td>+nan% drop (avg retention nan%)</td>", "<td>-5.1% drop (avg retention 94.9%)</td>"),
    ("<td>[0.0000, 0.1875]</td>\n<td>does not hold (within noise)</td>",
     "<td>[-0.0310, 0.0000]</td>\n<td>tie (within noise)</td>"),
    ("<td>not measurable: the teacher has no hit on these users</td>", "<td>holds</td>"),
    ("holds      5\ndoes not hold    4\nnot measured here    3\n", "tie    2\nholds    1\n"),
    ("layers where alpha = 0 prunes the same heads: 1 of 4", "layers where alpha = 0 prunes the same heads: 2 of 4"),
    # seen on an AVX2-only CPU against the committed (AMX) executions: a tie or a decided verdict where the
    # committed run was undecided, and a retention that exists on one CPU and is missing (no teacher hit) on another
    ("(paired difference -0.0208 [-0.0682, 0.0000]: not decided at this budget (detectable ≥ 0.0487)). "
     "This run restores every stage on 256 samples.",
     "(paired difference +0.0000 [0.0000, 0.0000]: tie: no row differs). "
     "This run restores every stage on 256 samples."),
    ("<td>not decided at this budget (detectable ≥ 0.0312)</td>", "<td>does not hold</td>"),
    ("<td>partly (2 of 3 levels)</td>", "<td>holds</td>"),
    ("<td>fails</td>", "<td>holds</td>"),
    ("<td>—</td>\n<td>0.0053</td>", "<td>93.1%</td>\n<td>0.0061</td>"),
    ("teacher 0.0000, avg retention —; stage II", "teacher 0.0208, avg retention 12.5%; stage II"),
])
def test_cpu_dependent_values_are_masked(a, b):
    assert sanitize(a) == sanitize(b)


@pytest.mark.parametrize("a, b", [
    ("<td>Obs. 1 (Fig 1a)</td><td>…and the attention outputs</td>",
     "<td>Obs. 2 (Fig 2-3)</td><td>a few units dominate</td>"),
    ("<tr><td>Table 2</td><td>0.1</td></tr>", "<tr><td>Table 2</td><td>0.1</td></tr><tr><td>Table 2</td><td>0.2</td></tr>"),
    ("distillation: 32 steps", "distillation: 32 epochs"),
    ("<th>hr@20</th>", "<th>ndcg@20</th>"),
    ("Figure 4 — the stages", "Figure 4 of the stages"),
])
def test_structure_and_labels_are_still_compared(a, b):
    assert sanitize(a) != sanitize(b)


def test_wall_times_keep_their_unit():
    assert sanitize("4.3 min, 12 s") == "<MIN> min, <SEC> s"


def test_timed_step_names_are_masked_only_in_the_flop_bound_sentence():
    a = "stage3_vocab: prefill (5.03× of a 15.54× bound, 32%) comes closest, decode (3.22× of a 25.83× bound, 12%)"
    b = "stage3_vocab: beam_step (1.03× of a 5.54× bound, 12%) comes closest, decode (3.22× of a 25.83× bound, 12%)"
    assert sanitize(a) == sanitize(b)
    assert sanitize("prefill 1.5 → 0.9 ms") != sanitize("decode 1.5 → 0.9 ms")
