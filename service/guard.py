"""The first thing every /v1 request meets: the API key, a queue already too long for it, and
the body size, before any parsing.

Plain ASGI rather than Starlette's BaseHTTPMiddleware: it sits on every request's path, and a
chunked body (no Content-Length) must be counted as it arrives.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ErrorType, ServiceError, error_response
from service.inference import refuse_unread
from service.settings import Settings


class Guard:
    """API key (when set, compared in constant time), then the queue, then body size."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        backend = scope["app"].state.backend
        if backend is None:  # the service has not finished loading its models
            return await error_response(ServiceError(
                ErrorType.model_not_loaded, "the service is still loading its models"))(
                    scope, receive, send)
        settings: Settings = backend.settings
        headers = Headers(scope=scope)
        if settings.api_key is not None:
            expected = f"Bearer {settings.api_key.get_secret_value()}".encode()
            if not hmac.compare_digest(headers.get("authorization", "").encode(), expected):
                response = error_response(ServiceError(
                    ErrorType.unauthorised, "missing or wrong API key: send "
                    "'Authorization: Bearer <key>'"))
                response.headers["WWW-Authenticate"] = "Bearer"
                return await response(scope, receive, send)
        root, path = scope.get("root_path", ""), scope["path"]
        route = path[len(root):] if root and path.startswith(root) else path
        refused = refuse_unread(backend, scope["app"].state.queues, scope["method"], route)
        if refused is not None:  # the queue is already too long: not a byte of the body read
            return await error_response(refused)(scope, receive, send)
        limit = settings.max_request_bytes
        too_large = ServiceError(ErrorType.too_large, f"the body is larger than {limit} bytes "
                                 "(ALIGNSERVE_MAX_REQUEST_BYTES)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await error_response(too_large)(scope, receive, send)
        if length is None and scope["method"] in {"POST", "PUT", "PATCH"}:
            # A chunked body has no Content-Length to check: read it here, up to the limit.
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > limit:
                    return await error_response(too_large)(scope, receive, send)
                more = message.get("more_body", False)
            return await self.app(scope, replay(b"".join(chunks), receive), send)
        return await self.app(scope, receive, send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that first hands over a body already read."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
