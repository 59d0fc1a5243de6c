"""Export on the tiny trained model: fused graph, parity gate, int8, fp16, store and tampering."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models import store
from models.inputs import EncodedPair, PairEncoder
from models.manifest import Manifest
from models.session import open_session, run
from training import export
from training.cli import main
from training.data.reward_data import load_reward_data
from training.modeling import ScoringModel
from training.pairs import EncodedPairs
from training.scoring import score


@pytest.fixture(scope="module")
def validation(trained_run: Path) -> EncodedPairs:
    manifest = Manifest.load(trained_run / "model")
    encoder = PairEncoder.from_file(trained_run / "model" / "tokenizer.json", manifest.input)
    return EncodedPairs.build(encoder, load_reward_data(
        other_sources=False).splits["validation"][:200])


@pytest.fixture(scope="module")
def artifact(tiny_artifact: Path) -> tuple[Path, Manifest]:
    return tiny_artifact, Manifest.load(tiny_artifact)


def test_artifact_is_complete_and_its_manifest_round_trips(artifact: tuple[Path, Manifest]
                                                           ) -> None:
    out, manifest = artifact
    assert Manifest.load(out) == manifest
    assert store.verify(out) == manifest
    int8 = manifest.quantisation["int8"]
    weights = {f"weights/{name}" for name in ("encoder/config.json", "encoder/model.safetensors",
                                              "head.safetensors", "tokenizer.json")}
    expected = {"model.onnx", "model.fp16.onnx", "tokenizer.json", *weights}
    if int8["accepted"] == "yes":
        expected.add("model.int8.onnx")
    assert set(manifest.files) == expected
    assert {"accepted", "fp32", "int8", "drop_points", "metric"} <= set(int8)
    assert manifest.opset == export.OPSET and manifest.name == "tiny-reward"
    assert manifest.parity_max_diff["fp32"] < 1e-4
    assert manifest.quantisation["fused_operators"]["Attention"] == 2  # one per layer
    assert manifest.calibration and manifest.normalisation  # carried over from training
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(manifest.versions)


def test_onnx_matches_torch_alone_and_in_padded_batches(artifact: tuple[Path, Manifest],
                                                        trained_run: Path,
                                                        validation: EncodedPairs) -> None:
    out, _ = artifact
    model = ScoringModel.load(trained_run / "model")
    items = validation.chosen[:40]
    expected = score(model, items)
    session = open_session(out / "model.onnx")
    batched = run(session, items, max_tokens=100_000)  # everything padded together
    alone = np.concatenate([run(session, [item]) for item in items])
    assert np.abs(batched - expected).max() < 1e-4
    assert np.abs(alone - expected).max() < 1e-4


def test_a_broken_export_fails_the_gate(artifact: tuple[Path, Manifest], trained_run: Path,
                                        validation: EncodedPairs) -> None:
    out, _ = artifact
    model = ScoringModel.load(trained_run / "model")
    with torch.no_grad():
        model.head.bias += 0.5  # the graph no longer matches the model it claims to be
    with pytest.raises(export.ParityError, match=r"model.onnx: output 'logits' differs from "
                                                 r"PyTorch by up to 0.5"):
        export.check_parity(model, out / "model.onnx", validation.chosen[:8], 1e-4)


def test_int8_graph_holds_quantised_operators(artifact: tuple[Path, Manifest],
                                              tmp_path: Path) -> None:
    out, _ = artifact
    int8 = export.quantise_int8(out / "model.onnx", tmp_path / "q.onnx")
    fp32_ops, int8_ops = export.count_ops(out / "model.onnx"), export.count_ops(int8)
    weight_matmuls = fp32_ops.get("MatMul", 0) + fp32_ops.get("Gemm", 0)
    assert int8_ops["MatMulInteger"] == weight_matmuls  # every weight matmul is quantised
    assert int8_ops["QAttention"] == fp32_ops["Attention"] == 2
    assert int8_ops["DynamicQuantizeLinear"] >= 1 and "MatMul" not in int8_ops


def test_int8_weights_take_7_bits_so_that_no_x86_cpu_saturates(
        artifact: tuple[Path, Manifest], tmp_path: Path) -> None:
    """Without VNNI, onnxruntime sums pairs of uint8 x int8 products in 16 bits: two products
    of 7-bit weights fit (2 * 255 * 64 = 32,640), of 8-bit ones they can saturate."""
    import onnx
    from onnx import numpy_helper

    out, _ = artifact
    int8 = export.quantise_int8(out / "model.onnx", tmp_path / "q.onnx")
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(int8)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 12  # every quantised matmul's weights and zero points
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    assert np.iinfo(np.int16).max >= 2 * 255 * 64


def test_int8_is_rejected_and_reported_when_the_metric_drops(
        trained_run: Path, validation: EncodedPairs, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "INT8_MAX_DROP_POINTS", -100.0)  # nothing can pass
    manifest = export.export_checkpoint(trained_run / "model", tmp_path, "tiny-reward",
                                        export.pairwise_check(validation.chosen[:50],
                                                              validation.rejected[:50]))
    assert manifest.quantisation["int8"]["accepted"] == "no"
    assert not (tmp_path / "model.int8.onnx").exists() and "model.int8.onnx" not in manifest.files


def test_bad_name_or_directory_is_refused_before_any_work(trained_run: Path,
                                                          tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pattern"):
        export.export_checkpoint(trained_run / "model", tmp_path, "Bad Name",
                                 export.pairwise_check([], []))
    assert not any(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="not a trained model or artifact directory"):
        export.export_checkpoint(tmp_path / "nope", tmp_path, "x",
                                 export.pairwise_check([], []))


def test_store_round_trip_and_tampered_files_are_refused(artifact: tuple[Path, Manifest],
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    out, manifest = artifact
    copy = tmp_path / "artifact"
    shutil.copytree(out, copy)
    tag = store.save(copy)
    stored = store.get(tag)
    assert stored.manifest == manifest and tag in [t for t, _ in store.list_stored()]
    assert store.get("tiny-reward").tag == tag  # latest version by name
    assert main(["models", "verify", tag]) == 0
    assert (stored.path / "weights" / "head.safetensors").is_file()  # what retrain continues
    with pytest.raises(store.ArtifactError, match="already in the store"):
        store.save(copy)  # a version is never overwritten

    with (stored.path / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(store.ArtifactError, match=r"model\.onnx was changed or truncated"):
        store.get(tag)
    (stored.path / "tokenizer.json").unlink()
    assert main(["models", "verify", tag]) == 2
    err = capsys.readouterr().err
    assert "tokenizer.json is missing" in err and "model.onnx was changed" in err
    with pytest.raises(store.ArtifactError, match="no model 'nope'"):
        store.get("nope")


def test_int8_gate_reads_agreement_and_a_bootstrap_interval() -> None:
    n = 400
    rng = np.random.default_rng(0)
    chosen = [EncodedPair([1, 2], [0, 1], False, False)] * n
    check = export.pairwise_check(chosen, chosen)
    fp32 = rng.normal(size=(2 * n, 1)).astype(np.float32)
    same = export.decide_int8(check, fp32, fp32 + 1e-6)
    assert same.accepted and same.agreement == 1.0 and same.drop_points == 0.0
    assert same.drop_interval == (0.0, 0.0)
    flipped = fp32.copy()
    flipped[: n // 10] = -flipped[: n // 10]  # 10% of the chosen side changes sign
    noisy = export.decide_int8(check, fp32, flipped)
    assert not noisy.accepted and noisy.agreement is not None and noisy.agreement < 0.99
    again = export.decide_int8(check, fp32, flipped)
    assert again.drop_interval == noisy.drop_interval  # seeded: the same decision every time
    record = noisy.record()
    assert record["accepted"] == "no" and record["drop_low_points"] <= record["drop_high_points"]
    assert record["min_agreement"] == export.INT8_MIN_DECIDED_AGREEMENT


def test_int8_gate_counts_only_the_pairs_fp32_decides() -> None:
    """Near-ties flip under any change of the graph; they are not decisions int8 can break.
    The calibrated temperature says which pairs are near-ties, as the service would answer."""
    n, ties = 2000, 100
    items = [EncodedPair([1, 2], [0, 1], False, False)] * n
    margins = np.where(np.arange(n) < ties, 0.01 * (-1) ** np.arange(n), 1.0)
    fp32 = np.concatenate([margins, np.zeros(n)])[:, None].astype(np.float32)
    int8 = fp32.copy()
    int8[:ties] = -int8[:ties]  # every near-tie flips (both ways), every decided pair holds
    check = export.pairwise_check(items, items)
    decision = export.decide_int8(check, fp32, int8)
    assert decision.agreement == 1.0 and decision.agreed_on == n - ties and decision.accepted
    assert decision.drop_points == 0.0 and decision.drop_interval[1] < 2.0
    # at a temperature of 10, a margin of 1.0 is P 0.525: no pair is decided, so none can be
    # broken, and the accuracy's bootstrap interval alone decides
    flat = export.decide_int8(export.pairwise_check(items, items, temperature=10.0), fp32, int8)
    assert flat.agreed_on == 0 and flat.agreement == 1.0 and flat.accepted
    int8[ties:ties + 76] = -1.0  # 4% of the 1,900 decided pairs flip: over the 1% allowed
    broken = export.decide_int8(check, fp32, int8)
    assert broken.agreement == 0.96 < broken.min_agreement and not broken.accepted


def test_int8_check_stops_early_only_when_the_answer_is_sure(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    n = 5000
    scores = np.random.default_rng(1).normal(size=2 * n).astype(np.float32)
    items = [EncodedPair([i], [0], False, False) for i in range(2 * n)]
    check = export.pairwise_check(items[:n], items[n:])
    flips = {"fp32": 0, "int8": 0}  # the share of chosen items whose sign int8 changes

    def fake_run(graph: str, batch: list[EncodedPair], **_: object) -> np.ndarray:
        out = np.array([[scores[item.input_ids[0]]] for item in batch], np.float32)
        flip = np.array([item.input_ids[0] < n and item.input_ids[0] % 100 < flips[graph]
                         for item in batch])
        out[flip] = -out[flip]
        return out

    monkeypatch.setattr(export, "open_session", str)
    monkeypatch.setattr(export, "run", fake_run)
    for flipped, early in ((0, True), (15, True)):
        flips["int8"] = flipped
        scored = check.outputs(Path("fp32"), Path("int8"), pad_id=0)
        decision = export.decide_int8(check, scored.fp32, scored.int8, scored.rows)
        assert (decision.examples_checked < n) is early, flipped
        assert decision.examples == n and len(scored.rows) == decision.examples_checked
        if early:  # stopped at a look, with the share kept measured on what was scored
            assert decision.examples_checked % export.INT8_LOOK == 0
            assert decision.agreement is not None
            if flipped > 2:  # surely fails
                assert not decision.accepted
                assert export.wilson_upper(decision.agreement, decision.agreed_on) < 0.99
            else:  # surely passes: at the first look past INT8_ACCEPT_AFTER
                assert decision.accepted
                assert decision.examples_checked == export.INT8_ACCEPT_AFTER
        assert decision.record()["examples_checked"] == decision.examples_checked
    short = export.pairwise_check(items[:1000], items[n:n + 1000])  # under INT8_ACCEPT_AFTER
    flips["int8"] = 0
    scored = short.outputs(Path("fp32"), Path("int8"), pad_id=0)
    assert len(scored.rows) == 1000  # passing is only ever decided early past 2,048 examples


def test_training_saves_its_validation_scores_for_the_int8_check(
        trained_run: Path, artifact: tuple[Path, Manifest]) -> None:
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
    saved = export.saved_validation_scores(checkpoint, items)
    assert saved is not None and saved.shape == (len(items), 1)
    graph = open_session(artifact[0] / "model.onnx")
    sample = list(range(0, len(items), max(1, len(items) // 40)))
    fp32 = run(graph, [items[i] for i in sample], pad_id=encoder.pad_id)
    assert np.abs(fp32 - saved[sample]).max() < 1e-4
    # other items (the split without the run's own file): not theirs, so not used
    assert export.saved_validation_scores(checkpoint, items[:-1]) is None
    assert export.saved_validation_scores(checkpoint, items[::-1]) is None


def test_unreadable_validation_scores_are_ignored(tmp_path: Path) -> None:
    """A truncated or foreign file is not fp32's side: the check scores with fp32 itself."""
    items = [EncodedPair([i, 1], [0, 0], False, False) for i in range(6)]
    saved = export.save_validation_scores(tmp_path, items, np.arange(6.0))
    assert export.saved_validation_scores(tmp_path, items) is not None
    saved.write_bytes(saved.read_bytes()[:40])
    assert export.saved_validation_scores(tmp_path, items) is None
    np.savez(saved, other=np.zeros(6))
    assert export.saved_validation_scores(tmp_path, items) is None


def test_int8_check_with_known_fp32_scores_runs_only_int8(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    n = 600
    scores = np.random.default_rng(2).normal(size=2 * n).astype(np.float32)
    items = [EncodedPair([i], [0], False, False) for i in range(2 * n)]
    check = export.pairwise_check(items[:n], items[n:])
    graphs_run: list[str] = []

    def fake_run(graph: str, batch: list[EncodedPair], **_: object) -> np.ndarray:
        graphs_run.append(graph)
        noise = 0.0 if graph == "fp32" else 0.01
        return np.array([[scores[item.input_ids[0]] + noise] for item in batch], np.float32)

    monkeypatch.setattr(export, "open_session", str)
    monkeypatch.setattr(export, "run", fake_run)
    both = check.outputs(Path("fp32"), Path("int8"), pad_id=0)
    assert set(graphs_run) == {"fp32", "int8"}
    export.save_validation_scores(tmp_path, items, scores)
    known = export.saved_validation_scores(tmp_path, items)
    graphs_run.clear()
    only = check.outputs(Path("fp32"), Path("int8"), pad_id=0, known_fp32=known)
    assert set(graphs_run) == {"int8"}
    assert np.array_equal(only.rows, both.rows) and np.array_equal(only.fp32, both.fp32)
    assert (export.decide_int8(check, only.fp32, only.int8, only.rows)
            == export.decide_int8(check, both.fp32, both.int8, both.rows))
