"""bench/overload.py's summary of a burst: statuses, goodput, and the admitted requests that
took longer than the deadline, with when they were sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.overload import PER_REQUEST, main, summary


def test_a_burst_counts_the_admitted_requests_past_the_deadline() -> None:
    # (status, sent at s, latency s, Retry-After, the server's own total s)
    seen = [(200, 0.0, 5.4, None, 5.2), (200, 0.0, 5.1, None, 4.9), (200, 12.0, 3.0, None, 2.8),
            (429, 1.0, 0.3, "2", None), (429, 2.0, 0.2, "1", None)]
    burst = summary(seen, seconds=20.0, capacity=9.6, generator_cpu_s=1.0, deadline_s=5.0)
    assert burst["statuses"] == {"200": 3, "429": 2}
    assert burst["goodput_pairs_per_s"] == pytest.approx(3 * PER_REQUEST / 20.0)
    assert burst["goodput_share_of_capacity"] == pytest.approx(0.5)
    assert (burst["admitted_late"], burst["admitted_late_in_server"]) == (2, 1)
    assert burst["admitted_late_sent_at_s"] == [0.0, 0.0]
    assert burst["retry_after_s"] == {"min": 1.0, "median": 1.5, "max": 2.0}


def test_comparing_code_needs_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a checkout"):
        main(["--against", str(tmp_path)])
    with pytest.raises(SystemExit, match="--rounds"):
        main(["--rounds", "0"])
