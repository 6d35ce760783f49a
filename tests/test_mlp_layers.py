"""Stage II / III pieces: neuron scores and slicing, layer search and deletion."""

import contextlib
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunerec_utils import PruneRecError
from prunerec_utils.assets import load_model
from prunerec_utils.data import get_dataset_config, read_split, sample_rows
from prunerec_utils.method.layers import greedy_layer_removal, perplexity
from prunerec_utils.method.mlp import MLPScores, mlp_scores
from prunerec_utils.method.surgery import (decoder_layers, param_counts, param_formula, prune_mlp, remove_layers,
                                           temporary_layers)
from prunerec_utils.method.training import LeftPadCollator
from prunerec_utils.prompts import encode_example

IDS = torch.tensor([[5, 17, 3, 44, 9, 61, 2, 8], [7, 7, 30, 12, 50, 1, 90, 4]])


def skipping(model, removed):
    """Temporarily run the decoder without the layers in ``removed`` (indices of the full model)."""
    gone = set(removed)
    return temporary_layers(model, [i for i in range(len(model.get_decoder().layers)) if i not in gone])



def _batch(tokenizer, splits, n=4):
    rows = sample_rows(read_split(splits, "train"), n, 3)
    cfg = get_dataset_config("ml-100k")
    return LeftPadCollator(tokenizer.pad_token_id)(
        [encode_example(tokenizer, h, t, cfg, 512) for h, t in zip(rows["history_item_title"], rows["item_title"])])


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def test_slicing_neurons_with_zero_down_columns_keeps_logits(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    I = model.config.intermediate_size
    keep = [list(range(0, I, 3)) for _ in decoder_layers(model)]
    with torch.no_grad():
        for layer, k in zip(decoder_layers(model), keep):
            drop = sorted(set(range(I)) - set(k))
            layer.mlp.down_proj.weight[:, drop] = 0
    before = _logits(model)
    prune_mlp(model, keep)
    assert model.config.intermediate_size == len(keep[0])
    assert torch.allclose(_logits(model), before, atol=1e-5)
    assert param_counts(model) == param_formula(model.config)
    model.save_pretrained(tmp_path)
    assert torch.allclose(_logits(AutoModelForCausalLM.from_pretrained(tmp_path)), before, atol=1e-5)
    with pytest.raises(PruneRecError):
        prune_mlp(model, [[0], [0, 1], [0], [0]])


def test_removing_a_layer_whose_outputs_are_zero_keeps_logits_and_the_cache_works(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    with torch.no_grad():
        for i in (1, 2):
            layer = decoder_layers(model)[i]
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    before = _logits(model)
    remove_layers(model, [1, 2])
    assert model.config.num_hidden_layers == 2 and [l.self_attn.layer_idx for l in decoder_layers(model)] == [0, 1]
    assert torch.allclose(_logits(model), before, atol=1e-5)
    model.save_pretrained(tmp_path)
    stock = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.allclose(_logits(stock), before, atol=1e-5)
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with_cache = stock.generate(IDS[:1], use_cache=True, **kw)
    without = stock.generate(IDS[:1], use_cache=False, **kw)
    assert torch.equal(with_cache, without)
    with pytest.raises(PruneRecError):
        remove_layers(stock, [0, 1])


def _perturbed(folder, seed: int):
    """The tiny model with seeded noise on every weight (its layers then differ from each other)."""
    model = load_model(folder)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_layer_search_removes_the_harmless_layer_first(tiny_model_dir, tokenizer, ml100k_splits):
    model = _perturbed(tiny_model_dir, 0)
    with torch.no_grad():
        layer = decoder_layers(model)[2]  # make layer 2 an identity: removing it costs nothing
        layer.self_attn.o_proj.weight.zero_()
        layer.mlp.down_proj.weight.zero_()
    batch = _batch(tokenizer, ml100k_splits)
    out = greedy_layer_removal(model, batch, 2)
    first = out["steps"][0]["delta"]
    assert abs(first[2]) < 1e-4 * out["base_ppl"]  # an identity layer costs no perplexity
    assert out["removed"][0] == min(first, key=first.get)
    with skipping(model, out["removed"]):
        assert abs(perplexity(model, batch) - out["steps"][-1]["ppl"]) < 1e-3 * out["steps"][-1]["ppl"]
    assert len(decoder_layers(model)) == 4  # skipping is temporary


def test_cached_layer_search_matches_one_forward_per_candidate(tiny_model_dir, tokenizer, ml100k_splits):
    model = _perturbed(tiny_model_dir, 1)
    batch = _batch(tokenizer, ml100k_splits)
    with torch.no_grad():  # perplexity = exp(CE over every real next token), by the full logits
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch.get("position_ids")).logits[:, :-1]
    target = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
    full = math.exp(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)))
    assert perplexity(model, batch) == pytest.approx(full, rel=1e-5)
    cached, naive = (greedy_layer_removal(model, batch, 3, engine=e) for e in ("cached", "naive"))
    assert cached["removed"] == naive["removed"]
    for a, b in zip(cached["steps"], naive["steps"]):
        assert a["delta"].keys() == b["delta"].keys()
        assert all(abs(a["delta"][k] - b["delta"][k]) <= 1e-4 * naive["base_ppl"] for k in a["delta"])
    with pytest.raises(ValueError, match="engine"):
        greedy_layer_removal(model, batch, 1, engine="fast")


def test_a_longer_layer_search_continues_a_shorter_one(tiny_model_dir, tokenizer, ml100k_splits, monkeypatch):
    import prunerec_utils.method.layers as layers

    model = _perturbed(tiny_model_dir, 2)
    batch = _batch(tokenizer, ml100k_splits)
    two, three = greedy_layer_removal(model, batch, 2), greedy_layer_removal(model, batch, 3)
    assert two["reused_steps"] == three["reused_steps"] == 0
    scored = []
    real = layers._deltas_cached
    monkeypatch.setattr(layers, "_deltas_cached", lambda m, b, keep, cur: scored.append(keep) or real(m, b, keep, cur))
    more = greedy_layer_removal(model, batch, 3, prefix=two)
    assert more["removed"] == three["removed"] and more["reused_steps"] == 2
    assert len(scored) == 1 and len(scored[0]) == 2  # only the third step was scored
    assert more["steps"][-1]["ppl"] == pytest.approx(three["steps"][-1]["ppl"], rel=1e-6)
    scored.clear()
    fewer = greedy_layer_removal(model, batch, 1, prefix=three)
    assert fewer["removed"] == three["removed"][:1] and fewer["steps"] == three["steps"][:1] and scored == []
    other = greedy_layer_removal(model, batch, 2, prefix={**two, "base_ppl": two["base_ppl"] * 1.01})
    assert other["reused_steps"] == 0 and other["removed"] == two["removed"]  # another model's search is ignored


def test_greedy_search_rescores_after_each_removal(monkeypatch):
    import prunerec_utils.method.layers as layers

    cost = {0: 5.0, 1: 1.0, 2: 2.0, 3: 3.0}
    model = torch.nn.Module()
    model.get_decoder = lambda: type("D", (), {"layers": [0, 1, 2, 3]})()
    state = {"removed": []}

    @contextlib.contextmanager
    def fake_layers(_m, keep):
        state["removed"] = [i for i in range(4) if i not in keep]
        yield

    def fake_ppl(_m, _b):  # removing 1 makes 2 expensive afterwards: re-scoring must notice
        r = set(state["removed"])
        return 10 + sum(cost[i] for i in r) + (10.0 if {1, 2} <= r else 0.0)

    monkeypatch.setattr(layers, "temporary_layers", fake_layers)
    monkeypatch.setattr(layers, "perplexity", fake_ppl)
    out = layers.greedy_layer_removal(model, {}, 2, engine="naive")
    assert out["removed"] == [1, 3] and out["steps"][1]["delta"][2] == 12.0
    assert out["steps"][-1]["ppl"] == 14.0


def test_mlp_scores_count_strong_activations(tiny_model, tokenizer, ml100k_splits):
    batch = _batch(tokenizer, ml100k_splits, 6)
    s = mlp_scores(tiny_model, batch, tau_quantile=0.8)
    L, I = tiny_model.config.num_hidden_layers, tiny_model.config.intermediate_size
    assert s.scores.shape == (L, I) and s.activations.shape == (L, 6, I)
    assert torch.equal(s.scores, (s.activations > s.tau[:, None, None]).sum(1))
    share = (s.activations > s.tau[:, None, None]).float().mean()
    assert abs(float(share) - 0.2) < 0.02  # the quantile sets the share of strong activations
    keep = s.keep(16)
    assert all(len(k) == 16 for k in keep)
    ref = mlp_scores(tiny_model, batch, variant="reference", top_k=8)
    assert ref.scores.sum(1).unique().numel() == 1  # every token contributes exactly K memberships per layer


def test_keep_breaks_ties_by_mean_activation():
    s = MLPScores(torch.tensor([[2, 2, 1, 0]]), torch.tensor([1.0]), torch.tensor([[[1.0, 3.0, 9.0, 9.0]]]))
    assert s.keep(2) == [[0, 1]] and s.keep(1) == [[1]]


def test_random_neuron_scores_are_seeded_per_layer(tiny_model):
    a, b = mlp_scores(tiny_model, {}, variant="random", seed=1), mlp_scores(tiny_model, {}, variant="random", seed=1)
    L, I = tiny_model.config.num_hidden_layers, tiny_model.config.intermediate_size
    assert a.scores.shape == (L, I) and torch.equal(a.scores, b.scores)
    keep = a.keep(16)
    assert all(len(k) == 16 for k in keep) and len({tuple(k) for k in keep}) == L  # drawn per layer
    assert keep != mlp_scores(tiny_model, {}, variant="random", seed=2).keep(16)
