"""Export on the tiny trained model: fused graph, parity gate, int8, fp16, store and tampering."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models import store
from models.inputs import PairEncoder
from models.manifest import Manifest
from models.session import open_session, run
from training import export, int8_gate
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


@pytest.mark.parametrize("pool", ["all", "both"])
def test_every_pooling_exports_through_the_parity_gate(trained_run: Path, validation: EncodedPairs,
                                                       tmp_path: Path, pool: str) -> None:
    """A head on every token's mean, or on both means side by side, is in the graph too."""
    checkpoint = tmp_path / "model"
    shutil.copytree(trained_run / "model", checkpoint)
    torch.manual_seed(0)
    ScoringModel(ScoringModel.load(checkpoint).encoder, pool=pool).save(checkpoint)
    export.export_checkpoint(checkpoint, tmp_path / "out", "tiny-pool",
                             int8_gate.pairwise_check(validation.chosen, validation.rejected))
    items = validation.chosen[:20]
    expected = score(ScoringModel.load(checkpoint), items)
    assert np.abs(run(open_session(tmp_path / "out" / "model.onnx"), items) - expected).max() < 1e-4


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
    monkeypatch.setattr(int8_gate, "INT8_MAX_DROP_POINTS", -100.0)  # nothing can pass
    manifest = export.export_checkpoint(trained_run / "model", tmp_path, "tiny-reward",
                                        int8_gate.pairwise_check(validation.chosen[:50],
                                                                 validation.rejected[:50]),
                                        threads=1)  # as a stage of the first run has it
    assert manifest.quantisation["int8"]["accepted"] == "no"
    assert not (tmp_path / "model.int8.onnx").exists() and "model.int8.onnx" not in manifest.files


def test_bad_name_or_directory_is_refused_before_any_work(trained_run: Path,
                                                          tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pattern"):
        export.export_checkpoint(trained_run / "model", tmp_path, "Bad Name",
                                 int8_gate.pairwise_check([], []))
    assert not any(tmp_path.iterdir())
    # with the task's own check (the default), before its validation data is read
    with pytest.raises(ValidationError, match="pattern"):
        export.export_checkpoint(trained_run / "model", tmp_path, "Bad Name",
                                 data_dir=tmp_path / "no-data")
    assert not any(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="not a trained model or artifact directory"):
        export.export_checkpoint(tmp_path / "nope", tmp_path, "x",
                                 int8_gate.pairwise_check([], []))


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
