"""The serving worker killed with SIGKILL under load: the service starts a new one and answers
again (the time it took is printed; the README has the figure)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.local import serving


@pytest.fixture(scope="module")
def crash_server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[str, Path]]:
    log = tmp_path_factory.mktemp("serve-crash") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny, ALIGNSERVE_MODERATION_MODEL="",
                 ALIGNSERVE_INTENT_MODEL="") as url:
        yield url, log


def worker_pids(url: str) -> list[int]:
    """The processes listening on the service's port other than the arbiter: BentoML's
    workers (found through /proc, Linux only)."""
    port = int(url.rsplit(":", 1)[1])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes) and "bentoml" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_killed_worker_is_replaced_and_the_service_answers_again(
        crash_server: tuple[str, Path]) -> None:
    url, _ = crash_server
    body = {"items": [{"prompt": "where is my card", "response": "it is in the order"}] * 8}
    stop = threading.Event()
    statuses: list[int] = []

    def load() -> None:  # bounded: one client, loopback, until the test ends
        with httpx.Client(base_url=url, timeout=5) as http:
            while not stop.is_set():
                try:
                    statuses.append(http.post("/v1/reward/score", json=body).status_code)
                except httpx.TransportError:
                    statuses.append(0)
                    time.sleep(0.05)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(1)
        workers = worker_pids(url)
        assert workers, "no worker process found"
        victim = max(workers)  # the newest: a worker, never the arbiter that spawned it
        killed = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        recovered = None
        while time.perf_counter() - killed < 120:
            try:
                if httpx.post(f"{url}/v1/reward/score", json=body, timeout=5).status_code == 200:
                    recovered = time.perf_counter() - killed
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    assert recovered is not None, "the service did not answer again within 120 s"
    print(f"answered again {recovered:.1f} s after the worker was killed")
    assert set(statuses) <= {0, 200, 503}  # refused or unready while down, never a wrong 4xx
    replacements = worker_pids(url)
    assert replacements and victim not in replacements  # a new worker serves
