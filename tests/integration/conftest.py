"""A real `bentoml serve` subprocess on 127.0.0.1, serving the tiny exported model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).parent / "bentoml"
API_KEY = "integration-test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int) -> list[str]:
    return [str(BENTOML), "serve", "service.service:AlignServe", "--host", "127.0.0.1",
            "--port", str(port)]


def service_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNSERVE_")}
    return {**env, "BENTOML_DO_NOT_TRACK": "true", **settings}


@contextmanager
def bentoml_serve(log: Path, timeout_s: float = 180, **settings: str) -> Iterator[str]:
    """Start the service, wait until /readyz says ready, yield its URL, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen(serve_command(port), cwd=REPO, env=service_env(**settings),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"bentoml serve exited ({process.returncode}):\n"
                            f"{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def stored_tiny(tiny_artifact: Path) -> str:
    """The tiny model in the (temporary) model store, as the service will find it."""
    from models import store

    return store.save(tiny_artifact)


@pytest.fixture(scope="session")
def server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No API key, the fp32 graph (so scores can be compared to 1e-4)."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with bentoml_serve(log, ALIGNSERVE_REWARD_MODEL=stored_tiny.split(":")[0],
                       ALIGNSERVE_GRAPH="fp32") as url:
        yield url


@pytest.fixture(scope="session")
def keyed_server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API key set, the graph chosen automatically (int8 on this CPU when it was kept)."""
    log = tmp_path_factory.mktemp("serve-keyed") / "serve.log"
    with bentoml_serve(log, ALIGNSERVE_REWARD_MODEL=stored_tiny, ALIGNSERVE_API_KEY=API_KEY,
                       ALIGNSERVE_MAX_ITEMS="4") as url:
        yield url
