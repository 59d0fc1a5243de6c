"""HateCheck's own curve in bench.operating_points: the recall a threshold chosen for a share
of non-hateful cases flagged would give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.operating_points import hatecheck_curve, main
from models.taxonomy import CATEGORIES
from training.data.labelled import TextExample


def test_hatecheck_curve_reads_recall_where_a_share_of_the_clean_cases_is_flagged() -> None:
    hate = [0.1, 0.2, 0.3, 0.4, 0.9, 0.35, 0.5, 0.6, 0.7, 0.8]  # five clean, five hateful
    examples = [TextExample(f"case {i}", labels={"hate": int(i >= 5)}) for i in range(10)]
    probs = np.zeros((10, len(CATEGORIES)))
    probs[:, CATEGORIES.index("hate")] = hate
    curve = hatecheck_curve(examples, probs, [0.2, 0.4])
    point = curve["at_non_hateful_flagged"]["0.2"]  # the threshold is a clean case's score
    assert point["threshold"] == 0.9 and point["non_hateful_flagged"] == pytest.approx(0.2)
    assert point["hateful_caught"] == 0.0  # none of the hateful reach 0.9
    point = curve["at_non_hateful_flagged"]["0.4"]  # 0.9 and 0.4 flagged
    assert point["threshold"] == 0.4 and point["hateful_caught"] == pytest.approx(0.8)
    assert curve["roc_auc"] == pytest.approx(19 / 25)  # pairs ranked right, of 25


def test_hatecheck_curve_tells_a_groups_offset_from_what_is_read_inside_it() -> None:
    # each group's cases perfectly ranked inside it, but one group's scores all sit higher
    hate = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.5]
    gold = [0, 0, 1, 1, 0, 0, 1, 1, 0]
    target = ["women"] * 4 + ["immigrants"] * 4 + [""]  # the last names no one
    examples = [TextExample(f"case {i}", labels={"hate": g}, label=t)
                for i, (g, t) in enumerate(zip(gold, target, strict=True))]
    probs = np.zeros((len(hate), len(CATEGORIES)))
    probs[:, CATEGORIES.index("hate")] = hate
    curve = hatecheck_curve(examples, probs, [0.2], threshold=0.5)
    assert {t: v["roc_auc"] for t, v in curve["by_target"].items()} == {"immigrants": 1.0,
                                                                      "women": 1.0}
    # at 0.5 the lower group's hate is missed and the higher group's clean cases flagged
    assert curve["by_target"]["women"]["caught"] == 0.0
    assert curve["by_target"]["immigrants"]["flagged"] == 1.0
    assert curve["roc_auc_named_targets"] == pytest.approx(12 / 16)  # the offset costs 4 pairs
    assert curve["roc_auc_named_targets_offsets_removed"] == 1.0
    no_targets = [TextExample(e.text, labels=e.labels) for e in examples]
    assert "by_target" not in hatecheck_curve(no_targets, probs, [0.2])


def test_a_saturated_hate_probability_leaves_every_group_figure_finite() -> None:
    # a group whose non-hateful median rounds to 1.0: its offset must not be inf
    hate = [1.0, 1.0, 1.0, 0.0, 0.2, 0.9]
    gold = [1, 0, 0, 0, 0, 1]
    examples = [TextExample(f"case {i}", labels={"hate": g}, label=t) for i, (g, t) in
                enumerate(zip(gold, ["women"] * 3 + ["immigrants"] * 3, strict=True))]
    probs = np.zeros((len(hate), len(CATEGORIES)))
    probs[:, CATEGORIES.index("hate")] = hate
    curve = hatecheck_curve(examples, probs, [0.2], threshold=0.5)
    # offsets removed, women's three cases sit at one score: their hateful case ties their two
    # clean ones and falls below immigrants' higher clean one; immigrants' hateful case tops
    # all four clean cases: 6 of 8 pairs
    assert curve["roc_auc_named_targets_offsets_removed"] == pytest.approx(6 / 8)


def test_a_flag_rate_outside_zero_to_one_is_refused_before_any_scoring(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # no model there: refused before it is read
        main(["--model", str(tmp_path / "none"), "--hatecheck-flag-rates", "0.175", "17.5"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "between 0 and 1" in error and "[17.5]" in error
