"""bench.validation_parts: each validation part's accuracy from the scores a run saved, equal
to what the run's own report now gives; scores of other pairs are refused; another prompt
floor or response tail rescores the replies it changes; windows over a cut reply replace its
score and no other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.validation_parts import CUTS, main, part_accuracies, windows_rescored
from models.artifact import TOKENIZER_FILE
from models.inputs import PairEncoder
from models.manifest import Manifest
from training.data.reward_data import load_reward_data, validation_parts
from training.modeling import ScoringModel
from training.pairs import EncodedPairs
from training.scoring import score


def test_each_part_equals_the_report_and_other_pairs_are_refused(
        trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads((trained_run / "report.json").read_text())["eval"]
    assert {"validation/hh-rlhf/harmless-base", "validation/hh-rlhf", "validation/own",
            "validation/truthfulqa"} <= set(report)

    # The run trained with a file of its own, which is part of its validation split.
    pairs = load_reward_data(extra=[trained_run.parent / "own.jsonl"], other_sources=False,
                             skip_invalid=True).splits["validation"]
    figures = part_accuracies(trained_run / "model", pairs, validation_parts(pairs))
    assert set(figures) == {key for key in report if key.startswith("validation/")} | {
        "validation"}
    for key, accuracy in figures.items():
        assert accuracy == pytest.approx(report[key]["accuracy"], abs=1e-6), key

    # By which replies the window cuts: the four parts hold every pair once, and their
    # accuracies add up to the pooled one.
    cuts = part_accuracies(trained_run / "model", pairs, {}, cuts=True)
    counts = {part: cuts[f"pairs/{part}"] for part in CUTS}
    assert sum(counts.values()) == len(pairs)
    assert sum(cuts[f"validation/{part}"] * n for part, n in counts.items() if n) == (
        pytest.approx(figures["validation"] * len(pairs)))

    with pytest.raises(SystemExit, match="no saved validation scores of these pairs"):
        main(["--group", "tiny", str(trained_run / "model")])  # without that file: other pairs
    with pytest.raises(SystemExit, match=r"has no manifest\.json"):
        main(["--group", "tiny", str(trained_run)])  # the run, not its model/


@pytest.mark.parametrize(("field", "step"), [("min_prompt_tokens", 16),
                                             ("response_tail_tokens", 8)])
def test_another_input_format_rescores_the_replies_it_changes(
        trained_run: Path, field: str, step: int) -> None:
    model = trained_run / "model"
    pairs = load_reward_data(extra=[trained_run.parent / "own.jsonl"], other_sources=False,
                             skip_invalid=True).splits["validation"]
    own = Manifest.load(model).input
    saved = part_accuracies(model, pairs, {}, cuts=True)
    assert saved["pairs/cut: neither"] < len(pairs)  # some reply is cut, so a floor matters
    # the model's own value changes no input: the saved scores, figure for figure
    assert part_accuracies(model, pairs, {}, cuts=True,
                           other_format={field: getattr(own, field)}) == saved

    # another value: as if every reply were scored with it, the cut parts still the model's own
    value = getattr(own, field) + step
    figures = part_accuracies(model, pairs, {}, cuts=True, other_format={field: value})
    encoder = PairEncoder.from_file(model / TOKENIZER_FILE, own.model_copy(update={field: value}))
    encoded = EncodedPairs.build(encoder, pairs)
    rewards = score(ScoringModel.load(model), [*encoded.chosen, *encoded.rejected])[:, 0]
    right = rewards[:len(pairs)] > rewards[len(pairs):]
    assert figures["validation"] == pytest.approx(right.mean())
    before = EncodedPairs.build(PairEncoder.from_file(model / TOKENIZER_FILE, own), pairs)
    assert encoded.chosen + encoded.rejected != before.chosen + before.rejected  # inputs moved
    assert {k: v for k, v in figures.items() if k.startswith("pairs/")} == {
        k: v for k, v in saved.items() if k.startswith("pairs/")}

    with pytest.raises(SystemExit, match=f"4000 .* tokens: .*{field} must"):
        part_accuracies(model, pairs, {}, other_format={field: 4000})


def test_windows_over_a_cut_reply_replace_its_score_alone(trained_run: Path) -> None:
    model = trained_run / "model"
    pairs = load_reward_data(extra=[trained_run.parent / "own.jsonl"], other_sources=False,
                             skip_invalid=True).splits["validation"]
    manifest = Manifest.load(model)
    encoder = PairEncoder.from_file(model / TOKENIZER_FILE, manifest.input)
    encoded = EncodedPairs.build(encoder, pairs)
    items = [*encoded.chosen, *encoded.rejected]
    saved = score(ScoringModel.load(model), items)
    out = windows_rescored(model, encoder, pairs, encoded, saved)
    cut = np.array([item.response_truncated for item in items])
    assert cut.any()
    np.testing.assert_array_equal(out[~cut], saved[~cut])  # a reply read whole keeps its score
    assert not np.allclose(out[cut], saved[cut])  # the windows read past the cut
    figures = part_accuracies(model, pairs, {}, cuts=True, reply_windows=True)
    assert {k: v for k, v in figures.items() if k.startswith("pairs/")} == {
        k: v for k, v in part_accuracies(model, pairs, {}, cuts=True).items()
        if k.startswith("pairs/")}
