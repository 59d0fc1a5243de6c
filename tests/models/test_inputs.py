from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from models.inputs import Message, PairEncoder, pad_batch, render_prompt, split_budget
from models.manifest import InputFormat


@pytest.fixture()
def encoder(tiny_backbone: Path) -> PairEncoder:
    return PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                 InputFormat(max_length=24, min_prompt_tokens=4))


def test_plain_prompt_renders_as_one_user_turn() -> None:
    assert render_prompt("hi there") == render_prompt([Message("user", "hi there")])
    chat = [Message("user", "a"), Message("assistant", "b"), Message("user", " c ")]
    assert render_prompt(chat) == "Human: a\nAssistant: b\nHuman: c"


def test_pair_layout_and_token_types(encoder: PairEncoder) -> None:
    (item,) = encoder.encode_batch(["hello"], ["good answer"])
    tok = encoder.tokenizer
    prompt_ids = tok.encode("Human: hello", add_special_tokens=False).ids
    response_ids = tok.encode("good answer", add_special_tokens=False).ids
    assert item.input_ids == [encoder.cls_id, *prompt_ids, encoder.sep_id, *response_ids,
                              encoder.sep_id]
    assert item.token_type_ids == [0] * (len(prompt_ids) + 2) + [1] * (len(response_ids) + 1)
    assert not item.truncated


def test_truncation_keeps_response_and_latest_turns(encoder: PairEncoder) -> None:
    old = [Message("user", "weather " * 10), Message("assistant", "music " * 30)]
    chat = [*old, Message("user", "refund please")]
    (item,) = encoder.encode_batch([chat], ["sorry card"])
    tok = encoder.tokenizer
    response_ids = tok.encode("sorry card", add_special_tokens=False).ids
    latest = tok.encode("Human: refund please", add_special_tokens=False).ids
    assert len(item) == 24
    assert item.prompt_truncated and not item.response_truncated
    sep = item.input_ids.index(encoder.sep_id)
    assert item.input_ids[sep + 1:-1] == response_ids  # the response is whole
    assert item.input_ids[1:sep][-len(latest):] == latest  # the latest turn survives
    assert tok.token_to_id("weather") not in item.input_ids  # the oldest turn went first


def test_overlong_response_is_cut_after_keeping_prompt_floor(encoder: PairEncoder) -> None:
    (item,) = encoder.encode_batch(["hello how are you today"], ["money " * 40])
    assert len(item) == 24 and item.response_truncated
    assert item.input_ids.index(encoder.sep_id) - 1 >= 4  # min_prompt_tokens kept


def test_a_response_the_window_cuts_ends_with_the_cut_marker(tiny_backbone: Path) -> None:
    fmt = InputFormat(max_length=24, min_prompt_tokens=4, cut_marker="(continued)")
    encoder = PairEncoder.from_file(tiny_backbone / "tokenizer.json", fmt)
    plain = PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                  fmt.model_copy(update={"cut_marker": ""}))
    marker = encoder.tokenizer.encode("(continued)", add_special_tokens=False).ids
    (cut,) = encoder.encode_batch(["hello how are you today"], ["money " * 40])
    (before,) = plain.encode_batch(["hello how are you today"], ["money " * 40])
    assert len(cut) == len(before) == 24 and cut.response_truncated
    assert cut.input_ids[-1 - len(marker):-1] == marker  # in place of the last kept tokens
    assert cut.input_ids[:-1 - len(marker)] == before.input_ids[:-1 - len(marker)]
    assert cut.token_type_ids == before.token_type_ids
    # a response read whole is not marked
    assert encoder.encode_batch(["hello"], ["good answer"]) == plain.encode_batch(
        ["hello"], ["good answer"])


def test_a_response_the_window_cuts_keeps_its_tail(tiny_backbone: Path) -> None:
    fmt = InputFormat(max_length=24, min_prompt_tokens=4, response_tail_tokens=5)
    encoder = PairEncoder.from_file(tiny_backbone / "tokenizer.json", fmt)
    plain = PairEncoder.from_file(tiny_backbone / "tokenizer.json",
                                  fmt.model_copy(update={"response_tail_tokens": 0}))
    response = "money " * 20 + "thank you for waiting"
    ending = encoder.tokenizer.encode(response, add_special_tokens=False).ids[-5:]
    (cut,) = encoder.encode_batch(["hello how are you today"], [response])
    (before,) = plain.encode_batch(["hello how are you today"], [response])
    assert len(cut) == len(before) == 24 and cut.response_truncated
    assert cut.input_ids[-6:-1] == ending  # the reply's last tokens, before the final [SEP]
    assert cut.input_ids[:-6] == before.input_ids[:-6]  # the opening, 5 tokens shorter
    assert cut.token_type_ids == before.token_type_ids
    # a response read whole is as before
    assert encoder.encode_batch(["hello"], ["good answer"]) == plain.encode_batch(
        ["hello"], ["good answer"])
    with pytest.raises(ValueError, match="response_tail_tokens must be at most half"):
        InputFormat(max_length=24, min_prompt_tokens=4, response_tail_tokens=9)


@pytest.mark.parametrize(("prompt", "response", "expected"), [
    (5, 5, (5, 5)), (100, 5, (16, 5)), (2, 100, (2, 19)), (100, 100, (4, 17))])
def test_split_budget(prompt: int, response: int, expected: tuple[int, int]) -> None:
    fmt = InputFormat(max_length=24, min_prompt_tokens=4)
    assert split_budget(prompt, response, fmt) == expected


def test_long_inputs_are_not_cut_by_the_tokenizer_file(tiny_backbone: Path) -> None:
    """tokenizer.json files may carry truncation settings of their own; they must not apply."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_backbone / "tokenizer.json"))
    tok.enable_truncation(8)
    encoder = PairEncoder(tok, InputFormat(max_length=200, min_prompt_tokens=4))
    (item,) = encoder.encode_batch(["hello"], ["good " * 50])
    assert not item.truncated and len(item) > 50


def test_pad_batch(encoder: PairEncoder) -> None:
    items = encoder.encode_batch(["a", "hello how are you"], ["b", "c"])
    arrays = pad_batch(items, encoder.pad_id)
    assert arrays["input_ids"].shape == (2, max(len(i) for i in items))
    assert arrays["attention_mask"].sum(1).tolist() == [len(i) for i in items]
    assert arrays["input_ids"].dtype == np.int64
    with pytest.raises(ValueError):
        pad_batch([])


def test_mismatched_lengths_are_refused(encoder: PairEncoder) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        encoder.encode_batch(["a", "b"], ["c"])


@pytest.mark.parametrize(("length", "expected"), [
    (10, [0]), (22, [0]), (23, [0, 1]), (50, [0, 15, 28]), (44, [0, 15, 22])])
def test_window_starts_cover_the_text_and_end_at_its_end(length: int, expected: list[int]
                                                         ) -> None:
    from models.inputs import window_starts

    starts = window_starts(length, 22, 15)
    assert starts == expected
    covered = {t for s in starts for t in range(s, min(s + 22, length))}
    assert covered == set(range(length))


def test_long_texts_are_read_whole_in_overlapping_windows(encoder: PairEncoder) -> None:
    from models.inputs import window_starts

    words = [f"w{i}" for i in range(60)]
    text = " ".join(words)
    short = encoder.encode_windows(["hello there", text])
    (whole,) = encoder.encode_texts(["hello there"])
    ids = encoder.tokenizer.encode(text, add_special_tokens=False).ids
    assert short.items[0] == whole and short.owners.count(0) == 1  # a text that fits: as before
    assert short.tokens == [len(whole), len(ids) + 2]
    mine = [w for w, owner in zip(short.items, short.owners, strict=True) if owner == 1]
    assert len(mine) > 2 and all(len(w) <= 24 for w in mine)
    assert all(w.input_ids[0] == encoder.cls_id and w.input_ids[-1] == encoder.sep_id
               for w in mine)
    starts = window_starts(len(ids), 22, 22 - 22 // 3)
    assert [w.input_ids[1:-1] for w in mine] == [ids[s:s + 22] for s in starts]
    assert starts[-1] + 22 == len(ids)  # the very end is read
    assert all(b - a <= 22 - 22 // 3 for a, b in itertools.pairwise(starts))  # a third overlaps
    with pytest.raises(ValueError, match="overlap"):
        encoder.encode_windows([text], overlap=22)
