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
import time

import bentoml

from models import store
from service import metrics
from service.api import create_app
from service.batching import Batcher
from service.errors import ErrorType
from service.fronts import front_for
from service.inference import Backend, ModelBackend
from service.metrics import MODEL_INFO, READY
from service.runtime import Engine
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


@bentoml.service(name="alignserve", workers=1, traffic={"timeout": 120})
@bentoml.asgi_app(APP, path="/v1")
class AlignServe:
    # One attribute per role in ROLES, at class scope: BentoML finds a service's models among
    # its class attributes, so that a Bento built from this service carries them.
    reward_model = _model("reward")
    moderation_model = _model("moderation")
    intent_model = _model("intent")

    def __init__(self) -> None:
        self.engines: list[Engine] = []
        for error_type in ErrorType:  # every failure series exists from the start, at 0
            metrics.FAILURES.labels(error_type.value)
        APP.state.backend = Backend(SETTINGS, {role: self._load(role, tag)
                                               for role, tag in TAGS.items()})

    def _load(self, role: str, tag: str) -> ModelBackend:
        stored = store.get(tag)  # every file's sha256 checked
        manifest = stored.manifest
        if manifest.task is not ROLES[role]:
            raise SystemExit(f"alignserve: {tag} is a {manifest.task.value} model; "
                             f"ALIGNSERVE_{role.upper()}_MODEL needs a {ROLES[role].value} one")
        front = front_for(stored.path, manifest)
        engine = Engine(stored.path, SETTINGS, front.encoder.pad_id)
        started = time.perf_counter()
        engine.warm_up(front)
        log.info("%s warmed up on %s (%s) in %.1f s", front.tag, engine.provider,
                 engine.graph.value, time.perf_counter() - started)
        wait_ms = SETTINGS.max_latency_ms
        if wait_ms is None:
            wait_ms = 5.0 if engine.provider == "cuda" else 0.0
        batcher = Batcher(engine, manifest.name, SETTINGS.max_batch_size, wait_ms,
                          SETTINGS.max_queued_items)
        MODEL_INFO.labels(manifest.name, manifest.version, manifest.task.value,
                          engine.provider, engine.graph.value).set(1)
        metrics.start_series(manifest)
        READY.labels(manifest.name).set(0 if engine.problem else 1)
        self.engines.append(engine)
        return ModelBackend(front, engine, batcher)

    def __is_ready__(self) -> bool:
        """Ready once every model warmed up (construction finished), unless an engine refused
        to serve (a CUDA session that fell back to the CPU)."""
        return all(engine.problem is None for engine in self.engines)
