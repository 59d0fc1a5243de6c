"""Run the service as a real subprocess on 127.0.0.1 (`python -m service`, which runs
`bentoml serve`) and wait until it is ready.

Used by the integration tests and the benchmarks, so both drive exactly what `make serve` and
the container run.
"""

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

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int) -> list[str]:
    """What `make serve` and the container run (service/__main__.py), on loopback."""
    return [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]


def service_env(**settings: str) -> dict[str, str]:
    """This environment without any ALIGNSERVE_* variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIGNSERVE_")}
    return {**env, "BENTOML_DO_NOT_TRACK": "true", **settings}


class StartError(RuntimeError):
    pass


def private_home(directory: Path) -> dict[str, str]:
    """A BENTOML_HOME of this server's own, reading this environment's model store through
    ALIGNSERVE_MODEL_STORE (as a container does). `bentoml serve` wipes
    $BENTOML_HOME/prometheus_multiproc_dir at start, so servers sharing a home would wipe and
    mix each other's metrics."""
    from models.store import store_location

    return {"BENTOML_HOME": str(directory / "bentoml-home"),
            "ALIGNSERVE_MODEL_STORE": str(Path(store_location()).resolve())}


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 180
               ) -> None:
    """Until /readyz answers 200; StartError if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise StartError(f"bentoml serve exited ({process.returncode}):\n"
                             f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise StartError(f"not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)


@contextmanager
def serving(log: Path, timeout_s: float = 180, **settings: str) -> Iterator[str]:
    """Start the service, wait until /readyz answers 200, yield its URL, stop it (SIGTERM to
    the whole process group, then SIGKILL after 30 s)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Feedback goes beside the log unless the caller chose a store: never into the repository.
    env = {**service_env(), **private_home(log.parent),
           "ALIGNSERVE_FEEDBACK_DB": str(log.parent / "feedback.sqlite3"), **settings}
    with log.open("w") as out:
        process = subprocess.Popen(serve_command(port), cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(process, url, log, timeout_s)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
