"""RL trainers' queries into (prompt turns, response): the chat templates a policy is rendered
with, padding and end-of-sequence tokens, and queries that cannot be split."""

from __future__ import annotations

import pytest

from models.inputs import Message
from service.rl import SplitError, split_query, turns

CHATML_PROMPT = ("<|im_start|>system\nYou are a support agent.<|im_end|>\n"
                 "<|im_start|>user\nWhere is my parcel?<|im_end|>\n<|im_start|>assistant\n")
LLAMA3_PROMPT = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                 "Where is my parcel?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
ANSWER = "It is out for delivery and arrives today."
SUPPORT = [Message("system", "You are a support agent."), Message("user", "Where is my parcel?")]


@pytest.mark.parametrize(("prompt", "query", "expected"), [
    (CHATML_PROMPT, CHATML_PROMPT + ANSWER + "<|im_end|><|endoftext|>", SUPPORT),
    (LLAMA3_PROMPT, LLAMA3_PROMPT + ANSWER + "<|eot_id|>",
     [Message("user", "Where is my parcel?")]),
    ("<s>[INST] <<SYS>>\nYou are a support agent.\n<</SYS>>\n\nWhere is my parcel? [/INST]",
     "<s>[INST] <<SYS>>\nYou are a support agent.\n<</SYS>>\n\nWhere is my parcel? [/INST] "
     + ANSWER + "</s>", SUPPORT),
    ("Where is my parcel?", "Where is my parcel? " + ANSWER, "Where is my parcel?"),
], ids=["chatml", "llama-3", "llama-2", "plain"])
def test_templates_become_turns_and_the_response_loses_its_end_tokens(
        prompt: str, query: str, expected: object) -> None:
    assert split_query(query, prompt) == (expected, ANSWER)


def test_padding_before_the_prompt_and_after_the_response_is_ignored() -> None:
    query = "<|endoftext|><|endoftext|>" + CHATML_PROMPT + ANSWER + "<|im_end|>" + "<pad>" * 3
    assert split_query(query, CHATML_PROMPT) == (SUPPORT, ANSWER)


def test_an_empty_response_is_scored_not_refused() -> None:
    assert split_query(CHATML_PROMPT + "<|im_end|>", CHATML_PROMPT) == (SUPPORT, "")


def test_multi_turn_history_keeps_every_turn_in_order() -> None:
    prompt = ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?"
              "<|im_end|>\n<|im_start|>user\nCancel my order<|im_end|>\n"
              "<|im_start|>assistant\n")
    assert turns(prompt) == [Message("user", "Hi"), Message("assistant", "Hello! How can I help?"),
                             Message("user", "Cancel my order")]


def test_without_prompts_the_query_is_cut_after_its_last_assistant_header() -> None:
    assert split_query(CHATML_PROMPT + ANSWER + "<|im_end|>", None) == (SUPPORT, ANSWER)
    with pytest.raises(SplitError, match="send 'prompts'"):
        split_query("no template at all", None)


def test_a_prompt_that_is_not_in_its_query_is_an_error() -> None:
    with pytest.raises(SplitError, match="does not occur"):
        split_query("something else entirely", CHATML_PROMPT)
