"""Observations (paper §2.2, Fig 1-3): where the recommender's activations concentrate, and what
unstructured pruning does to it.

* Fig 1a — per layer, the share of the MLP's total |activation| held by its top-K% intermediate
  units (K = 10%, 50%), fine-tuned teacher vs its base LM. The intermediate activation is the
  input of ``down_proj``, a = act(gate(x)) ⊙ up(x), ``[N, I]`` over the N real (non-padding)
  tokens of a batch of training samples. **Aggregation:** a unit's magnitude is its mean |a|
  over all N tokens (``[I]`` per layer); units are sorted by it and the share is
  Σ(top ⌈K·I⌉ magnitudes) / Σ(all magnitudes). (The other reading, a share per token then
  averaged over tokens, is not what we compute.)
* Fig 1b — retention (pruned metric / teacher metric on the same rows, constrained beam search)
  under Wanda and under random unstructured pruning at equal sparsity.
* Fig 2-3 — the per-unit magnitudes, sorted, of the attention output (input of ``o_proj``,
  ``[N, H·head_dim]``) and of the MLP intermediate units, for the first, middle and last layer.

Wanda (Sun et al. 2023): for a linear layer with weight W ``[out, in]`` and calibration inputs
X ``[N, in]``, score S_ij = |W_ij| · ‖X_·j‖₂ and zero the ⌊s·in⌋ lowest-scoring weights of every
output row i. Every ``nn.Linear`` inside the decoder layers is pruned (q/k/v/o_proj,
gate/up/down_proj); embeddings and the LM head are not. By default (``sequential=True``, as in
the Wanda reference code) layer l is calibrated on the outputs of layers 0..l-1 already pruned;
the linears of one layer share one calibration pass. Random pruning zeroes the same number of
weights per row, chosen uniformly with a seeded generator.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import PruneRecError
from ..assets import load_model, load_tokenizer
from ..hardware import run_device
from ..identity import model_identity
from ..method.surgery import decoder_layers, temporary_layers
from ..paths import atomic_write_text
from ..pipeline.evaluate import (DTYPES, METRICS, EvalResult, cached_result, evaluate_cached, evaluate_resumable,
                                 evaluation_settings, first_rows, fixed_test_rows, retention_table)
from ..pipeline.run import Run
from ..pipeline.stages import ensure, sample_batch

METHODS = ("wanda", "random")
SHARES = (0.1, 0.5)  # K of Fig 1a


# -- activation statistics (Fig 1a, 2, 3) -------------------------------------------------------

@torch.no_grad()
def input_sums(model, batch: dict, modules: dict[str, nn.Module], fn, chunk: int = 16
               ) -> tuple[dict[str, torch.Tensor], int]:
    """Σ over the N real tokens of ``fn(x)`` for the input x ``[N, in]`` of each module → ``{name: [in]}``,
    and N. One decoder forward (no LM head) per ``chunk`` rows; forward pre-hooks read the inputs."""
    device = next(model.parameters()).device
    sums: dict[str, torch.Tensor] = {}
    real: dict[str, torch.Tensor] = {}

    def hook(name):
        def grab(_module, args):
            x = args[0][real["mask"]].float()  # [n_real, in]
            sums[name] = sums.get(name, 0) + fn(x).sum(0)
        return grab

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        for start in range(0, len(batch["input_ids"]), chunk):
            part = {k: batch[k][start:start + chunk].to(device) for k in ("input_ids", "attention_mask",
                                                                          "position_ids") if k in batch}
            real["mask"] = part["attention_mask"].bool()
            model.get_decoder()(**part, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {n: s.cpu() for n, s in sums.items()}, int(batch["attention_mask"].sum())


def input_magnitudes(model, batch: dict, module: str) -> torch.Tensor:
    """Mean |x| per unit of the input of ``layers[l].<module>`` over the real tokens: ``[L, in]``."""
    mods = {str(i): layer.get_submodule(module) for i, layer in enumerate(decoder_layers(model))}
    sums, n = input_sums(model, batch, mods, torch.abs)
    return torch.stack([sums[str(i)] for i in range(len(mods))]) / n


def mlp_activations(model, batch: dict) -> torch.Tensor:
    """MLP intermediate units (input of ``down_proj`` = act(gate)·up): mean |a| per unit, ``[L, I]``."""
    return input_magnitudes(model, batch, "mlp.down_proj")


def attention_outputs(model, batch: dict) -> torch.Tensor:
    """Attention output (input of ``o_proj``, heads concatenated): mean |a| per unit, ``[L, H·head_dim]``."""
    return input_magnitudes(model, batch, "self_attn.o_proj")


def top_count(k: float, units: int) -> int:
    """Units in the top K%: ⌈K·units⌉ (at least one)."""
    return max(1, math.ceil(k * units - 1e-9))


def top_share(magnitudes: torch.Tensor, k: float) -> torch.Tensor:
    """Fig 1a: Σ of the top ⌈k·I⌉ unit magnitudes / Σ of all, along the last dim (``[..., I]`` → ``[...]``)."""
    top = magnitudes.sort(-1, descending=True).values[..., :top_count(k, magnitudes.shape[-1])]
    return top.sum(-1) / magnitudes.sum(-1)


def concentration(magnitudes: dict[str, torch.Tensor], ks=SHARES) -> pd.DataFrame:
    """Long table (model, K, layer, share) from ``{label: [L, I] magnitudes}`` (Fig 1a)."""
    return pd.DataFrame([{"model": label, "K": k, "layer": layer, "share": float(s)}
                         for label, mag in magnitudes.items() for k in ks for layer, s in enumerate(top_share(mag, k))])


def concentration_summary(table: pd.DataFrame, fine_tuned: str, base: str) -> pd.DataFrame:
    """Per K: mean share over layers of each model, and in how many layers the fine-tuned one is higher."""
    wide = table.pivot_table(index=["K", "layer"], columns="model", values="share")
    out = wide.groupby("K").mean()[[fine_tuned, base]].add_prefix("mean share, ")
    out["layers where fine-tuned is higher"] = (wide[fine_tuned] > wide[base]).groupby("K").sum()
    out["layers"] = wide.groupby("K").size()
    return out


def shown_layers(num_layers: int) -> list[int]:
    """First, middle and last layer (0-based), as in the paper's Fig 2-3."""
    return sorted({0, num_layers // 2, num_layers - 1})


def sorted_units(magnitudes: torch.Tensor, layers) -> dict[int, np.ndarray]:
    """``{layer: [units] magnitudes sorted high → low}`` for Fig 2-3."""
    return {layer: magnitudes[layer].sort(descending=True).values.numpy() for layer in layers}


# -- unstructured pruning (Fig 1b) -------------------------------------------------------------

def decoder_linears(model, layers=None) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` of the decoder layers (``layers``: indices, default all), keyed ``"l.name"``."""
    blocks = decoder_layers(model)
    picked = range(len(blocks)) if layers is None else layers
    return {f"{i}.{name}": m for i in picked for name, m in blocks[i].named_modules() if isinstance(m, nn.Linear)}


def pruned_per_row(sparsity: float, in_features: int) -> int:
    """Weights zeroed in each output row: ⌊s·in⌋ (as Wanda's reference code)."""
    if not 0 <= sparsity <= 1:
        raise PruneRecError(f"sparsity must be in [0, 1], got {sparsity}")
    return math.floor(sparsity * in_features + 1e-9)


def zero_lowest(weight: torch.Tensor, score: torch.Tensor, sparsity: float) -> None:
    """Zero, in place, the ⌊s·in⌋ lowest-``score`` entries of every row of ``weight`` ``[out, in]``."""
    k = pruned_per_row(sparsity, weight.shape[1])
    if k:
        idx = torch.argsort(score, dim=1, stable=True)[:, :k]
        weight.scatter_(1, idx.to(weight.device), 0.0)


def wanda_scores(lin: nn.Linear, sq_sum: torch.Tensor) -> torch.Tensor:
    """S = |W| · ‖X_j‖₂ ``[out, in]``, from Σ_tokens x_j² ``[in]`` of the layer's calibration inputs."""
    return lin.weight.abs() * sq_sum.to(lin.weight.device).sqrt()[None, :]


@torch.no_grad()
def wanda_prune(model, batch: dict, sparsity: float, sequential: bool = True):
    """Wanda: zero the lowest |W|·‖X‖₂ ⌊s·in⌋ weights per output row of every decoder linear, in place.
    ``batch``: collated calibration samples (input_ids / attention_mask / position_ids ``[B, T]``);
    only real tokens count. ``sequential``: calibrate layer l after pruning layers < l (one
    truncated forward per layer); else all norms from one forward of the unpruned model.
    """
    L = len(decoder_layers(model))
    for group in ([[i] for i in range(L)] if sequential else [list(range(L))]):
        mods = decoder_linears(model, group)
        with temporary_layers(model, list(range(max(group) + 1))):
            sq, _ = input_sums(model, batch, mods, torch.square)
        for name, lin in mods.items():
            zero_lowest(lin.weight, wanda_scores(lin, sq[name]), sparsity)
    return model


@torch.no_grad()
def random_prune(model, sparsity: float, seed: int = 0):
    """Zero a uniformly random ⌊s·in⌋ weights per output row of every decoder linear (seeded), in place."""
    gen = torch.Generator().manual_seed(seed)
    for lin in decoder_linears(model).values():
        zero_lowest(lin.weight, torch.rand(lin.weight.shape, generator=gen), sparsity)
    return model


def prune(model, method: str, sparsity: float, batch: dict | None = None, seed: int = 0):
    """``method`` "wanda" (needs ``batch``) or "random" at ``sparsity``, in place."""
    if method == "wanda":
        return wanda_prune(model, batch, sparsity)
    if method == "random":
        return random_prune(model, sparsity, seed)
    raise PruneRecError(f"unknown pruning method {method!r}; use {' or '.join(METHODS)}")


def sparsity_of(model) -> float:
    """Share of exactly-zero weights over the decoder linears."""
    ws = [lin.weight for lin in decoder_linears(model).values()]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


# -- evaluation of the pruned teacher (Fig 1b) -------------------------------------------------

def teacher_on_rows(run: Run, rows: int = 200, progress: bool = False) -> EvalResult:
    """The teacher's stored evaluation (notebook 01) restricted to its first ``rows`` test rows."""
    full = evaluate_cached(run, "teacher", ensure(run, "teacher"), progress=progress)
    return first_rows(full, min(rows, full.metrics["n"]))


def pruned_result(run: Run, method: str, sparsity: float, samples: int = 100, rows: int = 200,
                  progress: bool = False) -> EvalResult:
    """The teacher pruned in memory by ``method`` at ``sparsity``, evaluated on the first ``rows``
    fixed test rows; cached as ``results/obs_<method>_s<s>_n<rows>.json`` (+ ranks), keyed by
    the evaluation settings (rows, search, precision, the teacher's and the data's identity),
    the method, the sparsity, the calibration samples and the seed."""
    prof = run.prof
    test = fixed_test_rows(run).iloc[:rows]
    name = f"obs_{method}_s{sparsity:g}_n{len(test)}"
    made = {"method": method, "sparsity": sparsity, "calibration_samples": samples if method == "wanda" else None,
            "seed": prof.seed}
    tdir = ensure(run, "teacher")
    settings = {**evaluation_settings(run, test, prof.length_penalty, False, model_identity(tdir)), **made}
    cached = cached_result(run.folder, name, settings)
    if cached is not None:
        return cached
    model, tok = load_model(tdir), load_tokenizer(tdir)
    model = model.to(run_device())
    batch = sample_batch(run, samples, "observe", tok) if method == "wanda" else None
    prune(model, method, sparsity, batch, prof.seed)
    measured = sparsity_of(model)
    model = model.to(DTYPES[prof.eval_dtype])
    return evaluate_resumable(run, model, tok, test, name, settings, prof.length_penalty, progress,
                              extra={**made, "measured_sparsity": measured})


def _row(label: str, sparsity: float, res: EvalResult, teacher: EvalResult) -> dict:
    ret = retention_table({"teacher": teacher, label: res}, "teacher").loc[label]
    return {"method": label, "sparsity": sparsity, **{m: res.metrics[m] for m in METRICS},
            "mean metric": float(np.mean([res.metrics[m] for m in METRICS])),
            **{f"retention {m}": ret[m] for m in METRICS}, "retention": ret["avg"], "n": res.metrics["n"],
            "users": res.metrics["users"]}


def sparsity_sweep(run: Run, sparsities=(0.1, 0.3, 0.5, 0.7), samples: int = 100, rows: int = 200,
                   methods=METHODS, progress: bool = False) -> pd.DataFrame:
    """Fig 1b table: one row per (method, sparsity) plus the unpruned teacher (sparsity 0), with
    HR/NDCG@10/20, their mean, retention per metric and ``retention`` (their mean, the paper's avg;
    NaN where the teacher has no hit on these rows)."""
    teacher = teacher_on_rows(run, rows, progress)
    rows = [_row("teacher", 0.0, teacher, teacher)]
    for method in methods:
        for s in tqdm(sparsities, desc=method, unit="level", disable=not progress):
            res = pruned_result(run, method, s, samples, teacher.metrics["n"], progress)
            rows.append(_row(method, s, res, teacher))
    return pd.DataFrame(rows)


def sweep_views(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`sparsity_sweep`'s table as the chapter shows it, in two tables that fit the text column: the
    metrics per (method, sparsity) with their test rows and users, and the retention of each metric."""
    keys = ["method", "sparsity"]
    return (table[[*keys, *METRICS, "mean metric", "n", "users"]].rename(columns={"n": "rows"}),
            table[[*keys, *(f"retention {m}" for m in METRICS), "retention"]])


def save_observations(path, mlp_summary: pd.DataFrame, attention_summary: pd.DataFrame, verdict: pd.DataFrame,
                      basis: str) -> None:
    """The findings of notebook 02 as JSON (``results/observations.json``), for the scorecard."""

    def records(df):
        return df.reset_index().to_dict(orient="records")

    atomic_write_text(path, json.dumps({"mlp_concentration": records(mlp_summary),
                                        "attention_concentration": records(attention_summary),
                                        "wanda_vs_random": records(verdict), "basis": basis}))
