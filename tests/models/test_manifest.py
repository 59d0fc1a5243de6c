from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from models.manifest import Calibration, InputFormat, Manifest, Normalisation, Task


def _manifest(**overrides: object) -> Manifest:
    fields: dict[str, object] = dict(
        name="reward", version="1", task=Task.reward, input=InputFormat(max_length=128),
        calibration=Calibration(temperature=1.7, fitted_on="validation", n=10),
        normalisation=Normalisation(mean=0.1, std=2.0, reference="validation", n=20),
        metrics={"hh-rlhf": {"accuracy": 0.6}}, backbone="minilm", code_version="0.1.0")
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest.save(tmp_path)
    assert Manifest.load(tmp_path) == manifest


@pytest.mark.parametrize(("overrides", "message"), [
    ({"labels": ["hate"]}, "a reward model has no labels"),
    ({"task": Task.multilabel}, "needs labels"),
    ({"task": Task.multiclass, "labels": ["a", "a"]}, "unique"),
    ({"task": Task.multilabel, "labels": ["hate"], "thresholds": {"spam": 0.5}}, "unknown labels"),
    ({"name": "Bad Name"}, "pattern"),
    ({"unexpected": 1}, "Extra inputs"),
])
def test_invalid_manifests_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _manifest(**overrides)


def test_input_format_needs_room_for_a_response() -> None:
    with pytest.raises(ValidationError, match="min_prompt_tokens"):
        InputFormat(max_length=16, min_prompt_tokens=14)
