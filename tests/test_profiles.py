import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.profiles import PROFILES, get_profile


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
