"""BIGRec prompt and target text (book/method.md, method-recommender) and their tokenisation with a response-only loss mask.

Prompt and target are tokenised separately and concatenated, so the token ids of a target
inside a training sequence are exactly the ids the evaluator's title trie holds.
"""

from __future__ import annotations

from .recipe import DatasetConfig

HEADER = ("Below is an instruction that describes a task, paired with an input that provides "
          "further context. Write a response that appropriately completes the request.\n\n")
IGNORE = -100


def instruction(cfg: DatasetConfig) -> str:
    return (f"Given the {cfg.items_word} this user has {cfg.verb_past} in order, "
            f"write the next {cfg.item_word} the user will {cfg.verb}.")


def prompt_text(history_titles: list[str], cfg: DatasetConfig) -> str:
    """Alpaca-style prompt ending with the response header; history titles quoted, ", "-joined."""
    listed = ", ".join(f'"{t}"' for t in history_titles)
    return f"{HEADER}### Instruction:\n{instruction(cfg)}\n\n### Input:\n{listed}\n\n### Response:\n"


def target_text(title: str) -> str:
    """The answer string (EOS is appended as a token id, not as text)."""
    return f'"{title}"\n'


def target_ids(tokenizer, title: str) -> list[int]:
    """Token ids of one item's answer: ``"title"\\n`` + EOS — the unit of the title trie."""
    return tokenizer(target_text(title), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def prompt_ids(tokenizer, history_titles: list[str], cfg: DatasetConfig, max_len: int | None = None) -> list[int]:
    ids = tokenizer(prompt_text(history_titles, cfg), add_special_tokens=False)["input_ids"]
    return ids[-max_len:] if max_len else ids


def encode_example(tokenizer, history_titles: list[str], title: str, cfg: DatasetConfig,
                   cutoff_len: int = 512) -> dict:
    """input_ids / attention_mask / labels for one sample; labels are IGNORE on the prompt.

    The prompt is cut from the left so that prompt + answer fits ``cutoff_len``.
    """
    answer = target_ids(tokenizer, title)
    prompt = prompt_ids(tokenizer, history_titles, cfg, max(cutoff_len - len(answer), 1))
    ids = prompt + answer
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * len(prompt) + answer}


def joint_tokenisation_matches(tokenizer, history_titles: list[str], title: str, cfg: DatasetConfig) -> bool:
    """Does tokenising prompt+answer as one string give the concatenation of the two pieces?"""
    joint = tokenizer(prompt_text(history_titles, cfg) + target_text(title), add_special_tokens=False)["input_ids"]
    split = prompt_ids(tokenizer, history_titles, cfg) + target_ids(tokenizer, title)[:-1]
    return joint == split
