"""The feedback endpoints: POST /v1/feedback, GET and DELETE /v1/feedback/{id}.

A POST is answered 200 only once its records are committed to the store (feedback/store.py);
a store that cannot be reached is a 503 with Retry-After, and nothing was acknowledged. After
the answer, preference records are scored by the reward model serving at that moment, for the
live agreement metric (service/metrics.py PREFERENCE_AGREEMENT), a few at a time (`Agreement`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request

from feedback.records import IntentFeedback, PreferenceFeedback, RecordId
from feedback.store import FeedbackStore, StoreError, source_class
from service import inference, metrics
from service.errors import ErrorType, ServiceError
from service.inference import Backend, Timing, backend_of, check_count, check_text
from service.schemas import Deleted, FeedbackRequest, FeedbackResponse, StoredFeedback

log = logging.getLogger(__name__)
router = APIRouter()
FeedbackId = Annotated[RecordId, Path(description="The record's id.")]
T = TypeVar("T")


def store_of(backend: Backend) -> FeedbackStore:
    if backend.feedback is None:
        raise ServiceError(ErrorType.unavailable, "this service stores no feedback (set "
                           "ALIGNSERVE_FEEDBACK_DB or ALIGNSERVE_FEEDBACK_DSN)")
    return backend.feedback


async def in_thread(call: Callable[..., T], *args: Any) -> T:
    """A store call off the event loop; a store that is down is a 503 with Retry-After."""
    try:
        return await asyncio.to_thread(call, *args)
    except StoreError as exc:
        log.error("%s", exc)
        raise ServiceError(ErrorType.unavailable, "the feedback store is unavailable; nothing "
                           "was stored, retry later", retry_after_s=5) from None


@router.post("/feedback", response_model=FeedbackResponse,
             summary="Store judgements of what the models did (durable once answered)")
async def add_feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    backend = backend_of(request)
    settings, store = backend.settings, store_of(backend)
    records = body.records
    check_count("records", len(records), settings.max_feedback_records,
                "ALIGNSERVE_MAX_FEEDBACK_RECORDS")
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        if record.id in seen:
            raise ServiceError(ErrorType.validation, f"records[{i}].id: the same id as "
                               f"records[{seen[record.id]}]")
        seen[record.id] = i
        for text in record.texts():
            check_text(f"records[{i}]", [text], settings)
        if isinstance(record, IntentFeedback) and "intent" in backend.models:
            labels = backend.models["intent"].front.manifest.labels
            if record.intent not in labels:
                raise ServiceError(ErrorType.validation, f"records[{i}].intent: not an intent "
                                   f"of the served model ({len(labels)} intents; GET /v1/models "
                                   "lists them)")
    added = await in_thread(store.add, records)
    stored = set(added.stored)
    for record in records:
        if record.id in stored:
            metrics.FEEDBACK.labels(record.kind,
                                    metrics.source_label(source_class(record.source))).inc()
    preferences = [r for r in records if isinstance(r, PreferenceFeedback) and r.id in stored]
    if preferences and "reward" in backend.models:
        AGREEMENT.add(backend, preferences)
    return FeedbackResponse(stored=added.stored, duplicates=added.duplicates)


class Agreement:
    """Scores stored preference records with the reward model serving at that moment, for the
    live agreement metric: after the answers, a few pairs at a time, waiting whenever the
    batch queue is full, so it never crowds out live traffic. Records wait in a bounded
    backlog; past it a metric sample is skipped (and counted), never a record."""

    chunk, backlog = 16, 10_000

    def __init__(self) -> None:
        self.pending: deque[PreferenceFeedback] = deque()
        self.wake: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    def add(self, backend: Backend, records: list[PreferenceFeedback]) -> None:
        room = max(0, self.backlog - len(self.pending))
        metrics.AGREEMENT_SKIPPED.inc(len(records[room:]))
        self.pending.extend(records[:room])
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run(backend),
                                                               name="feedback-agreement")
        assert self.wake is not None
        self.wake.set()

    async def _run(self, backend: Backend) -> None:
        assert self.wake is not None
        while True:
            if not self.pending:
                self.wake.clear()
                await self.wake.wait()
            chunk = [self.pending.popleft() for _ in range(min(self.chunk, len(self.pending)))]
            try:
                await score_agreement(backend, chunk)
            except ServiceError as exc:
                if exc.error_type is ErrorType.overloaded:  # live traffic first
                    self.pending.extendleft(reversed(chunk))
                    await asyncio.sleep(exc.retry_after_s or 1)
                    continue
                metrics.AGREEMENT_SKIPPED.inc(len(chunk))
                log.warning("feedback agreement not measured for %d records: %s", len(chunk),
                            exc.message)


AGREEMENT = Agreement()


async def score_agreement(backend: Backend, records: list[PreferenceFeedback]) -> None:
    """Did the serving reward model rank each chosen reply higher?"""
    prompts = [r.prompt if r.prompt is not None else [m.message() for m in r.messages or []]
               for r in records]
    front, scores = await inference.rewards(
        backend, prompts * 2, [r.chosen for r in records] + [r.rejected for r in records],
        Timing(), observe=False)
    chosen, rejected = scores[:len(records)], scores[len(records):]
    for c, r in zip(chosen, rejected, strict=True):
        metrics.PREFERENCE_AGREEMENT.labels(front.manifest.name, front.manifest.version,
                                            "true" if c.reward > r.reward else "false").inc()


@router.get("/feedback/{record_id}", response_model=StoredFeedback,
            summary="One stored feedback record, as received")
async def get_feedback(record_id: FeedbackId, request: Request) -> StoredFeedback:
    found = await in_thread(store_of(backend_of(request)).get, record_id)
    if found is None:
        raise ServiceError(ErrorType.not_found, f"no feedback record with id {record_id!r}")
    return StoredFeedback(record=found.record, received_at=found.received_at)


@router.delete("/feedback/{record_id}", response_model=Deleted,
               summary="Erase one feedback record (customers' text is personal data)")
async def delete_feedback(record_id: FeedbackId, request: Request) -> Deleted:
    if not await in_thread(store_of(backend_of(request)).delete, record_id):
        raise ServiceError(ErrorType.not_found, f"no feedback record with id {record_id!r}")
    return Deleted(deleted=record_id)
