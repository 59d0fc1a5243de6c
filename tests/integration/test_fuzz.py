"""Property-based fuzzing of the real server from its own OpenAPI document (Schemathesis's CLI):
generated valid and invalid bodies for every operation; no answer may be a 5xx, and every
answer must match the status codes and bodies the document declares. Bounded: a fixed number of
examples per operation, a seed, a time cap, loopback only, a server of its own. One worker:
hypothesis's lambda descriptions are not thread-safe (a SystemError from ast.parse under two
workers)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.endpoint_labels import ROOT_PATHS
from service.local import serving
from tests.integration.conftest import request_endpoints

SEED = 20261128
EXAMPLES = 30  # per operation and phase


@pytest.fixture(scope="module")
def fuzzed_server(stored_tiny: str, stored_classifiers: dict[str, str],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of its own: thousands of odd requests (and swaps through the admin endpoint)
    must not reach the servers other tests read."""
    log = tmp_path_factory.mktemp("serve-fuzz") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored_tiny,
                 ALIGNSERVE_MODERATION_MODEL=stored_classifiers["moderation"],
                 ALIGNSERVE_INTENT_MODEL=stored_classifiers["intent"]) as url:
        yield url


def test_generated_requests_get_no_server_error_and_match_the_schema(fuzzed_server: str,
                                                                     tmp_path: Path) -> None:
    server = fuzzed_server
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis (the dev extra) is not installed"
    report = tmp_path / "report.json"
    result = subprocess.run(
        [st, "run", f"{server}/docs.json", "--url", server, "--seed", str(SEED),
         "--max-examples", str(EXAMPLES), "--phases", "examples,coverage,fuzzing",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance",
         "--request-timeout", "30", "--max-time", "90", "--workers", "1", "--no-color",
         "--report", "ndjson", "--report-ndjson-path", str(report)],
        capture_output=True, text=True, timeout=420, cwd=tmp_path)  # its cache goes there
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    answered = [interaction["response"]["status_code"]
                for line in report.read_text().splitlines()
                for event in [json.loads(line)] if "ScenarioFinished" in event
                for interaction in event["ScenarioFinished"].get("recorder", {})
                .get("interactions", {}).values()
                if interaction.get("response")]
    assert len(answered) >= 1000 and max(answered) < 500, (len(answered), max(answered))
    # Request metrics labelled by route: thousands of odd paths leave no series of their own.
    endpoints = request_endpoints(server)
    routes = {path for path in httpx.get(f"{server}/docs.json").json()["paths"]}
    known = routes | ROOT_PATHS | {"/v1/{unmatched}", "/{unmatched}", "/static_content/{file}"}
    assert endpoints <= known, endpoints - known
