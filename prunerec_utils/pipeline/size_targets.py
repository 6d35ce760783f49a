"""Size targets of a pruning run: the shapes Stages I-III leave, from explicit counts or from a
share of the teacher's non-embedding parameters, as profile fields.

Shapes of a Llama / Qwen2 teacher with L layers, H query heads of width h (see
:mod:`prunerec_utils.method.surgery`): Stage I keeps K heads per layer and d' = K·h hidden
dimensions (one KV head per kept query head); Stage II keeps K_MLP neurons per layer; Stage III
keeps N of the L layers. A target share s uses the paper's proportions: K = H / 2, K_MLP = 2·d',
and the most layers N whose non-embedding count stays within s of the teacher's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .. import PruneRecError
from ..method.surgery import SUPPORTED, head_dim, param_formula


@dataclass(frozen=True)
class Shapes:
    kept_heads: int  # K query heads per layer (d' = K · head_dim)
    mlp: int  # K_MLP neurons per layer
    layers: int  # N decoder layers kept

    def profile_fields(self, config) -> dict:
        """The profile fields that make Stages I-III cut to these shapes."""
        d_new = self.kept_heads * head_dim(config)
        L = config.num_hidden_layers
        return {"kept_heads": self.kept_heads, "mlp_keep_factor": self.mlp / d_new,
                "layers_removed_share": (L - self.layers) / L}


def supported(config) -> None:
    """One line naming the architecture when the surgery cannot cut it."""
    if config.model_type not in SUPPORTED:
        raise PruneRecError(f"cannot prune a {config.model_type!r} model: the surgery supports the "
                            f"{' and '.join(SUPPORTED)} families (Llama, Qwen2 and models with their layout)")


def pruned_config(config, shapes: Shapes):
    """The config a teacher ``config`` has after Stages I-III cut it to ``shapes``."""
    check(config, shapes)
    out = copy.deepcopy(config)
    hd = head_dim(config)
    out.hidden_size = shapes.kept_heads * hd
    out.num_attention_heads = out.num_key_value_heads = shapes.kept_heads
    out.head_dim = hd
    out.intermediate_size = shapes.mlp
    out.num_hidden_layers = shapes.layers
    return out


def check(config, shapes: Shapes) -> None:
    """One line for shapes the teacher cannot take (more than it has, or none)."""
    supported(config)
    bounds = {"--keep-heads": (shapes.kept_heads, config.num_attention_heads),
              "--mlp": (shapes.mlp, config.intermediate_size), "--layers": (shapes.layers, config.num_hidden_layers)}
    for flag, (value, most) in bounds.items():
        if not 1 <= value <= most:
            raise PruneRecError(f"{flag} {value}: the teacher has {most}; choose 1 to {most}")


def from_share(config, share: float) -> Shapes:
    """The paper's proportions (half the heads, K_MLP = 2·d') and the most layers whose
    non-embedding count is at most ``share`` of the teacher's."""
    if not 0 < share < 1:
        raise PruneRecError(f"--target-share {share}: give a share of the non-embedding parameters between 0 and 1")
    supported(config)
    K = max(1, config.num_attention_heads // 2)
    mlp = min(2 * K * head_dim(config), config.intermediate_size)
    budget = share * param_formula(config)["non_embedding"]
    fits = [n for n in range(1, config.num_hidden_layers + 1)
            if param_formula(pruned_config(config, Shapes(K, mlp, n)))["non_embedding"] <= budget]
    if not fits:
        one = param_formula(pruned_config(config, Shapes(K, mlp, 1)))["non_embedding"]
        raise PruneRecError(f"--target-share {share} leaves no layer: one layer of {K} heads and {mlp} MLP neurons "
                            f"already holds {one:,} non-embedding parameters "
                            f"({one / param_formula(config)['non_embedding']:.2%} of the teacher's)")
    return Shapes(K, mlp, max(fits))


def describe(config, shapes: Shapes) -> str:
    """One line: the shapes and the parameter counts they give, beside the teacher's."""
    before, after = param_formula(config), param_formula(pruned_config(config, shapes))
    return (f"shapes: {shapes.kept_heads} of {config.num_attention_heads} heads per layer (hidden "
            f"{config.hidden_size} → {shapes.kept_heads * head_dim(config)}), MLP {config.intermediate_size} → "
            f"{shapes.mlp}, layers {config.num_hidden_layers} → {shapes.layers}; non-embedding parameters "
            f"{before['non_embedding']:,} → {after['non_embedding']:,} "
            f"({after['non_embedding'] / before['non_embedding']:.1%}), total {before['total']:,} → {after['total']:,} "
            "before vocabulary pruning")
