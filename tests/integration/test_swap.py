"""A zero-downtime swap on a real `bentoml serve`: a bounded load generator on 127.0.0.1 keeps
scoring while a second version of the reward model is promoted through the admin endpoint. No
request fails, every client sees the version change once, and /v1/models names the new one."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.local import serving
from tests.integration.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CLIENTS, MAX_REQUESTS_EACH, MAX_SECONDS = 6, 400, 30.0


@pytest.fixture(scope="module")
def two_versions(tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[str, str]:
    """The tiny model stored twice under one name, as versions v1 and v2."""
    from models import store
    from models.manifest import Manifest

    tags = []
    for version in ("v1", "v2"):
        copy = tmp_path_factory.mktemp(f"swap-{version}") / "artifact"
        shutil.copytree(tiny_artifact, copy)
        Manifest.load(copy).model_copy(update={"name": "tiny-swap", "version": version}
                                       ).save(copy)
        tags.append(store.save(copy))
    return tags[0], tags[1]


@pytest.fixture(scope="module")
def swap_server(two_versions: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-swap") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=two_versions[0], ALIGNSERVE_MODERATION_MODEL="",
                 ALIGNSERVE_INTENT_MODEL="",
                 ALIGNSERVE_API_KEY=API_KEY) as url:
        yield url


def test_promotion_under_load_drops_nothing(swap_server: str, two_versions: tuple[str, str]
                                            ) -> None:
    old, new = two_versions
    stop = threading.Event()
    answers: list[list[tuple[float, float, int, str]]] = [[] for _ in range(CLIENTS)]
    body = {"items": [{"prompt": "how can i get a refund", "response": "sorry"}]}

    def load(client_id: int) -> None:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            for _ in range(MAX_REQUESTS_EACH):
                if stop.is_set():
                    return
                sent = time.monotonic()
                try:
                    answer = http.post(f"{swap_server}/v1/reward/score", json=body)
                    status, version = answer.status_code, answer.headers.get(
                        "x-model-version", "")
                except httpx.TransportError as exc:
                    status, version = 0, repr(exc)
                answers[client_id].append((sent, time.monotonic(), status, version))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    asked = time.monotonic()
    swapped = httpx.post(f"{swap_server}/v1/admin/models/reward", headers=AUTH,
                         json={"tag": new}, timeout=120)
    done = time.monotonic()
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join(MAX_SECONDS)
    assert time.monotonic() - started < MAX_SECONDS + 5

    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["previous"] == old and swapped.json()["current"] == new
    flat = [a for client in answers for a in client]
    failures = [a for a in flat if a[2] != 200]
    assert not failures, failures[:5]
    assert {a[3] for a in flat} == {old, new}
    assert all(a[3] == old for a in flat if a[1] < asked)  # answered before the promotion
    assert all(a[3] == new for a in flat if a[0] > done)  # sent after it
    for client in answers:  # each client sees the version change exactly once
        versions = [a[3] for a in client]
        switch = versions.index(new)
        assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}
    models = httpx.get(f"{swap_server}/v1/models", headers=AUTH).json()["models"]
    assert [m["version"] for m in models] == ["v2"]
    info = {line.split('version="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
            for line in httpx.get(f"{swap_server}/metrics").text.splitlines()
            if line.startswith("alignserve_model_info{") and 'model="tiny-swap"' in line}
    assert info == {"v1": "0.0", "v2": "1.0"}


def test_promotion_refusals_are_clear(swap_server: str) -> None:
    url = f"{swap_server}/v1/admin/models"
    missing = httpx.post(f"{url}/reward", headers=AUTH, json={"tag": "tiny-swap:nope"})
    assert missing.status_code == 404 and "no model" in missing.json()["error"]
    wrong_role = httpx.post(f"{url}/policy", headers=AUTH, json={"tag": "tiny-swap"})
    assert wrong_role.status_code == 422
    malformed = httpx.post(f"{url}/reward", headers=AUTH, json={"tag": "0" * 150})
    assert malformed.status_code == 422 and "not a model tag" in malformed.json()["error"]
    unauthorised = httpx.post(f"{url}/reward", json={"tag": "tiny-swap"})
    assert unauthorised.status_code == 401
