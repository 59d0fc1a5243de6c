"""A typed Python client for every endpoint, sync and async, on httpx.

    from service.client import Client
    with Client("http://127.0.0.1:3000", api_key=None) as client:
        client.score([{"prompt": "Hi", "response": "Hello!"}]).results[0].reward
        client.compare(prompt="Hi", response_a="Hello!", response_b="What?").results[0]
        client.rank(prompt="Hi", candidates=["Hello!", "What?"]).best_index
        client.moderate(["some text"]).results[0].flagged
        client.classify(["where is my card"], top_k=3).results[0].label

`AsyncClient` has the same methods, awaited. Bodies are checked with the service's own schemas
before sending (a malformed one raises pydantic's ValidationError); an error answer raises
`AlignServeError` with the service's error type, message, HTTP status and Retry-After.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from service.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    CompareRequest,
    CompareResponse,
    ModelsResponse,
    ModerateRequest,
    ModerateResponse,
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


def _compare_body(pairs: Sequence[Mapping[str, Any]] | None, fields: dict[str, Any]
                  ) -> dict[str, Any]:
    body = {"pairs": list(pairs)} if pairs is not None else fields
    request = CompareRequest.model_validate(body)  # one pair becomes a list of one
    return {"pairs": [pair.model_dump(exclude_none=True) for pair in request.pairs or []]}


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

    def _post(self, path: str, body: dict[str, Any], answer: type[R]) -> R:
        response = self.http.post(path, json=body)
        _raise_for(response)
        return answer.model_validate_json(response.content)

    def score(self, items: Sequence[Mapping[str, Any]]) -> ScoreResponse:
        body = ScoreRequest.model_validate({"items": list(items)}).model_dump(exclude_none=True)
        return self._post("/v1/reward/score", body, ScoreResponse)

    def compare(self, prompt: str | None = None, response_a: str | None = None,
                response_b: str | None = None, messages: Sequence[Mapping[str, str]] | None = None,
                pairs: Sequence[Mapping[str, Any]] | None = None) -> CompareResponse:
        body = _compare_body(pairs, {"prompt": prompt, "messages": messages,
                                     "response_a": response_a, "response_b": response_b})
        return self._post("/v1/reward/compare", body, CompareResponse)

    def rank(self, candidates: Sequence[str], prompt: str | None = None,
             messages: Sequence[Mapping[str, str]] | None = None, top_k: int | None = None
             ) -> RankResponse:
        body = RankRequest.model_validate({"prompt": prompt, "messages": messages,
                                           "candidates": list(candidates), "top_k": top_k})
        return self._post("/v1/reward/rank", body.model_dump(exclude_none=True), RankResponse)

    def moderate(self, inputs: Sequence[str]) -> ModerateResponse:
        body = ModerateRequest(inputs=list(inputs)).model_dump()
        return self._post("/v1/moderate", body, ModerateResponse)

    def classify(self, inputs: Sequence[str], top_k: int = 1) -> ClassifyResponse:
        body = ClassifyRequest(inputs=list(inputs), top_k=top_k).model_dump()
        return self._post("/v1/classify", body, ClassifyResponse)

    def models(self) -> ModelsResponse:
        response = self.http.get("/v1/models")
        _raise_for(response)
        return ModelsResponse.model_validate_json(response.content)

    def ready(self) -> bool:
        return self.http.get("/readyz").status_code == 200


class AsyncClient:
    def __init__(self, url: str = "http://127.0.0.1:3000", api_key: str | None = None,
                 timeout_s: float = 60.0) -> None:
        self.http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout_s)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, body: dict[str, Any], answer: type[R]) -> R:
        response = await self.http.post(path, json=body)
        _raise_for(response)
        return answer.model_validate_json(response.content)

    async def score(self, items: Sequence[Mapping[str, Any]]) -> ScoreResponse:
        body = ScoreRequest.model_validate({"items": list(items)}).model_dump(exclude_none=True)
        return await self._post("/v1/reward/score", body, ScoreResponse)

    async def compare(self, prompt: str | None = None, response_a: str | None = None,
                      response_b: str | None = None,
                      messages: Sequence[Mapping[str, str]] | None = None,
                      pairs: Sequence[Mapping[str, Any]] | None = None) -> CompareResponse:
        body = _compare_body(pairs, {"prompt": prompt, "messages": messages,
                                     "response_a": response_a, "response_b": response_b})
        return await self._post("/v1/reward/compare", body, CompareResponse)

    async def rank(self, candidates: Sequence[str], prompt: str | None = None,
                   messages: Sequence[Mapping[str, str]] | None = None,
                   top_k: int | None = None) -> RankResponse:
        body = RankRequest.model_validate({"prompt": prompt, "messages": messages,
                                           "candidates": list(candidates), "top_k": top_k})
        return await self._post("/v1/reward/rank", body.model_dump(exclude_none=True),
                                RankResponse)

    async def moderate(self, inputs: Sequence[str]) -> ModerateResponse:
        body = ModerateRequest(inputs=list(inputs)).model_dump()
        return await self._post("/v1/moderate", body, ModerateResponse)

    async def classify(self, inputs: Sequence[str], top_k: int = 1) -> ClassifyResponse:
        body = ClassifyRequest(inputs=list(inputs), top_k=top_k).model_dump()
        return await self._post("/v1/classify", body, ClassifyResponse)

    async def models(self) -> ModelsResponse:
        response = await self.http.get("/v1/models")
        _raise_for(response)
        return ModelsResponse.model_validate_json(response.content)

    async def ready(self) -> bool:
        return (await self.http.get("/readyz")).status_code == 200
