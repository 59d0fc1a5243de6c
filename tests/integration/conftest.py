"""A real `bentoml serve` subprocess on 127.0.0.1, serving the tiny exported model."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.client import Client
from service.local import serving

API_KEY = "integration-test-key-0123456789"
LOGS: dict[str, Path] = {}  # server URL -> its log file


def request_endpoints(server: str) -> set[str]:
    """The `endpoint` labels of BentoML's request counter on the server's /metrics."""
    page = httpx.get(f"{server}/metrics").text
    return set(re.findall(r'bentoml_service_request_total\{[^}]*endpoint="([^"]*)"', page))


@pytest.fixture(scope="session")
def stored_tiny(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model in the (temporary) model store as 'tiny-served', a name of its own so
    that store tests elsewhere can save the same artifact without a clash."""
    from models import store
    from models.manifest import Manifest

    copy = tmp_path_factory.mktemp("served") / "artifact"
    shutil.copytree(tiny_artifact, copy)
    Manifest.load(copy).model_copy(update={"name": "tiny-served"}).save(copy)
    return store.save(copy)


def export_and_store(run: Path, name: str) -> str:
    from models import store
    from training.export import export_checkpoint

    artifact = run / "artifact"
    export_checkpoint(run / "model", artifact, name).save(artifact)
    return store.save(artifact)


@pytest.fixture(scope="session")
def stored_classifiers(moderation_run: Path, intent_run: Path) -> dict[str, str]:
    return {"moderation": export_and_store(moderation_run, "tiny-moderation"),
            "intent": export_and_store(intent_run, "tiny-intent")}


@pytest.fixture(scope="session")
def server(stored_tiny: str, stored_classifiers: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """All three models, no API key, the fp32 graphs (so scores can be compared to 1e-4)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny.split(":")[0],
                 ALIGNSERVE_MODERATION_MODEL=stored_classifiers["moderation"],
                 ALIGNSERVE_INTENT_MODEL=stored_classifiers["intent"],
                 ALIGNSERVE_GRAPH="fp32") as url:
        LOGS[url] = log
        yield url


@pytest.fixture(scope="session")
def keyed_server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The reward model only, an API key set, the graph chosen automatically (int8 on this CPU
    when it was kept), BentoML's access log on."""
    log = tmp_path_factory.mktemp("serve-keyed") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny, ALIGNSERVE_MODERATION_MODEL="",
                 ALIGNSERVE_INTENT_MODEL="", ALIGNSERVE_ACCESS_LOG="true",
                 ALIGNSERVE_API_KEY=API_KEY, ALIGNSERVE_MAX_ITEMS="4") as url:
        LOGS[url] = log
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[Client]:
    """A typed client of the shared server."""
    with Client(server) as c:
        yield c
