"""Size targets: the shapes Stages I-III leave, from counts or from a parameter share."""

import pytest
from transformers import AutoConfig, Qwen2Config

from prunerec_utils import PruneRecError
from prunerec_utils.method.surgery import param_formula
from prunerec_utils.pipeline import size_targets as targets
from prunerec_utils.pipeline.size_targets import Shapes


def qwen05():
    """Qwen2-0.5B's shapes (the paper's model)."""
    return Qwen2Config(hidden_size=896, num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864,
                       num_hidden_layers=24, vocab_size=151936, tie_word_embeddings=True)


def test_the_papers_target_gives_the_papers_final_shapes():
    s = targets.from_share(qwen05(), 0.05)
    assert (s.kept_heads, s.mlp) == (7, 896)
    assert s.layers == 8  # the paper keeps 8 of 24 layers for < 5% (SPEC: ≈ 13.3M of 357.9M)
    final = param_formula(targets.pruned_config(qwen05(), s))["non_embedding"]
    assert final <= 0.05 * param_formula(qwen05())["non_embedding"]
    assert param_formula(targets.pruned_config(qwen05(), Shapes(7, 896, 9)))["non_embedding"] > \
        0.05 * param_formula(qwen05())["non_embedding"]  # one more layer would not fit


def test_profile_fields_make_the_stages_cut_exactly_these_shapes():
    cfg = qwen05()
    f = Shapes(5, 700, 10).profile_fields(cfg)
    assert f["kept_heads"] == 5
    assert round(f["mlp_keep_factor"] * 5 * 64) == 700  # Stage II: K_MLP = round(factor · d')
    assert round(f["layers_removed_share"] * 24) == 14  # Stage III removes L - N layers


def test_impossible_targets_get_one_line(tiny_model_dir):
    cfg = qwen05()
    with pytest.raises(PruneRecError, match="leaves no layer"):
        targets.from_share(cfg, 0.001)
    with pytest.raises(PruneRecError, match="between 0 and 1"):
        targets.from_share(cfg, 1.5)
    with pytest.raises(PruneRecError, match="--layers 30: the teacher has 24"):
        targets.check(cfg, Shapes(7, 896, 30))
    gpt2 = AutoConfig.for_model("gpt2")
    with pytest.raises(PruneRecError, match="cannot prune a 'gpt2' model.*llama and qwen2"):
        targets.from_share(gpt2, 0.05)
    tiny = AutoConfig.from_pretrained(tiny_model_dir)
    assert "non-embedding parameters" in targets.describe(tiny, targets.from_share(tiny, 0.5))
