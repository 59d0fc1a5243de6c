"""A typed Python client for every endpoint, sync and async, on httpx.

    from service.client import Client
    with Client("http://127.0.0.1:3000", api_key=None) as client:
        client.score([{"prompt": "Hi", "response": "Hello!"}]).results[0].reward
        client.compare(prompt="Hi", response_a="Hello!", response_b="What?").results[0]
        client.rank(prompt="Hi", candidates=["Hello!", "What?"]).best_index
        client.moderate(["some text"]).results[0].flagged
        client.classify(["where is my card"], top_k=3).results[0].label
        client.feedback([{"kind": "preference", "id": "t-1", "prompt": "Hi",
                          "chosen": "Hello!", "rejected": "What?"}]).stored
        client.rl_rewards(["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"],
                          prompts=["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"])

`RewardFunction` is a reward function for TRL's online trainers, on the same endpoint that
OpenRLHF's `--remote_rm_url` calls.

`AsyncClient` has the same methods, awaited. Bodies are checked with the service's own schemas
before sending (a malformed one raises pydantic's ValidationError); an error answer raises
`AlignServeError` with the service's error type, message, HTTP status and Retry-After.
`server_timing` reads an answer's Server-Timing header: the server's own time per stage.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from service.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    CompareRequest,
    CompareResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelsResponse,
    ModerateRequest,
    ModerateResponse,
    OpenRLHFRequest,
    OpenRLHFResponse,
    RankRequest,
    RankResponse,
    ScoreRequest,
    ScoreResponse,
)

R = TypeVar("R", bound=BaseModel)


class AlignServeError(Exception):
    def __init__(self, status: int, error_type: str, message: str,
                 retry_after_s: float | None) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status, self.error_type, self.message = status, error_type, message
        self.retry_after_s = retry_after_s


def server_timing(header: str | None) -> dict[str, float]:
    """A Server-Timing header as {stage: milliseconds} (`read`, `tokenise`, `queue`,
    `inference`, `total`; service/inference.py's Timing writes it); {} without one."""
    stages = {}
    for part in (header or "").split(","):
        name, found, duration = part.strip().partition(";dur=")
        if found:
            stages[name] = float(duration)
    return stages


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        error_type, message = body["error_type"], body["error"]
    except (ValueError, KeyError, TypeError):
        error_type, message = "unknown", response.text[:200]
    retry = response.headers.get("retry-after")
    raise AlignServeError(response.status_code, error_type, message,
                          float(retry) if retry else None)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass(frozen=True)
class Call(Generic[R]):
    """One request, built and checked against the service's schemas, and the type of its
    answer. Both clients send the same calls; only the transport (sync or async) differs."""

    method: str
    path: str
    answer: type[R]
    body: dict[str, Any] | None = None

    def parse(self, response: httpx.Response) -> R:
        _raise_for(response)
        return self.answer.model_validate_json(response.content)


def score_call(items: Sequence[Mapping[str, Any]]) -> Call[ScoreResponse]:
    body = ScoreRequest.model_validate({"items": list(items)})
    return Call("POST", "/v1/reward/score", ScoreResponse, body.model_dump(exclude_none=True))


def compare_call(pairs: Sequence[Mapping[str, Any]] | None, fields: dict[str, Any]
                 ) -> Call[CompareResponse]:
    body = {"pairs": list(pairs)} if pairs is not None else fields
    request = CompareRequest.model_validate(body)  # one pair becomes a list of one
    return Call("POST", "/v1/reward/compare", CompareResponse, {
        "pairs": [pair.model_dump(exclude_none=True) for pair in request.pairs or []]})


def rank_call(fields: dict[str, Any]) -> Call[RankResponse]:
    body = RankRequest.model_validate(fields).model_dump(exclude_none=True)
    return Call("POST", "/v1/reward/rank", RankResponse, body)


def moderate_call(inputs: Sequence[str], min_precision: float | Mapping[str, float] | None = None
                  ) -> Call[ModerateResponse]:
    body = ModerateRequest.model_validate(
        {"inputs": list(inputs), "min_precision": min_precision}).model_dump(exclude_none=True)
    return Call("POST", "/v1/moderate", ModerateResponse, body)


def classify_call(inputs: Sequence[str], top_k: int) -> Call[ClassifyResponse]:
    body = ClassifyRequest(inputs=list(inputs), top_k=top_k).model_dump()
    return Call("POST", "/v1/classify", ClassifyResponse, body)


def feedback_call(records: Sequence[Mapping[str, Any]]) -> Call[FeedbackResponse]:
    body = FeedbackRequest.model_validate({"records": list(records)})
    return Call("POST", "/v1/feedback", FeedbackResponse, body.model_dump(mode="json",
                                                                          exclude_none=True))


def rl_call(query: Sequence[str], prompts: Sequence[str] | None, raw: bool
            ) -> Call[OpenRLHFResponse]:
    body = OpenRLHFRequest(query=list(query), prompts=None if prompts is None else list(prompts))
    return Call("POST", "/v1/reward/openrlhf" + ("?reward=raw" if raw else ""), OpenRLHFResponse,
                body.model_dump(exclude_none=True))


MODELS_CALL = Call("GET", "/v1/models", ModelsResponse)
Messages = Sequence[Mapping[str, str]] | None
Pairs = Sequence[Mapping[str, Any]] | None


class Client:
    def __init__(self, url: str = "http://127.0.0.1:3000", api_key: str | None = None,
                 timeout_s: float = 60.0) -> None:
        self.http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call[R]) -> R:
        return call.parse(self.http.request(call.method, call.path, json=call.body))

    def score(self, items: Sequence[Mapping[str, Any]]) -> ScoreResponse:
        return self.send(score_call(items))

    def compare(self, prompt: str | None = None, response_a: str | None = None,
                response_b: str | None = None, messages: Messages = None, pairs: Pairs = None
                ) -> CompareResponse:
        return self.send(compare_call(pairs, {"prompt": prompt, "messages": messages,
                                              "response_a": response_a,
                                              "response_b": response_b}))

    def rank(self, candidates: Sequence[str], prompt: str | None = None,
             messages: Messages = None, top_k: int | None = None) -> RankResponse:
        return self.send(rank_call({"prompt": prompt, "messages": messages,
                                    "candidates": list(candidates), "top_k": top_k}))

    def moderate(self, inputs: Sequence[str],
                 min_precision: float | Mapping[str, float] | None = None) -> ModerateResponse:
        return self.send(moderate_call(inputs, min_precision))

    def classify(self, inputs: Sequence[str], top_k: int = 1) -> ClassifyResponse:
        return self.send(classify_call(inputs, top_k))

    def feedback(self, records: Sequence[Mapping[str, Any]]) -> FeedbackResponse:
        return self.send(feedback_call(records))

    def rl_rewards(self, query: Sequence[str], prompts: Sequence[str] | None = None,
                   raw: bool = False) -> OpenRLHFResponse:
        """What an RL trainer gets: each query is prompt + response as the policy saw and
        wrote them (chat template included); one reward per query."""
        return self.send(rl_call(query, prompts, raw))

    def models(self) -> ModelsResponse:
        return self.send(MODELS_CALL)

    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200


class AsyncClient:
    """`Client`'s calls, awaited."""

    def __init__(self, url: str = "http://127.0.0.1:3000", api_key: str | None = None,
                 timeout_s: float = 60.0) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call[R]) -> R:
        return call.parse(await self.http.request(call.method, call.path, json=call.body))

    async def score(self, items: Sequence[Mapping[str, Any]]) -> ScoreResponse:
        return await self.send(score_call(items))

    async def compare(self, prompt: str | None = None, response_a: str | None = None,
                      response_b: str | None = None, messages: Messages = None,
                      pairs: Pairs = None) -> CompareResponse:
        return await self.send(compare_call(pairs, {"prompt": prompt, "messages": messages,
                                                    "response_a": response_a,
                                                    "response_b": response_b}))

    async def rank(self, candidates: Sequence[str], prompt: str | None = None,
                   messages: Messages = None, top_k: int | None = None) -> RankResponse:
        return await self.send(rank_call({"prompt": prompt, "messages": messages,
                                          "candidates": list(candidates), "top_k": top_k}))

    async def moderate(self, inputs: Sequence[str],
                       min_precision: float | Mapping[str, float] | None = None
                       ) -> ModerateResponse:
        return await self.send(moderate_call(inputs, min_precision))

    async def classify(self, inputs: Sequence[str], top_k: int = 1) -> ClassifyResponse:
        return await self.send(classify_call(inputs, top_k))

    async def feedback(self, records: Sequence[Mapping[str, Any]]) -> FeedbackResponse:
        return await self.send(feedback_call(records))

    async def rl_rewards(self, query: Sequence[str], prompts: Sequence[str] | None = None,
                         raw: bool = False) -> OpenRLHFResponse:
        return await self.send(rl_call(query, prompts, raw))

    async def models(self) -> ModelsResponse:
        return await self.send(MODELS_CALL)

    async def ready(self) -> bool:
        return (await self.http.get("/readyz")).status_code == 200


Completion = str | Sequence[Mapping[str, Any]]


class RewardFunction:
    """A reward function for TRL's online trainers (`reward_funcs=` of GRPOTrainer,
    RLOOTrainer, OnlineDPOTrainer): called with `prompts` and `completions`, plain strings or
    conversational lists of `{"role", "content"}` messages, and the dataset's other columns as
    keyword arguments (ignored), it returns one float per completion: the normalised reward
    (`raw=True`: the raw one). Completions go to the service `batch_size` at a time; an empty
    completion is scored, not refused; a 429 is retried after its Retry-After.

        from service.client import RewardFunction
        trainer = GRPOTrainer(model=..., reward_funcs=RewardFunction("http://127.0.0.1:3000"),
                              train_dataset=..., args=GRPOConfig(...))
    """

    def __init__(self, url: str = "http://127.0.0.1:3000", api_key: str | None = None,
                 raw: bool = False, batch_size: int = 256, retries: int = 5,
                 timeout_s: float = 120.0, name: str = "alignserve_reward") -> None:
        self.client = Client(url, api_key, timeout_s)
        self.raw, self.batch_size, self.retries = raw, batch_size, retries
        self.__name__ = name  # what TRL logs the reward under

    def __call__(self, prompts: Sequence[Completion], completions: Sequence[Completion],
                 **_columns: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rendered = [_rendered_prompt(p) for p in prompts]
        queries = [p + _completion_text(c) for p, c in zip(rendered, completions, strict=True)]
        rewards: list[float] = []
        for start in range(0, len(queries), self.batch_size):
            end = start + self.batch_size
            rewards += self._send(queries[start:end], rendered[start:end])
        return rewards

    def _send(self, queries: list[str], prompts: list[str]) -> list[float]:
        for attempt in range(self.retries + 1):
            try:
                return self.client.rl_rewards(queries, prompts, self.raw).rewards
            except AlignServeError as exc:
                if exc.status != 429 or attempt == self.retries:
                    raise
                time.sleep(exc.retry_after_s or 1.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


def _rendered_prompt(prompt: Completion) -> str:
    """A conversational prompt as ChatML, which the service parses back into turns; a plain
    one as it is."""
    if isinstance(prompt, str):
        return prompt
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt)
    return turns + "<|im_start|>assistant\n"


def _completion_text(completion: Completion) -> str:
    if isinstance(completion, str):
        return completion
    return "\n".join(str(m.get("content") or "") for m in completion
                     if m.get("role", "assistant") == "assistant")
