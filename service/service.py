"""The alignserve BentoML service: `bentoml serve service.service:AlignServe`.

BentoML hosts the process: the HTTP server, /livez, /readyz, /metrics and /docs, and the model
declared at class scope, so that a Bento built from this service carries it. The /v1 API is
the FastAPI app in service/api.py. Each model gets a front (tokeniser, calibration), an engine
(onnxruntime, warmed up at the largest shape before the service reports ready) and a batch
queue that merges concurrent requests (service/batching.py).
"""

from __future__ import annotations

import logging
import time

import bentoml

from models import store
from service.api import Backend, RewardBackend, app
from service.batching import Batcher
from service.metrics import MODEL_INFO, READY
from service.runtime import Engine, Front
from service.settings import load_settings

log = logging.getLogger(__name__)
SETTINGS = load_settings()
try:  # one exact version for the whole life of the server, from the local store only
    REWARD_TAG = store.resolve(SETTINGS.reward_model)
except store.ArtifactError as exc:
    raise SystemExit(f"alignserve: {exc}. Build it with `make serve`, or train and "
                     "`alignserve export` one and set ALIGNSERVE_REWARD_MODEL") from None


@bentoml.service(name="alignserve", workers=1, traffic={"timeout": 120})
@bentoml.asgi_app(app, path="/v1")
class AlignServe:
    reward_model = bentoml.models.BentoModel(REWARD_TAG)

    def __init__(self) -> None:
        stored = store.get(REWARD_TAG)  # every file's sha256 checked
        manifest = stored.manifest
        front = Front(stored.path, manifest)
        self.engine = Engine(stored.path, manifest, SETTINGS)
        started = time.perf_counter()
        self.engine.warm_up(front)
        log.info("%s warmed up on %s (%s) in %.1f s", front.tag, self.engine.provider,
                 self.engine.graph.value, time.perf_counter() - started)
        wait_ms = SETTINGS.max_latency_ms
        if wait_ms is None:
            wait_ms = 5.0 if self.engine.provider == "cuda" else 0.0
        batcher = Batcher(self.engine, manifest.name, SETTINGS.max_batch_size, wait_ms,
                          SETTINGS.max_queued_items)
        app.state.backend = Backend(SETTINGS, RewardBackend(front, self.engine, batcher))
        MODEL_INFO.labels(manifest.name, manifest.version, manifest.task.value,
                          self.engine.provider, self.engine.graph.value).set(1)
        READY.labels(manifest.name).set(0 if self.engine.problem else 1)

    def __is_ready__(self) -> bool:
        """Ready once warmed up (construction finished), unless the engine refused to serve."""
        return self.engine.problem is None
