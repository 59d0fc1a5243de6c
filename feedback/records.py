"""Feedback records: what a person judged about what a model did, on the wire and in the store.

Three kinds, told apart by `kind`:
- preference: a prompt (or chat history), the reply a person chose and the one they rejected,
  optionally how strongly (`margin`);
- moderation: a text and per-category human labels (a category left out, or null, is unknown);
- intent: a text and its correct intent.

Every record may name what it judges (`model_version`, `request_id` from the answer's
X-Request-Id) and who judged (`source`, a free label such as "agent:42"). Its `id` is the
client's: storing the same id twice keeps the first record, so a retried request never
duplicates one. `export_line` turns a record into the generic JSONL line the trainers read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)

from models.inputs import ChatTurn, Text, check_prompt
from models.taxonomy import CATEGORIES

Kind = Literal["preference", "moderation", "intent"]
KINDS: tuple[Kind, ...] = ("preference", "moderation", "intent")
# Printable, no spaces or slashes: ids travel in URLs (GET /v1/feedback/{id}).
RecordId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:@-]{1,128}$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]


# Validation context for reading the store back: a record stored under an older, laxer rule
# still reads (it was accepted once; nothing stored is lost), while new ones meet today's.
STORED = {"stored": True}


def stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def new_id() -> str:
    return uuid.uuid4().hex


class Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RecordId = Field(default_factory=new_id, description="Chosen by the client: re-sending "
                         "an id stores nothing new. Without one the service picks a random id, "
                         "and a retried request would store the record twice.")
    model_version: Label | None = Field(None, description="name:version of the model whose "
                                        "answer this judges (every answer names it).")
    request_id: Label | None = Field(None, description="The X-Request-Id of that answer.")
    source: Label | None = Field(None, description="Who judged, e.g. 'agent:42' or "
                                 "'moderator:7'; counted by the part before the first ':'.")


class PreferenceFeedback(Common):
    kind: Literal["preference"]
    prompt: Text | None = None
    messages: list[ChatTurn] | None = Field(None, min_length=1)
    chosen: Text
    rejected: Text
    margin: float | None = Field(None, ge=0, le=100, allow_inf_nan=False,
                                 description="How strongly chosen was preferred (>= 0).")

    @model_validator(mode="after")
    def _sound(self, info: ValidationInfo) -> PreferenceFeedback:
        check_prompt(self.prompt, self.messages, user_last=not stored(info))
        if self.chosen == self.rejected:
            raise ValueError("'chosen' and 'rejected' are the same text: nothing to learn")
        return self

    def texts(self) -> list[str]:
        prompt = [self.prompt] if self.prompt is not None else [
            m.content for m in self.messages or []]
        return [*prompt, self.chosen, self.rejected]


class ModerationFeedback(Common):
    kind: Literal["moderation"]
    text: Text
    labels: dict[str, bool | None] = Field(..., min_length=1, description="category -> true, "
                                           "false, or null for unknown; categories left out "
                                           "are unknown too.")

    @model_validator(mode="after")
    def _known(self) -> ModerationFeedback:
        unknown = sorted(set(self.labels) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {list(CATEGORIES)}")
        if all(v is None for v in self.labels.values()):
            raise ValueError("every label is unknown: nothing to learn")
        return self

    def texts(self) -> list[str]:
        return [self.text]


class IntentFeedback(Common):
    kind: Literal["intent"]
    text: Text
    intent: Label

    def texts(self) -> list[str]:
        return [self.text]


Record = Annotated[PreferenceFeedback | ModerationFeedback | IntentFeedback,
                   Field(discriminator="kind")]
RECORD: TypeAdapter[Record] = TypeAdapter(Record)


class Stored(BaseModel):
    """A record as the store holds it: the record and when it was received (UTC)."""

    record: Record
    received_at: datetime


def export_line(record: Record) -> dict[str, Any]:
    """The generic JSONL line the trainers read (training/data: preference, moderation and
    intent files), plus `id` and `source` for tracing it back."""
    trace = {"id": record.id, "source": record.source}
    if isinstance(record, PreferenceFeedback):
        prompt: dict[str, Any] = ({"prompt": record.prompt} if record.prompt is not None else
                                  {"messages": [m.model_dump() for m in record.messages or []]})
        margin = {"margin": record.margin} if record.margin is not None else {}
        return {**prompt, "chosen": record.chosen, "rejected": record.rejected, **margin,
                **trace}
    if isinstance(record, ModerationFeedback):
        return {"text": record.text, "labels": {k: int(v) for k, v in record.labels.items()
                                                if v is not None}, **trace}
    return {"text": record.text, "label": record.intent, **trace}
