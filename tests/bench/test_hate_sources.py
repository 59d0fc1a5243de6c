"""The rule that decides on hate read from EDOS and ConvAbuse, on validation figures only."""

from __future__ import annotations

from bench.hate_sources import rule


def scores(before: float, new: float) -> dict[str, float]:
    return {"before": before, "new": new, "insult": 0.5, "hate_threshold": 0.3}


def test_adopted_when_the_new_labels_are_learnt_at_two_points_of_auprc_at_most() -> None:
    base = [scores(0.60, 0.40), scores(0.62, 0.42)]
    assert rule(base, [scores(0.59, 0.50), scores(0.61, 0.52)])[2]
    assert not rule(base, [scores(0.57, 0.60), scores(0.59, 0.62)])[2]  # -0.03 before
    assert not rule(base, [scores(0.61, 0.43), scores(0.63, 0.45)])[2]  # +0.03: not learnt
