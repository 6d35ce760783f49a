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
    max_test: int | None  # test rows evaluated (one fixed seeded sample for every model; intervals resample its users)
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
    # On a GPU only throughput changes (:meth:`Profile.on_device`): the effective batch and every budget stay
    cuda_batch_size: int | None = None  # per-device batch on CUDA (accumulation keeps the effective batch); None: same
    cuda_eval_batch: int | None = None  # rows per constrained-beam-search call on CUDA; None: eval_batch
    cuda_compile: bool | None = None  # torch.compile on CUDA; None: train_compile
    # Evaluation rows per purpose: the first rows of the run's fixed test sample (never more than max_test)
    pruned_eval_rows: int = 300  # each stage right after surgery, before distillation (03-05); 0 skips
    restoration_rows: int = 500  # each point of the restoration curve (03)
    restoration_budgets: tuple[int, ...] | None = None  # its distillation samples; None: max_train / 8, / 2, all
    length_penalty_rows: int = 100  # the teacher with length penalty 0 vs 1 (01); 0 skips
    exclude_seen_rows: int = 300  # the teacher never recommending a seen item (01); 0 skips
    tokenisation_check_rows: int = 200  # sampled test prompts whose trie tokenisation is checked (01)
    # Ablations (notebook 06): reduced restoration and evaluation budget of every variant
    ablation_max_train: int | None = None  # distillation samples; None = max_train
    ablation_rows: int | None = None  # first rows of the fixed test sample; None = max_test
    # Observations (notebook 02)
    observe_samples: int = 100  # training samples for the activation statistics and Wanda's calibration
    observe_rows: int = 200  # test rows per pruned evaluation
    observe_sparsities: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
    # Efficiency (notebook 07)
    bench_rows: int = 8  # test rows timed for the beam-search latency and throughput
    bench_repeats: int = 5  # median of this many timed runs after one warm-up
    bench_paper_geometry: bool = True  # also time Qwen2-0.5B shapes (random weights)
    # ID baselines (notebook 08); the paper's grid is lr {1e-2, 1e-3, 1e-4} x emb {64, 128, 256}
    baseline_lrs: tuple[float, ...] = (1e-3, 1e-2)
    baseline_embs: tuple[int, ...] = (64,)
    baseline_epochs: int = 20  # most epochs per configuration (early stopping may stop sooner)
    baseline_patience: int = 3  # epochs without a better validation NDCG@20 before stopping
    baseline_batch_size: int = 1024
    baseline_negatives: int = 1
    baseline_dropout: float = 0.2
    # "all", an int (seeded sample) or "teacher": the very rows the LLM teacher was trained / validated on
    baseline_train_rows: str | int = "all"
    baseline_valid_rows: str | int = "all"

    def __post_init__(self):
        for field, allowed in CHOICES.items():  # every profile, however made (get_profile, replace)
            if getattr(self, field) not in allowed:
                raise PruneRecError(f"{field} must be one of {', '.join(allowed)}, not {getattr(self, field)!r}")
        for field, kind in TUPLES.items():  # papermill hands lists, a single number is a one-point list
            value = getattr(self, field)
            if value is not None:
                values = value if isinstance(value, (list, tuple)) else [value]
                try:
                    object.__setattr__(self, field, tuple(kind(v) for v in values))
                except (TypeError, ValueError):
                    raise PruneRecError(f"{field} must be a list of numbers, not {value!r}") from None

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def on_device(self, device: str) -> "Profile":
        """The profile as it runs on ``device`` ("cpu" or "cuda"). On CUDA the per-device batch, the rows per
        beam-search call and compilation take their ``cuda_*`` values, accumulation keeps the effective batch,
        and no checkpoint is saved mid-epoch (a run is minutes long there); the science (effective batch,
        learning rate, every budget) is the same on both."""
        if device != "cuda":
            return self
        changes = {"save_steps": 0}
        if self.cuda_batch_size:
            if self.effective_batch % self.cuda_batch_size:
                raise PruneRecError(f"profile {self.name!r}: cuda_batch_size {self.cuda_batch_size} does not divide "
                                    f"the effective batch {self.effective_batch}")
            changes.update(batch_size=self.cuda_batch_size, grad_accum=self.effective_batch // self.cuda_batch_size)
        if self.cuda_eval_batch:
            changes["eval_batch"] = self.cuda_eval_batch
        if self.cuda_compile is not None:
            changes["train_compile"] = self.cuda_compile
        return replace(self, **changes)

    @property
    def distill_samples(self) -> int | None:
        """Training samples of a distillation: ``distill_max_train``, else the teacher's ``max_train`` (None: all)."""
        return self.distill_max_train or self.max_train

    @property
    def ablation_distill_samples(self) -> int | None:
        """Distillation samples of every ablation variant (the reduced budget): ``ablation_max_train``, else
        :attr:`distill_samples`."""
        return self.ablation_max_train or self.distill_samples

    @property
    def ablation_test_rows(self) -> int | None:
        """Test rows every ablation variant is evaluated on (None: the whole fixed test sample)."""
        return self.ablation_rows or self.max_test

    @property
    def restoration_curve_budgets(self) -> tuple[int, ...]:
        """Distillation samples of the restoration curve: the profile's, or max_train / 8, / 2 and all of it."""
        if self.restoration_budgets is not None:
            return self.restoration_budgets
        top = self.max_train
        return () if top is None else tuple(sorted({max(1, top // 8), max(1, top // 2), top}))

    def to_dict(self) -> dict:
        """The fields as they read back from a JSON record (tuples as lists), so a stored profile compares equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


CHOICES = {"eval_dtype": ("fp32", "bf16"), "train_precision": ("bf16", "autocast", "fp32"),
           "train_attention": ("sdpa", "eager"),
           # how each stage chooses what to cut: the method first, then its ablations / baselines
           "head_variant": ("greedy", "global", "global_no_alpha", "random"),
           "hidden_variant": ("weight_x_grad", "gradient", "weight", "reference", "random"),
           "mlp_variant": ("paper", "reference", "random"),
           "layer_variant": ("ppl", "random")}
TUPLES = {"restoration_budgets": int, "observe_sparsities": float, "baseline_lrs": float, "baseline_embs": int}

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", model="tiny-qwen2", dataset="ml-100k",
        max_train=256, max_valid=32, max_test=48,
        epochs=2, batch_size=16, grad_accum=1, lr=2e-3, warmup_steps=4,
        num_beams=20, eval_batch=8, kept_heads=2, ablation_max_train=64, ablation_rows=16,
        restoration_budgets=(64, 256),  # two points per stage's curve, the second the run's own restoration
        observe_samples=8, observe_rows=16, observe_sparsities=(0.3, 0.6),
        bench_rows=2, bench_repeats=1, bench_paper_geometry=False,
        baseline_lrs=(1e-2,), baseline_embs=(16,), baseline_epochs=2, baseline_patience=1, baseline_batch_size=64,
        baseline_train_rows="teacher", baseline_valid_rows=256,
    ),
    "default": Profile(
        name="default", model="smollm2-135m", dataset="ml-100k",
        max_train=32768, max_valid=256, max_test=2000,  # 16,384 beat most-popular but kept 42% of top-1s on one title
        epochs=1, batch_size=8, grad_accum=2, lr=3e-4, warmup_steps=8,
        num_beams=20, eval_batch=8, train_precision="bf16", train_attention="eager", train_compile=True,
        kept_heads=5,
        ablation_max_train=512, ablation_rows=200, save_steps=32,
        # H200 calibration: 512 rows per call is the evaluator's fastest (85 rows/s fp32); compiling recompiled
        # per sequence length there, so the GPU trains uncompiled until it is shown to pay
        cuda_batch_size=16, cuda_eval_batch=512, cuda_compile=False,
    ),
    "paper": Profile(
        name="paper", model="Qwen/Qwen2-0.5B", dataset="amazon-Video_Games",
        max_train=None, max_valid=None, max_test=None,
        epochs=3, batch_size=8, grad_accum=16, lr=3e-4, warmup_steps=20,
        num_beams=20, eval_batch=16, train_precision="bf16", train_compile=True, kept_heads=7,
        ablation_max_train=20000, ablation_rows=2000, save_steps=200,
        baseline_lrs=(1e-2, 1e-3, 1e-4), baseline_embs=(64, 128, 256), baseline_epochs=200, baseline_patience=10,
        cuda_batch_size=32, cuda_eval_batch=512,
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
