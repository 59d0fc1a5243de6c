"""The batch queue: concurrent requests' items merged into engine batches.

Requests put their tokenised items on one queue per model. Each of the engine's lanes (an
inference thread; service/runtime.py says how many) takes everything queued (up to
`max_batch_size` items) whenever it is free, so a busy lane gathers the next batch while it
runs the current one, and an idle one starts at once. For an int8 graph on a CPU two lanes,
each running onnxruntime on its share of the cores, outpace one lane on all of them: int8's
short matrix products do not keep two cores busy inside one call. An idle lane waits
`max_latency_ms` for company first: 0 on a CPU, where batching does not raise throughput and
waiting only adds latency; a few milliseconds on a GPU, where batch size is everything.
Inside a batch, the engine sorts items by length and cuts micro-batches under a token budget,
so no item's score depends on what it was batched with.

Admission by expected wait: a request is admitted only when the items ahead of it and its own
would be through the engine within its deadline (ALIGNSERVE_MAX_QUEUE_WAIT_MS, or less when the
request's X-Deadline-Ms asks for less), at the engine's measured pace (seconds per item in one
lane, learnt from the engine calls run on a lane, divided among the lanes); `max_queued_items`
caps the queue as well. A refused request gets 429 at once with a Retry-After of when that
wait would fit, and costs next to nothing: the routes ask before tokenising. An admitted request
holds its place (`reserve`) while it tokenises: the queue counts its items from admission on, so
requests admitted together cannot overfill it, and no request is tokenised only to be refused
afterwards (under a flood of 200 clients that was most of the tokenising). A job that could no
longer finish by its deadline, even started at once, is answered 429 instead of being run late,
and a batch takes a job only when none of its jobs would then finish late. The deadline counts
the request's time in the server before admission and the event loop's lag
(service/deadline.py). An empty queue admits anything; a request that could not finish by its
deadline even alone goes without one (an idle engine starts it at once), and one that could keeps
it.

Why not BentoML's batcher (`@bentoml.api(batchable=True)` behind `bentoml.depends`): measured
with bench/serve.py on the 2-core CPU, its wait estimate learned under load held every later
lone request about 100 ms (p50 +97 ms over the bare engine), its shedding models cost per
request rather than per item, and the hop to a second process cost a pickle round trip and hit
a known keep-alive race (bentoml#4971).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from models.inputs import EncodedPair
from service import metrics
from service.deadline import ARRIVED, DEADLINE, LAG_WAITS, LOOP_LAG
from service.errors import ErrorType, ServiceError
from service.runtime import Engine
from service.settings import Settings

log = logging.getLogger(__name__)
# The queue plans with a slow recent batch's pace, not a typical one's (Batcher._learn_pace).
PACE_WINDOW, PACE_QUANTILE = 32, 0.9
# Of the event loop's waits a deadline keeps time for (service/deadline.py, LAG_WAITS), those
# still ahead when a job's batch starts: its result waking it, and its answer's way out.
WAITS_AFTER_ENGINE = 2


@dataclass
class Slot:
    """The place an admitted request holds in the queue, from admission until its items are
    queued: `count` items already counted as queued, and the time by which they must finish."""
    batcher: Batcher
    count: int
    deadline: float  # perf_counter time
    lag_s: float = 0.0  # the event loop's lag that admission kept time for, per wait
    queued: bool = False

    async def run(self, items: list[EncodedPair]) -> BatchResult:
        """Queue `items` and wait for their outputs. They may be more than the place held (a
        moderation text can need several windows): the excess is admitted too, or the request
        is refused and its place given back."""
        if self.queued:
            raise RuntimeError("a slot queues its items once")
        if len(items) > self.count:
            self.batcher.admit(len(items) - self.count)
        self.queued = True
        return await self.batcher.enqueue(items, self.count, self.deadline, self.lag_s)


@dataclass
class Job:
    items: list[EncodedPair]
    future: asyncio.Future[BatchResult]
    deadline: float  # perf_counter time by which it must have finished
    lag_s: float = 0.0  # the event loop's lag its deadline keeps time for, per wait
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchResult:
    outputs: np.ndarray  # (len(items), outputs), in the job's order
    queue_s: float
    inference_s: float


class Batcher:
    def __init__(self, engine: Engine, model: str, max_batch_size: int, max_latency_ms: float,
                 max_queued_items: int,
                 max_queue_wait_ms: float = Settings.model_fields["max_queue_wait_ms"].default,
                 lanes: int | None = None) -> None:
        """`lanes`: batches run side by side; default the engine's own (service/runtime.py)."""
        self.engine, self.model = engine, model
        self.max_batch_size, self.max_wait_s = max_batch_size, max_latency_ms / 1000
        self.max_queued_items = max_queued_items
        self.max_queue_wait_s = max_queue_wait_ms / 1000
        self.lanes = lanes or engine.lanes.count
        self.jobs: deque[Job] = deque()
        self.queued_items = 0
        self.seconds_per_item = 0.02  # one lane's pace to plan with, refined from every batch
        self.pace_trend = self.seconds_per_item  # the smoothed pace (see _learn_pace)
        self.recent_paces: deque[float] = deque(maxlen=PACE_WINDOW)
        self.wake: asyncio.Event | None = None
        self.workers: list[asyncio.Task[None]] = []
        self.threads: ThreadPoolExecutor | None = None
        metrics.QUEUE_LIMIT.labels(model).set(max_queued_items)

    def drain_s(self, items: int) -> float:
        """How long `items` queued items take through the engine, its lanes side by side."""
        return items * self.seconds_per_item / self.lanes

    def deadline_s(self) -> float:
        """How long this request may still take in the queue and the engine: its deadline, less
        the time since it reached the app and the event loop's lag for each of the waits in
        the loop that the server cannot time (LAG_WAITS)."""
        asked = DEADLINE.get()
        budget = self.max_queue_wait_s if asked is None else min(asked, self.max_queue_wait_s)
        arrived = ARRIVED.get()
        spent = 0.0 if arrived is None else time.perf_counter() - arrived
        return budget - spent - LAG_WAITS * LOOP_LAG.current()

    def admit(self, count: int) -> float:
        """Raise ServiceError(overloaded) unless `count` more items would be through the engine
        within the request's deadline; returns the deadline (seconds from now; unbounded for a
        request on an idle engine that would not be in time even alone). Holds nothing:
        `reserve` is admission that holds a place."""
        deadline = self.deadline_s()
        wait = self.drain_s(self.queued_items + count)
        if not self.queued_items:
            # An idle engine refuses nothing, and a request that fits its deadline keeps it:
            # at a storm's first instant the event loop can hold a job queued past it (an
            # admitted request waited 138 ms against 100 in tests/integration/test_overload.py
            # on a 2-core AMD EPYC), and it is then answered 429 like any other, not run late.
            return deadline if wait <= deadline else math.inf
        if self.queued_items + count > self.max_queued_items:
            why = f"{self.queued_items} items are queued (limit {self.max_queued_items})"
        elif wait > deadline:
            why = (f"the queue ahead would take about {wait:.1f} s, past this request's "
                   f"deadline of {deadline:.1f} s")
        else:
            return deadline
        raise ServiceError(ErrorType.overloaded, f"{why}; retry after the Retry-After",
                           retry_after_s=max(1, math.ceil(wait - deadline)))

    @contextmanager
    def reserve(self, count: int) -> Iterator[Slot]:
        """Admit `count` items (or raise ServiceError(overloaded)) and hold their place until
        the slot queues them; a request that fails before that (tokenising, a limit) gives
        the place back."""
        slot = Slot(self, count, time.perf_counter() + self.admit(count), LOOP_LAG.current())
        self._count(count)
        try:
            yield slot
        finally:
            if not slot.queued:
                self._count(-count)

    async def run(self, items: list[EncodedPair]) -> BatchResult:
        """Admit and score `items` in whatever batch comes next; raises
        ServiceError(overloaded)."""
        with self.reserve(len(items)) as slot:
            return await slot.run(items)

    async def enqueue(self, items: list[EncodedPair], held: int, deadline: float,
                      lag_s: float = 0.0) -> BatchResult:
        """Queue the items of a slot that held `held` places."""
        loop = asyncio.get_running_loop()
        if not self.workers:  # started in the server's own event loop, on first use
            self.threads = ThreadPoolExecutor(max_workers=self.lanes,
                                              thread_name_prefix=f"engine-{self.model}")
            self.wake = asyncio.Event()
            self.workers = [loop.create_task(self._work(), name=f"batcher-{self.model}-{lane}")
                            for lane in range(self.lanes)]
        job = Job(items, loop.create_future(), deadline, lag_s)
        self.jobs.append(job)
        self._count(len(items) - held)
        assert self.wake is not None
        self.wake.set()
        return await job.future

    async def close(self, poll_s: float = 0.01) -> None:
        """Once every queued job has its answer, stop the worker and its thread (after a swap:
        requests that took this model before the switch still finish on it). A request that
        took it before the switch but reaches the queue only after this starts them again."""
        while self.jobs or self.queued_items:
            await asyncio.sleep(poll_s)
        for worker in self.workers:
            worker.cancel()
        self.workers = []
        if self.threads is not None:
            self.threads.shutdown(wait=False)
            self.threads = None

    def _count(self, delta: int) -> None:
        self.queued_items += delta
        metrics.QUEUED.labels(self.model).set(self.queued_items)

    def _due(self, job: Job) -> float:
        """When `job`'s batch must end: its deadline, less what the event loop's waits still
        ahead of it (WAITS_AFTER_ENGINE) now take beyond the lag admission kept time for. A
        storm's first requests are admitted while the loop is idle, and by the time they run
        each wait takes a few hundred milliseconds: they were answered late at the clients
        (docs/measurements.md, overload)."""
        grown = LOOP_LAG.current() - job.lag_s
        return job.deadline - WAITS_AFTER_ENGINE * max(0.0, grown)

    def _late(self, deadline: float, items: int, now: float) -> bool:
        """Whether a call of `items` items started at `now` would end past `deadline`, at one
        lane's pace."""
        return deadline < now + self.seconds_per_item * items

    def _expire(self) -> None:
        """Answer 429 to queued jobs that could no longer finish by their deadline, even
        started now: they would be answered late."""
        now = time.perf_counter()
        for job in [j for j in self.jobs if self._late(self._due(j), len(j.items), now)]:
            self.jobs.remove(job)
            self._count(-len(job.items))
            metrics.EXPIRED.labels(self.model).inc()
            if not job.future.done():
                job.future.set_exception(ServiceError(
                    ErrorType.overloaded, f"waited {now - job.queued_at:.1f} s in the queue, "
                    "past its deadline; retry after the Retry-After",
                    retry_after_s=max(1, math.ceil(self.drain_s(self.queued_items)))))

    def _take(self) -> list[Job]:
        """Whole jobs in arrival order up to max_batch_size items (a bigger job goes alone).
        Every job of a batch is answered when the whole batch ends, so a job joins only when
        all of them, the ones taken already included, would still finish by their deadlines:
        one that would not, or would make an earlier one late, is left for the next free lane,
        where it goes first (or expires, if it cannot be in time there). Under a retry storm
        of 32-pair requests, a second job joining the first made the first wait for 64 items
        instead of 32 (about 0.4 s more on one lane of a 2-core CPU): without such joins the
        storm's admitted p99 fell in each of five rounds taken in turns (docs/measurements.md,
        overload)."""
        batch = [self.jobs.popleft()]
        size, due, now = len(batch[0].items), self._due(batch[0]), time.perf_counter()
        while self.jobs and size + len(self.jobs[0].items) <= self.max_batch_size:
            joining = self.jobs[0]
            joined_due = min(due, self._due(joining))
            if self._late(joined_due, size + len(joining.items), now):
                break
            size, due = size + len(joining.items), joined_due
            batch.append(self.jobs.popleft())
        return batch

    async def _work(self) -> None:
        """One lane: take the next batch whenever free, run it in the lane's thread."""
        assert self.wake is not None
        loop = asyncio.get_running_loop()
        idle = True  # nothing has run yet
        while True:
            if not self.jobs:
                idle = True
                self.wake.clear()  # every idle lane waits; the first one woken takes the jobs
                await self.wake.wait()
            # Only a lane that sat idle waits for company: after a busy batch, whatever
            # queued meanwhile goes at once.
            if idle and self.max_wait_s and self.queued_items < self.max_batch_size:
                await asyncio.sleep(self.max_wait_s)
            idle = False
            self._expire()
            if not self.jobs:
                continue
            batch = self._take()
            items = [item for job in batch for item in job.items]
            started = time.perf_counter()
            try:
                assert self.threads is not None
                outputs, lone = await loop.run_in_executor(self.threads, self.engine.call,
                                                           items, self._observe)
            except Exception as exc:  # a bug or a broken graph: fail this batch, keep serving
                log.exception("inference failed on a batch of %d items", len(items))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self._count(-len(items))
            elapsed = time.perf_counter() - started
            if lone.items < len(items):  # the queue plans with a lane's pace: not a lone call's
                self._learn_pace((elapsed - lone.seconds) / (len(items) - lone.items))
            offset = 0
            for job in batch:
                wait = started - job.queued_at
                metrics.QUEUE_WAIT.labels(self.model).observe(wait)
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(BatchResult(
                        outputs[offset:offset + len(job.items)], wait, elapsed))
                offset += len(job.items)

    def _learn_pace(self, pace: float) -> None:
        """One batch's seconds per item into the pace the queue plans with. The trend rises at
        once when the engine slows (the cores taken by a storm of requests, longer items) and
        comes back down gradually: under a retry storm a batch ran 1.5 to 4 times the pace at
        rest, and admitted requests finished past their deadline. The queue plans with the
        trend or, when higher, the PACE_QUANTILE of the last PACE_WINDOW batches: a smoothed
        pace is a typical batch's, and the batch that decides whether a request is late is a
        slow one (on a 2-core AMD EPYC whose batches varied more, the trend alone let 1% of
        admitted requests finish 0.1-0.4 s past their deadline; docs/measurements.md,
        overload)."""
        weight = 0.5 if pace > self.pace_trend else 0.1
        self.pace_trend += weight * (pace - self.pace_trend)
        self.recent_paces.append(pace)
        self.seconds_per_item = max(self.pace_trend,
                                    float(np.quantile(self.recent_paces, PACE_QUANTILE)))

    def _observe(self, count: int, tokens: int, seconds: float) -> None:
        metrics.BATCH_ITEMS.labels(self.model).observe(count)
        metrics.BATCH_TOKENS.labels(self.model).observe(tokens)
        metrics.INFERENCE.labels(self.model).observe(seconds)
