"""A real `bentoml serve` subprocess on 127.0.0.1, serving the tiny exported model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.local import serving

API_KEY = "integration-test-key-0123456789"


@pytest.fixture(scope="session")
def stored_tiny(tiny_artifact: Path) -> str:
    """The tiny model in the (temporary) model store, as the service will find it."""
    from models import store

    return store.save(tiny_artifact)


@pytest.fixture(scope="session")
def server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No API key, the fp32 graph (so scores can be compared to 1e-4)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny.split(":")[0],
                 ALIGNSERVE_GRAPH="fp32") as url:
        yield url


@pytest.fixture(scope="session")
def keyed_server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API key set, the graph chosen automatically (int8 on this CPU when it was kept)."""
    log = tmp_path_factory.mktemp("serve-keyed") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny, ALIGNSERVE_API_KEY=API_KEY,
                 ALIGNSERVE_MAX_ITEMS="4") as url:
        yield url
