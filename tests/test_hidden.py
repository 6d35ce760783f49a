"""Hidden-dimension importance (eq. 7) and its variants."""

import torch

from prunerec_utils.data import get_dataset_config, read_split, sample_rows
from prunerec_utils.method.hidden import VARIANTS, hidden_importance, top_dims
from prunerec_utils.method.training import LeftPadCollator
from prunerec_utils.prompts import encode_example


def _batch(tokenizer, splits, n=3):
    rows = sample_rows(read_split(splits, "train"), n, 5)
    cfg = get_dataset_config("ml-100k")
    return LeftPadCollator(tokenizer.pad_token_id)(
        [encode_example(tokenizer, h, t, cfg, 512) for h, t in zip(rows["history_item_title"], rows["item_title"])])


def test_variants_shapes_and_weight_only_by_hand(tiny_model, tokenizer, ml100k_splits):
    b = _batch(tokenizer, ml100k_splits)
    d = tiny_model.config.hidden_size
    scores = {v: hidden_importance(tiny_model, b, v) for v in VARIANTS}
    for v, s in scores.items():
        assert s.shape == (d,) and (s >= 0).all() and s.sum() > 0, v
    emb = tiny_model.get_input_embeddings()(b["input_ids"]).abs()
    assert torch.allclose(scores["weight"], emb[b["attention_mask"].bool()].mean(0), atol=1e-7)
    assert not torch.allclose(scores["weight_x_grad"], scores["gradient"])


def test_weight_x_grad_is_the_product_of_embedding_and_loss_gradient(tiny_model, tokenizer, ml100k_splits):
    from prunerec_utils.method.training import response_loss

    b = _batch(tokenizer, ml100k_splits, 1)
    emb = tiny_model.get_input_embeddings()
    captured = {}

    def keep(m, i, out):
        out.retain_grad()
        captured["e"] = out

    h = emb.register_forward_hook(keep)
    try:
        response_loss(tiny_model, b).backward()
    finally:
        h.remove()
    tiny_model.zero_grad()
    e = captured["e"]
    expected = (e * e.grad).abs()[b["attention_mask"].bool()].mean(0)
    assert torch.allclose(hidden_importance(tiny_model, b), expected.detach(), rtol=1e-4, atol=1e-10)


def test_top_dims_keeps_the_largest_in_index_order():
    assert top_dims(torch.tensor([0.1, 5.0, 0.3, 5.0, 2.0]), 3) == [1, 3, 4]


def test_random_scores_are_seeded_and_need_no_batch(tiny_model):
    a, b = hidden_importance(tiny_model, {}, "random", seed=3), hidden_importance(tiny_model, {}, "random", seed=3)
    assert torch.equal(a, b) and a.shape == (tiny_model.config.hidden_size,)
    assert not torch.equal(a, hidden_importance(tiny_model, {}, "random", seed=4))
    assert top_dims(a, 8) != top_dims(hidden_importance(tiny_model, {}, "random", seed=4), 8)
