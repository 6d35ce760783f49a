"""Vocabulary pruning: the restricted tokenizer encodes the corpus exactly as before (renumbered),
the model's kept logits are unchanged, and the result reloads with stock transformers."""

import copy

import pytest
import torch
from tokenizers.pre_tokenizers import Whitespace
from transformers import AutoModelForCausalLM, AutoTokenizer

from prunerec_utils import PruneRecError
from prunerec_utils.assets import load_model
from prunerec_utils.data import get_dataset_config, read_items, read_split
from prunerec_utils.method.pretokens import distinct_pieces
from prunerec_utils.method.surgery import param_counts, param_formula, prune_vocab
from prunerec_utils.method.vocab import (changed_encodings, closure, corpus_token_ids, encoding_mismatches,
                                         new_item_cost, restrict_tokenizer)
from prunerec_utils.prompts import prompt_text, target_ids, target_text


def remap(ids: list[int], old_of_new: torch.Tensor) -> list[int]:
    """Old ids → new ids (every id must be kept): the pruned vocabulary's ids of a text encoded before."""
    table = {int(o): n for n, o in enumerate(old_of_new.tolist())}
    try:
        return [table[i] for i in ids]
    except KeyError as exc:
        raise PruneRecError(f"token id {exc.args[0]} was pruned from the vocabulary") from None



@pytest.fixture(scope="module")
def corpus(ml100k_splits):
    cfg = get_dataset_config("ml-100k")
    hist = read_split(ml100k_splits, "test")["history_item_title"].tolist()[:300]
    titles = read_items(ml100k_splits)["item_title"].tolist()
    return [prompt_text(h, cfg) for h in hist], titles


def encoded_ids(tokenizer, texts: list[str]) -> set[int]:
    """The reference: every id of every text, encoded whole."""
    return {i for ids in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in ids}


@pytest.fixture(scope="module")
def texts(corpus):
    prompts, titles = corpus
    return prompts + [target_text(t) for t in titles]


@pytest.fixture(scope="module")
def pieces(tokenizer, texts):
    return distinct_pieces(tokenizer, texts, workers=1)


@pytest.fixture(scope="module")
def restricted(tokenizer, pieces):
    used = corpus_token_ids(tokenizer, pieces) | {tokenizer.eos_token_id}
    keep = closure(tokenizer, used)
    new_tok, old_of_new = restrict_tokenizer(tokenizer, keep)
    return used, keep, new_tok, old_of_new


def test_the_pieces_of_a_corpus_use_the_ids_its_texts_use(tokenizer, texts, pieces):
    assert pieces.texts == len(texts) and not pieces.whole
    assert len(pieces.distinct) < sum(len(t.split()) for t in texts) // 5  # few distinct pieces, many words
    assert corpus_token_ids(tokenizer, pieces) == encoded_ids(tokenizer, texts)


def test_worker_processes_find_the_same_pieces_and_texts_with_added_tokens_stay_whole(tokenizer, texts):
    special = f"{texts[1]}{tokenizer.eos_token}tail"
    corpus = texts[:100] + [special] + texts[100:150]
    in_process = distinct_pieces(tokenizer, corpus, workers=1)
    assert in_process.whole == (special,)
    assert corpus_token_ids(tokenizer, in_process) == encoded_ids(tokenizer, corpus)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("prunerec_utils.method.pretokens.CHUNK", 40)  # four tasks for two spawned workers
        assert distinct_pieces(tokenizer, corpus, workers=2) == in_process


def test_corpus_encodes_identically_up_to_renumbering(tokenizer, corpus, texts, pieces, restricted):
    prompts, titles = corpus
    used, keep, new_tok, old_of_new = restricted
    assert used <= set(keep) and len(keep) < len(tokenizer) // 2
    assert len(new_tok) == len(keep)
    assert changed_encodings(tokenizer, new_tok, old_of_new, pieces) == []
    assert encoding_mismatches(tokenizer, new_tok, old_of_new, texts) == 0  # the whole texts agree
    for t in titles[:50]:  # the answer unit the trie holds, EOS included
        assert target_ids(new_tok, t) == remap(target_ids(tokenizer, t), old_of_new)
    for name in ("eos_token", "pad_token", "bos_token"):
        assert getattr(new_tok, name) == getattr(tokenizer, name)
        assert old_of_new[getattr(new_tok, f"{name}_id")] == getattr(tokenizer, f"{name}_id")


def test_dropping_merge_ancestors_would_break_encoding(tokenizer, corpus):
    """The closure is needed: keeping only the output tokens (no merge chain) changes encodings,
    and the check on the distinct pieces sees it as the check on whole texts does."""
    prompts, titles = corpus
    pieces = distinct_pieces(tokenizer, prompts[:50], workers=1)
    used = corpus_token_ids(tokenizer, pieces)
    bare = sorted(used | set(closure(tokenizer, set())))  # outputs + bytes + specials, no ancestors
    new_tok, old_of_new = restrict_tokenizer(tokenizer, bare)
    assert encoding_mismatches(tokenizer, new_tok, old_of_new, prompts[:50]) > 0
    changed = changed_encodings(tokenizer, new_tok, old_of_new, pieces)
    assert changed and all(isinstance(c, str) and "Ġ" not in c for c in changed)  # readable text, not byte chars
    assert any(c in "".join(prompts[:50]) for c in changed)


def test_pieces_are_compared_only_between_tokenizers_that_split_alike(tokenizer, pieces, restricted):
    _, _, new_tok, old_of_new = restricted
    other = copy.deepcopy(new_tok)
    other.backend_tokenizer.pre_tokenizer = Whitespace()
    with pytest.raises(PruneRecError, match="split texts differently"):
        changed_encodings(tokenizer, other, old_of_new, pieces)


def test_unseen_text_still_encodes_through_bytes(tokenizer, restricted):
    _, _, new_tok, old_of_new = restricted
    text = '"Zyzzyva Quixotic Xylophone (2031)"\n'
    ids = new_tok(text, add_special_tokens=False)["input_ids"]
    assert new_tok.decode(ids) == text
    cost = new_item_cost(tokenizer, new_tok, old_of_new, ["Zyzzyva Quixotic Xylophone (2031)"])
    assert cost["share_needing_pruned_tokens"] == 1.0
    assert cost["mean_tokens_restricted"] > cost["mean_tokens_full"]


def _kept_ids(tokenizer, old_of_new, prompts):
    old = torch.tensor([tokenizer(prompts[0], add_special_tokens=False)["input_ids"][:40]])
    return old, torch.tensor([remap(old[0].tolist(), old_of_new)])


@pytest.mark.parametrize("tied", [False, True])
def test_kept_logits_unchanged_and_stock_reload(tiny_model_dir, tokenizer, corpus, restricted, tmp_path, tied):
    _, _, new_tok, old_of_new = restricted
    model = load_model(tiny_model_dir)
    if tied:
        model.config.tie_word_embeddings = True
        model.tie_weights()
        model.lm_head.weight = model.get_input_embeddings().weight
    old_ids, new_ids = _kept_ids(tokenizer, old_of_new, corpus[0])
    with torch.no_grad():
        full = model(old_ids).logits
    before = full[..., old_of_new]
    prune_vocab(model, old_of_new)
    assert model.config.vocab_size == len(old_of_new)
    assert param_counts(model) == param_formula(model.config)
    assert model.config.eos_token_id is None or old_of_new[model.config.eos_token_id] == tokenizer.eos_token_id
    with torch.no_grad():
        after = model(new_ids).logits
    assert torch.allclose(after, before, atol=1e-5)
    # the softmax normaliser changes: every kept token's log-prob rises by -log(kept mass), per position
    full_lp = full.log_softmax(-1)
    shift = after.log_softmax(-1) - full_lp[..., old_of_new]
    kept_mass = full_lp[..., old_of_new].logsumexp(-1, keepdim=True)
    assert torch.allclose(shift, -kept_mass.expand_as(shift), atol=1e-4) and bool((shift > 0).all())
    model.save_pretrained(tmp_path)
    new_tok.save_pretrained(tmp_path)
    stock = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    stock_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert stock_tok(corpus[0][0], add_special_tokens=False)["input_ids"][:40] == new_ids[0].tolist()
    with torch.no_grad():
        assert torch.allclose(stock(new_ids).logits, after, atol=1e-5)


def test_special_token_must_be_kept(tiny_model_dir, tokenizer):
    model = load_model(tiny_model_dir)
    eos = model.config.eos_token_id if model.config.eos_token_id is not None else tokenizer.eos_token_id
    model.config.eos_token_id = eos
    keep = [i for i in range(200) if i != eos]
    with pytest.raises(PruneRecError, match="special token"):
        prune_vocab(model, keep)
    with pytest.raises(PruneRecError, match="distinct"):
        prune_vocab(load_model(tiny_model_dir), [3, 3, 4])


def test_workers_follow_the_usable_cores_and_the_corpus_size(monkeypatch):
    from prunerec_utils.method import pretokens

    monkeypatch.setattr(pretokens.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert [pretokens.default_workers(n) for n in (10, 100_000, 10_000_000)] == [1, 2, 3]
    monkeypatch.delattr(pretokens.os, "sched_getaffinity")  # macOS has no affinity call
    monkeypatch.setattr(pretokens.os, "cpu_count", lambda: 4)
    assert pretokens.default_workers(10_000_000) == 4


def test_worker_processes_start_from_a_notebook_kernel_too(tmp_path):
    """Chapter 07 splits ml-1m's texts in spawned workers from inside a papermill kernel (whose
    ``__main__`` is no script): the same pieces as in one process."""
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import prunerec_utils.method.pretokens as pt\n"
        "from prunerec_utils.assets import load_tokenizer, tiny_qwen2_dir\n"
        "tok = load_tokenizer(tiny_qwen2_dir())\n"
        "texts = [f'She watched Movie {i} (19{i % 97:02d}), then liked it.' for i in range(400)]\n"
        "pt.CHUNK = 50\n"
        "assert pt.distinct_pieces(tok, texts, workers=2) == pt.distinct_pieces(tok, texts, workers=1)\n"
        "print('pieces', len(pt.distinct_pieces(tok, texts, workers=1).distinct))")]
    nbformat.write(nb, tmp_path / "spawn.ipynb")
    pm.execute_notebook(str(tmp_path / "spawn.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        progress_bar=False, cwd=str(tmp_path))
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    assert any(o.get("text", "").startswith("pieces ") for o in out), out
