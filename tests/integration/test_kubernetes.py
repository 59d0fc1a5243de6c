"""Both kustomize overlays render, every manifest validates against the Kubernetes schemas,
and what they name (probes, ports, settings, metrics path) is what the service really has."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import httpx
import pytest
import yaml

from service.local import REPO
from service.settings import OTHER_VARIABLES, PREFIX, Settings

KUBERNETES = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("REQUIRE_KUBECTL"):
            pytest.fail("kubectl is not installed")
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run([kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_every_manifest_validates(overlay: str) -> None:
    import kubernetes_validate

    docs = render(overlay)
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service",
                                         "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                         "ServiceMonitor"}
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: its shape is checked below instead
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    hpa = yaml.safe_load((KUBERNETES / "hpa-queue.yaml").read_text())
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_names_match_the_service(overlay: str) -> None:
    kinds = by_kind(render(overlay))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (port,) = container["ports"]
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"EXPOSE {port['containerPort']}" in dockerfile
    assert f"--port\", \"{port['containerPort']}\"" in dockerfile
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"),
                        ("livenessProbe", "/livez")):
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}
    service_port = kinds["Service"]["spec"]["ports"][0]
    assert service_port["targetPort"] == port["name"]
    (endpoint,) = kinds["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint == {"port": service_port["name"], "path": "/metrics", "interval": "15s"}
    labels = pod.get("labels") or kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert kinds["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    known = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    settings = kinds["ConfigMap"]["data"]
    assert set(settings) <= known, sorted(set(settings) - known)
    Settings.model_validate({k.removeprefix(PREFIX).lower(): v for k, v in settings.items()})
    secret_env = {e["name"] for e in container["env"]}
    assert secret_env == {"ALIGNSERVE_API_KEY", "ALIGNSERVE_FEEDBACK_DSN"} <= known
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "ENV PATH=/opt/venv/bin:$PATH" in dockerfile and "BENTOML_HOME=/var/lib/alignserve" \
        in dockerfile and "/var/lib/alignserve" in mounts  # writable where BentoML writes
    gpu = container["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpu == "1") == (overlay == "gpu")
    assert (settings["ALIGNSERVE_PROVIDER"] == "cuda") == (overlay == "gpu")


def test_the_probed_paths_answer_on_a_live_server(server: str) -> None:
    container = by_kind(render("cpu"))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert httpx.get(f"{server}{container[probe]['httpGet']['path']}").status_code == 200
    assert httpx.get(f"{server}/metrics").status_code == 200
