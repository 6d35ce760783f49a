"""Profiles: one code path, sizes from a profile (``ci`` / ``default`` / ``paper``).

``ci``      tiny random Qwen2-architecture model, a tiny slice of MovieLens-100k, minutes on 2 cores;
            Stage I keeps 2 of 4 heads (hidden 64 → 32).
``default`` SmolLM2-135M-Instruct (offline GGUF) on MovieLens-100k, CPU budget; Stage I keeps
            5 of 9 heads (hidden 576 → 320), about the paper's half.
``paper``   Qwen2-0.5B, full splits, 3 epochs, effective batch 128, lr 3e-4, 20 beams (GPU);
            Stage I keeps 7 of 14 heads (hidden 896 → 448).

Precision: ``train_precision`` picks the training step ("bf16" in default / paper, "fp32" in
ci, "autocast" the step before "bf16"); ``eval_dtype`` the precision every evaluation of a run
uses ("fp32" everywhere until bf16 is shown safe on the run's teacher, see
``benchmarks/eval_precision.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from . import PruneRecError


@dataclass(frozen=True)
class Profile:
    name: str
    model: str  # "tiny-qwen2", "smollm2-135m", a hub id or a local HF folder
    dataset: str  # the profile's default dataset
    max_train: int | None  # training samples (seeded random subset); None = whole split
    max_valid: int | None
    max_test: int | None  # test users evaluated (fixed seeded subset, same for every model)
    epochs: float
    batch_size: int  # per device
    grad_accum: int
    lr: float
    warmup_steps: int
    cutoff_len: int = 512  # prompt + answer tokens; prompts are cut from the left
    num_beams: int = 20
    eval_batch: int = 4  # users per constrained-beam-search call
    length_penalty: float = 0.0  # 0 = rank beams by the plain sum of log-probs (D3)
    # training step: "bf16" (bf16 weights on AMX / tensor cores, fp32 master weights in a fused AdamW,
    # length-grouped batches), "autocast" (fp32 weights under bf16 autocast: the step before "bf16"), or "fp32"
    train_precision: str = "fp32"
    train_attention: str = "sdpa"  # attention implementation while training ("sdpa" or "eager")
    train_compile: bool = False  # torch.compile the model being trained (and a distillation's teacher)
    eval_dtype: str = "fp32"  # precision of every evaluation of a run: "fp32" (exact) or "bf16" (AMX / tensor cores)
    save_steps: int = 0  # also save a resumable checkpoint every this many optimizer steps (0: per epoch only)
    seed: int = 42
    # Stage I and restoration (book/method.md: method-stage1, method-restoration)
    kept_heads: int = 2  # query heads kept per layer (paper 7 of 14); d' = kept_heads × head_dim
    importance_samples: int = 10  # B training samples for head and hidden-dimension importance
    alpha: float = 0.7  # eq. 6 cross-layer mixing
    epsilon: float = 1e-4  # eq. 3 query scaling of a suppressed head
    head_variant: str = "greedy"  # Stage I head choice: the method, or a Table 3 alternative (see CHOICES)
    hidden_variant: str = "weight_x_grad"  # eq. 7 (see prunerec_utils.method.hidden)
    kd_lambda: float = 0.8  # eq. 13: λ·KL + (1-λ)·CE
    distill_max_train: int | None = None  # restoration samples of every distillation (stages, baselines); None = max_train
    # Stage II (book/method.md: method-stage2)
    mlp_keep_factor: float = 2.0  # K_MLP = factor × d' (paper 896 = 2 × 448)
    mlp_samples: int = 64  # B samples whose last-token up_proj outputs are counted
    mlp_tau_quantile: float = 0.9  # τ per layer = this quantile of |H| (the paper gives no τ)
    mlp_variant: str = "paper"  # or "reference", "random" (see prunerec_utils.method.mlp)
    # Stage III (book/method.md: method-stage3)
    layers_removed_share: float = 2 / 3  # paper: 16 of 24
    calibration_samples: int = 16  # prompt + answer samples for the ΔPPL search
    layer_variant: str = "ppl"  # greedy ΔPPL (eq. 12), or "random" (the random structured baseline)
    # Ablations (notebook 06): reduced restoration and evaluation budget of every variant
    ablation_max_train: int | None = None  # distillation samples; None = max_train
    ablation_users: int | None = None  # first users of the fixed test sample; None = max_test

    def __post_init__(self):
        for field, allowed in CHOICES.items():  # every profile, however made (get_profile, replace)
            if getattr(self, field) not in allowed:
                raise PruneRecError(f"{field} must be one of {', '.join(allowed)}, not {getattr(self, field)!r}")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def to_dict(self) -> dict:
        return asdict(self)


CHOICES = {"eval_dtype": ("fp32", "bf16"), "train_precision": ("bf16", "autocast", "fp32"),
           "train_attention": ("sdpa", "eager"),
           # how each stage chooses what to cut: the method first, then its ablations / baselines
           "head_variant": ("greedy", "global", "global_no_alpha", "random"),
           "hidden_variant": ("weight_x_grad", "gradient", "weight", "reference", "random"),
           "mlp_variant": ("paper", "reference", "random"),
           "layer_variant": ("ppl", "random")}

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", model="tiny-qwen2", dataset="ml-100k",
        max_train=256, max_valid=32, max_test=48,
        epochs=2, batch_size=16, grad_accum=1, lr=2e-3, warmup_steps=4,
        num_beams=20, eval_batch=8, kept_heads=2, ablation_max_train=64, ablation_users=16,
    ),
    "default": Profile(
        name="default", model="smollm2-135m", dataset="ml-100k",
        max_train=32768, max_valid=256, max_test=2000,  # 16,384 beat most-popular but kept 42% of top-1s on one title
        epochs=1, batch_size=8, grad_accum=2, lr=3e-4, warmup_steps=8,
        num_beams=20, eval_batch=8, train_precision="bf16", train_attention="eager", train_compile=True,
        kept_heads=5,
        ablation_max_train=512, ablation_users=200, save_steps=32,
    ),
    "paper": Profile(
        name="paper", model="Qwen/Qwen2-0.5B", dataset="amazon-Video_Games",
        max_train=None, max_valid=None, max_test=None,
        epochs=3, batch_size=8, grad_accum=16, lr=3e-4, warmup_steps=20,
        num_beams=20, eval_batch=16, train_precision="bf16", train_compile=True, kept_heads=7,
        ablation_max_train=20000, ablation_users=2000, save_steps=200,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with any non-None ``overrides`` applied (papermill parameters)."""
    if name not in PROFILES:
        raise PruneRecError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    prof = PROFILES[name]
    unknown = set(overrides) - set(prof.to_dict())
    if unknown:
        raise PruneRecError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
    return replace(prof, **{k: v for k, v in overrides.items() if v is not None})
