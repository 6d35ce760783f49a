"""Response-only loss, left-pad collation, and a real Trainer fine-tune of the tiny model."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunerec_utils.assets import load_model
from prunerec_utils.data import get_dataset_config, read_split, sample_rows
from prunerec_utils.method.training import RESPONSE_WIDTH, LeftPadCollator, response_loss, validation_loss
from prunerec_utils.pipeline.finetune import CHECKPOINTS, SUMMARY, finetune, tokenize_split
from prunerec_utils.pipeline.run import Run
from prunerec_utils.profiles import get_profile
from prunerec_utils.prompts import IGNORE

CFG = get_dataset_config("ml-100k")


@pytest.fixture(scope="module")
def tiny_data(tokenizer, ml100k_splits):
    train = tokenize_split(sample_rows(read_split(ml100k_splits, "train"), 48, 0), tokenizer, CFG, 512)
    valid = tokenize_split(sample_rows(read_split(ml100k_splits, "valid"), 16, 0), tokenizer, CFG, 512)
    return train, valid


def test_collator_left_pads_and_derives_positions():
    batch = LeftPadCollator(0)([{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [IGNORE, 6, 7]},
                                {"input_ids": [8], "attention_mask": [1], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, IGNORE, 8]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]


def test_the_trainer_s_batches_carry_the_response_width_as_a_host_int(tiny_model, tokenizer, tiny_data):
    feats = [tiny_data[0][i] for i in range(4)]
    plain = LeftPadCollator(tokenizer.pad_token_id)(feats)
    counted = LeftPadCollator(tokenizer.pad_token_id, count_response=True)(feats)
    assert RESPONSE_WIDTH not in plain  # scoring batches hold tensors only
    labelled = (plain["labels"] != IGNORE).any(0).nonzero().flatten().tolist()
    width = counted[RESPONSE_WIDTH]
    assert type(width) is int and width == plain["labels"].shape[1] - labelled[0] + 1
    with torch.no_grad():
        assert torch.equal(response_loss(tiny_model, counted), response_loss(tiny_model, plain))
    nothing = LeftPadCollator(0, count_response=True)([{"input_ids": [5], "attention_mask": [1], "labels": [IGNORE]}])
    assert RESPONSE_WIDTH not in nothing


def test_response_loss_equals_full_logit_loss(tiny_model, tokenizer, tiny_data):
    batch = LeftPadCollator(tokenizer.pad_token_id)([tiny_data[0][i] for i in range(4)])
    with torch.no_grad():
        ours = response_loss(tiny_model, batch)
        reference = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               position_ids=batch["position_ids"], labels=batch["labels"]).loss
    assert torch.isclose(ours, reference, rtol=1e-5)


def test_finetune_learns_saves_stock_folder_and_skips_rerun(tiny_model_dir, tokenizer, tiny_data, tmp_path):
    train, valid = tiny_data
    prof = get_profile("ci", epochs=2, batch_size=8, lr=3e-3)
    model = load_model(tiny_model_dir)
    before = validation_loss(model, tokenizer, valid)
    out = tmp_path / "teacher"
    summary = finetune(model, tokenizer, train, valid, out, prof, progress=False)
    assert summary["best_eval_loss"] < before
    assert not (tmp_path / "teacher.ckpt").exists()  # resume state is dropped once the model is final
    assert (out / "model.safetensors").exists() and (out / SUMMARY).exists()
    stock = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([train[0]["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(stock(ids).logits, model.eval()(ids).logits, atol=1e-5)
    # Trainer averages per-batch means, validation_loss weights tokens: close, not identical.
    assert abs(validation_loss(stock, tokenizer, valid) - summary["best_eval_loss"]) < 0.05
    again = finetune(load_model(tiny_model_dir), tokenizer, train, valid, out, prof, progress=False)
    assert again == json.loads((out / SUMMARY).read_text())


def test_finetune_resumes_from_last_checkpoint(tiny_model_dir, tokenizer, tiny_data, tmp_path):
    train, valid = tiny_data
    prof = get_profile("ci", epochs=2, batch_size=8)
    out = tmp_path / "teacher"
    finetune(load_model(tiny_model_dir), tokenizer, train, valid, out, prof, progress=False, keep_checkpoints=True)
    # Simulate a crash after epoch 1: drop the finished model and the epoch-2 checkpoint.
    import shutil

    shutil.rmtree(out)
    ckpts = sorted((tmp_path / "teacher.ckpt").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    shutil.rmtree(ckpts[-1])
    from prunerec_utils.pipeline.finetune import WALL

    (ckpts[-2] / WALL).write_text('{"seconds": 1000.0}')  # as if the first session had trained 1000 s
    summary = finetune(load_model(tiny_model_dir), tokenizer, train, valid, out, prof, progress=False)
    assert summary["resumed"] and summary["steps"] == int(ckpts[-1].name.split("-")[1])
    assert summary["seconds_before_resume"] == 1000.0 and summary["wall_seconds"] > 1000.0  # the whole training


def test_mid_epoch_checkpoint_resumes_to_the_uninterrupted_weights(tiny_model_dir, tokenizer, tiny_data, tmp_path):
    """save_steps: a run cut mid-epoch resumes from its step checkpoint and ends where an
    uninterrupted run ends; evaluation (and so the best-checkpoint choice) stays per epoch."""
    import shutil

    from safetensors.torch import load_file

    train, valid = tiny_data
    prof = get_profile("ci", epochs=1, batch_size=8, lr=3e-3, save_steps=2)  # 48 samples: 6 steps
    whole = finetune(load_model(tiny_model_dir), tokenizer, train, valid, tmp_path / "a", prof, progress=False,
                     keep_checkpoints=True)
    assert sum("eval_loss" in h for h in whole["log_history"]) == 1  # the step saves do not evaluate
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "a.ckpt").glob("checkpoint-*"))
    assert steps == [4, 6]  # 2 and 4 saved mid-epoch, 2 rotated out (save_total_limit)
    from prunerec_utils.pipeline.finetune import spent_before

    assert 0 < spent_before(tmp_path / "a.ckpt" / "checkpoint-4") <= whole["wall_seconds"]  # recorded at each save
    shutil.copytree(tmp_path / "a.ckpt" / "checkpoint-4", tmp_path / "b.ckpt" / "checkpoint-4")  # cut at step 5
    shutil.copy(tmp_path / "a.ckpt" / CHECKPOINTS, tmp_path / "b.ckpt" / CHECKPOINTS)  # of the same training
    cut = finetune(load_model(tiny_model_dir), tokenizer, train, valid, tmp_path / "b", prof, progress=False)
    assert cut["resumed"] and cut["steps"] == whole["steps"] == 6
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_stored_teacher_with_another_budget_base_or_data_is_refused(tmp_path, ml100k_splits):
    from prunerec_utils import PruneRecError
    from prunerec_utils.assets import resolve_model
    from prunerec_utils.identity import data_identity, model_identity
    from prunerec_utils.pipeline.finetune import training_settings
    from prunerec_utils.pipeline.stages import train_teacher
    from prunerec_utils.steps import record

    splits = tmp_path / "ml-100k" / "splits"
    shutil.copytree(ml100k_splits, splits)
    out = tmp_path / "ml-100k" / "ci" / "models" / "teacher"
    out.mkdir(parents=True)
    prof = get_profile("ci")
    settings = training_settings(prof, base_id=model_identity(resolve_model(prof.model)),
                                 data_id=data_identity(splits))
    (out / SUMMARY).write_text(json.dumps(record(settings, {"steps": 3})))
    assert train_teacher(Run("ml-100k", prof, tmp_path), progress=False)[1]["steps"] == 3  # same settings: reused
    with pytest.raises(PruneRecError, match="max_train 256 .asked 512."):
        train_teacher(Run("ml-100k", get_profile("ci", max_train=512), tmp_path), progress=False)
    (out / SUMMARY).write_text(json.dumps(record({**settings, "base_id": "other"}, {"steps": 3})))
    with pytest.raises(PruneRecError, match="base_id 'other'"):  # fine-tuned from another base model
        train_teacher(Run("ml-100k", prof, tmp_path), progress=False)
    (out / SUMMARY).write_text(json.dumps(record(settings, {"steps": 3})))
    with open(splits / "train.csv", "a") as f:  # the splits made again, differently
        f.write(open(splits / "train.csv").read().splitlines()[1] + "\n")
    with pytest.raises(PruneRecError, match="data_id"):
        train_teacher(Run("ml-100k", prof, tmp_path), progress=False)
    (out / SUMMARY).write_text(json.dumps({"profile": prof.to_dict(), "steps": 3}))  # made before records had settings
    with pytest.raises(PruneRecError, match="older version that kept no settings record; delete .*teacher "):
        train_teacher(Run("ml-100k", prof, tmp_path), progress=False)


def test_a_checkpoint_cut_off_mid_save_is_skipped(tmp_path, capsys):
    from prunerec_utils.pipeline.finetune import complete_checkpoint

    ckpt = tmp_path / "teacher.ckpt"
    for step, complete in ((8, True), (16, True), (24, False)):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
        (ckpt / f"checkpoint-{step}" / "model.safetensors").write_text("x")
        if complete:
            (ckpt / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert complete_checkpoint(ckpt) == ckpt / "checkpoint-16"
    assert not (ckpt / "checkpoint-24").exists() and "checkpoint-24: cut off mid-save" in capsys.readouterr().out
    assert complete_checkpoint(tmp_path / "none.ckpt") is None


def test_training_resumes_past_a_checkpoint_cut_off_mid_save(tiny_model_dir, tokenizer, tiny_data, tmp_path):
    """A run killed while writing its second checkpoint: the re-run resumes from the first."""
    from prunerec_utils.assets import load_model

    prof = get_profile("ci", epochs=2, batch_size=8, grad_accum=1, save_steps=0)
    train, valid = tiny_data
    out = tmp_path / "teacher"
    finetune(load_model(tiny_model_dir), tokenizer, train, valid, out, prof, progress=False, keep_checkpoints=True)
    ckpt = tmp_path / "teacher.ckpt"
    last = max(ckpt.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    (last / "trainer_state.json").unlink()  # the save was cut before its last file
    shutil.rmtree(out)
    summary = finetune(load_model(tiny_model_dir), tokenizer, train, valid, out, prof, progress=False)
    assert summary["resumed"] and not ckpt.exists()


def test_compiled_bf16_step_keeps_fp32_masters_and_learns_like_fp32(tiny_model_dir, tokenizer, tiny_data, tmp_path,
                                                                   bf16_units):
    """train_precision="bf16" with train_compile: bf16 weights, fp32 master weights and moments in
    the resumable optimizer state, length-grouped batches, the model compiled by the Trainer; it
    learns as the fp32 step does and saves a stock-loadable bf16 folder."""
    from prunerec_utils.pipeline.finetune import training_args

    train, valid = tiny_data
    fp32 = get_profile("ci", epochs=2, batch_size=8, lr=3e-3)
    bf16 = get_profile("ci", epochs=2, batch_size=8, lr=3e-3, train_precision="bf16", train_compile=True)
    assert training_args(tmp_path / "x", bf16, False).torch_compile
    assert training_args(tmp_path / "x", bf16, False).train_sampling_strategy == "group_by_length"
    assert training_args(tmp_path / "x", fp32, False).train_sampling_strategy == "random"
    assert not training_args(tmp_path / "x", bf16, False).bf16  # no autocast over bf16 weights
    assert training_args(tmp_path / "x", get_profile("ci", train_precision="autocast"), False).bf16
    before = validation_loss(load_model(tiny_model_dir), tokenizer, valid)
    ref = finetune(load_model(tiny_model_dir), tokenizer, train, valid, tmp_path / "a", fp32, progress=False)
    ours = finetune(load_model(tiny_model_dir), tokenizer, train, valid, tmp_path / "b", bf16, progress=False,
                    keep_checkpoints=True)
    state = torch.load(next((tmp_path / "b.ckpt").glob("checkpoint-*")) / "optimizer.pt", weights_only=False)
    moments = next(iter(state["inner"]["state"].values()))
    assert moments["exp_avg"].dtype == torch.float32 and state["masters"][0][0].dtype == torch.float32
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / "b")
    assert stock.dtype == torch.bfloat16
    after = validation_loss(stock.float(), tokenizer, valid)
    assert after < before - 0.5 and abs(ours["best_eval_loss"] - ref["best_eval_loss"]) < 0.05 * ref["best_eval_loss"]


def test_bf16_step_rejects_an_unknown_precision():
    from prunerec_utils import PruneRecError

    with pytest.raises(PruneRecError, match="train_precision must be one of"):
        get_profile("ci", train_precision="fp8")


def test_checkpoints_of_another_training_are_not_resumed(tmp_path, capsys):
    """A run cut mid-training, then asked again with other settings (e.g. another lr): its
    checkpoints used to be resumed as if they belonged to the new training."""
    from prunerec_utils.pipeline.finetune import CHECKPOINTS, complete_checkpoint

    ckpt = tmp_path / "teacher.ckpt"
    assert complete_checkpoint(ckpt, {"lr": 1e-3}) is None  # a fresh training records its settings
    (ckpt / "checkpoint-8").mkdir(parents=True)
    (ckpt / "checkpoint-8" / "trainer_state.json").write_text("{}")
    assert complete_checkpoint(ckpt, {"lr": 1e-3}) == ckpt / "checkpoint-8"  # same training: resumed
    assert complete_checkpoint(ckpt, {"lr": 3e-4}) is None  # another training: removed, not resumed
    assert not (ckpt / "checkpoint-8").exists() and "made by another training" in capsys.readouterr().out
    assert json.loads((ckpt / CHECKPOINTS).read_text())["settings"] == {"lr": 3e-4}
    shutil.rmtree(ckpt)
    (ckpt / "checkpoint-8").mkdir(parents=True)  # checkpoints without a record (older version): not trusted
    (ckpt / "checkpoint-8" / "trainer_state.json").write_text("{}")
    assert complete_checkpoint(ckpt, {"lr": 3e-4}) is None and not (ckpt / "checkpoint-8").exists()


def test_training_settings_are_made_in_one_place_and_idempotent():
    from prunerec_utils.pipeline.finetune import TRAINING_FIELDS, training_settings

    prof = get_profile("ci")
    once = training_settings(prof, base_id="abc", data_id="def")
    assert set(once) == set(TRAINING_FIELDS) | {"base_id", "data_id"} and once["max_train"] == prof.max_train
    assert training_settings(prof, **once) == once  # finetune applies it again to what a caller made: no change
    assert training_settings(prof, max_train=64)["max_train"] == 64  # a distillation's own budget wins


def test_two_trainings_of_the_same_settings_give_the_same_model(tiny_model_dir, tokenizer, tiny_data, tmp_path):
    """Seeded and deterministic: a step re-derived on a fresh machine (another shard) is the same model, by
    content hash, so shards that each train the teacher agree on it."""
    from prunerec_utils.identity import model_identity

    train, valid = tiny_data
    prof = get_profile("ci", epochs=1, batch_size=8, lr=3e-3)
    first = finetune(load_model(tiny_model_dir), tokenizer, train, valid, tmp_path / "a", prof, progress=False)
    second = finetune(load_model(tiny_model_dir), tokenizer, train, valid, tmp_path / "b", prof, progress=False)
    assert model_identity(tmp_path / "a") == model_identity(tmp_path / "b")
    assert first["best_eval_loss"] == second["best_eval_loss"]
