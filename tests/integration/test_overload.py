"""Overload against a real `bentoml serve` (loopback, bounded in count and time): a burst far
past capacity gets only 200s and 429s, no admitted request waits in the queue past its
deadline (the server's own Server-Timing says how long each waited: a bound that holds however
loaded the machine is), every 429 says when to retry, and the service answers at once when the
burst ends."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import httpx
import pytest

from service.client import server_timing
from service.local import serving
from tests.integration.conftest import LOGS

DEADLINE_MS = 100
CLIENTS, SECONDS = 24, 4.0  # at most ~24 requests in flight, for 4 seconds


def body(n: int) -> dict[str, object]:
    return {"items": [{"prompt": "how can i get a refund for my order " * 8,
                       "response": "sorry the refund will arrive in a day " * 8}] * n}


@pytest.fixture(scope="module")
def tight_server(stored_tiny: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-overload") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny, ALIGNSERVE_MODERATION_MODEL="",
                 ALIGNSERVE_INTENT_MODEL="", ALIGNSERVE_MAX_QUEUE_WAIT_MS=str(DEADLINE_MS),
                 ALIGNSERVE_MAX_QUEUED_ITEMS="100000") as url:
        LOGS[url] = log
        yield url


def test_a_burst_past_capacity_is_shed_at_once_and_admitted_work_stays_on_time(
        tight_server: str) -> None:
    async def client(http: httpx.AsyncClient, until: float,
                     seen: list[tuple[int, float, str | None]]) -> None:
        while time.perf_counter() < until:
            response = await http.post("/v1/reward/score", json=body(64))
            timing = server_timing(response.headers.get("server-timing"))
            seen.append((response.status_code, timing.get("queue", math.nan) / 1000,
                         response.headers.get("retry-after")))

    async def burst() -> list[tuple[int, float, str | None]]:
        seen: list[tuple[int, float, str | None]] = []  # (status, queue wait s, Retry-After)
        async with httpx.AsyncClient(base_url=tight_server, timeout=30) as http:
            until = time.perf_counter() + SECONDS
            await asyncio.gather(*(client(http, until, seen) for _ in range(CLIENTS)))
        return seen

    seen = asyncio.run(burst())
    statuses = {status for status, _, _ in seen}
    assert statuses <= {200, 429} and 429 in statuses, statuses
    assert all(retry and int(retry) >= 1 for status, _, retry in seen if status == 429)
    waits = [wait for status, wait, _ in seen if status == 200]
    assert waits, "nothing was admitted"
    # A job whose deadline passes in the queue is answered 429, never run late: no admitted
    # request waited past its deadline (a millisecond of slack for the clock reads).
    assert max(waits) <= DEADLINE_MS / 1000 + 0.001, max(waits)
    started = time.perf_counter()
    assert httpx.post(f"{tight_server}/v1/reward/score", json=body(1)).status_code == 200
    assert time.perf_counter() - started < 2  # recovered at once
    # Refusals are counted, not logged one by one (a storm sends hundreds a second); the
    # server says which thread switch interval it runs with.
    log = LOGS[tight_server].read_text()
    assert "-> 429" not in log and "thread switch interval: 0.5 ms" in log
    assert "request tracing off" in log


def test_the_deadline_header_is_honoured_and_checked(tight_server: str) -> None:
    ok = httpx.post(f"{tight_server}/v1/reward/score", json=body(2),
                    headers={"x-deadline-ms": "5000"})
    assert ok.status_code == 200
    bad = httpx.post(f"{tight_server}/v1/reward/score", json=body(2),
                     headers={"x-deadline-ms": "soon"})
    assert bad.status_code == 422 and "X-Deadline-Ms" in bad.json()["error"]
    assert "x-request-id" in bad.headers
