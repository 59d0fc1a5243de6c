"""The int8 gate (training/int8_gate.py): agreement on the decisions fp32 makes, a seeded
bootstrap interval of the drop, looks that stop early only when the answer is sure, and fp32's
side read from the scores training saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.inputs import EncodedPair, PairEncoder
from models.manifest import Manifest
from models.session import open_session, run
from training import int8_gate
from training.data.reward_data import load_reward_data
from training.pairs import EncodedPairs


def test_int8_gate_reads_agreement_and_a_bootstrap_interval() -> None:
    n = 400
    rng = np.random.default_rng(0)
    chosen = [EncodedPair([1, 2], [0, 1], False, False)] * n
    check = int8_gate.pairwise_check(chosen, chosen)
    fp32 = rng.normal(size=(2 * n, 1)).astype(np.float32)
    same = int8_gate.decide_int8(check, fp32, fp32 + 1e-6)
    assert same.accepted and same.agreement == 1.0 and same.drop_points == 0.0
    assert same.drop_interval == (0.0, 0.0)
    flipped = fp32.copy()
    flipped[: n // 10] = -flipped[: n // 10]  # 10% of the chosen side changes sign
    noisy = int8_gate.decide_int8(check, fp32, flipped)
    assert not noisy.accepted and noisy.agreement is not None and noisy.agreement < 0.99
    again = int8_gate.decide_int8(check, fp32, flipped)
    assert again.drop_interval == noisy.drop_interval  # seeded: the same decision every time
    record = noisy.record()
    assert record["accepted"] == "no" and record["drop_low_points"] <= record["drop_high_points"]
    assert record["min_agreement"] == int8_gate.INT8_MIN_DECIDED_AGREEMENT


def test_int8_gate_counts_only_the_pairs_fp32_decides() -> None:
    """Near-ties flip under any change of the graph; they are not decisions int8 can break.
    The calibrated temperature says which pairs are near-ties, as the service would answer."""
    n, ties = 2000, 100
    items = [EncodedPair([1, 2], [0, 1], False, False)] * n
    margins = np.where(np.arange(n) < ties, 0.01 * (-1) ** np.arange(n), 1.0)
    fp32 = np.concatenate([margins, np.zeros(n)])[:, None].astype(np.float32)
    int8 = fp32.copy()
    int8[:ties] = -int8[:ties]  # every near-tie flips (both ways), every decided pair holds
    check = int8_gate.pairwise_check(items, items)
    decision = int8_gate.decide_int8(check, fp32, int8)
    assert decision.agreement == 1.0 and decision.agreed_on == n - ties and decision.accepted
    assert decision.drop_points == 0.0 and decision.drop_interval[1] < 2.0
    # at a temperature of 10, a margin of 1.0 is P 0.525: no pair is decided, so none can be
    # broken, and the accuracy's bootstrap interval alone decides
    flat = int8_gate.decide_int8(int8_gate.pairwise_check(items, items, temperature=10.0),
                                 fp32, int8)
    assert flat.agreed_on == 0 and flat.agreement == 1.0 and flat.accepted
    int8[ties:ties + 76] = -1.0  # 4% of the 1,900 decided pairs flip: over the 1% allowed
    broken = int8_gate.decide_int8(check, fp32, int8)
    assert broken.agreement == 0.96 < broken.min_agreement and not broken.accepted


def test_int8_check_stops_early_only_when_the_answer_is_sure(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    n = 5000
    scores = np.random.default_rng(1).normal(size=2 * n).astype(np.float32)
    items = [EncodedPair([i], [0], False, False) for i in range(2 * n)]
    check = int8_gate.pairwise_check(items[:n], items[n:])
    flips = {"fp32": 0, "int8": 0}  # the share of chosen items whose sign int8 changes

    def fake_run(graph: str, batch: list[EncodedPair], **_: object) -> np.ndarray:
        out = np.array([[scores[item.input_ids[0]]] for item in batch], np.float32)
        flip = np.array([item.input_ids[0] < n and item.input_ids[0] % 100 < flips[graph]
                         for item in batch])
        out[flip] = -out[flip]
        return out

    monkeypatch.setattr(int8_gate, "open_session", lambda path, **_: str(path))
    monkeypatch.setattr(int8_gate, "run", fake_run)
    for flipped, early in ((0, True), (15, True)):
        flips["int8"] = flipped
        scored = check.outputs(Path("fp32"), Path("int8"), pad_id=0)
        decision = int8_gate.decide_int8(check, scored.fp32, scored.int8, scored.rows)
        assert (decision.examples_checked < n) is early, flipped
        assert decision.examples == n and len(scored.rows) == decision.examples_checked
        if early:  # stopped at a look, with the share kept measured on what was scored
            assert decision.examples_checked % int8_gate.INT8_LOOK == 0
            assert decision.agreement is not None
            if flipped > 2:  # surely fails
                assert not decision.accepted
                assert int8_gate.wilson_upper(decision.agreement, decision.agreed_on) < 0.99
            else:  # surely passes: at the first look past INT8_ACCEPT_AFTER
                assert decision.accepted
                assert decision.examples_checked == int8_gate.INT8_ACCEPT_AFTER
        assert decision.record()["examples_checked"] == decision.examples_checked
    short = int8_gate.pairwise_check(items[:1000], items[n:n + 1000])  # under INT8_ACCEPT_AFTER
    flips["int8"] = 0
    scored = short.outputs(Path("fp32"), Path("int8"), pad_id=0)
    assert len(scored.rows) == 1000  # passing is only ever decided early past 2,048 examples


def test_training_saves_its_validation_scores_for_the_int8_check(
        trained_run: Path, tiny_artifact: Path) -> None:
    """Reward training keeps the scores its calibration computed; they are the fp32 graph's, so
    the export's int8 check need not score the split with fp32 again."""
    checkpoint = trained_run / "model"
    manifest = Manifest.load(checkpoint)
    encoder = PairEncoder.from_file(checkpoint / "tokenizer.json", manifest.input)
    own = trained_run.parent / "own.jsonl"  # the run's own file joined its validation split
    pairs = EncodedPairs.build(encoder, load_reward_data(None, [own], skip_invalid=True,
                                                         other_sources=False
                                                         ).splits["validation"])
    items = [*pairs.chosen, *pairs.rejected]
    saved = int8_gate.saved_validation_scores(checkpoint, items)
    assert saved is not None and saved.shape == (len(items), 1)
    graph = open_session(tiny_artifact / "model.onnx")
    sample = list(range(0, len(items), max(1, len(items) // 40)))
    fp32 = run(graph, [items[i] for i in sample], pad_id=encoder.pad_id)
    assert np.abs(fp32 - saved[sample]).max() < 1e-4
    # other items (the split without the run's own file): not theirs, so not used
    assert int8_gate.saved_validation_scores(checkpoint, items[:-1]) is None
    assert int8_gate.saved_validation_scores(checkpoint, items[::-1]) is None


def test_unreadable_validation_scores_are_ignored(tmp_path: Path) -> None:
    """A truncated or foreign file is not fp32's side: the check scores with fp32 itself."""
    items = [EncodedPair([i, 1], [0, 0], False, False) for i in range(6)]
    saved = int8_gate.save_validation_scores(tmp_path, items, np.arange(6.0))
    assert int8_gate.saved_validation_scores(tmp_path, items) is not None
    saved.write_bytes(saved.read_bytes()[:40])
    assert int8_gate.saved_validation_scores(tmp_path, items) is None
    np.savez(saved, other=np.zeros(6))
    assert int8_gate.saved_validation_scores(tmp_path, items) is None


def test_int8_check_with_known_fp32_scores_runs_only_int8(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    n = 600
    scores = np.random.default_rng(2).normal(size=2 * n).astype(np.float32)
    items = [EncodedPair([i], [0], False, False) for i in range(2 * n)]
    check = int8_gate.pairwise_check(items[:n], items[n:])
    graphs_run: list[str] = []

    def fake_run(graph: str, batch: list[EncodedPair], **_: object) -> np.ndarray:
        graphs_run.append(graph)
        noise = 0.0 if graph == "fp32" else 0.01
        return np.array([[scores[item.input_ids[0]] + noise] for item in batch], np.float32)

    monkeypatch.setattr(int8_gate, "open_session", lambda path, **_: str(path))
    monkeypatch.setattr(int8_gate, "run", fake_run)
    both = check.outputs(Path("fp32"), Path("int8"), pad_id=0)
    assert set(graphs_run) == {"fp32", "int8"}
    int8_gate.save_validation_scores(tmp_path, items, scores)
    known = int8_gate.saved_validation_scores(tmp_path, items)
    graphs_run.clear()
    only = check.outputs(Path("fp32"), Path("int8"), pad_id=0, known_fp32=known)
    assert set(graphs_run) == {"int8"}
    assert np.array_equal(only.rows, both.rows) and np.array_equal(only.fp32, both.fp32)
    assert (int8_gate.decide_int8(check, only.fp32, only.int8, only.rows)
            == int8_gate.decide_int8(check, both.fp32, both.int8, both.rows))
