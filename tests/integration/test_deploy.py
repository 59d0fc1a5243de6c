"""The deployment files against what the service really does: Prometheus rules checked and
unit-tested by promtool, and every metric a rule or the dashboard reads found in a live scrape."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import httpx
import pytest

from service.local import REPO

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\b((?:alignserve|bentoml)_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> str:
    if PROMTOOL is None:
        if os.environ.get("REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    result = subprocess.run([PROMTOOL, *args], cwd=PROMETHEUS_DIR, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    assert "SUCCESS: 7 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def used_metrics() -> set[str]:
    """Metric names in the alert rules and the dashboard's queries, without histogram suffixes."""
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    dashboard = json.loads((PROMETHEUS_DIR / "dashboard.json").read_text())
    text += " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    names = set()
    for name in METRIC.findall(text):
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_every_metric_the_rules_and_dashboard_use_is_exported(server: str) -> None:
    httpx.post(f"{server}/v1/reward/score", json={"items": [{"prompt": "a", "response": "b"}]})
    httpx.post(f"{server}/v1/moderate", json={"inputs": ["you are awful"]})
    httpx.post(f"{server}/v1/reward/score", json={"items": []})  # a failure, by type
    scrape = httpx.get(f"{server}/metrics").text
    exported = {line.split("{")[0].split(" ")[0] for line in scrape.splitlines()
                if line and not line.startswith("#")}
    families = set()
    for name in exported:
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        families.add(name)
    used = used_metrics()
    assert len(used) >= 12
    assert used <= families, f"not exported: {sorted(used - families)}"
