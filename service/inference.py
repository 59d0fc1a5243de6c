"""The one inference entry point the routes call: limits -> tokenise -> batch queue -> engine
-> post-process, with the metrics of each stage. Routes validate, call one of `rewards`,
`moderate` or `classify`, and shape the answer.

Each served model is a `ModelBackend` (front, engine and the batch queue between them);
`Backend` holds the settings and the served models by role (service/settings.py's ROLES).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from feedback.store import FeedbackStore
from models.inputs import EncodedPair, Prompt
from service import metrics
from service.batching import Batcher, Slot
from service.deadline import ARRIVED
from service.errors import ErrorType, ServiceError
from service.fronts import (
    Classification,
    Front,
    IntentFront,
    Moderation,
    ModerationFront,
    RewardFront,
    RewardScore,
)
from service.runtime import Engine
from service.schemas import Prompted
from service.settings import Settings

# Below this many characters, tokenising (~1 ms) costs less than a hop to a thread (~0.3 ms
# plus waiting for the GIL), so it runs on the event loop.
INLINE_TOKENISE_CHARS = 8192
F = TypeVar("F", bound=Front)
T = TypeVar("T")


@dataclass
class ModelBackend:
    """One served model: its front, its engine and the batch queue in front of the engine."""

    front: Front
    engine: Engine
    batcher: Batcher


@dataclass
class Backend:
    settings: Settings
    models: dict[str, ModelBackend] = field(default_factory=dict)  # role -> model
    feedback: FeedbackStore | None = None  # None when ALIGNSERVE_FEEDBACK_DB is empty

    def get(self, role: str, kind: type[F]) -> tuple[ModelBackend, F]:
        model = self.models.get(role)
        if model is None:
            raise ServiceError(ErrorType.model_not_loaded, f"this service runs no {role} model "
                               f"(set ALIGNSERVE_{role.upper()}_MODEL)")
        assert isinstance(model.front, kind)  # the service checks each model's task at load
        return model, model.front


Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_QUEUE_OF_ENDPOINT: dict[Callable[..., Any], str] = {}


def queued_in(role: str) -> Callable[[Endpoint], Endpoint]:
    """Marks a route's endpoint as waiting in `role`'s queue, so that the guard can refuse it
    before its body is read (`queues`, `refuse_unread`)."""
    def mark(endpoint: Endpoint) -> Endpoint:
        _QUEUE_OF_ENDPOINT[endpoint] = role
        return endpoint
    return mark


def queues(routers: Sequence[APIRouter]) -> dict[str, str]:
    """Path -> the role whose queue it waits in, for every route marked with `queued_in`."""
    return {route.path: _QUEUE_OF_ENDPOINT[route.endpoint] for router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and route.endpoint in _QUEUE_OF_ENDPOINT}


def refuse_unread(backend: Backend, queue_of_path: dict[str, str], method: str, route: str
                  ) -> ServiceError | None:
    """The 429 a scoring request (`route`: its path inside the /v1 app) gets before its body is
    even read: when the queue ahead alone (with one item of its own) would not be through within
    its deadline, no body can be admitted. Under a flood of retries this is what keeps a
    refusal nearly free."""
    role = queue_of_path.get(route) if method == "POST" else None
    model = backend.models.get(role) if role else None
    if model is None:
        return None
    try:
        model.batcher.admit(1)
    except ServiceError as refused:
        return refused
    return None


def backend_of(request: Request) -> Backend:
    backend: Backend | None = request.app.state.backend
    if backend is None:
        raise ServiceError(ErrorType.model_not_loaded, "the service is still loading its models")
    return backend


@dataclass
class Timing:
    """Server-Timing, in milliseconds, for the stages of one request. Inside a request (after
    service/deadline.py's middleware) it counts from the request's arrival at the app: `read`
    is the time until the route ran (reading, parsing and checking the body), and `total`
    covers everything the app did, so that a caller can tell the server's time from the
    network's and its own."""

    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arrived = ARRIVED.get()
        if arrived is not None and arrived <= self.started:
            self.stages["read"] = (self.started - arrived) * 1000
            self.started = arrived

    def finish(self, response: Response, front: Front) -> None:
        self.stages["total"] = (time.perf_counter() - self.started) * 1000
        response.headers["X-Model-Version"] = front.tag
        response.headers["Server-Timing"] = ", ".join(
            f"{name};dur={ms:.1f}" for name, ms in self.stages.items())


def check_count(what: str, count: int, limit: int, setting: str) -> None:
    if count > limit:
        raise ServiceError(ErrorType.too_large, f"{count} {what} in one request; the limit is "
                           f"{limit} ({setting})")


def check_text(where: str, texts: Sequence[str], settings: Settings) -> None:
    size = sum(len(t) for t in texts)
    if size > settings.max_chars:
        raise ServiceError(ErrorType.too_large, f"{where} has {size} characters; the limit is "
                           f"{settings.max_chars} (ALIGNSERVE_MAX_CHARS)")


def prompt_of(where: str, prompted: Prompted, settings: Settings) -> Prompt:
    check_text(where, prompted.texts(), settings)
    return prompted.as_prompt()


async def tokenise(model: ModelBackend, prepare: Callable[[], T], size: int, timing: Timing
                   ) -> T:
    """Run `prepare` (tokenisation) on the event loop when small, else in a thread."""
    started = time.perf_counter()
    if size <= INLINE_TOKENISE_CHARS:
        prepared = prepare()
    else:  # off the event loop: a big request must not stall everyone else's
        prepared = await asyncio.to_thread(prepare)
    tokenised = time.perf_counter() - started
    metrics.TOKENISATION.labels(model.front.manifest.name).observe(tokenised)
    timing.stages["tokenise"] = tokenised * 1000
    return prepared


async def run_items(model: ModelBackend, slot: Slot, items: list[EncodedPair], timing: Timing
                    ) -> np.ndarray:
    """Run tokenised items in the engine through the place `slot` holds in the batch queue;
    their raw outputs."""
    name = model.front.manifest.name
    response_field = "response" if isinstance(model.front, RewardFront) else "text"
    for item in items:
        metrics.INPUT_TOKENS.labels(name).observe(len(item))
        if item.prompt_truncated:
            metrics.TRUNCATIONS.labels(name, "prompt").inc()
        if item.response_truncated:
            metrics.TRUNCATIONS.labels(name, response_field).inc()
    result = await slot.run(items)
    timing.stages["queue"] = result.queue_s * 1000
    timing.stages["inference"] = result.inference_s * 1000
    return result.outputs


async def infer(model: ModelBackend, prepare: Callable[[], list[EncodedPair]], size: int,
                timing: Timing, count: int) -> tuple[list[EncodedPair], np.ndarray]:
    """Admit `count` items (a refused request costs next to nothing: nothing is tokenised),
    tokenise, then run in the engine; (items, raw outputs)."""
    with model.batcher.reserve(count) as slot:
        items = await tokenise(model, prepare, size, timing)
        return items, await run_items(model, slot, items, timing)


async def rewards(backend: Backend, prompts: Sequence[Prompt], responses: Sequence[str],
                  timing: Timing, observe: bool = True) -> tuple[RewardFront, list[RewardScore]]:
    """Scores of (prompt, response) pairs, in order; the caller checked their sizes. Scores
    join the reward histogram unless `observe` is off (feedback is not served traffic)."""
    model, front = backend.get("reward", RewardFront)
    size = sum(map(len, responses)) + sum(len(p) if isinstance(p, str) else
                                          sum(len(m.content) for m in p) for p in prompts)
    items, outputs = await infer(model, lambda: front.prepare(prompts, responses), size, timing,
                                 len(responses))
    scores = front.post(items, outputs)
    if observe:
        histogram = metrics.REWARD.labels(front.manifest.name, front.manifest.version)
        for score in scores:
            histogram.observe(score.normalised)
    return front, scores


def _check_texts(texts: list[str], settings: Settings) -> None:
    check_count("inputs", len(texts), settings.max_items, "ALIGNSERVE_MAX_ITEMS")
    for i, text in enumerate(texts):
        check_text(f"inputs[{i}]", [text], settings)


async def moderate(backend: Backend, texts: list[str], timing: Timing,
                   min_precision: float | dict[str, float] | None = None
                   ) -> tuple[ModerationFront, list[Moderation]]:
    """Each text whole, in overlapping windows (models/inputs.py); the windows count against
    ALIGNSERVE_MAX_WINDOWS and, in the queue, as items. `min_precision` picks another
    operating point for this request."""
    model, front = backend.get("moderation", ModerationFront)
    _check_texts(texts, backend.settings)
    try:
        thresholds = front.thresholds_for(min_precision)
    except ValueError as exc:
        raise ServiceError(ErrorType.validation, f"min_precision: {exc}") from None
    with model.batcher.reserve(len(texts)) as slot:  # one window per text, at least
        windows = await tokenise(model, lambda: front.prepare_windows(texts),
                                 sum(map(len, texts)), timing)
        limit = backend.settings.max_windows
        if len(windows.items) > limit:
            raise ServiceError(ErrorType.too_large, f"the inputs need {len(windows.items)} "
                               f"windows of {front.manifest.input.max_length} tokens; the limit "
                               f"is {limit} (ALIGNSERVE_MAX_WINDOWS): send fewer or shorter "
                               "texts per request")
        outputs = await run_items(model, slot, windows.items, timing)
    results = front.moderate(windows, outputs, thresholds)
    manifest = front.manifest
    metrics.MODERATED.labels(manifest.name, manifest.version).inc(len(results))
    for result in results:
        for category, score in result.categories.items():
            if score.flagged:
                metrics.FLAGS.labels(manifest.name, manifest.version, category).inc()
    return front, results


async def classify(backend: Backend, texts: list[str], top_k: int, timing: Timing
                   ) -> tuple[IntentFront, list[Classification]]:
    model, front = backend.get("intent", IntentFront)
    _check_texts(texts, backend.settings)
    items, outputs = await infer(model, lambda: front.prepare_texts(texts),
                                 sum(map(len, texts)), timing, len(texts))
    return front, front.classify(items, outputs, min(top_k, len(front.manifest.labels)))
