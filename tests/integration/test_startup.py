"""Start-up refuses bad settings and a missing model with one readable line, not a traceback."""

from __future__ import annotations

import subprocess

import pytest

from service.local import REPO, free_port, serve_command, service_env


@pytest.mark.parametrize(("settings", "message"), [
    ({"ALIGNSERVE_MAX_ITEMS": "0"}, "invalid settings: ALIGNSERVE_MAX_ITEMS"),
    ({"ALIGNSERVE_PROVIDR": "cuda"}, "unknown settings ['ALIGNSERVE_PROVIDR']"),
    ({"ALIGNSERVE_API_KEY": "short"}, "ALIGNSERVE_API_KEY must be at least 16 characters"),
    ({"ALIGNSERVE_REWARD_MODEL": "no-such-model"}, "no model 'no-such-model' in the store"),
    ({"ALIGNSERVE_REWARD_MODEL": "", "ALIGNSERVE_MODERATION_MODEL": "",
      "ALIGNSERVE_INTENT_MODEL": ""}, "no model to serve"),
], ids=["out of range", "misspelt", "weak key", "missing model", "no model"])
def test_start_up_refuses(settings: dict[str, str], message: str) -> None:
    result = subprocess.run(serve_command(free_port()), cwd=REPO, env=service_env(**settings),
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-2000:]
    assert "Traceback" not in output
