"""The deployment files against what the service really does: Prometheus rules checked and
unit-tested by promtool, and every metric a rule or the dashboard reads found in a live scrape."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.local import REPO, serve_command, service_env, serving

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
    assert "SUCCESS: 8 rules found" in promtool("check", "rules", "alerts.yml")
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


DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "Dockerfile"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_the_tested_command_on_its_own_ports() -> None:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE, re.M).group(1))
    tested = serve_command(3000)
    assert entrypoint[:3] == ["python", *tested[1:3]]  # python -m service, as tests run it
    assert entrypoint[3:] == ["--host", "0.0.0.0", "--port", "3000"]
    assert re.search(r"^EXPOSE 3000$", DOCKERFILE, re.M)
    assert "http://127.0.0.1:3000/livez" in DOCKERFILE  # the HEALTHCHECK
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.M)  # not root


def test_the_serving_lock_is_current_and_has_no_torch(tmp_path: Path) -> None:
    for variant, extra, engine in (("cpu", "serve", "onnxruntime=="),
                                   ("gpu", "gpu", "onnxruntime-gpu==")):
        lock = (REPO / "requirements" / f"{variant}.txt").read_text()
        assert engine in lock and "\ntorch==" not in lock and "transformers==" not in lock
        assert ("onnxruntime-gpu" in lock) == (variant == "gpu")  # never both engines
        uv = Path(sys.executable).parent / "uv"
        fresh = tmp_path / f"{variant}.txt"
        result = subprocess.run(
            [str(uv), "pip", "compile", "pyproject.toml", "--extra", extra, "--python-version",
             "3.11", "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--quiet",
             "-o", str(fresh)],
            cwd=REPO, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 and "network" in result.stderr.lower():
            pytest.skip(f"no package index to compile against: {result.stderr[:200]}")
        assert result.returncode == 0, result.stderr
        pinned = {line.split("==")[0] for line in fresh.read_text().splitlines() if "==" in line}
        locked = {line.split("==")[0] for line in lock.splitlines() if "==" in line}
        assert pinned == locked, f"requirements/{variant}.txt is stale: make lock"


def test_a_read_only_model_store_serves(stored_tiny: str, tmp_path: Path) -> None:
    """As in the image: the store baked read-only, BENTOML_HOME a scratch directory."""
    from models.store import store_location

    store = tmp_path / "store"
    shutil.copytree(store_location(), store, symlinks=True)
    for path in [store, *store.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        with serving(tmp_path / "serve.log", ALIGNSERVE_REWARD_MODEL=stored_tiny,
                     ALIGNSERVE_MODERATION_MODEL="",
                 ALIGNSERVE_INTENT_MODEL="", ALIGNSERVE_MODEL_STORE=str(store)) as url:
            body = {"items": [{"prompt": "hello", "response": "hi"}]}
            assert httpx.post(f"{url}/v1/reward/score", json=body).status_code == 200
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_bentoml_build_makes_a_bento_with_the_service_and_the_models(
        stored_tiny: str, stored_classifiers: dict[str, str], tmp_path: Path) -> None:
    """Offline (lock_packages: false), into this session's store; the exported Bento carries
    the source and every model file."""
    import tarfile

    env = {**service_env(ALIGNSERVE_REWARD_MODEL=stored_tiny,
                         ALIGNSERVE_MODERATION_MODEL=stored_classifiers["moderation"],
                         ALIGNSERVE_INTENT_MODEL=stored_classifiers["intent"]),
           "BENTOML_HOME": os.environ["BENTOML_HOME"]}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    built = subprocess.run([bentoml, "build", "--output", "tag"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    archive = tmp_path / "alignserve.bento"
    exported = subprocess.run([bentoml, "export", tag, str(archive)], env=env,
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr
    with tarfile.open(archive) as bento:
        names = set(bento.getnames())
    for stored in (stored_tiny, *stored_classifiers.values()):
        name, version = stored.split(":")
        assert f"./models/{name}/{version}/model.onnx" in names
    assert {"./src/service/service.py", "./src/service/api.py",
            "./src/models/manifest.py", "./src/feedback/store.py"} <= names
    assert not any("training/" in n for n in names)  # the serving side only
