"""Would another int8 quantisation pass the gate? Variants of onnxruntime's dynamic
quantisation of a stored reward artifact's fused fp32 graph, each put through the export's own
int8 check (the same validation pairs, order, early stops and decision as `alignserve export`).

    .venv/bin/python -m bench.int8_variants --tag reward

The gate asks int8 to keep the order of at least 99% of the validation pairs fp32 decides (its
calibrated P at least 0.05 from even) and to lose at most 2 points of accuracy (95% paired
bootstrap interval); see training/int8_gate.py. Each variant is also timed on the same pairs
against the fp32 graph, one session each, in this process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from models import store
from models.artifact import FP32, TOKENIZER_FILE
from models.calibration import sigmoid
from models.inputs import EncodedPair, PairEncoder
from models.session import open_session, run
from training.checks import validation_check
from training.export import quantise_int8
from training.int8_gate import ValidationCheck, decide_int8, pair_margins


def down_projections(graph: Path) -> list[str]:
    """The feed-forward blocks' second MatMuls (4h -> h), whose inputs carry GELU's outliers."""
    model = onnx.load(str(graph))
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "MatMul"
            and any(len(s) == 2 and s[0] > s[1] for s in (shapes.get(i, []) for i in node.input))]


def excluded(graph: Path, part: str) -> list[str]:
    """The nodes of one part of the fused graph that a variant leaves in fp32. The head's Gemm
    is named twice: the quantiser turns it into a MatMul of its own name first."""
    if part == "down":
        return down_projections(graph)
    if part == "head":
        return ["/head/Gemm", "/head/Gemm_MatMul"]
    op = {"attention": "Attention", "embeddings": "EmbedLayerNormalization"}[part]
    return [node.name for node in onnx.load(str(graph)).graph.node if node.op_type == op]


VARIANTS: dict[str, dict[str, Any]] = {
    "every supported op, per channel, 8-bit weights (the export before 2026-12-05)": {
        "per_channel": True},
    "MatMul only, per channel": {"per_channel": True, "op_types_to_quantize": ["MatMul"]},
    "MatMul and Attention, per channel": {"per_channel": True,
                                          "op_types_to_quantize": ["MatMul", "Attention"]},
    "MatMul only, per tensor": {"per_channel": False, "op_types_to_quantize": ["MatMul"]},
    "every supported op, per channel, 7-bit weights (what export does)": {
        "per_channel": True, "reduce_range": True},
    "every op but the feed-forward down-projections, per channel": {"per_channel": True,
                                                                    "exclude": "down"},
    # 2026-12-06: the parts of the export's graph (7-bit weights) one at a time in fp32, for a
    # model whose int8 graph the gate refused (the 3,600-pair candidate, docs/measurements.md).
    "7-bit, the head in fp32": {"per_channel": True, "reduce_range": True, "exclude": "head"},
    "7-bit, the embeddings in fp32": {"per_channel": True, "reduce_range": True,
                                      "exclude": "embeddings"},
    "7-bit, the attention projections in fp32": {"per_channel": True, "reduce_range": True,
                                                 "exclude": "attention"},
    "7-bit, the feed-forward down-projections in fp32": {"per_channel": True,
                                                         "reduce_range": True,
                                                         "exclude": "down"},
}


def items_per_s(graph: Path, items: list[EncodedPair], pad_id: int) -> float:
    session = open_session(graph)
    started = time.perf_counter()
    run(session, items, pad_id=pad_id)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="reward", help="a stored reward model")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        metavar="NAME", help="the variants to run (default: all of them)")
    args = parser.parse_args()
    stored = store.get(args.tag)
    encoder = PairEncoder.from_file(stored.path / TOKENIZER_FILE, stored.manifest.input)
    check = validation_check(stored.manifest, encoder)  # the export's own
    check_temperature = stored.manifest.temperature or 1.0
    fp32 = stored.path / FP32
    workdir = Path(tempfile.mkdtemp(prefix="alignserve-int8-"))
    speed = items_per_s(fp32, check.items, encoder.pad_id)
    print(f"{store.resolve(args.tag)}: {check.examples} validation pairs; fp32 {speed:.0f} "
          f"items/s", flush=True)
    alone_vs_batched(fp32, workdir / "export.onnx", check.items[:256], encoder.pad_id)
    for i, name in enumerate(args.variants):
        graph = workdir / f"variant{i}.onnx"
        options = dict(VARIANTS[name])
        if "exclude" in options:
            options["nodes_to_exclude"] = excluded(fp32, options.pop("exclude"))
        quantize_dynamic(str(fp32), str(graph), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **options)
        scored = check.outputs(fp32, graph, encoder.pad_id)
        d = decide_int8(check, scored.fp32, scored.int8, scored.rows)
        every, bands = check_all_pairs(check, scored.fp32, scored.int8, scored.rows,
                                       check_temperature)
        print(f"{name}: order kept on {d.agreement:.1%} of the {d.agreed_on} decided pairs "
              f"({every:.1%} of all {d.examples_checked} scored), accuracy {d.fp32:.1%} -> "
              f"{d.int8:.1%} (drop interval [{d.drop_interval[0]:+.2f}, "
              f"{d.drop_interval[1]:+.2f}] points): {'accepted' if d.accepted else 'rejected'}; "
              f"{items_per_s(graph, check.items, encoder.pad_id) / speed:.2f}x fp32's speed, "
              f"{graph.stat().st_size / 1e6:.0f} MB; "
              f"pairs flipped by fp32's P from even: {bands}", flush=True)


def alone_vs_batched(fp32: Path, graph: Path, items: list[EncodedPair], pad_id: int) -> None:
    """Dynamic quantisation scales a batch's activations together, so an int8 score depends on
    the batch it shares; fp32's does not (beyond rounding). Each graph's scores of the same
    items alone and in token-budgeted batches."""
    quantise_int8(fp32, graph)
    for name, path in (("fp32", fp32), ("int8 (what export does)", graph)):
        session = open_session(path)
        batched = run(session, items, pad_id=pad_id)[:, 0]
        alone = np.array([run(session, [item], pad_id=pad_id)[0, 0] for item in items])
        differ = np.abs(alone - batched)
        print(f"{name}: {len(items)} items scored alone and batched differ by at most "
              f"{differ.max():.2g} (median {np.median(differ):.2g})", flush=True)


def check_all_pairs(check: ValidationCheck, fp32: np.ndarray, int8: np.ndarray,
                    rows: np.ndarray, temperature: float) -> tuple[float, str]:
    """The share of every scored pair whose order int8 keeps, near-ties included (the gate's
    statistic before 2026-12-04), and where the flipped pairs lie: how far fp32's calibrated
    P(chosen over rejected) is from even."""
    margin = pair_margins(fp32, rows, check.examples)
    margin8 = pair_margins(int8, rows, check.examples)
    flipped = (margin > 0) != (margin8 > 0)
    p32, p8 = sigmoid(margin / temperature), sigmoid(margin8 / temperature)
    distance = np.abs(p32 - 0.5)
    edges = (0.0, 0.02, 0.05, 1.0)
    bands = ", ".join(f"{int((flipped & (distance >= lo) & (distance < hi)).sum())} of "
                      f"{int(((distance >= lo) & (distance < hi)).sum())} at {lo}-{hi}"
                      for lo, hi in pairwise(edges))
    moved = np.percentile(np.abs(p8 - p32), [50, 99])
    return float((~flipped).mean()), (f"{bands}; compare's P moved by {moved[0]:.3f} (median), "
                                      f"{moved[1]:.3f} (99th percentile)")


if __name__ == "__main__":
    main()
