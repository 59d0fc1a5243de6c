"""The alignserve BentoML service: `bentoml serve service.service:AlignServe`.

The public process serves the /v1 API (service/api.py), tokenises, and calls each model's
engine (service/engine.py, its own process) through `bentoml.depends`, where BentoML's adaptive
batcher merges concurrent requests. BentoML serves /livez, /readyz (ready once every engine has
warmed up), /metrics and /docs.
"""

from __future__ import annotations

import bentoml

from models import store
from service.api import Backend, RewardBackend, app
from service.engine import REWARD_TAG, SETTINGS, RewardEngine
from service.runtime import Front
from service.schemas import EngineInfo, EngineItem, EngineResult


@bentoml.service(name="alignserve", workers=1, traffic={"timeout": 120})
@bentoml.asgi_app(app, path="/v1")
class AlignServe:
    reward_engine = bentoml.depends(RewardEngine)

    def __init__(self) -> None:
        stored = store.get(REWARD_TAG)  # the model's tokenizer and calibration
        engine = self.reward_engine

        async def score(items: list[EngineItem]) -> list[EngineResult]:
            results = await engine.to_async.score(items)
            return [EngineResult.model_validate(r) for r in results]

        async def info() -> EngineInfo:
            return EngineInfo.model_validate(await engine.to_async.info())

        app.state.backend = Backend(SETTINGS, RewardBackend(
            Front(stored.path, stored.manifest), score, info))
