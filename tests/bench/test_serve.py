"""bench/serve.py's settings to compare: parsed, or refused with the form they need."""

from __future__ import annotations

import pytest

from bench.serve import parse_setting


def test_settings_to_compare_are_parsed_or_refused() -> None:
    assert parse_setting("") == {}
    assert parse_setting("ALIGNSERVE_LONE_CALL_THREADS=0, ALIGNSERVE_LANES=1") == {
        "ALIGNSERVE_LONE_CALL_THREADS": "0", "ALIGNSERVE_LANES": "1"}
    for bad in ("LANES=1", "ALIGNSERVE_LANES"):
        with pytest.raises(SystemExit, match="expected ALIGNSERVE_NAME=VALUE"):
            parse_setting(bad)
