"""The engine: a BentoML service whose one batchable API scores encoded items.

The API process tokenises and sends token ids here through `bentoml.depends`; BentoML's
adaptive batcher merges concurrent requests into one list, which `score` sorts by length and
runs in micro-batches under the token budget. The batcher's two knobs are set on purpose:
`max_batch_size` (items per merged batch) and `max_latency_ms`, which in BentoML is a deadline:
a request still queued after it is shed, and the API answers 429 with Retry-After.

The model is declared at class scope so that a Bento built from this service carries it. It is
loaded from the local store only (sha256-verified), warmed up at the largest shape before the
server accepts connections, and the engine is ready only if nothing went wrong.
"""

from __future__ import annotations

import logging
import time

import bentoml

from models import store
from models.inputs import EncodedPair
from service import metrics
from service.runtime import Engine, Front
from service.schemas import EngineInfo, EngineItem, EngineResult
from service.settings import load_settings

log = logging.getLogger(__name__)
SETTINGS = load_settings()
try:  # one exact version for every process of this server, resolved in the local store only
    REWARD_TAG = store.resolve(SETTINGS.reward_model)
except store.ArtifactError as exc:
    raise SystemExit(f"alignserve: {exc}. Build it with `make serve`, or train and "
                     "`alignserve export` one and set ALIGNSERVE_REWARD_MODEL") from None


@bentoml.service(name="reward-engine", workers=1, traffic={"timeout": 120})
class RewardEngine:
    model = bentoml.models.BentoModel(REWARD_TAG)

    def __init__(self) -> None:
        stored = store.get(REWARD_TAG)  # every file verified
        self.front = Front(stored.path, stored.manifest)
        self.engine = Engine(stored.path, stored.manifest, SETTINGS)
        self.name = stored.manifest.name
        started = time.perf_counter()
        self.engine.warm_up(self.front)
        log.info("%s warmed up on %s (%s) in %.1f s", self.front.tag, self.engine.provider,
                 self.engine.graph.value, time.perf_counter() - started)
        metrics.MODEL_INFO.labels(self.name, stored.manifest.version, stored.manifest.task.value,
                                  self.engine.provider, self.engine.graph.value).set(1)
        metrics.READY.labels(self.name).set(0 if self.engine.problem else 1)

    def __is_ready__(self) -> bool:
        return self.engine.problem is None

    @bentoml.api(batchable=True, max_batch_size=SETTINGS.max_batch_size,
                 max_latency_ms=SETTINGS.max_latency_ms)
    def score(self, items: list[EngineItem]) -> list[EngineResult]:
        started = time.time()
        encoded = [EncodedPair(i.input_ids, i.token_type_ids, False, False) for i in items]
        inference = 0.0

        def observe(count: int, tokens: int, seconds: float) -> None:
            nonlocal inference
            inference += seconds
            metrics.BATCH_ITEMS.labels(self.name).observe(count)
            metrics.BATCH_TOKENS.labels(self.name).observe(tokens)
            metrics.INFERENCE.labels(self.name).observe(seconds)

        outputs = self.engine.core(encoded, observe)
        waits = [max(0.0, started - i.sent_at) for i in items]
        for wait in waits:
            metrics.QUEUE_WAIT.labels(self.name).observe(wait)
        return [EngineResult(outputs=row.tolist(), queue_s=wait, inference_s=inference)
                for row, wait in zip(outputs, waits, strict=True)]

    @bentoml.api
    def info(self) -> EngineInfo:
        return EngineInfo(tag=self.front.tag, provider=self.engine.provider,
                          quantisation=self.engine.graph.value,
                          problem=self.engine.problem)
