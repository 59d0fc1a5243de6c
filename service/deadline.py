"""X-Deadline-Ms: how long a caller will wait for this request, in milliseconds. The batch
queue admits the request only if it expects to be done within it (and within
ALIGNSERVE_MAX_QUEUE_WAIT_MS), and answers 429 at once otherwise, rather than late.

A deadline is the caller's, so it counts more than the queue and the engine: the time since the
request reached the app (ARRIVED), and the event loop's lag (LOOP_LAG), which a request also
waits before the app reads it, when its tokens and its result wake it, and on its answer's way
out (LAG_WAITS). Under a flood of refused retries the loop runs a few hundred milliseconds late,
and admission that ignored it answered after the deadline it promised (docs/measurements.md,
"The service").
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service import metrics
from service.errors import ErrorType, ServiceError, error_response

HEADER = "x-deadline-ms"
# The deadline of the request being handled, in seconds; None: the setting alone.
DEADLINE: ContextVar[float | None] = ContextVar("deadline", default=None)
# When the request reached the app (time.perf_counter()); None outside a request.
ARRIVED: ContextVar[float | None] = ContextVar("arrived", default=None)


class LoopLag:
    """How late the event loop runs a task that is due, smoothed: measured every PERIOD_S by a
    task in the serving loop, started on first use (`start`)."""

    PERIOD_S = 0.05

    def __init__(self) -> None:
        self.seconds = 0.0
        self.task: asyncio.Task[None] | None = None

    def _measuring(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self.task is not None and not self.task.done() and self.task.get_loop() is loop

    def start(self) -> None:
        """In the running loop; again after that loop is gone (a new server, a test's loop)."""
        loop = asyncio.get_running_loop()
        if not self._measuring(loop):
            self.seconds = 0.0
            self.task = loop.create_task(self._measure(), name="loop-lag")

    def current(self) -> float:
        """The lag in seconds; 0 until measured in the running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0.0
        return self.seconds if self._measuring(loop) else 0.0

    async def _measure(self) -> None:
        while True:
            due = time.perf_counter() + self.PERIOD_S
            await asyncio.sleep(self.PERIOD_S)
            late = max(0.0, time.perf_counter() - due)
            self.seconds = 0.8 * self.seconds + 0.2 * late
            metrics.LOOP_LAG.set(self.seconds)


LOOP_LAG = LoopLag()
# The waits in the event loop that a request's deadline must also cover, each about one lag:
# before the app reads the request, when its tokenising thread hands it back, when its batch's
# result wakes it up, and its answer's way out. Under a retry storm each took about as long as
# the lag (about 200-250 ms on 2 cores; docs/measurements.md, overload), and admission that
# kept back two of them answered past the deadline.
LAG_WAITS = 4


class Deadline:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        ARRIVED.set(time.perf_counter())  # each request runs in its own context
        LOOP_LAG.start()
        given = Headers(scope=scope).get(HEADER)
        if given is None:
            return await self.app(scope, receive, send)
        try:
            milliseconds = float(given)
        except ValueError:
            milliseconds = float("nan")
        if not 0 < milliseconds <= 3_600_000:
            response = error_response(ServiceError(
                ErrorType.validation, f"X-Deadline-Ms must be a number of milliseconds in "
                f"(0, 3600000], not {given[:32]!r}"))
            return await response(scope, receive, send)
        token = DEADLINE.set(milliseconds / 1000)
        try:
            return await self.app(scope, receive, send)
        finally:
            DEADLINE.reset(token)
