"""The rule that decides on attention-entropy regularisation, on validation figures only."""

from __future__ import annotations

from typing import Any

from bench.attention_entropy import rule
from models.taxonomy import CATEGORIES


def report(auprc: float, naming: float, hatecheck: float = 0.5) -> dict[str, Any]:
    """Every category's validation AUPRC at `auprc`, clean texts naming a group flagged at
    `naming`."""
    return {"eval": {**{f"validation/{c}": {"auprc": auprc} for c in CATEGORIES},
                     "validation/identity": {"hate_flag_rate_naming_a_group": naming},
                     "hatecheck": {"non_hateful_flag_rate": hatecheck}}}


def test_adopted_when_fewer_false_flags_cost_at_most_a_point_of_mean_auprc() -> None:
    base = [report(0.74, 0.33), report(0.76, 0.35)]
    auprc, flagged, adopted = rule(base, [report(0.735, 0.20), report(0.755, 0.22)])
    assert adopted and round(auprc, 3) == -0.005 and round(flagged, 2) == -0.13
    assert not rule(base, [report(0.72, 0.10), report(0.74, 0.12)])[2]  # -0.02
    assert not rule(base, [report(0.76, 0.34), report(0.77, 0.36)])[2]  # no fewer flags
    # HateCheck is a test suite: it never decides
    assert rule(base, [report(0.74, 0.30, hatecheck=0.9), report(0.76, 0.3, 0.9)])[2]
