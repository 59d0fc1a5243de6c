"""Checkpoint -> artifact: ONNX fp32 with fused attention, a parity gate, int8 and fp16.

    alignserve export --checkpoint runs/reward/model --name reward

The artifact directory holds the layout models/artifact.py defines: model.onnx (fused fp32,
parity-checked against PyTorch), model.int8.onnx (dynamic per-channel, 7-bit weights, kept only
when it passes the int8 gate, training/int8_gate.py), model.fp16.onnx (for GPU hosts,
parity-checked on the CPU), tokenizer.json and a complete manifest.json.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from models.artifact import FP16, FP32, INT8, TOKENIZER_FILE, WEIGHTS_DIR
from models.inputs import EncodedPair, PairEncoder, pad_batch
from models.manifest import Manifest, file_digests, library_versions
from models.session import INPUT_NAMES, OUTPUT_NAME, feeds, open_session
from training.int8_gate import ValidationCheck, decide_int8, saved_validation_scores
from training.modeling import AnyModel, EnsembleModel, ScoringModel, load_model, num_outputs
from training.scoring import to_torch

OPSET = 17
# Rewards and logits are O(1); fp32 graphs agree with PyTorch to ~1e-6, fp16 to ~1e-3. int8 has
# no value tolerance: the validation metric decides whether it ships.
TOLERANCE = {FP32: 1e-4, FP16: 5e-2}


class ParityError(RuntimeError):
    pass


def export_onnx(model: AnyModel, path: Path, opset: int = OPSET) -> Path:
    """Trace with the TorchScript exporter (dynamo=False) so onnxruntime's optimiser can
    recognise and fuse the eager attention pattern."""
    model.eval()
    dummy = {name: torch.ones((2, 8), dtype=torch.int64) for name in INPUT_NAMES}
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        # Expected, and checked: the exporter warns that advanced indexing "will produce
        # incorrect results" for negative indices (the pooling's are never negative) and that
        # traced Python conditions become constants. The parity gate below compares the
        # graph with torch on real inputs of mixed lengths and refuses any that disagrees.
        warnings.filterwarnings("ignore", message=".*aten::index.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(model, tuple(dummy[name] for name in INPUT_NAMES), str(path),
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, dynamo=False)
    return path


# onnxruntime's fusions know these encoders' graphs (RoBERTa's and ELECTRA's are BERT's);
# DeBERTa's disentangled attention has no fused kernel: its graph is kept as exported.
FUSABLE = {"bert", "roberta", "electra"}


def fuse(raw: Path, fused: Path, num_heads: int, hidden_size: int, model_type: str = "bert",
         members: int = 1) -> dict[str, int]:
    """Attention, LayerNorm and GELU fusion; returns the fused operator counts. An ensemble's
    members share one attention mask, which the embedding fusion cannot place twice: their
    embeddings stay unfused (attention, the bulk of the work, is fused in each)."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    if model_type not in FUSABLE:
        shutil.copy(raw, fused)
        return {}
    options = FusionOptions("bert")
    options.enable_embed_layer_norm = members == 1
    optimized = optimizer.optimize_model(str(raw), model_type="bert", num_heads=num_heads,
                                         hidden_size=hidden_size, opt_level=0,
                                         optimization_options=options)
    optimized.save_model_to_file(str(fused))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def to_fp16(fused: Path, out: Path) -> Path:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(fused)))
    model.convert_float_to_float16(keep_io_types=True)  # the service feeds int64, reads fp32
    model.save_model_to_file(str(out))
    return out


def quantise_int8(fused: Path, out: Path, reduce_range: bool = True) -> Path:
    """Dynamic int8: weights per channel, activations per batch. Weights take 7 bits
    (`reduce_range`) so that no x86 CPU saturates: without VNNI, onnxruntime sums pairs of
    uint8 x int8 products in 16 bits (VPMADDUBSW), which saturates for 8-bit weights, so an
    int8 graph checked on a VNNI CPU scored otherwise on an AVX2 one. Rounding still differs
    between instruction sets, far less (`python -m bench.int8_portability`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused contrib ops (Attention, SkipLayerNormalization) defeat shape inference; their
    # tensors are float. The quantiser's advice to pre-process (shape inference) is logged as a
    # warning on every run; it cannot apply to fused graphs, and the int8 check that follows
    # measures the result, so it is not shown.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fused), str(out), per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return out


def parity_batches(items: Sequence[EncodedPair]) -> list[list[int]]:
    """Single items, and the whole set as one padded mixed-length batch in its given order."""
    return [[i] for i in range(min(4, len(items)))] + [list(range(len(items)))]


def check_parity(model: AnyModel, graph: Path, items: Sequence[EncodedPair],
                 tolerance: float, pad_id: int = 0, threads: int | None = None) -> float:
    """Shapes first, then values; returns the max absolute difference or raises ParityError."""
    session = open_session(graph, threads=threads)
    worst = 0.0
    for indices in parity_batches(items):
        arrays = pad_batch([items[i] for i in indices], pad_id)
        with torch.inference_mode():
            expected = model(**to_torch(arrays)).float().numpy()
        (actual,) = session.run([OUTPUT_NAME], feeds(session, arrays))
        shape = arrays["input_ids"].shape
        if actual.shape != expected.shape:
            raise ParityError(f"{graph.name}: output '{OUTPUT_NAME}' has shape {actual.shape}, "
                              f"PyTorch gives {expected.shape} (input {shape})")
        worst = max(worst, float(np.abs(actual.astype(np.float32) - expected).max()))
    if worst > tolerance:
        raise ParityError(f"{graph.name}: output '{OUTPUT_NAME}' differs from PyTorch by up to "
                          f"{worst:.3g}, above the tolerance {tolerance:g}")
    return worst


def count_ops(graph: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(graph)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def keep_weights(checkpoint: Path, weights: Path) -> None:
    """The trained model beside its graphs, so that a re-training can continue from it."""
    shutil.rmtree(weights, ignore_errors=True)
    shutil.copytree(checkpoint / "encoder", weights / "encoder")
    for name in ("head.safetensors", TOKENIZER_FILE):
        shutil.copy(checkpoint / name, weights / name)


def export_checkpoint(checkpoint: Path, output: Path, name: str,
                      check: ValidationCheck | None = None, opset: int = OPSET,
                      say: Callable[[str], None] | None = None,
                      data_dir: Path | None = None, threads: int | None = None) -> Manifest:
    """Build the artifact in `output`; raises ParityError when a graph disagrees. `check`: what
    the int8 graph must hold; by default the task's own metric on its validation split, read
    from `data_dir` (training/checks.py). `say` hears what each step is doing (the int8 check is
    the long one: every validation item scored by both graphs); by default, stdout at once.
    `threads`: torch's and onnxruntime's (default: all cores)."""
    if threads:
        torch.set_num_threads(threads)
    if say is None:
        def say(line: str) -> None:
            print(line, flush=True)

    manifest = Manifest.load(checkpoint)
    Manifest.model_validate({**manifest.model_dump(), "name": name})  # refuse a bad name first
    encoder = PairEncoder.from_file(checkpoint / TOKENIZER_FILE, manifest.input)
    if check is None:
        from training.checks import validation_check

        check = validation_check(manifest, encoder, data_dir)
    model = load_model(checkpoint)
    probe = sorted(check.items[:64], key=len)[::4]  # real inputs of mixed lengths
    output.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint / TOKENIZER_FILE, output / TOKENIZER_FILE)
    if isinstance(model, ScoringModel):  # what a re-training continues (not for imports)
        keep_weights(checkpoint, output / WEIGHTS_DIR)

    say(f"export {name}: tracing the model to ONNX, fusing attention, fp32 and fp16 parity")
    raw = export_onnx(model, output / "model.raw.onnx", opset)
    config = model.config
    fused_ops = fuse(raw, output / FP32, config.num_attention_heads, config.hidden_size,
                     config.model_type, num_outputs(model) if isinstance(model, EnsembleModel)
                     else 1)
    raw.unlink()
    parity = {"fp32": check_parity(model, output / FP32, probe, TOLERANCE[FP32],
                                   encoder.pad_id, threads)}
    to_fp16(output / FP32, output / FP16)
    parity["fp16"] = check_parity(model, output / FP16, probe, TOLERANCE[FP16], encoder.pad_id,
                                  threads)

    known = saved_validation_scores(checkpoint, check.items)
    graphs = ("the int8 graph (fp32's: the scores training saved of these inputs)"
              if known is not None else "the fp32 and the int8 graph")
    say(f"export {name}: int8 check, quantising, then scoring the {len(check.items):,} "
        f"validation inputs with {graphs} ({check.metric}; stops early once the answer is "
        "sure)")
    quantise_int8(output / FP32, output / INT8)
    scored = check.outputs(output / FP32, output / INT8, encoder.pad_id, known, threads)
    decision = decide_int8(check, scored.fp32, scored.int8, scored.rows)
    if decision.accepted:
        parity["int8"] = check_parity(model, output / INT8, probe, float("inf"),
                                      encoder.pad_id, threads)
    else:
        (output / INT8).unlink()

    exported = manifest.model_copy(update={
        "name": name, "opset": opset, "parity_max_diff": parity,
        "quantisation": {"int8": decision.record(),
                         "fused_operators": {k: float(v) for k, v in fused_ops.items()}},
        "files": file_digests(output),
        "versions": {**manifest.versions,
                     **library_versions("torch", "onnx", "onnxruntime", "tokenizers")}})
    return Manifest.model_validate(exported.model_dump())  # re-validate the updated copy
