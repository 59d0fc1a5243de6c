"""The alignserve BentoML service: `bentoml serve service.service:AlignServe`.

BentoML hosts the process: the HTTP server, /livez, /readyz, /metrics and /docs, and the models
declared at class scope, so that a Bento built from this service carries them. Which models:
ALIGNSERVE_REWARD_MODEL, ALIGNSERVE_MODERATION_MODEL, ALIGNSERVE_INTENT_MODEL (empty: none).
The /v1 API is the FastAPI app in service/api.py. Each model gets a front (tokeniser,
calibration), an engine (onnxruntime, warmed up at the largest shape before the service reports
ready) and a batch queue that merges concurrent requests (service/batching.py).
"""

from __future__ import annotations

import logging
import time

import bentoml

from models import store
from models.manifest import Task
from service import metrics
from service.api import Backend, ModelBackend, app
from service.batching import Batcher
from service.errors import ErrorType
from service.metrics import MODEL_INFO, READY
from service.runtime import Engine, Front
from service.settings import load_settings

log = logging.getLogger(__name__)
SETTINGS = load_settings()
TASKS = {"reward": Task.reward, "moderation": Task.multilabel, "intent": Task.multiclass}


def _resolve() -> dict[str, str]:
    """role -> exact name:version, fixed for the life of the server, from the local store."""
    tags = {}
    for role, wanted in (("reward", SETTINGS.reward_model),
                         ("moderation", SETTINGS.moderation_model),
                         ("intent", SETTINGS.intent_model)):
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


TAGS = _resolve()


@bentoml.service(name="alignserve", workers=1, traffic={"timeout": 120})
@bentoml.asgi_app(app, path="/v1")
class AlignServe:
    # At class scope, so that a Bento built from this service carries them.
    reward_model = bentoml.models.BentoModel(TAGS["reward"]) if "reward" in TAGS else None
    moderation_model = (bentoml.models.BentoModel(TAGS["moderation"])
                        if "moderation" in TAGS else None)
    intent_model = bentoml.models.BentoModel(TAGS["intent"]) if "intent" in TAGS else None

    def __init__(self) -> None:
        self.engines: list[Engine] = []
        for error_type in ErrorType:  # every failure series exists from the start, at 0
            metrics.FAILURES.labels(error_type.value)
        backend = Backend(SETTINGS)
        for role, tag in TAGS.items():
            setattr(backend, role, self._load(role, tag))
        app.state.backend = backend

    def _load(self, role: str, tag: str) -> ModelBackend:
        stored = store.get(tag)  # every file's sha256 checked
        manifest = stored.manifest
        if manifest.task is not TASKS[role]:
            raise SystemExit(f"alignserve: {tag} is a {manifest.task.value} model; "
                             f"ALIGNSERVE_{role.upper()}_MODEL needs a {TASKS[role].value} one")
        front = Front(stored.path, manifest)
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
