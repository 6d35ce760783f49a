"""BIGRec prompt text, response-only labels, left truncation, and trie-consistent tokenisation."""

from prunerec_utils.data import get_dataset_config, read_split, sample_rows
from prunerec_utils.prompts import IGNORE, encode_example, joint_tokenisation_matches, prompt_text, target_ids

CFG = get_dataset_config("ml-100k")


def test_prompt_lists_quoted_history_and_ends_with_response_header():
    text = prompt_text(["Heat (1995)", "Fargo (1996)"], CFG)
    assert '"Heat (1995)", "Fargo (1996)"' in text
    assert text.endswith("### Response:\n") and "movies this user has watched" in text


def test_labels_cover_exactly_the_answer(tokenizer):
    ex = encode_example(tokenizer, ["Heat (1995)"], "Fargo (1996)", CFG)
    answer = target_ids(tokenizer, "Fargo (1996)")
    assert answer[-1] == tokenizer.eos_token_id
    labelled = [t for t in ex["labels"] if t != IGNORE]
    assert labelled == answer == ex["input_ids"][-len(answer):]
    assert ex["labels"][: -len(answer)] == [IGNORE] * (len(ex["input_ids"]) - len(answer))


def test_left_truncation_keeps_the_answer(tokenizer):
    history = [f"Movie number {i} (1990)" for i in range(10)]
    full = encode_example(tokenizer, history, "Fargo (1996)", CFG, cutoff_len=4096)
    cut = encode_example(tokenizer, history, "Fargo (1996)", CFG, cutoff_len=40)
    assert len(cut["input_ids"]) == 40 < len(full["input_ids"])
    assert cut["input_ids"] == full["input_ids"][-40:]


def test_joint_tokenisation_equals_pieces_on_real_titles(tokenizer, ml100k_splits):
    rows = sample_rows(read_split(ml100k_splits, "test"), 200, 0)
    assert all(joint_tokenisation_matches(tokenizer, h, t, CFG)
               for h, t in zip(rows["history_item_title"], rows["item_title"]))
