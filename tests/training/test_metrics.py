"""Metrics and temperature fitting against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import expected_calibration_error, pairwise_metrics, sigmoid
from training.temperature import fit_temperature


def test_ece_by_hand() -> None:
    # 15 bins of width 1/15: 0.1 and 0.12 share bin 1, 0.9 is in bin 13, 0.95 in bin 14.
    probs = [0.1, 0.12, 0.9, 0.95]
    labels = [0, 1, 1, 1]
    # bin 1: |0.5 - 0.11| * 2/4 ; bin 13: |1 - 0.9| * 1/4 ; bin 14: |1 - 0.95| * 1/4
    expected = 0.39 * 0.5 + 0.1 * 0.25 + 0.05 * 0.25
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == pytest.approx(0.0)  # edges binned


def test_pairwise_metrics_by_hand() -> None:
    margins = np.array([2.0, -1.0, 0.0, 0.5])
    m = pairwise_metrics(margins, temperature=1.0)
    assert m["accuracy"] == pytest.approx(0.5)  # the tie (0.0) counts as wrong
    p = [1 / (1 + math.exp(-d)) for d in margins]
    assert m["log_loss"] == pytest.approx(-sum(math.log(x) for x in p) / 4)
    assert m["brier"] == pytest.approx(sum((1 - x) ** 2 for x in p) / 4)
    assert m["mean_margin"] == pytest.approx(0.375) and m["n"] == 4
    # symmetrised: each pair as (p, label 1) and (1 - p, label 0)
    probs = np.array(p + [1 - x for x in p])
    labels = np.array([1] * 4 + [0] * 4)
    assert m["ece"] == pytest.approx(expected_calibration_error(probs, labels))
    halved = pairwise_metrics(margins, temperature=2.0)
    assert halved["log_loss"] == pytest.approx(
        -sum(math.log(1 / (1 + math.exp(-d / 2))) for d in margins) / 4)


def test_log_loss_is_stable_for_huge_margins() -> None:
    m = pairwise_metrics(np.array([-1000.0, 1000.0]))
    assert m["log_loss"] == pytest.approx(500.0)


def test_temperature_recovers_the_generating_scale() -> None:
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 3, 40000)
    outcomes = rng.random(margins.size) < sigmoid(margins / 2.5)
    # A pair whose "chosen" lost is the same pair seen with a negated margin.
    observed = np.where(outcomes, margins, -margins)
    assert fit_temperature(observed) == pytest.approx(2.5, rel=0.05)


def test_temperature_is_the_grid_minimum() -> None:
    margins = np.array([3.0, 1.0, -0.5, 2.0, -2.0, 0.2])
    t = fit_temperature(margins)
    grid = np.linspace(0.2, 10, 20000)
    losses = [np.logaddexp(0, -margins / g).mean() for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(losses))], rel=1e-3)
    with pytest.raises(ValueError):
        fit_temperature([])


def test_length_metrics_by_hand() -> None:
    from training.metrics import length_metrics

    chosen, rejected = np.array([1.0, 0.0, 2.0, 1.0]), np.array([0.0, 1.0, 1.0, 3.0])
    out = length_metrics(chosen, rejected, [10, 5, 20, 7], [5, 10, 20, 9])
    assert out["longer_wins"] == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert out["n_chosen_shorter"] == 2 and out["acc_chosen_shorter"] == 0.0
    rewards = np.concatenate([chosen, rejected])
    lengths = np.log1p([10, 5, 20, 7, 5, 10, 20, 9])
    assert out["length_corr"] == pytest.approx(np.corrcoef(rewards, lengths)[0, 1])
    none_shorter = length_metrics([1.0], [0.0], [9], [3])
    assert "acc_chosen_shorter" not in none_shorter  # absent, not NaN (manifests refuse NaN)


def test_cut_metrics_by_hand() -> None:
    from training.metrics import cut_metrics

    chosen, rejected = np.array([1.0, 0.0, 2.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0, 3.0, 1.0])
    out = cut_metrics(chosen, rejected, [True, True, False, True, False],
                      [False, False, True, True, False])
    # the chosen alone cut in pairs 0 and 1 (one right); the rejected alone in pair 2 (right);
    # pair 3 (both cut) and pair 4 (neither) count in neither figure
    assert out == {"n_chosen_cut": 2.0, "acc_chosen_cut": 0.5, "n_rejected_cut": 1.0,
                   "acc_rejected_cut": 1.0}
    assert cut_metrics([1.0], [0.0], [False], [False]) == {"n_chosen_cut": 0.0,
                                                           "n_rejected_cut": 0.0}


def test_moderation_reports_over_flagging_on_the_clean_rows_of_what_a_source_labels() -> None:
    from models.taxonomy import CATEGORIES
    from training.evaluate import evaluate_moderation
    from training.texts import UNKNOWN

    thresholds = dict.fromkeys(CATEGORIES, 0.5)
    u = UNKNOWN
    # rows: clean on hate only (flagged by hate: over-flagged), clean on hate (flagged only by
    # offensive, which its source does not label: not judged), hateful, clean on everything
    targets = np.array([[0, u, u, u, u], [0, u, u, u, u], [1, u, u, u, u], [0, 0, 0, 0, 0]])
    probs = np.array([[0.9, 0, 0, 0, 0], [0.1, 0.9, 0, 0, 0], [0.9, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0.1]])
    out = evaluate_moderation(probs, targets, thresholds)
    assert out["clean"] == {"flag_rate": 1 / 3, "n": 3.0}
    none = evaluate_moderation(probs[2:3], targets[2:3], thresholds)
    assert "clean" not in none


def test_cue_flag_rates_compare_clean_texts_with_and_without_the_cue() -> None:
    from models.taxonomy import CATEGORIES
    from training.data.identity import VIOLENCE
    from training.evaluate import cue_flag_rates
    from training.texts import UNKNOWN

    hate = CATEGORIES.index("hate")
    texts = ["Muslims pray here", "women at work", "nice day", "good food", "immigrants out",
             "no label"]
    targets = np.full((6, len(CATEGORIES)), UNKNOWN)
    targets[:5, hate] = [0, 0, 0, 0, 1]  # the last text's source says nothing of hate
    probs = np.zeros((6, len(CATEGORIES)))
    probs[:, hate] = [0.9, 0.1, 0.6, 0.2, 0.9, 0.9]
    assert cue_flag_rates(texts, probs, targets, 0.5) == {
        "hate_flag_rate_naming_a_group": 0.5, "n_naming_a_group": 2.0,
        "hate_flag_rate_naming_none": 0.5, "n_naming_none": 2.0}
    assert cue_flag_rates(texts[4:], probs[4:], targets[4:], 0.5) is None
    texts[2] = "nice day to kill time"
    assert cue_flag_rates(texts, probs, targets, 0.5, VIOLENCE) == {
        "hate_flag_rate_with_violence": 1.0, "n_with_violence": 1.0,
        "hate_flag_rate_without_violence": 1 / 3, "n_without_violence": 3.0}
