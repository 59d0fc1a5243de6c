"""bench.training_cuts: the default preset's training mix by kind and by which replies its
window cuts; a kind built only where read whole has no cut pair."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.training_cuts import HUMAN, cut_counts, main
from bench.validation_parts import CUTS
from training.config import PRESETS


def test_every_training_pair_is_counted_once_and_whole_kinds_are_whole() -> None:
    config = PRESETS["default"]
    counts = cut_counts(config)
    assert sum(sum(row.values()) for row in counts.values()) == config.max_train_pairs
    assert HUMAN in counts and "restatement" in counts
    assert all(set(row) == set(CUTS) for row in counts.values())
    assert counts["restatement"]["cut: rejected only"] > 0  # the window cuts some

    whole = cut_counts(replace(config, contrast_whole="repetition,restatement"))
    for kind in ("repetition", "restatement"):
        assert whole[kind]["cut: neither"] == sum(whole[kind].values())


def test_an_unknown_kind_stops_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--contrast-whole", "repetiton"])
    assert "no contrast kind ['repetiton']" in capsys.readouterr().err
