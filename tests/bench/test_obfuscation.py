"""The rule that decides on misspelt training copies, on validation figures only."""

from __future__ import annotations

from bench.obfuscation import rule


def test_adopted_when_misspellings_are_read_better_at_a_point_of_auprc_at_most() -> None:
    base, base_misspelt = [0.70, 0.72], [0.60, 0.62]
    assert rule(base, [0.70, 0.71], base_misspelt, [0.63, 0.64])[2]
    assert not rule(base, [0.69, 0.70], base_misspelt, [0.63, 0.64])[2]  # -0.015
    assert not rule(base, [0.71, 0.72], base_misspelt, [0.61, 0.62])[2]  # +0.005: noise
    clean, misspelt, _ = rule(base, [0.70, 0.71], base_misspelt, [0.63, 0.64])
    assert round(clean, 3) == -0.005 and round(misspelt, 3) == 0.025
