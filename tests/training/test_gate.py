"""The promotion gate's rule on constructed outcomes: each clause refuses on its own."""

from __future__ import annotations

import numpy as np

from training.gate import Scored, decide
from training.retrain import accuracy


def outcomes(n: int, champion: float, challenger: float, seed: int = 0) -> Scored:
    """Per-example correctness with the given accuracies, the two mostly agreeing."""
    rng = np.random.default_rng(seed)
    base = rng.random(n)
    return Scored(base < champion, base < challenger, accuracy)


def test_a_clear_gain_without_losses_is_promoted() -> None:
    decision = decide("accuracy", outcomes(400, 0.5, 0.7),
                      {"a": outcomes(800, 0.6, 0.6), "a/x": outcomes(100, 0.6, 0.6)},
                      outcomes(800, 0.6, 0.6))
    assert decision.promoted, decision.reasons
    assert [s.name for s in decision.sets][:2] == ["feedback (held out)",
                                                   "original test splits, pooled"]


def test_each_clause_refuses_on_its_own() -> None:
    fine, good = outcomes(800, 0.6, 0.6), outcomes(400, 0.5, 0.7)
    unsure = decide("accuracy", outcomes(40, 0.5, 0.55), {"a": fine}, fine)
    assert not unsure.promoted and "held-out feedback" in unsure.reasons[0]
    pooled = decide("accuracy", good, {"a": fine}, outcomes(800, 0.6, 0.58))
    assert not pooled.promoted and "pooled" in pooled.reasons[0]
    subset = decide("accuracy", good, {"a": fine, "a/x": outcomes(300, 0.6, 0.4)}, fine)
    assert not subset.promoted and "surely worse on a/x" in subset.reasons[0]
    assert subset.record()["sets"][-1]["gain"] < -10


def test_the_decision_is_reproducible() -> None:
    args = ("accuracy", outcomes(200, 0.5, 0.56), {"a": outcomes(300, 0.6, 0.59)},
            outcomes(300, 0.6, 0.59))
    assert decide(*args).record() == decide(*args).record()


def test_shown_sets_are_reported_but_never_gate() -> None:
    fine, good = outcomes(800, 0.6, 0.6), outcomes(400, 0.5, 0.7)
    decision = decide("accuracy", good, {"a": fine}, fine,
                      shown={"far": outcomes(5000, 0.7, 0.5)})
    assert decision.promoted
    far = decision.sets[-1]
    assert far.name == "far" and not far.gated and far.gain < -15



def test_an_unconfirmed_gain_says_how_much_feedback_would_confirm_it() -> None:
    fine = outcomes(800, 0.6, 0.6)
    # 30 examples only the challenger gets right, 20 only the champion: +6.7 points on 150
    both = np.random.default_rng(0).random(100) < 0.5
    champion = np.concatenate([np.zeros(30, bool), np.ones(20, bool), both])
    challenger = np.concatenate([np.ones(30, bool), np.zeros(20, bool), both])

    def feedback(copies: int) -> Scored:  # the same examples again: the same gain
        return Scored(np.tile(champion, copies), np.tile(challenger, copies), accuracy)

    small = decide("accuracy", feedback(1), {"a": fine}, fine)
    needed = small.record()["feedback_examples_needed"]
    assert not small.promoted and f"about {needed} held-out examples" in small.reasons[0]
    assert 150 < needed < 450
    assert decide("accuracy", feedback(3), {"a": fine}, fine).promoted  # 450 examples
    worse = decide("accuracy", Scored(challenger, champion, accuracy), {"a": fine}, fine)
    assert worse.record()["feedback_examples_needed"] is None
    assert "would need" not in worse.reasons[0]
