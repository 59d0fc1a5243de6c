"""The rule that decides on identity balance, on validation figures only."""

from __future__ import annotations

from typing import Any

from bench.identity_balance import rule


def report(auprc: float, naming: float, hatecheck: float = 0.5) -> dict[str, Any]:
    return {"eval": {"validation/hate": {"auprc": auprc},
                     "validation/identity": {"hate_flag_rate_naming_a_group": naming},
                     "hatecheck": {"non_hateful_flag_rate": hatecheck}}}


def test_adopted_when_fewer_false_flags_cost_at_most_two_points_of_auprc() -> None:
    base = [report(0.58, 0.33), report(0.60, 0.35)]
    assert rule(base, [report(0.57, 0.10), report(0.59, 0.12)])[2]
    assert not rule(base, [report(0.55, 0.10), report(0.57, 0.12)])[2]  # -0.03
    assert not rule(base, [report(0.60, 0.34), report(0.61, 0.36)])[2]  # no fewer flags
    # HateCheck is a test suite: it never decides
    assert rule(base, [report(0.57, 0.10, hatecheck=0.9), report(0.59, 0.12, 0.9)])[2]


def test_the_violence_balance_is_held_to_the_same_rule_on_its_own_cue() -> None:
    def violent(auprc: float, flagged: float) -> dict[str, Any]:
        return {"eval": {"validation/hate": {"auprc": auprc},
                         "validation/violence": {"hate_flag_rate_with_violence": flagged}}}

    base = [violent(0.58, 0.40), violent(0.60, 0.44)]
    assert rule(base, [violent(0.57, 0.20), violent(0.59, 0.22)], "violence")[2]
    assert not rule(base, [violent(0.55, 0.20), violent(0.57, 0.22)], "violence")[2]
    assert not rule(base, [violent(0.60, 0.41), violent(0.61, 0.45)], "violence")[2]
