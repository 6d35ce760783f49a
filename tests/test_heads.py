"""Head importance (eq. 3-6): suppression semantics, KL, the kernel against the naive loop, α mixing."""

import pytest
import torch

from prunerec_utils.data import get_dataset_config, read_split, sample_rows
from prunerec_utils.method.heads import (HeadSuppressor, greedy_selection, head_importance, head_scale, min_max,
                                         reference_logprobs, scoring_batch, suppressed_kl)
from prunerec_utils.method.surgery import decoder_layers, head_dim


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from prunerec_utils.assets import load_model

    m = load_model(tiny_model_dir)
    torch.manual_seed(0)
    with torch.no_grad():  # the random init is near-uniform; give the heads distinct roles
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


@pytest.fixture(scope="module")
def batch(tokenizer, ml100k_splits):
    rows = sample_rows(read_split(ml100k_splits, "train"), 4, 1)
    return scoring_batch(tokenizer, rows["history_item_title"], rows["item_title"], get_dataset_config("ml-100k"))


def test_scored_positions_are_the_answer_tokens(batch, tokenizer):
    for ids, scored in zip(batch.input_ids, batch.scored):
        nxt = ids[1:][scored[:-1]]  # tokens predicted at the scored positions
        assert nxt[-1] == tokenizer.eos_token_id and scored.sum() >= 3


def test_quirk_scores_only_the_last_padded_position(tokenizer, ml100k_splits):
    rows = sample_rows(read_split(ml100k_splits, "train"), 3, 2)
    q = scoring_batch(tokenizer, rows["history_item_title"], rows["item_title"], get_dataset_config("ml-100k"),
                      quirk_last_padded=True, pad_to=256)
    assert q.input_ids.shape == (3, 256) and q.scored.sum() == 3 and q.scored[:, -1].all() and q.keep == 1
    assert (q.attention_mask[:, 0] == 1).all()  # right padding: real tokens first


def test_zero_epsilon_suppression_is_uniform_attention_over_the_causal_context(model, batch):
    layer, head = 1, 2
    att = decoder_layers(model)[layer].self_attn
    hd, group = head_dim(model.config), model.config.num_attention_heads // model.config.num_key_value_heads
    seen = {}

    def keep_input(m, args, kwargs):
        seen["x"] = kwargs.get("hidden_states", args[0] if args else None)

    def keep_o_input(m, args):
        seen["o_in"] = args[0]

    h1 = att.register_forward_pre_hook(keep_input, with_kwargs=True)
    h2 = att.o_proj.register_forward_pre_hook(keep_o_input)
    try:
        with HeadSuppressor(model) as sup, torch.no_grad():
            sup.scales[layer] = head_scale(model.config.num_attention_heads, [head], 0.0)
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    finally:
        h1.remove(), h2.remove()
    kv = head // group
    v = att.v_proj(seen["x"])[..., kv * hd:(kv + 1) * hd]  # [B, T, hd]
    m = batch.attention_mask.float()
    causal_mean = (v * m[..., None]).cumsum(1) / m.cumsum(1).clamp(min=1)[..., None]
    got = seen["o_in"][..., head * hd:(head + 1) * hd]
    real = batch.attention_mask.bool()
    assert torch.allclose(got[real], causal_mean[real], atol=1e-5)


def test_kl_is_zero_when_nothing_is_suppressed_and_positive_otherwise(model, batch):
    ref = reference_logprobs(model, batch)
    assert abs(suppressed_kl(model, batch, ref, {})) < 1e-6
    assert suppressed_kl(model, batch, ref, {0: [0, 1]}) > 1e-7


def test_kernel_gives_the_naive_scores_and_choices(model, batch):
    for alpha, greedy in ((0.7, True), (0.0, False)):
        k = head_importance(model, batch, num_prune=2, alpha=alpha, engine="kernel", greedy=greedy, max_rows=8)
        n = head_importance(model, batch, num_prune=2, alpha=alpha, engine="naive", greedy=greedy)
        assert torch.allclose(k.raw, n.raw, rtol=1e-4, atol=1e-9)
        assert k.pruned == n.pruned and len(k.pruned) == 4
    assert k.raw.min() > 0


def test_alpha_recursion_on_a_hand_example():
    raw = [torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0.0, 10.0, 5.0]), torch.tensor([4.0, 4.0, 8.0])]
    seen = []

    def score(layer, chosen):
        seen.append(dict(chosen))
        return raw[layer]

    imp = greedy_selection(score, 3, 3, num_prune=1, alpha=0.5)
    # normalised: [0, 1, .5], [0, 1, .5], [0, 0, 1]; mixed: l0 = n0; l1 = .5·l0 + .5·n1; l2 = .5·l1 + .5·n2
    assert torch.allclose(imp.mixed, torch.tensor([[0, 1, .5], [0, 1, .5], [0, .5, .75]]))
    assert imp.pruned == [[0], [0], [0]]
    assert seen == [{}, {0: [0]}, {0: [0], 1: [0]}]  # earlier choices stay suppressed
    assert torch.equal(min_max(torch.tensor([2.0, 2.0])), torch.zeros(2))
    seen.clear()
    part = greedy_selection(score, 3, 3, num_prune=1, alpha=0.5, only={1})
    assert part.pruned == [[], [0], []] and seen == [{0: []}] and part.raw[0].sum() == 0
