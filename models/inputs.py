"""How a (prompt or chat messages, response) pair becomes model input.

One rendering of chat turns, used by training and serving alike:

    Human: first question
    Assistant: first answer
    Human: latest question

A plain string prompt is one user turn, so `prompt="hi"` and `messages=[user: "hi"]` encode the
same. The pair is encoded BERT-style as [CLS] prompt [SEP] response [SEP] with token_type_ids 0
then 1 (dropping them silently changes scores). Within `max_length` the response is kept whole
and the prompt loses its oldest tokens, so the latest turns survive; only a response that alone
overflows is cut, after keeping `min_prompt_tokens` of the prompt: its opening is kept, with its
last `response_tail_tokens` tokens behind it when the format asks for them, and the kept opening
ends with the format's `cut_marker`, if it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict
from tokenizers import Tokenizer

from models.manifest import InputFormat

Role = Literal["system", "user", "assistant"]
# Per template: (start, separator, padding) tokens, and how many separators join a pair.
TEMPLATE_TOKENS = {"bert-pair": (("[CLS]", "[SEP]", "[PAD]"), 1),
                   "roberta-pair": (("<s>", "</s>", "<pad>"), 2)}


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


Prompt = str | Sequence[Message]


def clean_text(text: str) -> str:
    """Text must be valid Unicode with some content: a lone surrogate (legal in JSON's \\u
    escapes, not in UTF-8) would otherwise fail deep inside the tokenizer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text is not valid Unicode (it contains an unpaired surrogate)") from exc
    if not text.strip():
        raise ValueError("text is empty")
    return text


Text = Annotated[str, AfterValidator(clean_text)]


class ChatTurn(BaseModel):
    """A chat message as it arrives, over HTTP or in a JSONL file: validated, then turned into
    the `Message` the encoder renders."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: Text

    def message(self) -> Message:
        return Message(self.role, self.content)


def check_prompt(prompt: str | None, messages: Sequence[ChatTurn] | None, *,
                 user_last: bool = True) -> None:
    """The rule for a prompt given as `prompt` (one user turn) or `messages` (a chat history):
    exactly one of them, and a history that ends with the user's turn, the one the response
    answers. A history that ends with the assistant's turn most often holds the response itself,
    which would then be scored as a reply to itself. `user_last=False` reads records stored
    before the rule."""
    if (prompt is None) == (messages is None):
        raise ValueError("give exactly one of 'prompt' or 'messages'")
    if user_last and messages and messages[-1].role != "user":
        raise ValueError(f"messages: the last turn is the {messages[-1].role}'s, but the "
                         "response answers the user's last turn, so a history ends with it "
                         "(is the response in 'messages' as well?)")


def render_prompt(prompt: Prompt, fmt: InputFormat | None = None) -> str:
    """The single text rendering of a prompt or a chat history."""
    labels = (fmt or InputFormat()).role_labels
    messages = [Message("user", prompt)] if isinstance(prompt, str) else prompt
    return "\n".join(f"{labels[m.role]}: {m.content.strip()}" for m in messages)


@dataclass(frozen=True)
class EncodedPair:
    input_ids: list[int]
    token_type_ids: list[int]
    prompt_truncated: bool
    response_truncated: bool

    @property
    def truncated(self) -> bool:
        return self.prompt_truncated or self.response_truncated

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Windows:
    """Texts cut into overlapping model-length windows."""

    items: list[EncodedPair]  # every window of every text, in order
    owners: list[int]  # the index of each window's text
    tokens: list[int]  # each text's length in tokens, [CLS] and [SEP] included


def split_budget(prompt_len: int, response_len: int, fmt: InputFormat) -> tuple[int, int]:
    """How many prompt and response tokens fit: (kept from the prompt's end, kept from the
    response's start)."""
    budget = fmt.max_length - 2 - TEMPLATE_TOKENS[fmt.template][1]  # start, separators, end
    prompt_floor = min(prompt_len, fmt.min_prompt_tokens)
    response_keep = min(response_len, budget - prompt_floor)
    prompt_keep = min(prompt_len, budget - response_keep)
    return prompt_keep, response_keep


class PairEncoder:
    """Encodes pairs with a `tokenizers` tokenizer (Rust, batched): no torch, no transformers."""

    def __init__(self, tokenizer: Tokenizer, fmt: InputFormat) -> None:
        # tokenizer.json may carry its own truncation and padding (MiniLM's cuts at 128):
        # this class decides both, so they are switched off on a private copy.
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.format = fmt
        names, self.pair_seps = TEMPLATE_TOKENS[fmt.template]
        self.cls_id, self.sep_id, self.pad_id = (self._special(name) for name in names)
        self.cut_marker = self._ids([fmt.cut_marker])[0] if fmt.cut_marker else []

    @classmethod
    def from_file(cls, path: Path, fmt: InputFormat) -> PairEncoder:
        return cls(Tokenizer.from_file(str(path)), fmt)

    def encode_batch(self, prompts: Sequence[Prompt], responses: Sequence[str]
                     ) -> list[EncodedPair]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        rendered = [render_prompt(p, self.format) for p in prompts]
        prompt_ids = self._ids(rendered)
        response_ids = self._ids(list(responses))
        return [self._assemble(p, r) for p, r in zip(prompt_ids, response_ids, strict=True)]

    def encode_texts(self, texts: Sequence[str]) -> list[EncodedPair]:
        """Single texts ([CLS] text [SEP]) for classifiers, cut from the end."""
        budget = self.format.max_length - 2
        out = []
        for ids in self._ids(list(texts)):
            kept = ids[:budget]
            seq = [self.cls_id, *kept, self.sep_id]
            out.append(EncodedPair(seq, [0] * len(seq), False, len(kept) < len(ids)))
        return out

    def encode_windows(self, texts: Sequence[str], overlap: int | None = None) -> Windows:
        """Every text whole, in windows of the model's length that overlap by `overlap`
        tokens (default a third of a window, so that a sentence shorter than that cut at one
        window's edge is whole in the next). A text that fits is one window, the same item
        `encode_texts` gives."""
        budget = self.format.max_length - 2
        overlap = budget // 3 if overlap is None else overlap
        if not 0 <= overlap < budget:
            raise ValueError(f"overlap must be in [0, {budget}), not {overlap}")
        out = Windows([], [], [])
        for owner, ids in enumerate(self._ids(list(texts))):
            out.tokens.append(len(ids) + 2)
            for start in window_starts(len(ids), budget, budget - overlap):
                seq = [self.cls_id, *ids[start:start + budget], self.sep_id]
                out.items.append(EncodedPair(seq, [0] * len(seq), False, False))
                out.owners.append(owner)
        return out

    def fits_whole(self, responses: Sequence[str]) -> list[bool]:
        """Whether each response is read whole beside any prompt: within the window less the
        template's tokens and the prompt tokens always kept (min_prompt_tokens). Only the
        responses are tokenised, so a response beside a prompt shorter than that floor may
        fit when this says not."""
        floor = self.format.min_prompt_tokens
        return [split_budget(floor, len(ids), self.format)[1] == len(ids)
                for ids in self._ids(list(responses))]

    def _special(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"the tokenizer lacks the special token {token} that the "
                             f"{self.format.template} input template needs")
        return int(token_id)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _assemble(self, prompt: list[int], response: list[int]) -> EncodedPair:
        prompt_keep, response_keep = split_budget(len(prompt), len(response), self.format)
        kept_prompt = prompt[len(prompt) - prompt_keep :]
        cut = response_keep < len(response)
        tail = self.format.response_tail_tokens if cut else 0
        kept_response = response[:response_keep - tail]
        if cut and 0 < len(self.cut_marker) < len(kept_response):
            kept_response[-len(self.cut_marker):] = self.cut_marker
        if tail:
            kept_response += response[-tail:]
        first = [self.cls_id, *kept_prompt, *[self.sep_id] * self.pair_seps]
        second = [*kept_response, self.sep_id]
        return EncodedPair(
            input_ids=first + second,
            token_type_ids=[0] * len(first) + [1] * len(second),
            prompt_truncated=prompt_keep < len(prompt),
            response_truncated=response_keep < len(response),
        )


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Token offsets of windows of `size` every `stride` tokens that cover `length` tokens; the
    last window ends at the text's end (it may overlap its neighbour more)."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return [*starts, length - size]


def pad_batch(items: Sequence[EncodedPair], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-pad to the longest item: input_ids, attention_mask, token_type_ids (int64)."""
    if not items:
        raise ValueError("cannot pad an empty batch")
    width = max(len(item) for item in items)
    shape = (len(items), width)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    attention_mask = np.zeros(shape, dtype=np.int64)
    token_type_ids = np.zeros(shape, dtype=np.int64)
    for row, item in enumerate(items):
        n = len(item)
        input_ids[row, :n] = item.input_ids
        attention_mask[row, :n] = 1
        token_type_ids[row, :n] = item.token_type_ids
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }
