"""A real Prometheus (Debian's package) scrapes the service on loopback; its HTTP API must then
return the service's own metrics with their labels.

`.ci/run` installs Prometheus, and sets REQUIRE_PROMETHEUS=1 so that CI fails rather than skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest

from service.local import free_port, wait_ready

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(scope="module")
def prometheus(server: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    if PROMETHEUS is None:
        if os.environ.get("REQUIRE_PROMETHEUS"):
            pytest.fail("prometheus is not installed (apt-get install prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    work = tmp_path_factory.mktemp("prometheus")
    target = server.removeprefix("http://")
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: alignserve\n    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_port()
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # Before it is ready its API answers 503 in plain text (it is still opening its
        # storage), which a query cannot read.
        wait_ready(process, url, work / "prometheus.log", timeout_s=60, ready_path="/-/ready")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def query(prometheus: str, promql: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    """Poll until the query returns samples (the first scrapes take a second or two)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}).json()
            if answer["status"] == "success" and answer["data"]["result"]:
                return list(answer["data"]["result"])
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no samples for {promql} after {timeout_s} s")
        time.sleep(0.5)


def test_prometheus_scrapes_the_services_own_metrics(server: str, prometheus: str) -> None:
    items = [{"prompt": "how do i get a refund", "response": "good answer " * k}
             for k in range(1, 6)]
    for _ in range(3):
        assert httpx.post(f"{server}/v1/reward/score", json={"items": items}).status_code == 200
    assert httpx.post(f"{server}/v1/reward/score", json={"items": []}).status_code == 422
    texts = ["you are a terrible awful person"] * 4
    assert httpx.post(f"{server}/v1/moderate", json={"inputs": texts}).status_code == 200

    (info,) = query(prometheus, 'alignserve_model_info{job="alignserve", task="reward"}')
    labels = info["metric"]
    assert labels["model"] == "tiny-served" and labels["task"] == "reward"
    assert labels["provider"] == "cpu" and labels["quantisation"] == "fp32"

    query(prometheus, 'alignserve_batch_items_count{model="tiny-served"} > 0')
    (scored,) = query(prometheus, 'alignserve_reward_normalised_count{model="tiny-served"} >= 15')
    assert scored["metric"]["version"] == labels["version"]
    query(prometheus, 'alignserve_failures_total{error_type="validation"} >= 1')
    query(prometheus, 'alignserve_queue_wait_seconds_bucket{model="tiny-served", le="+Inf"}')
    query(prometheus, 'alignserve_input_tokens_count{model="tiny-served"} >= 15')
    query(prometheus, 'alignserve_queued_items_limit{model="tiny-served"} > 0')
    query(prometheus, 'alignserve_event_loop_lag_seconds >= 0')  # measured since the first request
    query(prometheus, 'bentoml_service_request_total{endpoint="/v1/reward/score"}')
    (moderated,) = query(prometheus, 'alignserve_moderation_inputs_total >= 4')
    assert moderated["metric"]["model"] == "tiny-moderation"
    query(prometheus, 'alignserve_model_info{task="multilabel", model="tiny-moderation"}')
    query(prometheus, 'alignserve_model_info{task="multiclass", model="tiny-intent"}')
