"""Feedback on a real `bentoml serve`, with each store back-end: SQLite on a file and a real
PostgreSQL server (tests/postgres.py). Capture, idempotent re-send, get, delete, bad records,
auth, metrics; then durability: the server and its worker are SIGKILLed in the middle of a burst
of concurrent writes, restarted (with a retention setting), and every acknowledged record is
found while the expired ones are gone."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedback.records import RECORD
from feedback.store import open_store
from service.local import kill, launch, service_env, stop
from tests.conftest import fresh_database
from tests.integration.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def preference(record_id: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "preference", "id": record_id, "prompt": "how can i get a refund",
            "chosen": "the refund will arrive in a day", "rejected": "no", **extra}


class Server:
    """`python -m service` on a free port, which this test may kill and start again."""

    def __init__(self, work: Path, settings: dict[str, str]) -> None:
        self.work, self.settings = work, settings
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    def start(self, **extra: str) -> str:
        from service.local import private_home

        self.starts += 1
        env = {**service_env(), **private_home(self.work), **self.settings, **extra}
        self.process, self.url = launch(self.work / f"serve-{self.starts}.log", env)
        return self.url

    def kill(self) -> None:
        assert self.process is not None
        kill(self.process)  # the server and its worker, mid-burst

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The store's settings and, for opening it from the test, its location."""
    if request.param == "sqlite":
        return {"ALIGNSERVE_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3")}
    return {"ALIGNSERVE_FEEDBACK_DSN": fresh_database(
        request.getfixturevalue("postgres_server"))}


def open_from(where: dict[str, str]) -> Any:
    return open_store(where.get("ALIGNSERVE_FEEDBACK_DB"), where.get("ALIGNSERVE_FEEDBACK_DSN"))


@pytest.fixture
def server(where: dict[str, str], stored_tiny: str, stored_classifiers: dict[str, str],
           tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, {"ALIGNSERVE_REWARD_MODEL": stored_tiny,
                                "ALIGNSERVE_MODERATION_MODEL": "",
                                "ALIGNSERVE_INTENT_MODEL": stored_classifiers["intent"],
                                "ALIGNSERVE_API_KEY": API_KEY, **where})
    running.start()
    yield running
    running.stop()


def test_capture_resend_get_delete_and_bad_records(server: Server) -> None:
    url = f"{server.url}/v1/feedback"
    refused = httpx.post(url, json={"records": [preference("a")]})
    assert refused.status_code == 401 and refused.json()["error_type"] == "unauthorised"

    scored = httpx.post(f"{server.url}/v1/reward/score", headers=AUTH, json={
        "items": [{"prompt": "hi", "response": "hello"}]})
    request_id, version = scored.headers["x-request-id"], scored.json()["model"]
    records = [preference("a", source="agent:42", request_id=request_id, model_version=version),
               {"kind": "intent", "id": "b", "text": "i lost my card",
                "intent": "report_lost_card"}]
    first = httpx.post(url, headers=AUTH, json={"records": records})
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": ["a", "b"], "duplicates": []}
    assert first.headers["x-request-id"]
    again = httpx.post(url, headers=AUTH, json={"records": records})
    assert again.json() == {"stored": [], "duplicates": ["a", "b"]}

    got = httpx.get(f"{url}/a", headers=AUTH).json()
    assert got["record"]["request_id"] == request_id
    assert got["record"]["model_version"] == version
    assert httpx.delete(f"{url}/a", headers=AUTH).json() == {"deleted": "a"}
    assert httpx.get(f"{url}/a", headers=AUTH).status_code == 404

    for bad, status, named in [
        ({"records": [preference("c", rejected=7)]}, 422, "rejected"),
        ({"records": [{"kind": "intent", "id": "d", "text": "t", "intent": "no_such"}]}, 422,
         "records[0].intent"),
        ({"records": [preference(f"e{i}") for i in range(300)]}, 413, "ALIGNSERVE_MAX_FEEDBACK"),
    ]:
        answer = httpx.post(url, headers=AUTH, json=bad)
        assert answer.status_code == status, answer.text
        assert named in answer.json()["error"]

    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'alignserve_feedback_records_total{kind="preference",source="agent"} 1.0' in metrics
    assert 'alignserve_feedback_records_total{kind="intent",source="unknown"} 1.0' in metrics
    deadline = time.monotonic() + 10  # the agreement is measured after the answer
    while "alignserve_preference_feedback_agreement_total{" not in metrics or not any(
            line.startswith("alignserve_preference_feedback_agreement_total")
            and line.endswith(" 1.0") for line in metrics.splitlines()):
        assert time.monotonic() < deadline, "no agreement sample"
        time.sleep(0.2)
        metrics = httpx.get(f"{server.url}/metrics").text


def burst(url: str, writers: int, stop: threading.Event) -> list[str]:
    """Writers post batches of 5 new records until `stop` (or the server dies); the ids of
    every batch that was answered 200, i.e. acknowledged."""
    acknowledged: list[str] = []
    lock = threading.Lock()

    def write(worker: int) -> None:
        with httpx.Client(headers=AUTH, timeout=10) as client:
            for batch in range(10_000):
                if stop.is_set():
                    return
                ids = [f"w{worker}-b{batch}-{k}" for k in range(5)]
                try:
                    answer = client.post(url, json={"records": [preference(i) for i in ids]})
                except httpx.TransportError:
                    return  # killed mid-request: not acknowledged
                if answer.status_code == 200:
                    assert answer.json()["stored"] == ids
                    with lock:
                        acknowledged.extend(ids)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return acknowledged


def test_sigkill_mid_burst_loses_no_acknowledged_record(server: Server,
                                                        where: dict[str, str]) -> None:
    stop = threading.Event()
    result: list[str] = []
    writer = threading.Thread(target=lambda: result.extend(
        burst(f"{server.url}/v1/feedback", writers=8, stop=stop)))
    writer.start()
    time.sleep(2.0)  # writes are flowing
    server.kill()  # SIGKILL to the server and its worker, mid-burst
    stop.set()
    writer.join(60)
    acknowledged = set(result)
    assert len(acknowledged) >= 50, "the burst never got going"

    # Two records from 40 days ago, written behind the service's back: retention must erase
    # them at the next start, and only them.
    store = open_from(where)
    old = datetime.now(UTC) - timedelta(days=40)
    store.add([RECORD.validate_python(preference(f"old-{i}")) for i in range(2)], now=old)
    store.close()

    server.start(ALIGNSERVE_FEEDBACK_RETENTION_DAYS="30")
    store = open_from(where)
    try:
        deadline = time.monotonic() + 20
        while store.get("old-0") is not None:  # the purge runs just after start
            assert time.monotonic() < deadline, "retention did not purge"
            time.sleep(0.2)
        present = {s.record.id for s in store.select()}
    finally:
        store.close()
    lost = acknowledged - present
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged records lost"
    assert not {"old-0", "old-1"} & present
    sample = sorted(acknowledged)[0]
    assert httpx.get(f"{server.url}/v1/feedback/{sample}", headers=AUTH).status_code == 200
