"""Our constrained beam-search kernel against ``transformers.generate`` (the reference)."""

import pytest
import torch

from prunerec_utils.data import get_dataset_config, read_items, read_split, sample_rows
from prunerec_utils.method.beam_search import TensorTrie, constrained_beam_search
from prunerec_utils.pipeline.evaluate import TitleTrie, beam_search_generate, kernel_beams
from prunerec_utils.prompts import prompt_ids, target_ids

CFG = get_dataset_config("ml-100k")
SENTINEL = -1e6  # generate's filler beams score about -1e9 (divided by the length penalty term)


@pytest.fixture(scope="module")
def setup(tokenizer, ml100k_splits):
    trie = TitleTrie(tokenizer, read_items(ml100k_splits)["item_title"].tolist())
    rows = sample_rows(read_split(ml100k_splits, "test"), 36, 3)
    return trie, [prompt_ids(tokenizer, h, CFG) for h in rows["history_item_title"]]


def test_tensor_trie_matches_dict_trie(tokenizer, setup):
    trie, _ = setup
    tt = TensorTrie(trie)
    ids = target_ids(tokenizer, next(iter(trie.titles.values())))
    node = 0
    for i, tok in enumerate(ids):
        lo, hi = int(tt.offsets[node]), int(tt.offsets[node + 1])
        allowed = tt.tokens[lo:hi].tolist()
        assert allowed == trie.next[tuple(ids[:i])]
        node = int(tt.children[lo + allowed.index(tok)])
    assert node == -1  # EOS edges lead out of the trie


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_kernel_lists_equal_generate(tiny_model, tokenizer, setup, length_penalty):
    trie, prompts = setup
    tt = TensorTrie(trie)
    ours = []
    for i in range(0, len(prompts), 12):  # several users share each kernel call
        ours += kernel_beams(tiny_model, tokenizer, prompts[i:i + 12], trie, 20, length_penalty, tt)
    ref = []
    for i in range(0, len(prompts), 6):
        ref += beam_search_generate(tiny_model, tokenizer, prompts[i:i + 6], trie, 20, length_penalty,
                                    share_prompt=False)
    exact = 0
    for mine, theirs in zip(ours, ref):
        titles = [t for t, _ in mine]
        assert None not in titles and len(set(titles)) == 20
        real = [(t, s) for t, s in theirs if s > SENTINEL]
        if len(real) == 20:  # generate finished normally: the same ranked list
            assert titles == [t for t, _ in real]
            exact += 1
        # Where generate's filler beams took slots and ended its search early, ours is a superset;
        # every hypothesis generate did finish is ours too, with the same score.
        scores = dict(mine)
        assert all(t in scores and abs(scores[t] - s) < 1e-4 for t, s in real)
    if length_penalty == 0.0:  # the default ranking: generate rarely hits its filler-beam artefact
        assert exact >= len(ours) * 3 // 4


def test_kernel_returns_sorted_scores_and_answer_ids(tiny_model, tokenizer, setup):
    trie, prompts = setup
    for user in constrained_beam_search(tiny_model, prompts[:3], trie, 8, 0.0, tokenizer.pad_token_id):
        scores = [s for _, s in user]
        assert scores == sorted(scores, reverse=True) and len(user) == 8
        assert all(ids[-1] == tokenizer.eos_token_id and trie.title_of(ids) for ids, _ in user)


def test_banned_titles_never_appear_and_empty_ban_changes_nothing(tiny_model, tokenizer, setup):
    trie, prompts = setup
    free = kernel_beams(tiny_model, tokenizer, prompts[:4], trie, 20)
    ban = [[t for t, _ in user[:5]] for user in free]  # ban each user's own top five
    banned = kernel_beams(tiny_model, tokenizer, prompts[:4], trie, 20, banned_titles=ban)
    for user, gone in zip(banned, ban):
        titles = [t for t, _ in user]
        assert not set(titles) & set(gone)
        # a ban can leave beam search short of 20 finished beams; it never pads with fillers
        assert None not in titles and len(set(titles)) == len(titles) >= 10
    assert kernel_beams(tiny_model, tokenizer, prompts[:4], trie, 20, banned_titles=[[]] * 4) == free


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_shared_prompt_cache_gives_the_lists_of_the_copied_one(tiny_model, tokenizer, setup, length_penalty):
    """The shared-prompt layout is exact: the same ranked lists and scores as the reference layout
    (prompt cache copied to every beam), in several-user batches where users finish at different steps."""
    trie, prompts = setup
    tt = TensorTrie(trie)
    pad = tokenizer.pad_token_id
    for i in range(0, len(prompts), 9):
        shared = constrained_beam_search(tiny_model, prompts[i:i + 9], trie, 20, length_penalty, pad, tt)
        copied = constrained_beam_search(tiny_model, prompts[i:i + 9], trie, 20, length_penalty, pad, tt,
                                         prompt_cache="copied")
        for mine, ref in zip(shared, copied):
            assert [ids for ids, _ in mine] == [ids for ids, _ in ref]
            assert max(abs(a - b) for (_, a), (_, b) in zip(mine, ref)) < 1e-4


def test_shared_prompt_attention_restores_the_model_and_refuses_outside_the_search(tiny_model, tokenizer, setup):
    from prunerec_utils.method.beam_search import ATTENTION

    trie, prompts = setup
    before = tiny_model.config._attn_implementation
    constrained_beam_search(tiny_model, prompts[:2], trie, 4, 0.0, tokenizer.pad_token_id)
    assert tiny_model.config._attn_implementation == before == "sdpa"
    tiny_model.set_attn_implementation(ATTENTION)
    try:
        with pytest.raises(RuntimeError, match="only runs inside constrained_beam_search"):
            tiny_model(input_ids=torch.tensor([prompts[0]]))
    finally:
        tiny_model.set_attn_implementation(before)
    with pytest.raises(ValueError, match="prompt_cache"):
        constrained_beam_search(tiny_model, prompts[:1], trie, 4, 0.0, tokenizer.pad_token_id, prompt_cache="x")
