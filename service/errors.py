"""The closed error taxonomy: one table from error type to HTTP status, one JSON body shape."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics


class ErrorType(StrEnum):
    validation = "validation"
    too_large = "too_large"
    overloaded = "overloaded"
    unauthorised = "unauthorised"
    not_found = "not_found"  # a path that does not exist, or a feedback id that is not stored
    method_not_allowed = "method_not_allowed"
    model_not_loaded = "model_not_loaded"
    unavailable = "unavailable"  # a part that is switched off or down (the feedback store)
    internal = "internal"  # a bug of ours, never bad input; the body says no more than that


STATUS: dict[ErrorType, int] = {
    ErrorType.validation: 422,
    ErrorType.too_large: 413,
    ErrorType.overloaded: 429,
    ErrorType.unauthorised: 401,
    ErrorType.not_found: 404,
    ErrorType.method_not_allowed: 405,
    ErrorType.model_not_loaded: 503,
    ErrorType.unavailable: 503,
    ErrorType.internal: 500,
}


def no_endpoint(path: str) -> str:
    """A 404's message: the path (cut short) and where the real endpoints are listed."""
    return (f"no endpoint {path[:200]}; the endpoints are listed at / and in the OpenAPI "
            "spec at /docs.json")


class ServiceError(Exception):
    def __init__(self, error_type: ErrorType, message: str,
                 retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.error_type, self.message, self.retry_after_s = error_type, message, retry_after_s

    @property
    def status(self) -> int:
        return STATUS[self.error_type]

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "error_type": self.error_type.value}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else {}


def error_response(error: ServiceError) -> JSONResponse:
    """The JSON answer for an error, counted in alignserve_failures_total by type."""
    metrics.FAILURES.labels(error.error_type.value).inc()
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


class TaxonomyNotFound:
    """ASGI middleware around BentoML's own router, which answers a path it does not route with
    a plain-text 404: a path outside /v1, or a /v1 path its mount cannot match (one holding a
    newline). Those answers get the taxonomy's JSON body too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        replaced = False

        async def send_in_taxonomy(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 404 and (
                    Headers(raw=message["headers"]).get("content-type", "")
                    .startswith("text/plain")):
                replaced = True
                path = scope.get("path", "")
                error = ServiceError(ErrorType.not_found, no_endpoint(path))
                return await error_response(error)(scope, receive, send)
            if not replaced:  # the plain body of a replaced answer is dropped
                await send(message)

        return await self.app(scope, receive, send_in_taxonomy)
