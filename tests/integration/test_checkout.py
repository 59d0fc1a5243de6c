"""A benchmark can serve another checkout's code (`service.local.serving_checkout`, what
`bench.overload --against` runs), so that two versions are measured with the same load
generator: the server really runs the other checkout's service."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from service.local import REPO, StartError, serving_checkout

PACKAGES = ("service", "models", "training")


def test_a_server_runs_the_other_checkouts_code(stored_tiny: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    for package in PACKAGES:
        shutil.copytree(REPO / package, other / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    api = other / "service" / "api.py"
    text = api.read_text()
    assert "is not allowed on" in text
    api.write_text(text.replace("is not allowed on", "is not allowed (the other checkout) on"))
    settings = {"ALIGNSERVE_REWARD_MODEL": stored_tiny, "ALIGNSERVE_MODERATION_MODEL": "",
                "ALIGNSERVE_INTENT_MODEL": ""}
    with serving_checkout(other, tmp_path / "serve.log", settings) as url:
        answer = httpx.get(f"{url}/v1/reward/score", timeout=30)
    assert answer.status_code == 405
    assert "(the other checkout)" in answer.json()["error"]


def test_a_directory_that_is_no_checkout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartError, match="not a checkout"), serving_checkout(
            tmp_path, tmp_path / "serve.log", {}):
        pass
