"""X-Deadline-Ms: how long a caller will wait for this request, in milliseconds. The batch
queue admits the request only if it expects to be done within it (and within
ALIGNSERVE_MAX_QUEUE_WAIT_MS), and answers 429 at once otherwise, rather than late."""

from __future__ import annotations

from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ErrorType, ServiceError, error_response

HEADER = "x-deadline-ms"
# The deadline of the request being handled, in seconds; None: the setting alone.
DEADLINE: ContextVar[float | None] = ContextVar("deadline", default=None)


class Deadline:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get(HEADER) if scope["type"] == "http" else None
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
