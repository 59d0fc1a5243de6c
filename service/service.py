"""The alignserve BentoML service: `bentoml serve service.service:AlignServe`.

BentoML hosts the process: the HTTP server, /livez, /readyz, /metrics and /docs, and the models
declared at class scope, so that a Bento built from this service carries them. Which models:
one per role in service/settings.py's ROLES (ALIGNSERVE_REWARD_MODEL, ..._MODERATION_MODEL,
..._INTENT_MODEL; empty: none). The /v1 API is service/api.py's app. Each model gets a front
(tokeniser, post-processing), an engine (onnxruntime, warmed up at the largest shape before the
service reports ready) and a batch queue that merges concurrent requests (service/batching.py).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, cast

import bentoml

from feedback.records import KINDS
from feedback.store import FeedbackStore, StoreError, open_store
from models import store
from service import endpoint_labels, metrics
from service.api import create_app
from service.errors import ErrorType, TaxonomyNotFound
from service.inference import Backend
from service.loading import LoadError, load_model
from service.settings import ROLES, load_settings

log = logging.getLogger(__name__)
SETTINGS = load_settings()


def _resolve() -> dict[str, str]:
    """role -> exact name:version, fixed for the life of the server, from the local store."""
    tags = {}
    for role in ROLES:
        wanted = SETTINGS.model_tag(role)
        if not wanted:
            continue
        try:
            tags[role] = store.resolve(wanted)
        except store.ArtifactError as exc:
            raise SystemExit(f"alignserve: {exc} (ALIGNSERVE_{role.upper()}_MODEL). Build the "
                             "default models with `make serve`, train and `alignserve export` "
                             f"one, or set ALIGNSERVE_{role.upper()}_MODEL= to serve none"
                             ) from None
    if not tags:
        raise SystemExit("alignserve: no model to serve: every ALIGNSERVE_*_MODEL is empty")
    return tags


def _model(role: str) -> bentoml.models.BentoModel | None:
    return bentoml.models.BentoModel(TAGS[role]) if role in TAGS else None


TAGS = _resolve()
APP = create_app()  # the backend is set once the models are loaded, in AlignServe.__init__


# Tracing off means every URL excluded: BentoML's OpenTelemetry middleware then hands each
# request straight on, instead of wrapping it (and every send) in a span nothing exports.
TRACING: dict[str, Any] = {} if SETTINGS.tracing else {"tracing": {"excluded_urls": [".*"]}}


@bentoml.service(name="alignserve", workers=1, traffic={"timeout": 120},
                 logging={"access": {"enabled": SETTINGS.access_log}}, **TRACING)
@bentoml.asgi_app(APP, path="/v1")
class AlignServe:
    # One attribute per role in ROLES, at class scope: BentoML finds a service's models among
    # its class attributes, so that a Bento built from this service carries them.
    reward_model = _model("reward")
    moderation_model = _model("moderation")
    intent_model = _model("intent")

    def __init__(self) -> None:
        sys.setswitchinterval(SETTINGS.switch_interval_ms / 1000)
        log.info("python's thread switch interval: %g ms (ALIGNSERVE_SWITCH_INTERVAL_MS); "
                 "request tracing %s (ALIGNSERVE_TRACING)", sys.getswitchinterval() * 1000,
                 "on" if SETTINGS.tracing else "off")
        for error_type in ErrorType:  # every failure series exists from the start, at 0
            metrics.FAILURES.labels(error_type.value)
        for kind in KINDS:
            metrics.FEEDBACK.labels(kind, "unknown")
        models = {}
        for role, tag in TAGS.items():
            try:
                models[role] = load_model(role, tag, SETTINGS)
            except LoadError as exc:
                raise SystemExit(f"alignserve: {exc} (ALIGNSERVE_{role.upper()}_MODEL)") from None
        self.backend = Backend(SETTINGS, models, open_feedback())
        APP.state.backend = self.backend

    @bentoml.on_shutdown
    def close(self) -> None:
        """The feedback store's connections go back cleanly (every record was committed when
        it was acknowledged; nothing waits here)."""
        if self.backend.feedback is not None:
            self.backend.feedback.close()

    def __is_ready__(self) -> bool:
        """Ready once every model warmed up (construction finished), unless an engine refused
        to serve (a CUDA session that fell back to the CPU)."""
        return all(m.engine.problem is None for m in self.backend.models.values())


# The decorators return a bentoml Service, which the type checker sees as the class.
cast(Any, AlignServe).add_asgi_middleware(TaxonomyNotFound)  # BentoML's own 404s too
endpoint_labels.install(endpoint_labels.api_templates())  # request metrics by route


def open_feedback() -> FeedbackStore | None:
    """The feedback store of the settings, and its retention: records older than
    ALIGNSERVE_FEEDBACK_RETENTION_DAYS are erased now and then every hour."""
    if not SETTINGS.feedback_enabled:
        log.info("feedback: off (ALIGNSERVE_FEEDBACK_DB is empty)")
        return None
    dsn = SETTINGS.feedback_dsn.get_secret_value() if SETTINGS.feedback_dsn else None
    try:
        store = open_store(SETTINGS.feedback_db, dsn)
    except StoreError as exc:
        raise SystemExit(f"alignserve: {exc} (ALIGNSERVE_FEEDBACK_DSN)") from None
    log.info("feedback: stored in %s", store.describe())
    days = SETTINGS.feedback_retention_days
    if days is not None:
        threading.Thread(target=_retention, args=(store, days), name="feedback-retention",
                         daemon=True).start()
    return store


def _retention(store: FeedbackStore, days: float, every_s: float = 3600) -> None:
    while True:
        try:
            erased = store.purge(days)
            metrics.FEEDBACK_PURGED.inc(erased)
            log.info("feedback retention: erased %d records older than %g days", erased, days)
        except StoreError as exc:
            log.error("feedback retention failed, retrying in %.0f s: %s", every_s, exc)
        time.sleep(every_s)
