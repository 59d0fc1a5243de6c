"""BentoML's request metrics labelled by route, not by raw path.

BentoML's RunnerTrafficMetricsMiddleware labels `bentoml_service_request_*` with the request's
raw path, so every feedback id read (`/v1/feedback/abc-123`) and every unknown path a scanner
tries adds series for good: unbounded cardinality, and a /metrics page that grew slow enough
to miss Prometheus's scrape timeout in the fuzz run. `install()` replaces that middleware,
before BentoML builds its app, with a subclass that hands BentoML the route template instead
(`/v1/feedback/{record_id}`; `/v1/{unmatched}` or `/{unmatched}` for paths no route serves)
and the real path back to the app inside it. BentoML looks the class up in its module when it
builds the middleware stack, which is why replacing the module attribute reaches it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/v1"
UNMATCHED = "{unmatched}"
# BentoML's own routes at the root (docs UI and its files, OpenAPI document, probes, metrics).
ROOT_PATHS = frozenset({"/", "/docs.json", "/schema.json", "/livez", "/readyz", "/healthz",
                        "/metrics"})
STATIC = "/static_content/"
RAW_PATH = "alignserve.raw_path"


class EndpointTemplates:
    """Raw request path -> the template of the route that serves it."""

    def __init__(self, api_paths: Iterable[str]) -> None:
        self.routes: list[tuple[re.Pattern[str], str]] = [
            (compile_path(path)[0], path) for path in api_paths]

    def __call__(self, path: str) -> str:
        if path in ROOT_PATHS:
            return path
        if path.startswith(STATIC):
            return f"{STATIC}{{file}}"
        if path == API_PREFIX or path.startswith(f"{API_PREFIX}/"):
            inner = path[len(API_PREFIX):]
            for regex, template in self.routes:
                if regex.match(inner):
                    return f"{API_PREFIX}{template}"
            return f"{API_PREFIX}/{UNMATCHED}"
        return f"/{UNMATCHED}"


def api_templates() -> EndpointTemplates:
    from service.api import ROUTERS

    return EndpointTemplates(route.path for routes in ROUTERS for route in routes.routes
                             if hasattr(route, "path"))


def install(templates: EndpointTemplates) -> None:
    """Swap BentoML's request-metrics middleware for the route-labelled one (idempotent)."""
    from bentoml._internal.server.http import instruments

    original = instruments.RunnerTrafficMetricsMiddleware
    if getattr(original, "templated", False):
        return

    class RouteLabelledTrafficMetrics(original):  # type: ignore[misc, valid-type]
        templated = True

        def __init__(self, app: ASGIApp, **options: object) -> None:
            super().__init__(self._restore, **options)
            self.inner = app

        async def _restore(self, scope: Scope, receive: Receive, send: Send) -> None:
            if RAW_PATH in scope:
                scope = {**scope, "path": scope[RAW_PATH]}
            await self.inner(scope, receive, send)

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                template = templates(scope["path"])
                if template != scope["path"]:
                    scope = {**scope, "path": template, RAW_PATH: scope["path"]}
            await super().__call__(scope, receive, send)

    setattr(instruments, "RunnerTrafficMetricsMiddleware", RouteLabelledTrafficMetrics)  # noqa: B010
