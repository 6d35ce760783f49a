"""Observations (paper §2.2): activation statistics through hooks, top-K% shares, Wanda and random
unstructured pruning, on tiny random Llama / Qwen2 models built here."""

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from prunerec_utils import PruneRecError
from prunerec_utils.method.surgery import decoder_layers
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.studies.observe import (attention_outputs, concentration, concentration_summary,
                                            decoder_linears, input_sums, mlp_activations, prune, pruned_per_row,
                                            random_prune, sweep_views, top_share, wanda_prune)
from prunerec_utils.studies.scorecard import concentration_claim, pruning_claim, wanda_vs_random

SIZES = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)


def _model(kind: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(head_dim=8, **SIZES)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**SIZES)).eval()  # q/k/v with biases


def _batch():
    """Two left-padded rows: the second has 2 padding positions (their activations must not count)."""
    ids = torch.tensor([[5, 17, 3, 44, 9, 21], [0, 0, 30, 12, 45, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


def _zeros(weight):
    return weight == 0


# -- (a) top-K% share ------------------------------------------------------------------------

def test_top_share_matches_a_hand_computed_example():
    acts = torch.tensor([[1.0, -2.0, 0.0, 4.0, 0.5],  # [tokens, units]
                         [-1.0, 2.0, 0.0, 2.0, -0.5],
                         [1.0, 2.0, 3.0, 0.0, 0.5]])
    mag = acts.abs().mean(0)  # per-unit mean |a| = [1, 2, 1, 2, 0.5], total 6.5
    assert torch.allclose(mag, torch.tensor([1.0, 2.0, 1.0, 2.0, 0.5]))
    assert top_share(mag, 0.1).item() == pytest.approx(2 / 6.5)  # top ceil(0.5) = 1 unit
    assert top_share(mag, 0.5).item() == pytest.approx(5 / 6.5)  # top ceil(2.5) = 3 units: 2 + 2 + 1
    assert top_share(mag, 1.0).item() == pytest.approx(1.0)
    two = torch.stack([mag, torch.ones(5)])  # [L, I]: one share per layer; equal units hold K of the total
    assert torch.allclose(top_share(two, 0.5), torch.tensor([5 / 6.5, 3 / 5]))


def test_top_share_of_a_model_is_one_at_k_100_and_grows_with_k():
    mags = mlp_activations(_model(), _batch())
    assert mags.shape == (2, 48) and (mags > 0).all()
    assert torch.allclose(top_share(mags, 1.0), torch.ones(2))
    assert (top_share(mags, 0.1) < top_share(mags, 0.5)).all()
    table = concentration({"m": mags})
    assert len(table) == 2 * 2 and table["share"].between(0, 1).all()


def test_concentration_claim_says_holds_only_where_the_fine_tuned_model_is_more_concentrated():
    rows = [{"model": m, "K": k, "layer": layer, "share": k + (0.01 if (m == "fine-tuned") == (k == 0.1) else 0)}
            for m in ("fine-tuned", "base") for k in (0.1, 0.5) for layer in range(3)]
    summary = concentration_summary(pd.DataFrame(rows), "fine-tuned", "base")
    assert summary["layers where fine-tuned is higher"].tolist() == [3, 0]
    lines = concentration_claim(summary, "heads").splitlines()
    assert lines[0].startswith("top 10% of heads") and lines[0].endswith("holds here")
    assert lines[1].startswith("top 50% of heads") and lines[1].endswith("does not hold here")


# -- (d) hooks see what the module receives --------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_hooks_capture_the_inputs_of_o_proj_and_down_proj(kind):
    """Layer 0 made hand-computable: zero queries → uniform causal attention over the real tokens;
    zero o_proj → the MLP reads the normalised embeddings."""
    model = _model(kind)
    layer = decoder_layers(model)[0]
    attn = layer.self_attn
    with torch.no_grad():
        attn.q_proj.weight.zero_()
        if attn.q_proj.bias is not None:
            attn.q_proj.bias.zero_()
        attn.o_proj.weight.zero_()
    b = _batch()
    mask = b["attention_mask"].bool()
    with torch.no_grad():
        emb = model.get_input_embeddings()(b["input_ids"])  # [B, T, d]
        v = attn.v_proj(layer.input_layernorm(emb)).view(2, 6, 2, 8)  # [B, T, G, hd]
        allowed = torch.tril(torch.ones(6, 6)) * mask[:, None, :].float()  # [B, t, s]
        mean_v = (allowed / allowed.sum(-1, keepdim=True)) @ v.flatten(2)  # [B, T, G·hd]
        heads = mean_v.view(2, 6, 2, 8).repeat_interleave(2, dim=2).flatten(2)  # query head h reads group h // 2
        y = layer.post_attention_layernorm(emb)
        inter = F.silu(layer.mlp.gate_proj(y)) * layer.mlp.up_proj(y)  # [B, T, I]
    assert torch.allclose(attention_outputs(model, b)[0], heads[mask].abs().mean(0), atol=1e-6)
    assert torch.allclose(mlp_activations(model, b)[0], inter[mask].abs().mean(0), atol=1e-6)


def test_input_sums_do_not_depend_on_the_chunking():
    model, b = _model(), _batch()
    mods = decoder_linears(model)
    whole, n = input_sums(model, b, mods, torch.square, chunk=16)
    rows, n1 = input_sums(model, b, mods, torch.square, chunk=1)
    assert n == n1 == 10 and whole.keys() == rows.keys()
    assert all(torch.allclose(whole[k], rows[k], rtol=1e-5) for k in whole)


# -- (b) Wanda --------------------------------------------------------------------------------

def _expected_wanda_zeros(weight, x, sparsity):
    """By hand: score |W_ij|·‖X_j‖₂ over the real tokens x [N, in]; the k lowest of each row."""
    score = weight.abs() * x.norm(dim=0)[None, :]
    k = math.floor(sparsity * weight.shape[1])
    out = torch.zeros_like(weight, dtype=torch.bool)
    out.scatter_(1, score.argsort(dim=1)[:, :k], True)
    return out


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_wanda_zeroes_the_same_count_in_every_row_and_leaves_embeddings(kind):
    model = _model(kind)
    emb = model.get_input_embeddings().weight.clone()
    head = model.get_output_embeddings().weight.clone()
    wanda_prune(model, _batch(), 0.3)
    linears = decoder_linears(model)
    assert len(linears) == 2 * 7
    for name, lin in linears.items():
        assert (_zeros(lin.weight).sum(1) == math.floor(0.3 * lin.in_features)).all(), name
    assert torch.equal(model.get_input_embeddings().weight, emb)
    assert torch.equal(model.get_output_embeddings().weight, head)


@pytest.mark.parametrize("sequential", [True, False])
def test_wanda_zeroes_the_lowest_weight_times_input_norm(sequential):
    model, b = _model(), _batch()
    original = copy.deepcopy(model)
    mask = b["attention_mask"].bool()
    with torch.no_grad():
        hs = original(**b, output_hidden_states=True).hidden_states  # inputs of layers 0 and 1, unpruned
    wanda_prune(model, b, 0.5, sequential=sequential)
    if sequential:  # layer 1 is calibrated on the output of the already pruned layer 0
        with torch.no_grad():
            hs = model(**b, output_hidden_states=True).hidden_states
    for i in (0, 1):
        layer, before = decoder_layers(model)[i], decoder_layers(original)[i]
        with torch.no_grad():
            x = before.input_layernorm(hs[i])[mask]  # [N, d]: q_proj's input at the real tokens
        want = _expected_wanda_zeros(before.self_attn.q_proj.weight, x, 0.5)
        assert torch.equal(_zeros(layer.self_attn.q_proj.weight), want), f"layer {i}"
        kept = ~want
        assert torch.equal(layer.self_attn.q_proj.weight[kept], before.self_attn.q_proj.weight[kept])


def test_wanda_is_not_magnitude_pruning():
    """Scale one input feature's activations 1e4 times up and shrink its weights to 1e-3 of the mean
    |W|: magnitude pruning would drop them in every row, Wanda keeps them (score 10x the mean)."""
    model, b = _model(), _batch()
    layer = decoder_layers(model)[0]
    q = layer.self_attn.q_proj.weight
    with torch.no_grad():
        layer.input_layernorm.weight[3] = 1e4
        q[:, 3] = 1e-3 * q.abs().mean() * q[:, 3].sign()
    assert (q[:, 3].abs() < q.abs().median(dim=1).values).all()
    wanda_prune(model, b, 0.5)
    assert not _zeros(layer.self_attn.q_proj.weight[:, 3]).any()


# -- (c) random ------------------------------------------------------------------------------

def test_random_pruning_counts_are_exact_and_seeded():
    masks = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        model = random_prune(_model(), 0.6, seed)
        masks[name] = {k: _zeros(lin.weight) for k, lin in decoder_linears(model).items()}
        for k, lin in decoder_linears(model).items():
            assert (masks[name][k].sum(1) == math.floor(0.6 * lin.in_features)).all(), k
    assert all(torch.equal(masks["a"][k], masks["b"][k]) for k in masks["a"])
    assert not all(torch.equal(masks["a"][k], masks["c"][k]) for k in masks["a"])


def test_per_row_count_and_bad_arguments():
    assert pruned_per_row(0.29, 100) == 29 and pruned_per_row(0.7, 10) == 7 and pruned_per_row(0.0, 48) == 0
    with pytest.raises(PruneRecError):
        pruned_per_row(1.5, 10)
    with pytest.raises(PruneRecError, match="unknown pruning method"):
        prune(_model(), "magnitude", 0.5)
    untouched = _model()
    before = {k: lin.weight.clone() for k, lin in decoder_linears(untouched).items()}
    prune(untouched, "random", 0.0, seed=1)
    assert all(torch.equal(lin.weight, before[k]) for k, lin in decoder_linears(untouched).items())


# -- Fig 1b bookkeeping ----------------------------------------------------------------------

def _sweep(teacher: float, wanda: list[float], random: list[float]) -> pd.DataFrame:
    rows = [("teacher", 0.0, teacher)] + [("wanda", s, v) for s, v in zip((0.3, 0.6), wanda)] + \
        [("random", s, v) for s, v in zip((0.3, 0.6), random)]
    return pd.DataFrame([{"method": m, "sparsity": s, "mean metric": v,
                          "retention": v / teacher if teacher else float("nan")} for m, s, v in rows])


def test_wanda_vs_random_compares_retention_or_falls_back_to_the_metrics():
    verdict, basis = wanda_vs_random(_sweep(0.2, [0.1, 0.05], [0.1, 0.08]))
    assert basis == "retention" and verdict["wanda vs random"].tolist() == ["equal", "below"]
    assert verdict.loc[0.6, "wanda"] == pytest.approx(0.25)
    assert "holds at 1 of 2 levels" in pruning_claim(verdict, basis)
    verdict, basis = wanda_vs_random(_sweep(0.0, [0.0, 0.0], [0.0, 0.0]))
    assert basis == "mean metric" and "cannot be checked" in pruning_claim(verdict, basis)
    assert "holds at every level" in pruning_claim(*wanda_vs_random(_sweep(0.2, [0.0, 0.0], [0.1, 0.1])))


def test_a_pruned_teacher_evaluation_resumes_after_its_last_batch(tiny_model_dir, ml100k_splits, tmp_path, kernel_calls):
    import shutil

    from prunerec_utils.pipeline.stages import SUMMARY
    from prunerec_utils.studies import observe

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "splits").symlink_to(ml100k_splits)
    run = tmp_path / "ml-100k" / "ci"
    shutil.copytree(tiny_model_dir, run / "models" / "teacher")
    (run / "models" / "teacher" / SUMMARY).write_text("{}")
    prof = get_profile("ci", max_test=12, eval_batch=4)
    pruned = lambda s: observe.pruned_result(Run("ml-100k", prof, tmp_path), "random", s, rows=12)  # noqa: E731
    whole = pruned(0.3)
    assert whole.metrics["measured_sparsity"] == pytest.approx(0.3, abs=0.01) and whole.metrics["n"] == 12
    for f in (run / "results" / "obs_random_s0.3_n12.json", run / "ranks" / "obs_random_s0.3_n12.csv"):
        f.unlink()
    kernel_calls(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        pruned(0.3)
    calls = kernel_calls()
    resumed = pruned(0.3)
    assert calls == [4] and resumed.metrics["resumed_after_users"] == 8
    assert resumed.per_user["top"].tolist() == whole.per_user["top"].tolist()
    assert resumed.metrics["measured_sparsity"] == whole.metrics["measured_sparsity"]
    assert not (run / "ranks" / ".obs_random_s0.3_n12.partial.json").exists()
    calls.clear()
    pruned(0.3)  # stored: no evaluation at all
    assert calls == []


def test_sweep_views_split_the_table_into_metrics_and_retention():
    cols = {"method": ["teacher", "wanda"], "sparsity": [0.0, 0.5], "hr@10": [.1, .05], "hr@20": [.2, .1],
            "ndcg@10": [.05, .02], "ndcg@20": [.07, .03], "mean metric": [.105, .05],
            "retention hr@10": [1, .5], "retention hr@20": [1, .5], "retention ndcg@10": [1, .4],
            "retention ndcg@20": [1, .43], "retention": [1, .46], "n": [200, 200], "users": [40, 40]}
    quality, kept = sweep_views(pd.DataFrame(cols))
    assert list(quality.columns) == ["method", "sparsity", "hr@10", "hr@20", "ndcg@10", "ndcg@20", "mean metric",
                                     "rows", "users"]
    assert list(kept.columns) == ["method", "sparsity", "retention hr@10", "retention hr@20", "retention ndcg@10",
                                  "retention ndcg@20", "retention"]
    assert kept.loc[1, "retention"] == .46 and quality.loc[1, "rows"] == 200
