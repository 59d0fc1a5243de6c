"""An ensemble reward model: `train reward --ensemble 2` builds the members and the ensemble;
export and store treat it as one model; a real server answers with the members' mean, spread
and conservative reward, each member's reward equal to what that member serves alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models import store
from models.manifest import Manifest
from service.client import Client
from service.local import serving
from service.runtime import RewardRuntime
from service.settings import Settings
from tests.conftest import TINY_TRAINING
from tests.integration.conftest import export_and_store
from training.cli import main

PROMPT = "how can i help you with my card ?"
RESPONSES = ["thanks , the refund is excellent", "a terrible awful answer", "hello"]
PENALTY = 0.5


@pytest.fixture(scope="module")
def ensemble_run(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("ensemble")
    assert main(["train", "reward", "--ensemble", "2", "--output", str(output), "--backbone",
                 str(tiny_backbone), "--name", "tiny-ensemble", *TINY_TRAINING,
                 "--max-train-pairs", "32"]) == 0
    return output


@pytest.fixture(scope="module")
def stored(ensemble_run: Path) -> dict[str, str]:
    """The ensemble and each member in the store."""
    return {"ensemble": export_and_store(ensemble_run, "tiny-ensemble"),
            **{f"member-{k}": export_and_store(ensemble_run / f"member-{k}", f"tiny-member-{k}")
               for k in range(2)}}


def test_the_ensemble_is_one_versioned_model_with_k_outputs(ensemble_run: Path,
                                                            stored: dict[str, str]) -> None:
    manifest = store.get(stored["ensemble"]).manifest
    assert manifest.ensemble is not None and len(manifest.ensemble.members) == 2
    assert manifest.calibration is not None and manifest.normalisation is not None
    assert "hh-rlhf" in manifest.metrics and "behaviour" in manifest.metrics
    assert manifest.parity_max_diff["fp32"] <= 1e-4  # both members' outputs, one graph
    report = json.loads((ensemble_run / "report.json").read_text())
    assert set(report["ensemble"]) >= {"validation", "hh-rlhf"} and len(report["members"]) == 2
    seeds = [Manifest.load(ensemble_run / f"member-{k}" / "model").training["config"]["seed"]
             for k in range(2)]
    assert seeds[1] == seeds[0] + 1


@pytest.fixture(scope="module")
def ensemble_server(stored: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve-ensemble") / "serve.log"
    with serving(log, ALIGNSERVE_REWARD_MODEL=stored["ensemble"], ALIGNSERVE_MODERATION_MODEL="",
                 ALIGNSERVE_INTENT_MODEL="", ALIGNSERVE_GRAPH="fp32",
                 ALIGNSERVE_ENSEMBLE_PENALTY=str(PENALTY)) as url:
        yield url


def test_a_served_ensemble_answers_with_its_members_spread_and_conservative_reward(
        stored: dict[str, str], ensemble_server: str) -> None:
    settings = Settings(graph="fp32")
    alone = np.array([[s.reward for s in RewardRuntime.from_store(stored[f"member-{k}"],
                                                                  settings).score(
        [PROMPT] * len(RESPONSES), RESPONSES)] for k in range(2)]).T
    with Client(ensemble_server) as client:
        results = client.score([{"prompt": PROMPT, "response": r} for r in RESPONSES]).results
        rl = client.rl_rewards([f"{PROMPT} {r}" for r in RESPONSES], [PROMPT] * len(RESPONSES),
                               raw=True)
    for row, result in zip(alone, results, strict=True):
        assert result.ensemble is not None
        np.testing.assert_allclose(result.ensemble.members, row, atol=1e-4)
        assert result.reward == pytest.approx(row.mean(), abs=1e-4)
        assert result.ensemble.std == pytest.approx(row.std(), abs=1e-4)
        assert result.ensemble.conservative_reward == pytest.approx(
            row.mean() - PENALTY * row.std(), abs=1e-4)
    # An RL trainer gets the conservative reward.
    assert rl.rewards == pytest.approx([r.ensemble.conservative_reward for r in results  # type: ignore[union-attr]
                                        ], abs=1e-4)
