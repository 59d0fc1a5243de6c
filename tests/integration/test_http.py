"""Every endpoint of a real `bentoml serve` on the tiny model: answers, consistency between
endpoints, batch invariance through the adaptive batcher, every kind of bad input, auth."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from models.taxonomy import CATEGORIES
from service.client import AlignServeError, AsyncClient, Client, server_timing
from tests.integration.conftest import API_KEY, LOGS, request_endpoints

PROMPT = "how can i get a refund for my order"
SHORT, LONG = "sorry", "the refund will arrive in a day please wait for the money " * 5


def test_score_answers_with_model_version_and_timing(server: str) -> None:
    body = {"items": [{"prompt": PROMPT, "response": "good answer"},
                      {"prompt": "weather " * 300, "response": SHORT}]}
    response = httpx.post(f"{server}/v1/reward/score", json=body)
    assert response.status_code == 200
    data = response.json()
    assert response.headers["x-model-version"] == data["model"]
    ms = server_timing(response.headers["server-timing"])
    assert set(ms) == {"read", "tokenise", "queue", "inference", "total"}
    assert ms["total"] >= ms["read"] + ms["tokenise"] + ms["queue"] + ms["inference"] - 0.3
    first, second = data["results"]
    assert first["truncated"] == {"prompt": False, "response": False}
    assert second["truncated"]["prompt"] and not second["truncated"]["response"]
    assert all(math.isfinite(r["reward"]) for r in data["results"])


def test_messages_and_plain_prompt_are_the_same_input(client: Client) -> None:
    plain = client.score([{"prompt": PROMPT, "response": SHORT}]).results[0]
    chat = client.score([{"messages": [{"role": "user", "content": PROMPT}],
                          "response": SHORT}]).results[0]
    assert chat.reward == pytest.approx(plain.reward, abs=1e-6)
    history = client.score([{"messages": [{"role": "user", "content": "hello"},
                                          {"role": "assistant", "content": "hi"},
                                          {"role": "user", "content": PROMPT}],
                             "response": SHORT}]).results[0]
    assert history.tokens > chat.tokens


def test_compare_agrees_with_two_scores(client: Client) -> None:
    a, b = client.score([{"prompt": PROMPT, "response": SHORT},
                         {"prompt": PROMPT, "response": LONG}]).results
    temperature = client.models().models[0].temperature or 1.0
    (result,) = client.compare(prompt=PROMPT, response_a=SHORT, response_b=LONG).results
    assert result.reward_a == pytest.approx(a.reward, abs=1e-5)
    assert result.reward_b == pytest.approx(b.reward, abs=1e-5)
    expected = 1 / (1 + math.exp(-(a.reward - b.reward) / temperature))
    assert result.p_a_over_b == pytest.approx(expected, abs=1e-5)
    assert result.preferred == ("a" if a.reward >= b.reward else "b")
    swapped = client.compare(pairs=[{"prompt": PROMPT, "response_a": LONG,
                                     "response_b": SHORT}]).results[0]
    assert swapped.p_a_over_b == pytest.approx(1 - result.p_a_over_b, abs=1e-5)


def test_rank_order_equals_score_order(client: Client) -> None:
    candidates = [SHORT, LONG, "good answer", "thanks for the question about the card",
                  "i can help you with the refund"]
    rewards = [s.reward for s in client.score(
        [{"prompt": PROMPT, "response": c} for c in candidates]).results]
    ranked = client.rank(prompt=PROMPT, candidates=candidates)
    assert [r.index for r in ranked.ranking] == sorted(range(5), key=lambda i: -rewards[i])
    assert ranked.best_index == ranked.ranking[0].index
    assert sum(r.probability for r in ranked.ranking) == pytest.approx(1.0)
    for r in ranked.ranking:
        assert r.reward == pytest.approx(rewards[r.index], abs=1e-5)
    top = client.rank(prompt=PROMPT, candidates=candidates, top_k=2)
    assert [r.index for r in top.ranking] == [r.index for r in ranked.ranking[:2]]


def test_a_score_does_not_depend_on_its_batch(server: str, client: Client) -> None:
    """Alone, inside a mixed-length request, and merged by the batcher with concurrent
    requests: the same item gets the same fp32 score within 1e-4."""
    item = {"prompt": PROMPT, "response": "good answer"}
    alone = client.score([item]).results[0].reward
    mixed = [{"prompt": PROMPT * k, "response": LONG[: 10 * k + 5]} for k in range(1, 12)]
    inside = client.score([*mixed[:5], item, *mixed[5:]]).results[5].reward
    assert abs(inside - alone) <= 1e-4

    async def concurrently() -> list[float]:
        async with AsyncClient(server) as async_client:
            answers = await asyncio.gather(*(
                async_client.score([*mixed[:k], item]) for k in range(12)))
        return [a.results[-1].reward for a in answers]

    for reward in asyncio.run(concurrently()):
        assert abs(reward - alone) <= 1e-4


def test_models_lists_the_served_models(client: Client) -> None:
    reward, moderation, intent = client.models().models
    assert reward.task == "reward" and reward.provider == "cpu" and reward.quantisation == "fp32"
    assert reward.name == "tiny-served" and "validation" in reward.metrics
    assert moderation.task == "multilabel" and moderation.labels == list(CATEGORIES)
    assert set(moderation.thresholds) == set(CATEGORIES) and moderation.threshold_goal
    assert moderation.temperatures and set(moderation.temperatures) == set(CATEGORIES)
    assert intent.task == "multiclass" and len(intent.labels) == 150
    assert "out_of_scope" in intent.thresholds


def test_moderate_answers_per_category(server: str) -> None:
    texts = ["thanks, that fixed it", "you are a terrible awful person", "emoji 🤖"]
    response = httpx.post(f"{server}/v1/moderate", json={"inputs": texts})
    assert response.status_code == 200
    data = response.json()
    assert response.headers["x-model-version"] == data["model"]
    for result in data["results"]:
        assert set(result["categories"]) == set(CATEGORIES)
        for category in result["categories"].values():
            assert 0 <= category["probability"] <= 1
            assert category["flagged"] == (category["probability"] >= category["threshold"])
        assert result["flagged"] == any(c["flagged"] for c in result["categories"].values())
    alone = httpx.post(f"{server}/v1/moderate", json={"inputs": texts[1:2]}).json()
    assert alone["results"][0]["categories"]["hate"]["probability"] == pytest.approx(
        data["results"][1]["categories"]["hate"]["probability"], abs=1e-5)


def test_a_long_text_is_read_whole_in_windows_and_scored_by_its_worst_part(server: str
                                                                           ) -> None:
    """The tiny model reads 30 tokens at a time; "day" is one token, so the windows of these
    texts are known: a window of 30 "day"s, and the text's last 30 words."""
    from models.inputs import window_starts

    ending = "you is a terrible awful human"  # words of the tiny vocabulary: a token each
    long = "day " * 300 + ending
    last_window = " ".join(long.split()[-30:])

    def moderate(texts: list[str]) -> list[dict[str, Any]]:
        response = httpx.post(f"{server}/v1/moderate", json={"inputs": texts})
        assert response.status_code == 200, response.text
        return response.json()["results"]

    clean, dirty, alone, days = moderate(["day " * 300, long, last_window, "day " * 30])
    assert clean["windows"] == len(window_starts(300, 30, 20)) == 15 and clean["tokens"] == 302
    assert dirty["windows"] == 15 and alone["windows"] == days["windows"] == 1
    for category in ("hate", "offensive"):
        clean_p, dirty_p, alone_p, days_p = (float(r["categories"][category]["probability"])
                                             for r in (clean, dirty, alone, days))
        assert clean_p == pytest.approx(days_p, abs=1e-5)  # every window is the same
        assert dirty_p == pytest.approx(max(days_p, alone_p), abs=1e-4)  # the worst window
    too_many = httpx.post(f"{server}/v1/moderate", json={"inputs": ["day " * 6000]})
    assert too_many.status_code == 413 and "ALIGNSERVE_MAX_WINDOWS" in too_many.text


def test_a_request_picks_its_own_operating_point(server: str, client: Client,
                                                stored_classifiers: dict[str, str]) -> None:
    """min_precision: per category the lowest threshold whose validation precision reaches it,
    read from the curves in the model's manifest."""
    from models import store

    curves = store.get(stored_classifiers["moderation"]).manifest.operating_curves
    assert set(curves) == set(CATEGORIES)
    assert client.models().models[1].operating_curves
    lowest = min(c.precision[-1] for c in curves.values())  # flag-all: every category reaches
    answer = client.moderate(["you are a terrible awful person"], min_precision=lowest)
    for category, result in answer.results[0].categories.items():
        assert result.threshold == pytest.approx(curves[category].threshold_for(lowest))
    served = client.moderate(["hello"], min_precision={"hate": lowest}).results[0].categories
    default = client.moderate(["hello"]).results[0].categories
    assert served["offensive"].threshold == default["offensive"].threshold  # untouched
    assert served["hate"].threshold == pytest.approx(curves["hate"].threshold_for(lowest))

    def refused(min_precision: object) -> str:
        response = httpx.post(f"{server}/v1/moderate",
                              json={"inputs": ["hello"], "min_precision": min_precision})
        assert response.status_code == 422, response.text
        return str(response.json()["error"])

    assert "unknown categories ['violence']" in refused({"violence": 0.5})
    assert "min_precision" in refused(1.5)
    best = max(curves["hate"].precision)
    if best < 1.0:
        assert f"hate reaches at most precision {best:.3f}" in refused({"hate": 1.0})


def test_the_clients_moderate_and_classify(server: str) -> None:
    async def both() -> tuple[bool, str]:
        async with AsyncClient(server) as async_client:
            moderation = await async_client.moderate(["hello there"])
            intent = await async_client.classify(["book a flight"], top_k=2)
        return moderation.results[0].flagged, intent.results[0].label

    flagged, label = asyncio.run(both())
    with Client(server) as client:
        assert client.moderate(["hello there"]).results[0].flagged == flagged
        assert client.classify(["book a flight"], top_k=2).results[0].label == label


def test_classify_answers_top_k_or_out_of_scope(server: str) -> None:
    texts = ["i still have not received my new card", "what is the weather"]
    response = httpx.post(f"{server}/v1/classify", json={"inputs": texts, "top_k": 3})
    assert response.status_code == 200
    for result in response.json()["results"]:
        probabilities = [t["probability"] for t in result["top"]]
        assert len(result["top"]) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert result["label"] == ("out_of_scope" if result["out_of_scope"]
                                   else result["top"][0]["label"])


def test_a_model_that_is_not_served_is_503(keyed_server: str) -> None:
    response = httpx.post(f"{keyed_server}/v1/moderate", json={"inputs": ["hi"]},
                          headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 503
    assert response.json()["error_type"] == "model_not_loaded"


TOO_MANY = {"items": [{"prompt": "a", "response": "b"}] * 65}
BAD_INPUT = [
    ("empty items", "/v1/reward/score", {"items": []}, 422),
    ("empty response", "/v1/reward/score", {"items": [{"prompt": "a", "response": ""}]}, 422),
    ("blank prompt", "/v1/reward/score", {"items": [{"prompt": "  ", "response": "b"}]}, 422),
    ("no prompt", "/v1/reward/score", {"items": [{"response": "b"}]}, 422),
    ("both prompts", "/v1/reward/score",
     {"items": [{"prompt": "a", "messages": [{"role": "user", "content": "a"}],
                 "response": "b"}]}, 422),
    ("missing field", "/v1/reward/score", {"items": [{"prompt": "a"}]}, 422),
    ("wrong type", "/v1/reward/score", {"items": [{"prompt": "a", "response": 5}]}, 422),
    ("not a list", "/v1/reward/score", {"items": "a"}, 422),
    ("unknown field", "/v1/reward/score",
     {"items": [{"prompt": "a", "response": "b", "temperature": 1}]}, 422),
    ("bad role", "/v1/reward/score",
     {"items": [{"messages": [{"role": "robot", "content": "a"}], "response": "b"}]}, 422),
    ("too many", "/v1/reward/score", TOO_MANY, 413),
    ("too long", "/v1/reward/score", {"items": [{"prompt": "a", "response": "x" * 32_001}]},
     413),
    ("too long chat", "/v1/reward/score",
     {"items": [{"messages": [{"role": "user", "content": "x" * 20_000}] * 2,
                 "response": "b"}]}, 413),
    ("compare half a pair", "/v1/reward/compare", {"prompt": "a", "response_a": "b"}, 422),
    ("compare both forms", "/v1/reward/compare",
     {"prompt": "a", "response_a": "b", "response_b": "c",
      "pairs": [{"prompt": "a", "response_a": "b", "response_b": "c"}]}, 422),
    ("rank no candidates", "/v1/reward/rank", {"prompt": "a", "candidates": []}, 422),
    ("rank top_k 0", "/v1/reward/rank", {"prompt": "a", "candidates": ["b"], "top_k": 0}, 422),
    ("rank too many", "/v1/reward/rank", {"prompt": "a", "candidates": ["b"] * 65}, 413),
    ("moderate nothing", "/v1/moderate", {"inputs": []}, 422),
    ("moderate a number", "/v1/moderate", {"inputs": [3]}, 422),
    ("moderate empty text", "/v1/moderate", {"inputs": [" "]}, 422),
    ("moderate too many", "/v1/moderate", {"inputs": ["a"] * 65}, 413),
    ("moderate too long", "/v1/moderate", {"inputs": ["x" * 32_001]}, 413),
    ("classify top_k 0", "/v1/classify", {"inputs": ["a"], "top_k": 0}, 422),
    ("classify no inputs", "/v1/classify", {"text": "a"}, 422),
]


@pytest.mark.parametrize(("case", "path", "body", "status"), BAD_INPUT,
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_its_status_and_a_json_error(server: str, case: str, path: str,
                                                    body: Any, status: int) -> None:
    response = httpx.post(f"{server}{path}", json=body)
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"error", "error_type"}
    assert data["error_type"] == {422: "validation", 413: "too_large"}[status]
    assert "x" * 100 not in data["error"]  # the input itself is never echoed


def test_paths_the_service_does_not_route_are_json_404s(server: str) -> None:
    """Outside /v1, and a /v1 path BentoML's mount cannot match (a newline in it): its own
    router answers those, in the taxonomy too."""
    for path in ("/nope", "/docs", "/v1/feedback/a%0Ab", "/v1/nope"):
        answer = httpx.get(f"{server}{path}")
        assert answer.status_code == 404, path
        assert answer.json()["error_type"] == "not_found", path
        assert "listed at / and in the OpenAPI spec at /docs.json" in answer.json()["error"]
    assert httpx.get(f"{server}/docs.json").json()["paths"]  # where the 404 points
    assert httpx.get(f"{server}/readyz").status_code == 200  # BentoML's own routes still work


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"\xff\xfe", b"[]", b"null",
                                 b'{"items": [{"prompt": "\\ud800", "response": "b"}]}',
                                 b'{"items": [{"prompt": "a\\u0000", "response": "\\udfff"}]}'],
                         ids=["invalid", "empty", "not utf-8", "array", "null",
                              "lone surrogate", "low surrogate"])
def test_malformed_bodies_are_422(server: str, raw: bytes) -> None:
    response = httpx.post(f"{server}/v1/reward/score", content=raw,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error_type"] == "validation"


def test_bad_input_is_logged_without_its_text(server: str) -> None:
    secret = "customer-secret-4242"
    for body in [{"items": [{"prompt": secret, "response": 5}]},
                 {"items": [{"prompt": secret, "response": "x" * 40_000}]},
                 {"inputs": [secret, 3]}]:
        path = "/v1/moderate" if "inputs" in body else "/v1/reward/score"
        assert httpx.post(f"{server}{path}", json=body).status_code in (413, 422)
    time.sleep(0.5)  # let the server flush its log
    log = LOGS[server].read_text()
    assert "-> 422" in log and "-> 413" in log  # the refusals were logged...
    assert secret not in log  # ...without the customer's text


def test_the_access_log_is_off_unless_asked_for(server: str, keyed_server: str) -> None:
    """ALIGNSERVE_ACCESS_LOG: off by default (no line per request), on where the setting asks."""
    for url in (server, keyed_server):
        assert httpx.get(f"{url}/v1/models").status_code in (200, 401)
    time.sleep(0.5)  # let the servers flush their logs
    assert "path=/v1/models" not in LOGS[server].read_text()
    assert "path=/v1/models" in LOGS[keyed_server].read_text()


def test_odd_but_valid_unicode_is_scored(client: Client) -> None:
    odd = ["emoji 🤖🎉", "zero\u200bwidth", "RTL \u202etext", "combining e\u0301", "中文 测试",
           "nul\u0000byte"]
    results = client.score([{"prompt": text, "response": text} for text in odd]).results
    assert len(results) == len(odd) and all(math.isfinite(r.reward) for r in results)


def test_every_unparseable_body_is_a_json_error_that_says_where(server: str) -> None:
    import gzip

    def post(raw: bytes, **headers: str) -> httpx.Response:
        return httpx.post(f"{server}/v1/reward/score", content=raw,
                          headers={"content-type": "application/json", **headers})

    broken = post(b'{"items": [\n  {"prompt": "a" "response": "b"}]}')
    assert broken.status_code == 422, broken.text
    assert broken.json()["error"].startswith("invalid JSON at line 2, column 18")
    for response, says in (
            (post(b"[" * 100_000), "nested too deeply"),  # exhausts a recursive parser
            (post(gzip.compress(b'{"items": []}'), **{"content-encoding": "gzip"}),
             "Content-Encoding gzip"),
            (post(b'{"items": [{"prompt": "caf\xe9", "response": "b"}]}'),
             "not UTF-8: byte 0xe9 at line 1, column 27")):
        assert response.status_code == 422, response.text
        assert set(response.json()) == {"error", "error_type"}, response.text
        assert says in response.json()["error"]


def test_a_body_over_the_byte_limit_is_413_before_parsing(server: str) -> None:
    response = httpx.post(f"{server}/v1/reward/score", content=b"x" * (8 << 20 | 1),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error_type"] == "too_large"


def test_a_chunked_body_over_the_byte_limit_is_413(server: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(9):
            yield b"x" * (1 << 20)

    response = httpx.post(f"{server}/v1/reward/score", content=chunks(),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error_type"] == "too_large"


def test_client_raises_the_service_error(client: Client) -> None:
    with pytest.raises(AlignServeError) as caught:
        client.score([{"prompt": "a", "response": "b"}] * 65)
    assert caught.value.status == 413 and caught.value.error_type == "too_large"


def test_auth_when_a_key_is_set(keyed_server: str) -> None:
    body = {"items": [{"prompt": PROMPT, "response": SHORT}]}
    url = f"{keyed_server}/v1/reward/score"
    for headers in [{}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"},
                    {"Authorization": API_KEY}]:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error_type"] == "unauthorised"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{keyed_server}/v1/models").status_code == 401
    with Client(keyed_server, api_key=API_KEY) as client:
        assert len(client.score(body["items"]).results) == 1
        with pytest.raises(AlignServeError, match="too_large"):  # ALIGNSERVE_MAX_ITEMS=4
            client.score(body["items"] * 5)
    for open_path in ["/livez", "/readyz", "/metrics"]:
        assert httpx.get(f"{keyed_server}{open_path}").status_code == 200


def test_auth_off_by_default(server: str) -> None:
    assert httpx.get(f"{server}/v1/models").status_code == 200


def test_openapi_documents_every_endpoint_with_an_example(server: str) -> None:
    spec = httpx.get(f"{server}/docs.json").json()
    for path in ["/v1/reward/score", "/v1/reward/compare", "/v1/reward/rank", "/v1/moderate",
                 "/v1/classify"]:
        operation = spec["paths"][path]["post"]
        assert "422" in operation["responses"] and "413" in operation["responses"]
    schemas = spec["components"]["schemas"]
    for name in ["ScoreRequest", "CompareRequest", "RankRequest", "ModerateRequest",
                 "ClassifyRequest"]:
        assert schemas[name].get("examples"), name
    assert "/v1/models" in spec["paths"]
    page = httpx.get(f"{server}/")  # the README's link: the Swagger UI that reads this spec
    assert page.status_code == 200 and "swagger" in page.text.lower()


def test_request_metrics_are_labelled_by_route_not_by_raw_path(server: str) -> None:
    """Each feedback id read and each path a scanner tries would otherwise be a new series of
    BentoML's request metrics, for good (service/endpoint_labels.py)."""
    odd = ["/v1/feedback/id-one", "/v1/feedback/id-two", "/v1/no-such-route", "/wp-admin.php"]
    for path in odd:
        httpx.get(f"{server}{path}")
    assert httpx.post(f"{server}/v1/reward/score", json={"items": [
        {"prompt": "hi", "response": "hello"}]}).status_code == 200
    endpoints = request_endpoints(server)
    assert not any(raw in endpoints for raw in odd)
    assert {"/v1/feedback/{record_id}", "/v1/{unmatched}", "/{unmatched}",
            "/v1/reward/score"} <= endpoints
