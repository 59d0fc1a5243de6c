"""The public HTTP API (/v1), a FastAPI app that the BentoML service mounts.

Why an ASGI app and not `@bentoml.api` endpoints: BentoML answers bad input with its own body
and turns 401 and 5xx bodies into generic text, while this service promises one closed error
taxonomy with a JSON body `{error, error_type}` everywhere. BentoML still merges these routes
into its OpenAPI page at /docs and serves /livez, /readyz and /metrics itself.

Each route: validate (pydantic, 422) -> limits (413) -> tokenise -> batch queue (429 when
full) -> engine -> post-process -> answer, with the model version and a Server-Timing header.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from models.inputs import EncodedPair, Prompt
from models.manifest import Task
from models.taxonomy import OUT_OF_SCOPE
from service import metrics
from service.batching import Batcher
from service.errors import ErrorType, ServiceError, error_response
from service.guard import Guard
from service.runtime import Engine, Front, RewardScore
from service.schemas import (
    CategoryResult,
    ClassifyRequest,
    ClassifyResponse,
    ClassifyResult,
    CompareRequest,
    CompareResponse,
    Comparison,
    ErrorBody,
    IntentScore,
    ModelInfo,
    ModelsResponse,
    ModerateRequest,
    ModerateResponse,
    ModerationResult,
    Prompted,
    Ranked,
    RankRequest,
    RankResponse,
    Score,
    ScoreRequest,
    ScoreResponse,
    Truncation,
)
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ModelBackend:
    """One served model: its front (tokeniser, calibration), the engine's identity and the
    batch queue in front of it."""

    front: Front
    engine: Engine
    batcher: Batcher


@dataclass
class Backend:
    settings: Settings
    reward: ModelBackend | None = None
    moderation: ModelBackend | None = None
    intent: ModelBackend | None = None


@dataclass
class Timing:
    """Server-Timing, in milliseconds, for the stages of one request."""

    stages: dict[str, float] = field(default_factory=dict)

    def header(self) -> str:
        return ", ".join(f"{name};dur={ms:.1f}" for name, ms in self.stages.items())


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in [
        (401, "missing or wrong API key"), (413, "too many items or too much text"),
        (422, "malformed body: invalid JSON, a missing field, a wrong type, empty text"),
        (429, "overloaded: retry after the Retry-After header's seconds"),
        (503, "the model is not loaded or not ready")]}

# Below this many characters, tokenising (~1 ms) costs less than a hop to a thread (~0.3 ms
# plus waiting for the GIL), so it runs on the event loop.
INLINE_TOKENISE_CHARS = 8192

app = FastAPI(title="alignserve", version="1", docs_url=None, redoc_url=None, openapi_url=None,
              description="Score text against human preferences.")


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


@app.exception_handler(ServiceError)
async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    log.info("%s %s -> %s: %s", request.method, request.url.path, exc.status, exc.message)
    return error_response(exc)


@app.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Say where and what, never echo the input: customers' messages are private.
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    message = "; ".join(problems) or "invalid request body"
    log.info("%s %s -> 422: %s", request.method, request.url.path, message)
    return error_response(ServiceError(ErrorType.validation, message))


@app.exception_handler(Exception)
async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(ServiceError(ErrorType.internal, "internal error; see the service log"))


app.add_middleware(Guard)


def check_count(what: str, count: int, limit: int, setting: str) -> None:
    if count > limit:
        raise ServiceError(ErrorType.too_large, f"{count} {what} in one request; the limit is "
                           f"{limit} ({setting})")


def check_text(where: str, texts: Sequence[str], settings: Settings) -> None:
    size = sum(len(t) for t in texts)
    if size > settings.max_chars:
        raise ServiceError(ErrorType.too_large, f"{where} has {size} characters; the limit is "
                           f"{settings.max_chars} (ALIGNSERVE_MAX_CHARS)")


def loaded(model: ModelBackend | None, what: str) -> ModelBackend:
    if model is None:
        raise ServiceError(ErrorType.model_not_loaded, f"this service runs no {what} model "
                           f"(set ALIGNSERVE_{what.upper()}_MODEL)")
    return model


async def infer(model: ModelBackend, prepare: Callable[[], list[EncodedPair]], size: int,
                timing: Timing) -> tuple[list[EncodedPair], np.ndarray]:
    """Tokenise here, run in the engine through the batch queue; (items, raw outputs)."""
    name = model.front.manifest.name
    started = time.perf_counter()
    if size <= INLINE_TOKENISE_CHARS:
        items = prepare()
    else:  # off the event loop: a big request must not stall everyone else's
        items = await asyncio.to_thread(prepare)
    tokenised = time.perf_counter() - started
    metrics.TOKENISATION.labels(name).observe(tokenised)
    for item in items:
        metrics.INPUT_TOKENS.labels(name).observe(len(item))
        if item.prompt_truncated:
            metrics.TRUNCATIONS.labels(name, "prompt").inc()
        if item.response_truncated:
            metrics.TRUNCATIONS.labels(name, "response" if model.front.manifest.task
                                       is Task.reward else "text").inc()
    result = await model.batcher.run(items)
    timing.stages["tokenise"] = tokenised * 1000
    timing.stages["queue"] = result.queue_s * 1000
    timing.stages["inference"] = result.inference_s * 1000
    return items, result.outputs


async def infer_texts(model: ModelBackend, texts: list[str], settings: Settings,
                      timing: Timing) -> tuple[list[EncodedPair], np.ndarray]:
    """Limits, then `infer` on single texts (the classifiers' input)."""
    check_count("inputs", len(texts), settings.max_items, "ALIGNSERVE_MAX_ITEMS")
    for i, text in enumerate(texts):
        check_text(f"inputs[{i}]", [text], settings)
    return await infer(model, lambda: model.front.prepare_texts(texts), sum(map(len, texts)),
                       timing)


async def reward_scores(backend: Backend, prompts: Sequence[Prompt], responses: Sequence[str],
                        timing: Timing) -> list[RewardScore]:
    reward = loaded(backend.reward, "reward")
    front = reward.front
    size = sum(map(len, responses)) + sum(len(p) if isinstance(p, str) else
                                          sum(len(m.content) for m in p) for p in prompts)
    items, outputs = await infer(reward, lambda: front.prepare(prompts, responses), size, timing)
    scores = front.post(items, outputs[:, 0].tolist())
    observe = metrics.REWARD.labels(front.manifest.name, front.manifest.version).observe
    for score in scores:
        observe(score.normalised)
    return scores


def finish(response: Response, front: Front, timing: Timing, started: float) -> None:
    timing.stages["total"] = (time.perf_counter() - started) * 1000
    response.headers["X-Model-Version"] = front.tag
    response.headers["Server-Timing"] = timing.header()


def prompt_of(where: str, prompted: Prompted, settings: Settings) -> Prompt:
    check_text(where, prompted.texts(), settings)
    return prompted.as_prompt()


@app.post("/reward/score", response_model=ScoreResponse, responses=ERRORS,
          summary="Score responses to prompts with the reward model")
async def score(body: ScoreRequest, request: Request, response: Response) -> ScoreResponse:
    started, timing, backend = time.perf_counter(), Timing(), backend_of(request)
    settings = backend.settings
    check_count("items", len(body.items), settings.max_items, "ALIGNSERVE_MAX_ITEMS")
    prompts = [prompt_of(f"items[{i}] prompt", item, settings)
               for i, item in enumerate(body.items)]
    for i, item in enumerate(body.items):
        check_text(f"items[{i}].response", [item.response], settings)
    scores = await reward_scores(backend, prompts, [i.response for i in body.items], timing)
    front = loaded(backend.reward, "reward").front
    finish(response, front, timing, started)
    return ScoreResponse(model=front.tag, results=[
        Score(reward=s.reward, normalised_reward=s.normalised, tokens=s.tokens,
              truncated=Truncation(prompt=s.prompt_truncated, response=s.response_truncated))
        for s in scores])


@app.post("/reward/compare", response_model=CompareResponse, responses=ERRORS,
          summary="Calibrated probability that response_a is preferred over response_b")
async def compare(body: CompareRequest, request: Request, response: Response
                  ) -> CompareResponse:
    started, timing, backend = time.perf_counter(), Timing(), backend_of(request)
    settings = backend.settings
    pairs = body.pairs or []
    check_count("pairs", len(pairs), settings.max_items, "ALIGNSERVE_MAX_ITEMS")
    prompts = [prompt_of(f"pairs[{i}] prompt", pair, settings) for i, pair in enumerate(pairs)]
    for i, pair in enumerate(pairs):
        check_text(f"pairs[{i}].response_a", [pair.response_a], settings)
        check_text(f"pairs[{i}].response_b", [pair.response_b], settings)
    # Both sides of every pair in one engine call: a's first, then b's.
    scores = await reward_scores(backend, prompts * 2, [p.response_a for p in pairs]
                                 + [p.response_b for p in pairs], timing)
    front = loaded(backend.reward, "reward").front
    results = []
    for a, b in zip(scores[:len(pairs)], scores[len(pairs):], strict=True):
        p = front.preference(a.reward, b.reward)
        results.append(Comparison(p_a_over_b=p, reward_a=a.reward, reward_b=b.reward,
                                  preferred="a" if a.reward >= b.reward else "b"))
    finish(response, front, timing, started)
    return CompareResponse(model=front.tag, results=results)


@app.post("/reward/rank", response_model=RankResponse, responses=ERRORS,
          summary="Rank candidate responses to one prompt (best-of-n)")
async def rank(body: RankRequest, request: Request, response: Response) -> RankResponse:
    started, timing, backend = time.perf_counter(), Timing(), backend_of(request)
    settings = backend.settings
    check_count("candidates", len(body.candidates), settings.max_candidates,
                "ALIGNSERVE_MAX_CANDIDATES")
    prompt = prompt_of("prompt", body, settings)
    for i, candidate in enumerate(body.candidates):
        check_text(f"candidates[{i}]", [candidate], settings)
    scores = await reward_scores(backend, [prompt] * len(body.candidates), body.candidates,
                                 timing)
    front = loaded(backend.reward, "reward").front
    rewards = [s.reward for s in scores]
    probabilities = front.rank_probabilities(rewards)
    # Stable: equal rewards keep the request's order.
    order = sorted(range(len(rewards)), key=lambda i: -rewards[i])[:body.top_k]
    finish(response, front, timing, started)
    return RankResponse(model=front.tag, best_index=order[0], ranking=[
        Ranked(index=i, reward=rewards[i], probability=float(probabilities[i])) for i in order])


@app.get("/models", response_model=ModelsResponse, responses=ERRORS,
         summary="The models this service runs")
async def models(request: Request) -> ModelsResponse:
    backend = backend_of(request)
    answer = []
    for model in (backend.reward, backend.moderation, backend.intent):
        if model is None:
            continue
        front, engine = model.front, model.engine
        manifest = front.manifest
        answer.append(ModelInfo(
            name=manifest.name, version=manifest.version, task=manifest.task.value,
            labels=manifest.labels, provider=engine.provider, quantisation=engine.graph.value,
            max_length=manifest.input.max_length, temperature=front.temperature,
            temperatures=dict(zip(manifest.labels, front.temperatures.tolist(), strict=True))
            if manifest.task is Task.multilabel else None,
            thresholds=manifest.thresholds, threshold_goal=manifest.threshold_goal,
            metrics=manifest.metrics))
    return ModelsResponse(models=answer)


@app.post("/moderate", response_model=ModerateResponse, responses=ERRORS,
          summary="Per-category calibrated probabilities, thresholds and flags")
async def moderate(body: ModerateRequest, request: Request, response: Response
                   ) -> ModerateResponse:
    started, timing, backend = time.perf_counter(), Timing(), backend_of(request)
    model = loaded(backend.moderation, "moderation")
    front = model.front
    items, outputs = await infer_texts(model, body.inputs, backend.settings, timing)
    results = front.moderate(items, outputs)
    manifest = front.manifest
    metrics.MODERATED.labels(manifest.name, manifest.version).inc(len(results))
    for result in results:
        for category, score in result.categories.items():
            if score.flagged:
                metrics.FLAGS.labels(manifest.name, manifest.version, category).inc()
    finish(response, front, timing, started)
    return ModerateResponse(model=front.tag, results=[
        ModerationResult(flagged=r.flagged, tokens=r.tokens, truncated=r.truncated,
                         categories={c: CategoryResult(probability=v.probability,
                                                       threshold=v.threshold, flagged=v.flagged)
                                     for c, v in r.categories.items()})
        for r in results])


@app.post("/classify", response_model=ClassifyResponse, responses=ERRORS,
          summary="Top intents with calibrated probabilities, or out_of_scope")
async def classify(body: ClassifyRequest, request: Request, response: Response
                   ) -> ClassifyResponse:
    started, timing, backend = time.perf_counter(), Timing(), backend_of(request)
    model = loaded(backend.intent, "intent")
    front = model.front
    items, outputs = await infer_texts(model, body.inputs, backend.settings, timing)
    top_k = min(body.top_k, len(front.manifest.labels))
    results = front.classify(items, outputs, top_k)
    finish(response, front, timing, started)
    return ClassifyResponse(model=front.tag, results=[
        ClassifyResult(label=OUT_OF_SCOPE if r.out_of_scope else r.top[0].label,
                       out_of_scope=r.out_of_scope, tokens=r.tokens, truncated=r.truncated,
                       top=[IntentScore(label=i.label, probability=i.probability)
                            for i in r.top])
        for r in results])
