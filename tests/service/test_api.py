"""The /v1 routes, the guard and the schemas in-process: `create_app` over a real backend (the
tiny exported reward model on onnxruntime), driven through httpx.ASGITransport. The real
`bentoml serve` tests in tests/integration stay; these are the fast ones."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from feedback.store import FeedbackStore, SqliteStore
from models.manifest import Manifest
from service.api import create_app
from service.batching import Batcher
from service.fronts import front_for
from service.inference import Backend, ModelBackend
from service.runtime import Engine
from service.settings import Graph, Settings

KEY = "in-process-test-key-0123456789"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def backend(artifact: Path, feedback: FeedbackStore | None = None, **settings: object
            ) -> Backend:
    config = Settings(graph=Graph.fp32, **settings)  # type: ignore[arg-type]
    front = front_for(artifact, Manifest.load(artifact))
    engine = Engine(artifact, config, front.encoder.pad_id)
    batcher = Batcher(engine, front.manifest.name, config.max_batch_size, 0.0,
                      config.max_queued_items)
    return Backend(config, {"reward": ModelBackend(front, engine, batcher)}, feedback)


@pytest.fixture
async def client(tiny_artifact: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteStore(tmp_path / "feedback.sqlite3")
    app = create_app(backend(tiny_artifact, store, max_items=3, max_feedback_records=3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        yield http


async def test_compare_agrees_with_two_scores_and_rank_with_their_order(
        client: httpx.AsyncClient) -> None:
    prompt, a, b = "hello there", "good answer thanks", "bad"
    scored = await client.post("/reward/score", json={"items": [
        {"prompt": prompt, "response": a}, {"prompt": prompt, "response": b}]})
    assert scored.status_code == 200 and scored.headers["X-Model-Version"].startswith("tiny")
    assert "inference;dur=" in scored.headers["Server-Timing"]
    ra, rb = (r["reward"] for r in scored.json()["results"])
    compared = (await client.post("/reward/compare", json={
        "prompt": prompt, "response_a": a, "response_b": b})).json()["results"][0]
    assert compared["reward_a"] == pytest.approx(ra, abs=1e-5)
    assert compared["preferred"] == ("a" if ra >= rb else "b")
    ranked = (await client.post("/reward/rank", json={"prompt": prompt,
                                                      "candidates": [b, a]})).json()
    assert ranked["best_index"] == (1 if ra >= rb else 0)
    assert sum(r["probability"] for r in ranked["ranking"]) == pytest.approx(1.0)


@pytest.mark.parametrize(("path", "body", "status", "error_type"), [
    ("/reward/score", {"items": []}, 422, "validation"),
    ("/reward/score", {"items": [{"prompt": "a", "messages": [{"role": "user", "content": "b"}],
                                  "response": "c"}]}, 422, "validation"),
    ("/reward/score", {"items": [{"prompt": "a", "response": "b"}] * 4}, 413, "too_large"),
    ("/reward/compare", {"prompt": "a", "response_a": "private words"}, 422, "validation"),
    ("/reward/compare", {"messages": [{"role": "user", "content": "a"},
                                      {"role": "assistant", "content": "private words"}],
                         "response_a": "private words", "response_b": "b"}, 422, "validation"),
    ("/moderate", {"inputs": ["hello"]}, 503, "model_not_loaded"),
    ("/classify", {"inputs": ["hello"]}, 503, "model_not_loaded"),
])
async def test_bad_requests_get_their_status_and_error_type(
        client: httpx.AsyncClient, path: str, body: dict, status: int, error_type: str) -> None:
    answer = await client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error_type"] == error_type
    assert "private" not in answer.json()["error"]  # the customer's text is never echoed


@pytest.mark.parametrize(("raw", "headers", "message"), [
    (b'{"items": [\n {"prompt": "caf\xe9", "response": "b"}]}', {},
     "the body is not UTF-8: byte 0xe9 at line 2, column 17"),
    (b"[" * 100_000, {}, "invalid JSON: arrays or objects nested too deeply for the parser"),
    (gzip.compress(b'{"items": []}'), {"content-encoding": "gzip"},
     "the body is sent with Content-Encoding gzip: this service reads only uncompressed JSON"),
], ids=["not utf-8", "nested", "gzip"])
async def test_a_body_that_is_not_json_at_all_says_why(
        client: httpx.AsyncClient, raw: bytes, headers: dict[str, str], message: str) -> None:
    answer = await client.post("/reward/score", content=raw,
                               headers={"content-type": "application/json", **headers})
    assert answer.status_code == 422
    assert answer.json() == {"error": message, "error_type": "validation"}


async def test_models_names_what_is_served(client: httpx.AsyncClient) -> None:
    (model,) = (await client.get("/models")).json()["models"]
    assert model["task"] == "reward" and model["quantisation"] == "fp32"
    assert model["provider"] == "cpu"


async def test_guard_wants_the_key_and_limits_the_body(tiny_artifact: Path) -> None:
    app = create_app(backend(tiny_artifact, api_key=KEY, max_request_bytes=1024))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        body = {"items": [{"prompt": "hi", "response": "hello"}]}
        refused = await http.post("/reward/score", json=body)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        auth = {"Authorization": f"Bearer {KEY}"}
        assert (await http.post("/reward/score", json=body, headers=auth)).status_code == 200
        big = {"items": [{"prompt": "hi", "response": "x" * 2000}]}
        too_big = await http.post("/reward/score", json=big, headers=auth)
        assert too_big.status_code == 413 and too_big.json()["error_type"] == "too_large"


async def test_a_queue_too_long_refuses_before_reading_the_body(tiny_artifact: Path) -> None:
    served = backend(tiny_artifact)
    app = create_app(served)
    batcher = served.models["reward"].batcher
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        batcher.queued_items, batcher.seconds_per_item = 100, 0.1  # 10 s ahead, 5 s deadline
        unread = await http.post("/reward/score", content=b"{not even json",
                                 headers={"content-type": "application/json"})
        assert unread.status_code == 429 and unread.json()["error_type"] == "overloaded"
        assert int(unread.headers["retry-after"]) >= 5  # the body was never parsed (not 422)
        asked = await http.post("/reward/score", content=b"{}", headers={"x-deadline-ms": "50"})
        assert asked.status_code == 429
        assert (await http.get("/models")).status_code == 200  # only scoring paths queue
        batcher.queued_items = 0
        body = {"items": [{"prompt": "hi", "response": "hello"}]}
        assert (await http.post("/reward/score", json=body)).status_code == 200


def test_every_scoring_route_and_only_those_names_the_queue_it_waits_in() -> None:
    assert create_app().state.queues == {
        "/reward/score": "reward", "/reward/compare": "reward", "/reward/openrlhf": "reward",
        "/reward/rank": "reward", "/moderate": "moderation", "/classify": "intent"}


async def test_an_app_without_its_models_yet_answers_503() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()),
                                 base_url="http://test") as http:
        answer = await http.post("/reward/score", json={"items": []})
    assert answer.status_code == 503 and answer.json()["error_type"] == "model_not_loaded"


PREFERENCE = {"kind": "preference", "id": "f-1", "prompt": "hello there",
              "chosen": "good answer thanks", "rejected": "bad", "source": "agent:42"}


async def test_feedback_is_stored_idempotently_read_and_erased(client: httpx.AsyncClient
                                                               ) -> None:
    sent = await client.post("/feedback", json={"records": [PREFERENCE]})
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"stored": ["f-1"], "duplicates": []}
    again = await client.post("/feedback", json={"records": [PREFERENCE]})
    assert again.json() == {"stored": [], "duplicates": ["f-1"]}
    got = (await client.get("/feedback/f-1")).json()
    assert got["record"]["chosen"] == "good answer thanks" and got["received_at"]
    assert (await client.delete("/feedback/f-1")).json() == {"deleted": "f-1"}
    for method in (client.get, client.delete):
        gone = await method("/feedback/f-1")
        assert gone.status_code == 404 and gone.json()["error_type"] == "not_found"


@pytest.mark.parametrize(("records", "status", "where"), [
    ([{**PREFERENCE, "chosen": ""}], 422, "records.0.preference.chosen"),
    ([{**PREFERENCE, "kind": "rating"}], 422, "records.0"),
    ([{"kind": "moderation", "text": "t", "labels": {"violence": True}}], 422,
     "records.0.moderation"),
    ([PREFERENCE, PREFERENCE], 422, "records[1].id"),
    ([{**PREFERENCE, "id": f"f-{i}"} for i in range(4)], 413, "4 records"),
    ([], 422, "records"),
])
async def test_bad_feedback_names_the_field(client: httpx.AsyncClient, records: list[object],
                                            status: int, where: str) -> None:
    answer = await client.post("/feedback", json={"records": records})
    assert answer.status_code == status, answer.text
    assert where in answer.json()["error"]


async def test_every_answer_has_a_request_id_and_unknown_routes_are_in_the_taxonomy(
        client: httpx.AsyncClient) -> None:
    ok = await client.get("/models")
    assert len(ok.headers["X-Request-Id"]) == 32
    mine = await client.get("/models", headers={"X-Request-Id": "trace-123"})
    assert mine.headers["X-Request-Id"] == "trace-123"
    missing = await client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
    assert missing.headers["X-Request-Id"]
    wrong = await client.get("/reward/score")
    assert wrong.status_code == 405 and wrong.json()["error_type"] == "method_not_allowed"
    bad_id = await client.get("/feedback/" + "x" * 200)
    assert bad_id.status_code == 422


async def test_without_a_store_feedback_is_503(tiny_artifact: Path) -> None:
    app = create_app(backend(tiny_artifact))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        answer = await http.post("/feedback", json={"records": [PREFERENCE]})
    assert answer.status_code == 503 and answer.json()["error_type"] == "unavailable"


async def test_a_store_that_is_down_is_503_and_acknowledges_nothing(tiny_artifact: Path,
                                                                    tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "down.sqlite3")
    store.close()  # every call now fails inside the store
    app = create_app(backend(tiny_artifact, store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as http:
        answer = await http.post("/feedback", json={"records": [PREFERENCE]})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert answer.json()["error_type"] == "unavailable"
        assert (await http.get("/feedback/f-1")).status_code == 503
