"""Model surgery: physically remove attention heads, hidden dimensions, MLP neurons, layers and
token rows (Llama / Qwen2 families).

Every function edits the model in place and updates its config so that ``save_pretrained``
writes a plain checkpoint that stock ``AutoModelForCausalLM.from_pretrained`` reloads.

Shapes (per decoder layer, hidden d, head_dim h, H query heads, G key/value heads):
q_proj [H·h, d] (+bias), k_proj / v_proj [G·h, d] (+bias), o_proj [d, H·h],
gate/up [I, d], down [d, I]; RMSNorm weights [d]; embedding and lm_head [V, d].

Grouped-query attention: a stock config has one H and one G for all layers, and query head i
reads KV head ``i // (H / G)``. After head pruning each layer keeps its own K query heads,
spread unevenly over the KV groups, so the stock-loadable layout used here gives every kept
query head its own KV head, copied from the group it read before (G' = K). The attention
output is unchanged; the price is K/G times the KV projections (:func:`kv_replication_cost`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import PruneRecError

SUPPORTED = ("llama", "qwen2")


def decoder_layers(model) -> nn.ModuleList:
    return model.get_decoder().layers


@contextlib.contextmanager
def temporary_layers(model, keep: list[int]):
    """Temporarily make the decoder hold only ``layers[i] for i in keep`` (nothing is deleted)."""
    dec = model.get_decoder()
    full = dec.layers
    dec.layers = nn.ModuleList([full[i] for i in keep])
    try:
        yield
    finally:
        dec.layers = full


def _check(model) -> None:
    if model.config.model_type not in SUPPORTED:
        raise PruneRecError(f"surgery supports {', '.join(SUPPORTED)} models, not {model.config.model_type!r}")


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device,
                    dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def _rows(t: torch.Tensor | None, heads: list[int], hd: int) -> torch.Tensor | None:
    """Rows of the head blocks ``heads`` (each ``hd`` rows) of a projection weight or bias."""
    if t is None:
        return None
    idx = torch.cat([torch.arange(h * hd, (h + 1) * hd, device=t.device) for h in heads])
    return t.index_select(0, idx)


def prune_heads(model, keep: list[list[int]]):
    """Keep query heads ``keep[l]`` (same count K in every layer) and give each its own KV head.

    q_proj rows / bias and o_proj input columns are cut in head_dim blocks; k_proj / v_proj
    become the rows of each kept head's former KV group. Config: H = G = K.
    """
    _check(model)
    cfg, layers = model.config, decoder_layers(model)
    if len(keep) != len(layers):
        raise PruneRecError(f"keep lists {len(keep)} layers, the model has {len(layers)}")
    k = {len(ks) for ks in keep}
    if len(k) != 1 or 0 in k:
        raise PruneRecError("every layer must keep the same, non-zero number of heads (stock configs are uniform)")
    K, hd = k.pop(), head_dim(cfg)
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    for layer, heads in zip(layers, keep):
        heads = sorted(heads)
        if min(heads) < 0 or max(heads) >= cfg.num_attention_heads or len(set(heads)) != len(heads):
            raise PruneRecError(f"invalid head indices {heads}")
        att = layer.self_attn
        kv = [h // group for h in heads]
        att.q_proj = _linear(_rows(att.q_proj.weight, heads, hd), _rows(att.q_proj.bias, heads, hd))
        att.k_proj = _linear(_rows(att.k_proj.weight, kv, hd), _rows(att.k_proj.bias, kv, hd))
        att.v_proj = _linear(_rows(att.v_proj.weight, kv, hd), _rows(att.v_proj.bias, kv, hd))
        att.o_proj = _linear(_rows(att.o_proj.weight.T, heads, hd).T, att.o_proj.bias)
        att.num_key_value_groups = 1
        for name in ("num_heads", "num_attention_heads"):
            if hasattr(att, name):
                setattr(att, name, K)
        if hasattr(att, "num_key_value_heads"):
            att.num_key_value_heads = K
    cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = K, K, hd
    return model


def _cols(lin: nn.Linear, dims: torch.Tensor) -> nn.Linear:
    return _linear(lin.weight.index_select(1, dims), lin.bias)


def _out_rows(lin: nn.Linear, dims: torch.Tensor) -> nn.Linear:
    return _linear(lin.weight.index_select(0, dims), None if lin.bias is None else lin.bias.index_select(0, dims))


def _norm(norm: nn.Module, dims: torch.Tensor) -> None:
    norm.weight = nn.Parameter(norm.weight.detach().index_select(0, dims).clone())
    if hasattr(norm, "hidden_size"):
        norm.hidden_size = len(dims)


def prune_hidden(model, dims) -> nn.Module:
    """Keep hidden dimensions ``dims`` of the residual stream (slicing d → d', book/method.md, method-stage1).

    Cuts embedding (and an untied lm_head) columns, every RMSNorm weight, the input columns of
    q/k/v/gate/up and the output rows (and biases) of o_proj/down_proj. RMSNorm then averages
    over d' dimensions: not function-preserving — distillation repairs it.
    """
    _check(model)
    dec = model.get_decoder()
    dims = torch.as_tensor(sorted(int(d) for d in dims), device=dec.embed_tokens.weight.device)
    if len(dims) == 0 or int(dims.max()) >= model.config.hidden_size or len(dims.unique()) != len(dims):
        raise PruneRecError("hidden dims must be distinct indices below hidden_size")
    tied = model.config.tie_word_embeddings
    emb = dec.embed_tokens
    emb.weight = nn.Parameter(emb.weight.detach().index_select(1, dims).clone())
    emb.embedding_dim = len(dims)
    head = model.get_output_embeddings()
    if tied:
        head.weight = emb.weight
    else:
        head.weight = nn.Parameter(head.weight.detach().index_select(1, dims).clone())
    head.in_features = len(dims)
    _norm(dec.norm, dims)
    for layer in dec.layers:
        att, mlp = layer.self_attn, layer.mlp
        _norm(layer.input_layernorm, dims)
        _norm(layer.post_attention_layernorm, dims)
        att.q_proj, att.k_proj, att.v_proj = (_cols(att.q_proj, dims), _cols(att.k_proj, dims),
                                              _cols(att.v_proj, dims))
        att.o_proj = _out_rows(att.o_proj, dims)
        mlp.gate_proj, mlp.up_proj = _cols(mlp.gate_proj, dims), _cols(mlp.up_proj, dims)
        mlp.down_proj = _out_rows(mlp.down_proj, dims)
    model.config.hidden_size = len(dims)
    return model


def prune_mlp(model, keep: list[list[int]]):
    """Keep intermediate neurons ``keep[l]`` (same count K in every layer): rows of gate/up
    (and their biases), columns of down. Config: intermediate_size = K (Stage II, book/method.md, method-stage2)."""
    _check(model)
    layers = decoder_layers(model)
    k = {len(ks) for ks in keep}
    if len(keep) != len(layers) or len(k) != 1 or 0 in k:
        raise PruneRecError("keep one non-empty list of the same length per layer")
    for layer, neurons in zip(layers, keep):
        mlp = layer.mlp
        idx = torch.as_tensor(sorted(neurons), device=mlp.up_proj.weight.device)
        if int(idx.max()) >= mlp.up_proj.out_features or len(idx.unique()) != len(idx):
            raise PruneRecError("invalid neuron indices: each must be distinct and below intermediate_size")
        mlp.gate_proj, mlp.up_proj = _out_rows(mlp.gate_proj, idx), _out_rows(mlp.up_proj, idx)
        mlp.down_proj = _cols(mlp.down_proj, idx)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = len(idx)
    model.config.intermediate_size = k.pop()
    return model


def remove_layers(model, removed) -> nn.Module:
    """Delete whole decoder layers and renumber the rest (Stage III, book/method.md, method-stage3): the KV cache indexes
    layers by ``layer_idx``, and per-layer config lists (``layer_types``) follow the kept layers."""
    _check(model)
    dec = model.get_decoder()
    removed = set(int(i) for i in removed)
    L = len(dec.layers)
    if not removed <= set(range(L)) or len(removed) >= L:
        raise PruneRecError(f"can remove layers among 0..{L - 1}, keeping at least one; got {sorted(removed)}")
    kept = [i for i in range(L) if i not in removed]
    dec.layers = nn.ModuleList([dec.layers[i] for i in kept])
    for new, layer in enumerate(dec.layers):
        for mod in (layer, layer.self_attn):
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = new
    cfg = model.config
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[i] for i in kept]
    cfg.num_hidden_layers = len(kept)
    if hasattr(cfg, "max_window_layers") and cfg.max_window_layers > len(kept):
        cfg.max_window_layers = len(kept)
    return model


def prune_vocab(model, old_ids) -> nn.Module:
    """Keep token rows ``old_ids`` of the embedding and lm_head; new id ``i`` is old id ``old_ids[i]``.

    The special-token ids of the config and generation config (and the embedding's padding
    index) are renumbered; each must be among the kept tokens. Pair with
    :func:`prunerec_utils.method.vocab.restrict_tokenizer`, which renumbers the tokenizer the same way.
    """
    _check(model)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    old_ids = torch.as_tensor(old_ids, dtype=torch.long, device=emb.weight.device)
    V = emb.weight.shape[0]
    if len(old_ids) == 0 or int(old_ids.max()) >= V or len(old_ids.unique()) != len(old_ids):
        raise PruneRecError(f"kept token ids must be distinct and below the vocabulary size {V}")
    new_of_old = {int(o): n for n, o in enumerate(old_ids.tolist())}

    def renumber(tid):
        if tid is None:
            return None
        if isinstance(tid, (list, tuple)):
            return [renumber(t) for t in tid]
        if int(tid) not in new_of_old:
            raise PruneRecError(f"special token id {tid} is not among the kept tokens")
        return new_of_old[int(tid)]

    tied = head.weight is emb.weight
    emb.weight = nn.Parameter(emb.weight.detach().index_select(0, old_ids).clone())
    emb.num_embeddings = len(old_ids)
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = new_of_old.get(int(emb.padding_idx))
    if tied:
        head.weight = emb.weight
    else:
        head.weight = nn.Parameter(head.weight.detach().index_select(0, old_ids).clone())
    if head.bias is not None:
        head.bias = nn.Parameter(head.bias.detach().index_select(0, old_ids).clone())
    head.out_features = len(old_ids)
    for conf in (model.config, getattr(model, "generation_config", None)):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if conf is not None and getattr(conf, name, None) is not None:
                setattr(conf, name, renumber(getattr(conf, name)))
    model.config.vocab_size = len(old_ids)
    return model


def embedding_params(model) -> int:
    """Parameters of the embedding matrix plus an untied lm_head (counted once when tied)."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    return emb.numel() + (0 if head is emb else head.numel())


def param_counts(model) -> dict:
    """``{"total", "embedding", "non_embedding", "attention"}`` of the parameters actually held
    (a tied lm_head counted once; attention = q/k/v/o of all layers)."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    emb = embedding_params(model)
    attn = sum(p.numel() for layer in decoder_layers(model) for p in layer.self_attn.parameters())
    return {"total": total, "embedding": emb, "non_embedding": total - emb, "attention": attn}


def param_formula(config) -> dict:
    """Closed-form parameter count of a Llama/Qwen2 config (the same keys as :func:`param_counts`)."""
    d, hd, L = config.hidden_size, head_dim(config), config.num_hidden_layers
    H, G, I, V = config.num_attention_heads, config.num_key_value_heads, config.intermediate_size, config.vocab_size
    qkv_bias = getattr(config, "attention_bias", False) or config.model_type == "qwen2"
    o_bias = getattr(config, "attention_bias", False) and config.model_type != "qwen2"
    mlp_bias = getattr(config, "mlp_bias", False)
    attn = d * H * hd + 2 * d * G * hd + H * hd * d + (H * hd + 2 * G * hd if qkv_bias else 0) + (d if o_bias else 0)
    mlp = 3 * d * I + ((2 * I + d) if mlp_bias else 0)
    per_layer = attn + mlp + 2 * d
    emb = V * d * (1 if config.tie_word_embeddings else 2)
    non_emb = L * per_layer + d
    return {"total": non_emb + emb, "embedding": emb, "non_embedding": non_emb, "attention": L * attn}


def kv_replication_cost(config, keep: list[list[int]], group: int) -> int:
    """Parameters the one-KV-head-per-query-head layout spends beyond a per-layer minimum.

    ``config``: the pruned model's config; ``keep``: kept query heads per layer (original
    indices); ``group``: query heads per KV head before pruning. The minimum keeps, in each layer,
    only the KV groups its kept heads read (what a non-stock, per-layer layout could hold).
    """
    d, hd = config.hidden_size, head_dim(config)
    bias = hd if (getattr(config, "attention_bias", False) or config.model_type == "qwen2") else 0
    extra = sum(len(heads) - len({h // group for h in heads}) for heads in keep)
    return 2 * extra * (d * hd + bias)
