import ast
import json
import re
from pathlib import Path

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.profiles import PROFILES, get_profile

ROOT = Path(__file__).resolve().parents[1]


def test_paper_profile_matches_the_paper_recipe():
    p = get_profile("paper")
    assert (p.epochs, p.effective_batch, p.lr, p.num_beams, p.warmup_steps) == (3, 128, 3e-4, 20, 20)
    assert p.max_train is None and "Qwen2-0.5B" in p.model


def test_overrides_apply_and_none_keeps_default():
    p = get_profile("ci", max_train=7, epochs=None)
    assert p.max_train == 7 and p.epochs == PROFILES["ci"].epochs


@pytest.mark.parametrize("name, kw", [("tiny", {}), ("ci", {"max_trian": 3})])
def test_bad_profile_is_a_clear_error(name, kw):
    with pytest.raises(PruneRecError):
        get_profile(name, **kw)


def test_every_budget_is_the_profiles_and_overrides_replace_it():
    ci, paper = get_profile("ci"), get_profile("paper")
    assert (ci.observe_samples, ci.observe_rows, ci.observe_sparsities) == (8, 16, (0.3, 0.6))
    assert (paper.observe_samples, paper.observe_sparsities) == (100, (0.1, 0.3, 0.5, 0.7))  # the default's
    assert (ci.bench_rows, ci.bench_repeats, ci.bench_paper_geometry) == (2, 1, False)
    assert get_profile("default").bench_paper_geometry is True
    lists = get_profile("ci", observe_sparsities=[0.5], restoration_budgets=[16, 8])  # papermill hands lists
    assert lists.observe_sparsities == (0.5,) and lists.restoration_budgets == (16, 8)
    with pytest.raises(PruneRecError, match="observe_sparsities must be a list of numbers"):
        get_profile("ci", observe_sparsities=["half"])


def test_derived_budgets():
    ci = get_profile("ci")
    assert ci.ablation_test_rows == 16 and get_profile("ci", ablation_rows=None).ablation_test_rows == 16
    assert get_profile("paper", ablation_rows=0).ablation_test_rows is None  # 0 or None: the whole test sample
    assert ci.restoration_curve_budgets == (64, 256)  # the ci profile's own two points
    assert get_profile("default").restoration_curve_budgets == (4096, 16384, 32768)  # max_train / 8, / 2, all of it
    assert get_profile("ci", restoration_budgets=[]).restoration_curve_budgets == ()
    assert get_profile("paper").restoration_curve_budgets == ()  # whole split: no curve unless given


def _code(nb, parameters: bool):
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and ("parameters" in c.get("metadata", {}).get("tags", [])) == parameters]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name[:2])
def test_notebooks_pass_budget_overrides_to_the_profile_and_derive_none(path):
    nb = json.loads(path.read_text())
    params = set()
    for src in _code(nb, True):
        params |= {node.targets[0].id for node in ast.parse(src).body if isinstance(node, ast.Assign)}
    body = "\n".join(_code(nb, False))
    fields = set(PROFILES["ci"].to_dict()) - {"name", "seed", "dataset"}  # the dataset goes to the run
    for name in sorted(params & fields):
        assert re.search(rf"\b{name}={name}\b", body), f"{path.name}: parameter {name} is not handed to get_profile"
    assert not [p for p in params if p.endswith("_users")], f"{path.name}: a parameter counts rows as users"
    derived = re.findall(r".*(?:\bif ci else\b|\bor \(?\d|prof\.\w+ // \d|\bor prof\.\w+).*", body)
    assert not derived, f"{path.name} derives a budget: {derived}"


def test_a_profile_reads_back_from_json_unchanged():
    """A run record stores ``to_dict()`` as JSON: the same profile must compare equal when it is read back
    (tuple budgets would read back as lists and make every re-run "another run")."""
    for prof in PROFILES.values():
        assert json.loads(json.dumps(prof.to_dict())) == prof.to_dict()
        assert get_profile(prof.name, **{k: v for k, v in prof.to_dict().items() if k != "name"}) == prof


def test_on_a_gpu_only_throughput_changes():
    for name in ("default", "paper"):
        cpu = get_profile(name)
        gpu = cpu.on_device("cuda")
        assert gpu.effective_batch == cpu.effective_batch and gpu.lr == cpu.lr and gpu.max_train == cpu.max_train
        assert gpu.save_steps == 0 and gpu.eval_batch == 512
        budgets = {k: v for k, v in cpu.to_dict().items()
                   if k not in ("batch_size", "grad_accum", "eval_batch", "save_steps", "train_compile")}
        assert {k: gpu.to_dict()[k] for k in budgets} == budgets
    assert get_profile("default").on_device("cuda").train_compile is False
    assert get_profile("default").on_device("cpu") == get_profile("default")
    with pytest.raises(PruneRecError, match="does not divide the effective batch 16"):
        get_profile("default", cuda_batch_size=5).on_device("cuda")
