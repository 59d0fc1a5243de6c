"""Loading a stored model into a serving one, and swapping the served version of a role
without dropping a request.

`load_model` is what start-up and a swap share: verify every file's sha256, build the front and
the engine, warm the engine up at its largest shape, start its batch queue. `swap` loads the
new version beside the old one (in a thread, so the old one keeps answering), replaces the
role's entry in one assignment on the event loop (a request that already took the old model
finishes on it; every later one gets the new one), then lets the old queue drain and releases
it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from models import store
from service import metrics
from service.batching import Batcher
from service.fronts import ModerationFront, RewardFront, front_for
from service.inference import Backend, ModelBackend
from service.runtime import Engine
from service.settings import ROLES, Settings

log = logging.getLogger(__name__)


class LoadError(RuntimeError):
    """A model that cannot serve this role, with why; `missing` when the store lacks it."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def load_model(role: str, tag: str, settings: Settings) -> ModelBackend:
    try:
        exact = store.resolve(tag)
    except store.InvalidTag as exc:
        raise LoadError(str(exc)) from None
    except store.ArtifactError as exc:
        raise LoadError(str(exc), missing=True) from None
    try:
        stored = store.get(exact)  # every file's sha256 checked
    except store.ArtifactError as exc:
        raise LoadError(str(exc)) from None
    manifest = stored.manifest
    if manifest.task is not ROLES[role]:
        raise LoadError(f"{stored.tag} is a {manifest.task.value} model; the {role} role needs "
                        f"a {ROLES[role].value} one")
    front = front_for(stored.path, manifest)
    if isinstance(front, RewardFront) and settings.ensemble_penalty is not None:
        front.penalty = settings.ensemble_penalty
    if isinstance(front, ModerationFront):
        try:
            front.serve_at(settings.min_precision())
        except ValueError as exc:
            raise LoadError(f"ALIGNSERVE_MODERATION_MIN_PRECISION: {exc}") from None
    engine = Engine(stored.path, settings, front.encoder.pad_id)
    started = time.perf_counter()
    engine.warm_up(front)
    log.info("%s warmed up on %s (%s; %s) in %.1f s", front.tag, engine.provider,
             engine.graph.value, engine.lanes, time.perf_counter() - started)
    wait_ms = settings.max_latency_ms
    if wait_ms is None:
        wait_ms = 5.0 if engine.provider == "cuda" else 0.0
    batcher = Batcher(engine, manifest.name, settings.max_batch_size, wait_ms,
                      settings.max_queued_items, settings.max_queue_wait_ms)
    model = ModelBackend(front, engine, batcher)
    announce(model, 1)
    metrics.start_series(manifest)
    return model


def announce(model: ModelBackend, served: int) -> None:
    """The model-info and readiness gauges of one model: 1 while served, 0 once replaced."""
    manifest, engine = model.front.manifest, model.engine
    metrics.MODEL_INFO.labels(manifest.name, manifest.version, manifest.task.value,
                              engine.provider, engine.graph.value).set(served)
    metrics.READY.labels(manifest.name).set(served if engine.problem is None else 0)


@dataclass(frozen=True)
class Swapped:
    role: str
    previous: str | None
    current: str
    load_s: float


class Swapper:
    """Serialises swaps: two promotions at once would race for the same role."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()

    async def swap(self, backend: Backend, role: str, tag: str) -> Swapped:
        async with self.lock:
            started = time.perf_counter()
            new = await asyncio.to_thread(load_model, role, tag, backend.settings)
            if new.engine.problem is not None:
                raise LoadError(f"{new.front.tag} cannot serve: {new.engine.problem}")
            old = backend.models.get(role)
            backend.models[role] = new  # the switch: one assignment on the event loop
            load_s = time.perf_counter() - started
            log.info("%s: now serving %s (was %s; loaded and warmed in %.1f s)", role,
                     new.front.tag, old.front.tag if old else None, load_s)
            if old is not None:
                if old.front.tag != new.front.tag:
                    announce(old, 0)
                announce(new, 1)
                await old.batcher.close()
            return Swapped(role, old.front.tag if old else None, new.front.tag, load_s)
