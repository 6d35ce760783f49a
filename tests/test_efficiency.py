"""Efficiency measurements: the FLOP model adds up, the measurements are complete, the worker
process reports its model's own counts, and the ratio table is relative to its reference.
No wall-clock limits: speed is the benchmark's business (benchmarks/efficiency.py)."""

import json

import pytest

from prunerec_utils import PruneRecError
from prunerec_utils.method.surgery import head_dim, param_counts, prune_heads, prune_mlp
from prunerec_utils.pipeline.evaluate import TitleTrie
from prunerec_utils.prompts import prompt_ids
from prunerec_utils.studies.efficiency import (findings, flop_costs, folder_mb, formatted, forward_flops, measure,
                                               measure_in_subprocess, ratio_table)


def test_one_token_costs_twice_the_matmul_weights_plus_attention(tiny_model):
    cfg = tiny_model.config
    d, hd, L = cfg.hidden_size, head_dim(cfg), cfg.num_hidden_layers
    H, G = cfg.num_attention_heads, cfg.num_key_value_heads
    biases = L * (H * hd + 2 * G * hd)  # qwen2: q/k/v biases
    norms = L * 2 * d + d
    weights = param_counts(tiny_model)["non_embedding"] - biases - norms
    assert forward_flops(cfg, 1, 0, 0) == 2 * weights + 4 * L * H * hd * 1
    assert forward_flops(cfg, 1, 0, 1) - forward_flops(cfg, 1, 0, 0) == 2 * cfg.vocab_size * d


def test_prefill_equals_token_by_token_decoding(tiny_model):
    cfg, T = tiny_model.config, 37
    steps = sum(forward_flops(cfg, 1, t, 0) for t in range(T))
    assert forward_flops(cfg, T, 0, 0) == pytest.approx(steps)
    assert forward_flops(cfg, 1, 5, 1, rows=20) == 20 * forward_flops(cfg, 1, 5, 1)
    costs = flop_costs(cfg, T, 20, 6)
    assert costs["recommend_s"] == pytest.approx(costs["prefill_s"] + 6 * costs["beam_step_s"])


def _prompts(tokenizer, ml100k_splits, n=3):
    from prunerec_utils.data import get_dataset_config, read_split

    cfg = get_dataset_config("ml-100k")
    hist = read_split(ml100k_splits, "test")["history_item_title"].tolist()[:n]
    return [prompt_ids(tokenizer, h, cfg, 200) for h in hist]


def test_measure_reports_every_quantity(tiny_model, tokenizer, ml100k_splits):
    from prunerec_utils.data import read_items

    titles = read_items(ml100k_splits)["item_title"].tolist()[:200]
    trie = TitleTrie(tokenizer, titles)
    res = measure(tiny_model, _prompts(tokenizer, ml100k_splits), trie, num_beams=4, batch=2, repeats=2, warmup=1)
    for key in ("prefill_s", "decode_s", "beam_step_s", "recommend_s", "users_per_s"):
        assert res[key] > 0, key
    assert 1 <= res["search_steps"] <= trie.depth
    assert res["users"] == 3
    no_search = measure(tiny_model, _prompts(tokenizer, ml100k_splits, 1), None, num_beams=4, repeats=1, warmup=0)
    assert "recommend_s" not in no_search and no_search["beam_step_s"] > 0


def test_worker_process_reports_its_model(tiny_model_dir, tiny_model, ml100k_splits):
    from prunerec_utils.data import read_items, read_split

    job = {"model": str(tiny_model_dir), "dataset": "ml-100k", "cutoff_len": 256,
           "histories": read_split(ml100k_splits, "test")["history_item_title"].tolist()[:2],
           "titles": read_items(ml100k_splits)["item_title"].tolist()[:100], "num_beams": 4, "batch": 2,
           "repeats": 1, "warmup": 0}
    res = measure_in_subprocess(job)
    assert res["params"] == param_counts(tiny_model)
    assert res["disk_mb"] == pytest.approx(folder_mb(tiny_model_dir)) and res["disk_mb"] > 0
    assert res["peak_mb"] > 0 and res["device"].startswith("cpu")
    assert res["config"]["num_hidden_layers"] == tiny_model.config.num_hidden_layers
    with pytest.raises(PruneRecError, match="worker failed"):
        measure_in_subprocess({**job, "model": str(tiny_model_dir / "missing")})


def _fake(model, seconds: float, steps: float = 5.0) -> dict:
    from prunerec_utils.method.surgery import head_dim as hdim

    cfg = model.config
    conf = {k: getattr(cfg, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                         "num_key_value_heads", "intermediate_size", "vocab_size")}
    conf["head_dim"] = hdim(cfg)
    return {"prompt_tokens": 100, "prefill_s": seconds, "decode_s": seconds / 10, "beam_step_s": seconds / 5,
            "recommend_s": seconds * 3, "search_steps": steps, "users_per_s": 1 / seconds, "peak_mb": 100 * seconds,
            "disk_mb": 10.0, "params": param_counts(model), "config": conf}


def test_ratio_table_is_relative_to_the_reference(tiny_model_dir):
    from prunerec_utils.assets import load_model

    big, small = load_model(tiny_model_dir), load_model(tiny_model_dir)
    H, L = small.config.num_attention_heads, small.config.num_hidden_layers
    prune_heads(small, [list(range(H // 2))] * L)
    prune_mlp(small, [list(range(small.config.intermediate_size // 4))] * L)
    table = ratio_table({"teacher": _fake(big, 2.0), "pruned": _fake(small, 1.0)}, "teacher", num_beams=20)
    ref, pr = table.loc["teacher"], table.loc["pruned"]
    for col in ("prefill speed-up", "decode FLOP bound", "recommend FLOP bound", "throughput speed-up"):
        assert ref[col] == pytest.approx(1.0)
    assert pr["prefill speed-up"] == pytest.approx(2.0) and pr["throughput speed-up"] == pytest.approx(2.0)
    assert pr["memory ratio"] == pytest.approx(0.5)
    assert pr["prefill FLOP bound"] > 1 and pr["decode FLOP bound"] > 1
    assert json.loads(table.to_json())  # serialisable for the results file


def _synthetic(layers: int, kv_heads: int, inter: int, vocab: int, times: dict, params: int) -> dict:
    """A worker result for a made-up geometry (hidden 64, 4 query heads of 16 dims)."""
    conf = {"hidden_size": 64, "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": kv_heads,
            "intermediate_size": inter, "vocab_size": vocab, "head_dim": 16}
    return {"prompt_tokens": 50, "search_steps": 10, **{f"{k}_s": v for k, v in times.items()},
            "users_per_s": 1 / times["recommend"], "peak_mb": 10.0 * layers * kv_heads, "disk_mb": params / 1e5,
            "params": {"total": params + 64 * vocab, "embedding": 64 * vocab, "non_embedding": params},
            "config": conf}


def test_findings_name_the_step_nearest_its_bound_the_kv_growth_and_the_vocabulary_cut():
    from types import SimpleNamespace

    ones = dict.fromkeys(("prefill", "decode", "beam_step", "recommend"), 1.0)
    small = dict(layers=2, kv_heads=4, inter=32, vocab=1000)
    bound = {k[:-2]: v for k, v in flop_costs(SimpleNamespace(**_synthetic(8, 2, 128, 1000, ones, 1)["config"]),
                                              50, 20, 10).items()}
    own = {k[:-2]: v for k, v in flop_costs(SimpleNamespace(**_synthetic(**small, times=ones, params=1)["config"]),
                                            50, 20, 10).items()}
    # the small model reaches its bound exactly on decode and half of it everywhere else
    times = {s: (own[s] / bound[s]) * (1 if s == "decode" else 2) for s in ones}
    results = {"teacher": _synthetic(8, 2, 128, 1000, ones, 8000),
               "wide": _synthetic(8, 4, 128, 1000, dict(ones, recommend=2.0), 9000),
               "final": _synthetic(**small, times=times, params=1000),
               "final_vocab": _synthetic(2, 4, 32, 100, dict(times, decode=times["decode"] / 2), 1000)}
    table = ratio_table(results, "teacher", num_beams=20)
    assert table.loc["wide", "KV cache ratio"] == pytest.approx(2.0)
    assert table.loc["final", "KV cache ratio"] == pytest.approx(0.5)
    said = findings(table.drop(index="final_vocab"))
    assert said[0].startswith("final: decode (") and "100%" in said[0] and "the farthest" in said[0]
    assert "decode" not in said[0].split("closest")[1]  # the farthest step is another one
    assert [s.split(" ")[0] for s in said[1:]] == ["wide"]  # only the model with a larger KV cache
    assert "batch throughput 0.50×" in said[1]
    with_vocab = findings(table)
    assert with_vocab[0].startswith("final_vocab:")  # equal non-embedding count, fewer parameters in all
    assert any(s.startswith("vocabulary pruning (final → final_vocab)") and
               f"decode {1000 * times['decode']:.1f} → {500 * times['decode']:.1f} ms" in s for s in with_vocab)


def test_formatted_table_reads_as_counts_times_and_ratios():
    results = {"teacher": _synthetic(8, 2, 128, 1000, dict.fromkeys(("prefill", "decode", "recommend"), 1.0),
                                     1234567)}
    shown = formatted(ratio_table(results, "teacher", num_beams=20))
    col = shown["teacher"]
    assert col["non-embedding params"] == "1,234,567" and col["prefill ms"] == "1,000.0"
    assert col["prefill speed-up"] == "1.00" and col["KV cache ratio"] == "1.00"


def test_a_benchmark_is_saved_where_the_findings_read_it(tmp_path):
    from prunerec_utils.pipeline.run import Run
    from prunerec_utils.profiles import get_profile
    from prunerec_utils.studies.efficiency import benchmark_file, save_benchmark

    run = Run("ml-100k", get_profile("ci"), tmp_path)
    path = save_benchmark(run, {"device": "cpu", "users": 2}, "cpu")
    assert path == benchmark_file(run, "cpu") == run.folder / "results" / "efficiency_cpu.json"
    assert json.loads(path.read_text()) == {"device": "cpu", "users": 2}
