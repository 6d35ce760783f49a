"""Surgery: head / hidden-dimension removal keeps the function where it must, counts add up, and
the pruned checkpoint reloads with stock transformers and gives the same logits."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from prunerec_utils import PruneRecError
from prunerec_utils.assets import load_model
from prunerec_utils.method.surgery import (decoder_layers, head_dim, kv_replication_cost, param_counts, param_formula,
                                           prune_heads, prune_hidden)


def _llama(tied: bool, seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, head_dim=8, tie_word_embeddings=tied,
                      max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def _models(tiny_model_dir):
    return [load_model(tiny_model_dir), _llama(tied=False), _llama(tied=True, seed=1)]


IDS = torch.tensor([[5, 17, 3, 44, 9, 61, 2, 8], [7, 7, 30, 12, 50, 1, 90, 4]])


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def test_removing_heads_with_zero_output_columns_keeps_logits(tiny_model_dir):
    for model in _models(tiny_model_dir):
        cfg = model.config
        H, hd = cfg.num_attention_heads, head_dim(cfg)
        keep = [[h for h in range(H) if h % 2 == layer % 2] for layer in range(cfg.num_hidden_layers)]
        with torch.no_grad():  # silence the heads we will remove: their o_proj input columns -> 0
            for layer, heads in zip(decoder_layers(model), keep):
                for h in set(range(H)) - set(heads):
                    layer.self_attn.o_proj.weight[:, h * hd:(h + 1) * hd] = 0
        before = _logits(model)
        prune_heads(model, keep)
        assert model.config.num_attention_heads == len(keep[0]) == model.config.num_key_value_heads
        assert torch.allclose(_logits(model), before, atol=1e-5)


def test_parameter_count_after_surgery_equals_the_formula(tiny_model_dir):
    for model in _models(tiny_model_dir):
        assert param_counts(model) == param_formula(model.config)
        H = model.config.num_attention_heads
        prune_heads(model, [list(range(H // 2))] * model.config.num_hidden_layers)
        prune_hidden(model, range(0, model.config.hidden_size, 2))
        assert param_counts(model) == param_formula(model.config)


def test_formula_matches_the_paper_arithmetic():
    from transformers import Qwen2Config

    qwen = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
    assert round(param_formula(qwen)["non_embedding"] / 1e6, 1) == 357.9  # SPEC: 357.9M
    assert round(151936 * 896 / 1e6, 1) == 136.1


def test_pruned_checkpoint_reloads_with_stock_transformers(tiny_model_dir, tmp_path):
    for i, model in enumerate(_models(tiny_model_dir)):
        cfg = model.config
        H = cfg.num_attention_heads
        prune_heads(model, [[0, H - 1]] + [[1, 2]] * (cfg.num_hidden_layers - 1))
        kept = list(range(1, cfg.hidden_size, 3))
        prune_hidden(model, kept)
        model.save_pretrained(tmp_path / str(i))
        stock = AutoModelForCausalLM.from_pretrained(tmp_path / str(i)).eval()
        assert stock.config.hidden_size == len(kept) and stock.config.num_attention_heads == 2
        assert torch.allclose(_logits(stock), _logits(model), atol=1e-5)
        assert param_counts(stock) == param_counts(model)


def test_hidden_pruning_cuts_every_tensor_that_touches_the_residual_stream(tiny_model_dir):
    model = load_model(tiny_model_dir)
    dims = [3, 0, 10, 7]
    emb = model.get_input_embeddings().weight[:, sorted(dims)].clone()
    prune_hidden(model, dims)
    assert torch.equal(model.get_input_embeddings().weight, emb)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    for name, p in model.named_parameters():
        if p.ndim == 2 or "norm" in name:  # every matrix and RMSNorm touches the residual stream
            assert 4 in p.shape, name
    with pytest.raises(PruneRecError):
        prune_hidden(model, [0, 0])


def test_bad_head_lists_are_refused(tiny_model_dir):
    model = load_model(tiny_model_dir)
    with pytest.raises(PruneRecError, match="same"):
        prune_heads(model, [[0], [0, 1], [0], [0]])
    with pytest.raises(PruneRecError, match="invalid"):
        prune_heads(model, [[0, 9]] * 4)


def test_kv_replication_cost_counts_shared_groups():
    cfg = _llama(tied=True).config  # 6 heads on 2 KV groups -> group size 3
    keep = [[0, 1], [0, 3], [2, 5]]  # layer 0 reads one group, layers 1-2 read two
    d, hd = cfg.hidden_size, head_dim(cfg)
    assert kv_replication_cost(cfg, keep, group=3) == 2 * 1 * d * hd
