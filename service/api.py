"""The public HTTP API (/v1): `create_app(backend)` builds the FastAPI app that the BentoML
service mounts (and that tests drive in-process through httpx.ASGITransport).

Why an ASGI app and not `@bentoml.api` endpoints: BentoML answers bad input with its own body
and turns 401 and 5xx bodies into generic text, while this service promises one closed error
taxonomy with a JSON body `{error, error_type}` everywhere. BentoML still merges these routes
into its OpenAPI page at /docs and serves /livez, /readyz and /metrics itself.

Routes only route: validate (pydantic 422; sizes 413), call service/inference.py, and shape
the answer; the answer carries the model version and a Server-Timing header.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from models.taxonomy import OUT_OF_SCOPE
from service import admin, capture, inference, rl
from service.deadline import Deadline
from service.errors import ErrorType, ServiceError, error_response, no_endpoint
from service.fronts import ModerationFront, RewardScore
from service.guard import Guard
from service.inference import (
    Backend,
    Timing,
    backend_of,
    check_count,
    check_text,
    prompt_of,
    queued_in,
    queues,
)
from service.request_id import RequestId
from service.schemas import (
    CategoryResult,
    ClassifyRequest,
    ClassifyResponse,
    ClassifyResult,
    CompareRequest,
    CompareResponse,
    Comparison,
    EnsembleDetail,
    ErrorBody,
    IntentScore,
    ModelInfo,
    ModelsResponse,
    ModerateRequest,
    ModerateResponse,
    ModerationResult,
    OpenRLHFRequest,
    OpenRLHFResponse,
    Ranked,
    RankRequest,
    RankResponse,
    Score,
    ScoreRequest,
    ScoreResponse,
    Truncation,
)

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in [
        (401, "missing or wrong API key"), (413, "too many items or too much text"),
        (404, "no such endpoint, or no such feedback record"),
        (422, "malformed body: invalid JSON, a missing field, a wrong type, empty text"),
        (429, "overloaded: retry after the Retry-After header's seconds"),
        (503, "the model is not loaded or not ready, or the feedback store is unavailable")]}
router = APIRouter()
ROUTERS = (router, capture.router, admin.router)  # every /v1 route


def create_app(backend: Backend | None = None) -> FastAPI:
    """The /v1 app over `backend`; the BentoML service sets `app.state.backend` once its
    models are loaded, when it has to build the app before them."""
    app = FastAPI(title="alignserve", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None, description="Score text against human preferences.")
    app.state.backend = backend
    app.state.queues = queues(ROUTERS)  # the guard's: which queue each scoring path waits in
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _routing)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _bug)
    app.add_middleware(Guard)
    app.add_middleware(Deadline)
    app.add_middleware(RequestId)  # the outermost: every answer carries X-Request-Id
    for routes in ROUTERS:
        app.include_router(routes, responses=ERRORS)
    return app


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    # A refusal under overload is counted (alignserve_failures_total) rather than logged at
    # INFO: in a retry storm there are hundreds a second, and a log line each took a tenth of
    # the event loop's time (docs/measurements.md, overload).
    level = logging.DEBUG if exc.error_type is ErrorType.overloaded else logging.INFO
    log.log(level, "%s %s -> %s: %s", request.method, request.url.path, exc.status, exc.message)
    return error_response(exc)


def _json_error(exc: RequestValidationError) -> str | None:
    """An unparseable body as a person reads it: line, column and reason."""
    for error in exc.errors():
        if error.get("type") != "json_invalid":
            continue
        position = error.get("loc", (0,))[-1]
        position = position if isinstance(position, int) else 0
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        text = body if isinstance(body, str) else ""
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        reason = (error.get("ctx") or {}).get("error", "not JSON")
        return f"invalid JSON at line {line}, column {column}: {reason}"
    return None


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Say where and what, never echo the input: customers' messages are private.
    if (message := _json_error(exc)) is not None:
        log.info("%s %s -> 422: %s", request.method, request.url.path, message)
        return error_response(ServiceError(ErrorType.validation, message))
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    message = "; ".join(problems) or "invalid request body"
    log.info("%s %s -> 422: %s", request.method, request.url.path, message)
    return error_response(ServiceError(ErrorType.validation, message))


async def _routing(request: Request, exc: HTTPException) -> JSONResponse:
    """Unknown paths and wrong methods, in the same taxonomy as everything else."""
    if exc.status_code == 405:
        error = ServiceError(ErrorType.method_not_allowed,
                             f"{request.method} is not allowed on {request.url.path}")
    elif exc.status_code == 404:
        error = ServiceError(ErrorType.not_found, no_endpoint(request.url.path))
    elif exc.status_code == 400:  # FastAPI could not read the body as JSON at all
        error = ServiceError(ErrorType.validation, _unreadable(request, exc.__cause__))
        log.info("%s %s -> 422: %s", request.method, request.url.path, error.message)
    else:
        error = ServiceError(ErrorType.validation, str(exc.detail))
    return error_response(error)


def _unreadable(request: Request, cause: BaseException | None) -> str:
    """Why a body is not JSON at all, for the failures FastAPI reports only as "There was an
    error parsing the body": compressed, not UTF-8 (where), or nested past the parser."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return (f"the body is sent with Content-Encoding {encoding}: this service reads "
                "only uncompressed JSON")
    if isinstance(cause, UnicodeDecodeError):
        raw = bytes(cause.object)
        before = raw[:cause.start]
        line = before.count(b"\n") + 1
        column = cause.start - before.rfind(b"\n")
        return (f"the body is not UTF-8: byte 0x{raw[cause.start]:02x} at line {line}, "
                f"column {column}")
    if isinstance(cause, RecursionError):
        return "invalid JSON: arrays or objects nested too deeply for the parser"
    return "the body could not be read as JSON"


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(ServiceError(ErrorType.internal, "internal error; see the service log"))


@router.post("/reward/score", response_model=ScoreResponse,
             summary="Score responses to prompts with the reward model")
@queued_in("reward")
async def score(body: ScoreRequest, request: Request, response: Response) -> ScoreResponse:
    timing, backend = Timing(), backend_of(request)
    settings = backend.settings
    check_count("items", len(body.items), settings.max_items, "ALIGNSERVE_MAX_ITEMS")
    prompts = [prompt_of(f"items[{i}] prompt", item, settings)
               for i, item in enumerate(body.items)]
    for i, item in enumerate(body.items):
        check_text(f"items[{i}].response", [item.response], settings)
    front, scores = await inference.rewards(backend, prompts, [i.response for i in body.items],
                                            timing)
    timing.finish(response, front)
    return ScoreResponse(model=front.tag, results=[
        Score(reward=s.reward, normalised_reward=s.normalised, tokens=s.tokens,
              truncated=Truncation(prompt=s.prompt_truncated, response=s.response_truncated),
              ensemble=None if s.spread is None else EnsembleDetail(
                  members=list(s.spread.members), std=s.spread.std,
                  conservative_reward=s.spread.conservative,
                  normalised_conservative_reward=s.spread.normalised_conservative))
        for s in scores])


@router.post("/reward/compare", response_model=CompareResponse,
             summary="Calibrated probability that response_a is preferred over response_b")
@queued_in("reward")
async def compare(body: CompareRequest, request: Request, response: Response
                  ) -> CompareResponse:
    timing, backend = Timing(), backend_of(request)
    settings = backend.settings
    pairs = body.pairs or []
    check_count("pairs", len(pairs), settings.max_items, "ALIGNSERVE_MAX_ITEMS")
    prompts = [prompt_of(f"pairs[{i}] prompt", pair, settings) for i, pair in enumerate(pairs)]
    for i, pair in enumerate(pairs):
        check_text(f"pairs[{i}].response_a", [pair.response_a], settings)
        check_text(f"pairs[{i}].response_b", [pair.response_b], settings)
    # Both sides of every pair in one engine call: a's first, then b's.
    front, scores = await inference.rewards(
        backend, prompts * 2, [p.response_a for p in pairs] + [p.response_b for p in pairs],
        timing)
    results = []
    for a, b in zip(scores[:len(pairs)], scores[len(pairs):], strict=True):
        results.append(Comparison(p_a_over_b=front.preference(a.reward, b.reward),
                                  reward_a=a.reward, reward_b=b.reward,
                                  preferred="a" if a.reward >= b.reward else "b"))
    timing.finish(response, front)
    return CompareResponse(model=front.tag, results=results)


@router.post("/reward/openrlhf", response_model=OpenRLHFResponse,
             summary="Rewards for an RL trainer: OpenRLHF's --remote_rm_url protocol")
@queued_in("reward")
async def openrlhf(body: OpenRLHFRequest, request: Request, response: Response,
                   reward: Literal["normalised", "raw"] = "normalised") -> OpenRLHFResponse:
    """Each query is split into its prompt (chat template parsed back into turns) and the
    policy's response (end-of-sequence tokens stripped), then scored ALIGNSERVE_MAX_ITEMS at a
    time. Point the trainer at `http://HOST:3000/v1/reward/openrlhf` (`?reward=raw` for the raw
    reward). An ensemble model answers with its conservative reward: what it is for."""
    timing, backend = Timing(), backend_of(request)
    settings = backend.settings
    queries = body.query
    check_count("queries", len(queries), settings.max_rl_queries, "ALIGNSERVE_MAX_RL_QUERIES")
    if body.prompts is not None and len(body.prompts) != len(queries):
        raise ServiceError(ErrorType.validation, f"{len(queries)} queries but "
                           f"{len(body.prompts)} prompts: one prompt per query")
    pairs = []
    for i, query in enumerate(queries):
        check_text(f"query[{i}]", [query], settings)
        try:
            pairs.append(rl.split_query(query, body.prompts[i] if body.prompts else None))
        except rl.SplitError as exc:
            raise ServiceError(ErrorType.validation, f"query[{i}]: {exc}") from None
    scores = []
    for start in range(0, len(pairs), settings.max_items):
        chunk = pairs[start:start + settings.max_items]
        front, part = await inference.rewards(backend, [p for p, _ in chunk],
                                              [r for _, r in chunk], timing)
        scores += part
    timing.finish(response, front)
    preferred = [front.preference(s.reward, front.mean) for s in scores]
    return OpenRLHFResponse(model=front.tag, scores=preferred, rewards=[
        rl_reward(s, reward) for s in scores])


def rl_reward(score: RewardScore, kind: str) -> float:
    """What an RL trainer optimises: the reward, or an ensemble's conservative reward."""
    if score.spread is not None:
        spread = score.spread
        return spread.normalised_conservative if kind == "normalised" else spread.conservative
    return score.normalised if kind == "normalised" else score.reward


@router.post("/reward/rank", response_model=RankResponse,
             summary="Rank candidate responses to one prompt (best-of-n)")
@queued_in("reward")
async def rank(body: RankRequest, request: Request, response: Response) -> RankResponse:
    timing, backend = Timing(), backend_of(request)
    settings = backend.settings
    check_count("candidates", len(body.candidates), settings.max_candidates,
                "ALIGNSERVE_MAX_CANDIDATES")
    prompt = prompt_of("prompt", body, settings)
    for i, candidate in enumerate(body.candidates):
        check_text(f"candidates[{i}]", [candidate], settings)
    front, scores = await inference.rewards(backend, [prompt] * len(body.candidates),
                                            body.candidates, timing)
    rewards = [s.reward for s in scores]
    probabilities = front.rank_probabilities(rewards)
    # Stable: equal rewards keep the request's order.
    order = sorted(range(len(rewards)), key=lambda i: -rewards[i])[:body.top_k]
    timing.finish(response, front)
    return RankResponse(model=front.tag, best_index=order[0], ranking=[
        Ranked(index=i, reward=rewards[i], probability=float(probabilities[i])) for i in order])


@router.get("/models", response_model=ModelsResponse, summary="The models this service runs")
async def models(request: Request) -> ModelsResponse:
    answer = []
    for model in backend_of(request).models.values():
        front, engine = model.front, model.engine
        manifest = front.manifest
        answer.append(ModelInfo(
            name=manifest.name, version=manifest.version, task=manifest.task.value,
            labels=manifest.labels, provider=engine.provider, quantisation=engine.graph.value,
            max_length=manifest.input.max_length, temperature=front.temperature,
            temperatures=dict(zip(manifest.labels, front.temperatures.tolist(), strict=True))
            if isinstance(front, ModerationFront) else None,
            thresholds=dict(zip(manifest.labels, front.thresholds.tolist(), strict=True))
            if isinstance(front, ModerationFront) else manifest.thresholds,
            threshold_goal=front.threshold_goal if isinstance(front, ModerationFront)
            else manifest.threshold_goal,
            operating_curves=bool(manifest.operating_curves), metrics=manifest.metrics))
    return ModelsResponse(models=answer)


@router.post("/moderate", response_model=ModerateResponse,
             summary="Per-category calibrated probabilities, thresholds and flags")
@queued_in("moderation")
async def moderate(body: ModerateRequest, request: Request, response: Response
                   ) -> ModerateResponse:
    timing = Timing()
    front, results = await inference.moderate(backend_of(request), body.inputs, timing,
                                              body.min_precision)
    timing.finish(response, front)
    return ModerateResponse(model=front.tag, results=[
        ModerationResult(flagged=r.flagged, tokens=r.tokens, windows=r.windows,
                         categories={c: CategoryResult(probability=v.probability,
                                                       threshold=v.threshold, flagged=v.flagged)
                                     for c, v in r.categories.items()})
        for r in results])


@router.post("/classify", response_model=ClassifyResponse,
             summary="Top intents with calibrated probabilities, or out_of_scope")
@queued_in("intent")
async def classify(body: ClassifyRequest, request: Request, response: Response
                   ) -> ClassifyResponse:
    timing = Timing()
    front, results = await inference.classify(backend_of(request), body.inputs, body.top_k,
                                              timing)
    timing.finish(response, front)
    return ClassifyResponse(model=front.tag, results=[
        ClassifyResult(label=OUT_OF_SCOPE if r.out_of_scope else r.top[0].label,
                       out_of_scope=r.out_of_scope, tokens=r.tokens, truncated=r.truncated,
                       top=[IntentScore(label=i.label, probability=i.probability)
                            for i in r.top])
        for r in results])
