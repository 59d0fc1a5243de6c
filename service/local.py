"""Run the service as a real subprocess on 127.0.0.1 (`python -m service`, which runs
`bentoml serve`) and wait until it is ready.

Used by the integration tests and the benchmarks, so both drive exactly what `make serve` and
the container run.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out as source ports of outgoing connections (Linux's
    ip_local_port_range; its default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now, chosen below the ephemeral range: a port the kernel picked for `bind(0)`
    can be taken, before the server binds it, as the source port of any outgoing connection
    (a test's HTTP clients, PostgreSQL clients), which is how CI once lost a start."""
    low = ephemeral_range()[0]
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # all 200 taken: let the kernel choose
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


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 180,
               ready_path: str = "/readyz") -> None:
    """Until `ready_path` answers 200; StartError if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise StartError(f"the server exited ({process.returncode}):\n"
                             f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise StartError(f"not ready after {timeout_s} s:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)


def launch(log: Path, env: dict[str, str], timeout_s: float = 180, attempts: int = 3,
           command: Callable[[int], list[str]] = serve_command, ready_path: str = "/readyz",
           cwd: Path = REPO) -> tuple[subprocess.Popen[bytes], str]:
    """Start `command(port)` (by default `python -m service`) in `cwd` on a free port in a
    process group of its own and wait until `ready_path` answers 200; returns the process and
    its URL. A port taken between the choice and the bind (another process's) is a lost race,
    not a failed start: it tries another port."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        with log.open("w") as out:
            process = subprocess.Popen(command(port), cwd=cwd, env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(process, url, log, timeout_s, ready_path)
            return process, url
        except StartError:
            stop(process)
            if attempt == attempts or "address already in use" not in log.read_text().lower():
                raise
    raise AssertionError("unreachable")


def stop(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM to the whole process group (BentoML's arbiter stops its workers), then `kill`
    after `grace_s`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the server and every process below it, as a crash of its machine would.
    BentoML starts its service worker in a session of its own, so a signal to the server's
    process group alone would leave the worker running, holding its port and connections."""
    below = descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def descendants(root: int) -> list[int]:
    """Every process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


@contextmanager
def serving(log: Path, timeout_s: float = 180, **settings: str) -> Iterator[str]:
    """Start the service, wait until /readyz answers 200, yield its URL, stop it."""
    with serving_checkout(None, log, settings, timeout_s) as url:
        yield url


def checkout(code: Path) -> Path:
    """`code` resolved, when it is the root of a checkout of this repository; else
    StartError."""
    root = code.resolve()
    if not (root / "service" / "__main__.py").is_file():
        raise StartError(f"{root} is not a checkout of this repository (no "
                         "service/__main__.py)")
    return root


@contextmanager
def serving_checkout(code: Path | None, log: Path, settings: dict[str, str],
                     timeout_s: float = 180) -> Iterator[str]:
    """`serving` the service of another checkout (its root, e.g. a git worktree of an earlier
    commit; None: this one), so that a benchmark compares two versions with the same measuring
    code."""
    # Feedback goes beside the log unless the caller chose a store: never into the repository.
    env = {**service_env(), **private_home(log.parent),
           "ALIGNSERVE_FEEDBACK_DB": str(log.parent / "feedback.sqlite3"), **settings}
    if code is not None:
        code = checkout(code)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    process, url = launch(log, env, timeout_s, cwd=code or REPO)
    try:
        yield url
    finally:
        stop(process)
