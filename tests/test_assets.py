"""Offline assets: packaged data and models are found; absent paper assets fail with one clear line."""

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.assets import TINY_QWEN2, load_model, movielens_dir, resolve_model


def test_movielens_ships_in_the_wheel():
    assert (movielens_dir("ml-100k") / "ml-100k.inter").exists()


def test_paper_model_absent_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEREC_MODELS", str(tmp_path))
    with pytest.raises(PruneRecError, match=r"Qwen2-0\.5B.*put the HF folder at .*Qwen2-0\.5B") as err:
        resolve_model("Qwen/Qwen2-0.5B")
    assert "\n" not in str(err.value)


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(PruneRecError, match="no config.json"):
        resolve_model(tmp_path)


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PruneRecError, match="cannot load model"):
        load_model(tmp_path)


def test_tiny_ci_model_is_qwen2_with_gqa_and_biases(tiny_model):
    cfg = tiny_model.config
    assert cfg.model_type == "qwen2" and cfg.num_hidden_layers == TINY_QWEN2["num_hidden_layers"]
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert tiny_model.model.layers[0].self_attn.q_proj.bias is not None


def test_movielens_files_in_data_raw_take_precedence(tmp_path, monkeypatch):
    from prunerec_utils import assets

    (tmp_path / "data/raw/ml-100k").mkdir(parents=True)
    (tmp_path / "data/raw/ml-100k/ml-100k.inter").write_text("user_id:token\n")
    monkeypatch.setattr(assets, "resolve", lambda p: tmp_path / p)
    assert assets.movielens_dir("ml-100k") == tmp_path / "data/raw/ml-100k"


def test_user_given_gguf_path_must_exist(tmp_path, monkeypatch):
    from prunerec_utils import PruneRecError, assets

    monkeypatch.setenv("PRUNEREC_SMOLLM2_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(PruneRecError, match="is not a file"):
        assets.smollm2_gguf()


def _copy_with_tensors(src, dst, edit):
    """Copy the model folder ``src`` to ``dst`` with ``edit(tensors)`` applied to its weights."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    tensors = load_file(weights)
    edit(tensors)
    save_file(tensors, weights, metadata={"format": "pt"})
    return dst


def test_checkpoint_missing_tensors_is_refused(tiny_model_dir, tmp_path):
    """A weights file without layer 1's tensors must not load as a half-random model."""
    def drop_layer(t):
        for k in [k for k in t if k.startswith("model.layers.1.")]:
            del t[k]

    broken = _copy_with_tensors(tiny_model_dir, tmp_path / "m", drop_layer)
    with pytest.raises(PruneRecError, match=r"cannot load model from .*m: .*missing.*model\.layers\.1\."):
        load_model(broken)


def test_checkpoint_with_unexpected_tensors_is_refused(tiny_model_dir, tmp_path):
    import torch

    def add(t):
        t["model.layers.99.mlp.up_proj.weight"] = torch.zeros(2, 2)

    broken = _copy_with_tensors(tiny_model_dir, tmp_path / "m", add)
    with pytest.raises(PruneRecError, match="unexpected.*model.layers.99"):
        load_model(broken)


def test_complete_checkpoint_still_loads(tiny_model_dir):
    assert load_model(tiny_model_dir).config.num_hidden_layers >= 2


def test_missing_or_broken_tokenizer_folder_is_one_line_error(tiny_model_dir, tmp_path):
    import shutil

    from prunerec_utils.assets import load_tokenizer

    with pytest.raises(PruneRecError, match=r"tokenizer folder .*no-such-folder not found") as err:
        load_tokenizer(tmp_path / "no-such-folder")
    assert "\n" not in str(err.value)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "truncated')
    with pytest.raises(PruneRecError, match=r"cannot load the tokenizer from .*broken: ") as err:
        load_tokenizer(broken)
    assert "\n" not in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PruneRecError, match=r"cannot load the tokenizer from .*empty: it has no tokenizer files") as err:
        load_tokenizer(empty)
    assert "\n" not in str(err.value)
