"""The HTTP contract: request and response bodies, validated by pydantic at the edge.

Structure and types are checked here (a bad body is a 422). Size limits depend on the settings
and are checked by `service.inference` (a body that is too large is a 413). Every request model has
an example, which the OpenAPI page at /docs shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from feedback.records import Record
from models.inputs import ChatTurn, Prompt, Text, check_prompt
from service.errors import ErrorType


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Prompted(Strict):
    """A prompt: either plain text (one user turn) or a chat history."""

    prompt: Text | None = Field(None, description="The user's message.")
    messages: list[ChatTurn] | None = Field(None, min_length=1, description="A chat history, "
                                           "oldest first, ending with the user's turn that the "
                                           "response answers.")

    @model_validator(mode="after")
    def _one_prompt(self) -> Prompted:
        check_prompt(self.prompt, self.messages)
        return self

    def as_prompt(self) -> Prompt:
        if self.prompt is not None:
            return self.prompt
        return [m.message() for m in self.messages or []]

    def texts(self) -> list[str]:
        if self.prompt is not None:
            return [self.prompt]
        return [m.content for m in self.messages or []]


class ScoreItem(Prompted):
    response: Text


class ScoreRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": [
        {"prompt": "How do I reset my password?",
         "response": "Open Settings, choose Security, then Reset password."},
        {"messages": [{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello! How can I help?"},
                      {"role": "user", "content": "Cancel my order"}],
         "response": "I can help with that. What is the order number?"}]}]})
    items: list[ScoreItem] = Field(..., min_length=1)


class Truncation(BaseModel):
    prompt: bool = Field(..., description="The prompt was cut from the left to fit.")
    response: bool = Field(..., description="The response was cut from the right to fit.")


class EnsembleDetail(BaseModel):
    members: list[float] = Field(..., description="Each member's raw reward.")
    std: float = Field(..., description="The members' standard deviation: their disagreement.")
    conservative_reward: float = Field(..., description="mean - λ·std (or the members' "
                                       "minimum, as the model's manifest says): what an RL "
                                       "trainer should optimise.")
    normalised_conservative_reward: float


class Score(BaseModel):
    reward: float = Field(..., description="The raw reward: only differences are meaningful "
                          "(an ensemble's: its members' mean).")
    normalised_reward: float = Field(..., description="(reward - mean) / std over the "
                                     "validation responses: 0 is a typical response.")
    tokens: int
    truncated: Truncation
    ensemble: EnsembleDetail | None = Field(None, description="For an ensemble reward model.")


class ScoreResponse(BaseModel):
    model: str = Field(..., description="name:version of the model that answered.")
    results: list[Score]


class ComparePair(Prompted):
    response_a: Text
    response_b: Text


class CompareRequest(Strict):
    """One pair (prompt or messages, response_a, response_b) or a list of them in `pairs`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "My card was charged twice.",
         "response_a": "Sorry about that. I have refunded the duplicate charge.",
         "response_b": "Not my problem."},
        {"pairs": [{"prompt": "Hi", "response_a": "Hello!", "response_b": "What?"}]}]})
    prompt: Text | None = None
    messages: list[ChatTurn] | None = Field(None, min_length=1)
    response_a: Text | None = None
    response_b: Text | None = None
    pairs: list[ComparePair] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> CompareRequest:
        single = [self.prompt, self.messages, self.response_a, self.response_b]
        if self.pairs is not None and any(v is not None for v in single):
            raise ValueError("give either 'pairs' or one pair's fields, not both")
        if self.pairs is None:
            a, b = self.response_a, self.response_b
            if a is None or b is None:
                raise ValueError("give one pair (prompt or messages, response_a, response_b) "
                                 "or a list of them in 'pairs'")
            check_prompt(self.prompt, self.messages)
            # Every field was validated above; a nested model would be validated twice.
            self.pairs = [ComparePair.model_construct(
                prompt=self.prompt, messages=self.messages, response_a=a, response_b=b)]
        return self


class Comparison(BaseModel):
    p_a_over_b: float = Field(..., description="Calibrated P(response_a is preferred): "
                              "sigmoid((reward_a - reward_b) / T), T fitted on validation.")
    reward_a: float
    reward_b: float
    preferred: Literal["a", "b"]


class CompareResponse(BaseModel):
    model: str
    results: list[Comparison]


class RankRequest(Prompted):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "prompt": "Where is my parcel?",
        "candidates": ["It is out for delivery and arrives today.", "Dunno.",
                       "Let me check: what is your tracking number?"],
        "top_k": 2}]})
    candidates: list[Text] = Field(..., min_length=1)
    top_k: int | None = Field(None, ge=1, description="Return only the best k.")


class Ranked(BaseModel):
    index: int = Field(..., description="Position of the candidate in the request.")
    reward: float
    probability: float = Field(..., description="Calibrated P(this candidate is the best): "
                               "softmax(reward / T) over all candidates.")


class RankResponse(BaseModel):
    model: str
    best_index: int
    ranking: list[Ranked]


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward model request, as its trainer sends it (other fields that some
    versions add, such as `metadata`, are accepted and ignored)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "query": ["<|im_start|>user\nWhere is my parcel?<|im_end|>\n<|im_start|>assistant\n"
                  "It is out for delivery and arrives today.<|im_end|>"],
        "prompts": ["<|im_start|>user\nWhere is my parcel?<|im_end|>\n"
                    "<|im_start|>assistant\n"],
        "labels": [""]}]})
    query: list[str] = Field(..., min_length=1, description="Prompt and response, decoded with "
                             "their special tokens (the chat template included).")
    prompts: list[str] | None = Field(None, description="The prompt part of each query; "
                                      "without it, each query is cut after its last assistant "
                                      "header.")
    labels: list[object] | None = Field(None, description="Reference answers; unused by a "
                                        "reward model.")


class OpenRLHFResponse(BaseModel):
    rewards: list[float] = Field(..., description="One per query: the normalised reward "
                                 "(default) or the raw one (?reward=raw).")
    scores: list[float] = Field(..., description="In [0, 1], for dynamic filtering: the "
                                "calibrated probability that the response is preferred over "
                                "a typical one, sigmoid((r - mean) / T).")
    model: str


Precision = Annotated[float, Field(ge=0, le=1)]


class ModerateRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": [
        "Thanks, that fixed it!", "You people are all idiots."]},
        {"inputs": ["You people are all idiots."], "min_precision": {"hate": 0.9}}]})
    inputs: list[Text] = Field(..., min_length=1)
    min_precision: Precision | dict[str, Precision] | None = Field(
        None, description="Another operating point for this request: per category the lowest "
        "threshold whose validation precision reaches this (one value for every category, or "
        "per category; the others keep the served thresholds). 422 when a category cannot "
        "reach it.")


class CategoryResult(BaseModel):
    probability: float = Field(..., description="Calibrated: sigmoid(logit / T_category), of "
                               "the text's most offending window.")
    threshold: float = Field(..., description="Chosen on validation for the goal the model "
                             "manifest states (GET /v1/models).")
    flagged: bool


class ModerationResult(BaseModel):
    flagged: bool = Field(..., description="Any category at or above its threshold.")
    categories: dict[str, CategoryResult] = Field(..., description="Per category, the score "
                                                  "of the text's most offending window.")
    tokens: int = Field(..., description="The text's length in tokens.")
    windows: int = Field(..., description="How many overlapping model-length windows read "
                         "the text: 1 when it fits; a longer text is read whole, never cut.")


class ModerateResponse(BaseModel):
    model: str
    results: list[ModerationResult]


class ClassifyRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"inputs": ["I still have not received my new card", "what's the weather in Paris"],
         "top_k": 3}]})
    inputs: list[Text] = Field(..., min_length=1)
    top_k: int = Field(1, ge=1, le=1000, description="How many intents to return per input.")


class IntentScore(BaseModel):
    label: str
    probability: float = Field(..., description="Calibrated: softmax(logits / T).")


class ClassifyResult(BaseModel):
    label: str = Field(..., description="The top intent, or 'out_of_scope' when its probability "
                       "is below the model's threshold.")
    out_of_scope: bool
    top: list[IntentScore]
    tokens: int
    truncated: bool


class ClassifyResponse(BaseModel):
    model: str
    results: list[ClassifyResult]


class ModelInfo(BaseModel):
    name: str
    version: str
    task: str
    labels: list[str]
    provider: Literal["cpu", "cuda"]
    quantisation: Literal["fp32", "int8", "fp16"]
    max_length: int
    temperature: float | None
    temperatures: dict[str, float] | None = None
    thresholds: dict[str, float] = Field(default_factory=dict, description="The thresholds "
                                         "served by default.")
    threshold_goal: str | None = None
    operating_curves: bool = Field(False, description="Whether the model keeps validation "
                                   "precision-recall curves, so that /v1/moderate can take "
                                   "min_precision.")
    metrics: dict[str, dict[str, float]]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ErrorBody(BaseModel):
    error: str = Field(..., description="What was wrong, in words a caller can act on.")
    error_type: ErrorType



class FeedbackRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"records": [
        {"kind": "preference", "id": "ticket-981-draft-2", "source": "agent:42",
         "model_version": "reward:20261127-101500", "request_id": "5f0c2a9e7b",
         "prompt": "Do you ship to Canada?", "chosen": "Yes, in 5-8 days.",
         "rejected": "No idea, ask someone else."},
        {"kind": "moderation", "id": "flag-77", "source": "moderator:7",
         "text": "You people are all idiots.", "labels": {"hate": False, "offensive": True}},
        {"kind": "intent", "id": "msg-1203", "source": "agent:42",
         "text": "my card never arrived", "intent": "card_arrival"}]}]})
    records: list[Record] = Field(..., min_length=1)


class FeedbackResponse(BaseModel):
    stored: list[str] = Field(..., description="Ids committed to disk by this request.")
    duplicates: list[str] = Field(..., description="Ids that were already stored: the stored "
                                  "record was kept, nothing was added (a retry is safe).")


class StoredFeedback(BaseModel):
    record: Record
    received_at: datetime


class Deleted(BaseModel):
    deleted: str
