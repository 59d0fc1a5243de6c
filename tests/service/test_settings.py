from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.errors import STATUS, ErrorType, ServiceError
from service.settings import Graph, Provider, Settings


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGNSERVE_PROVIDER", "cpu")
    monkeypatch.setenv("ALIGNSERVE_MAX_ITEMS", "7")
    monkeypatch.setenv("ALIGNSERVE_API_KEY", "k" * 20)
    settings = Settings()
    assert settings.provider is Provider.cpu and settings.max_items == 7
    assert settings.api_key is not None and "k" * 20 not in repr(settings)  # never logged


@pytest.mark.parametrize(("env", "message"), [
    ({"ALIGNSERVE_MAX_ITEMS": "0"}, "max_items"),
    ({"ALIGNSERVE_PROVIDER": "tpu"}, "provider"),
    ({"ALIGNSERVE_API_KEY": "short"}, "at least 16 characters"),
    ({"ALIGNSERVE_PROVIDER": "cpu", "ALIGNSERVE_GRAPH": "fp16"}, "needs ALIGNSERVE_PROVIDER=cuda"),
    ({"ALIGNSERVE_MAX_BACTH_SIZE": "8"}, "unknown settings"),  # a typo is refused, not ignored
    ({"ALIGNSERVE_MODERATION_MIN_PRECISION": "hate=1.5"}, "not a precision in"),
    ({"ALIGNSERVE_MODERATION_MIN_PRECISION": "high"}, "not a precision in"),
])
def test_unsafe_or_invalid_settings_stop_start_up(monkeypatch: pytest.MonkeyPatch,
                                                  env: dict[str, str], message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_error_taxonomy_maps_to_statuses_and_json() -> None:
    assert {STATUS[t] for t in ErrorType} == {401, 404, 405, 413, 422, 429, 503, 500}
    error = ServiceError(ErrorType.overloaded, "queue full", retry_after_s=2)
    assert error.status == 429 and error.headers() == {"Retry-After": "2"}
    assert error.body() == {"error": "queue full", "error_type": "overloaded"}
    assert Graph("int8") is Graph.int8


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`ALIGNSERVE_{name.upper()}`" in readme, name


def test_the_moderation_operating_point_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().min_precision() is None
    monkeypatch.setenv("ALIGNSERVE_MODERATION_MIN_PRECISION", "0.9")
    assert Settings().min_precision() == 0.9
    monkeypatch.setenv("ALIGNSERVE_MODERATION_MIN_PRECISION", "hate=0.9, offensive=0.75")
    assert Settings().min_precision() == {"hate": 0.9, "offensive": 0.75}
