"""Would another int8 quantisation pass the gate? Variants of onnxruntime's dynamic
quantisation of a stored reward artifact's fused fp32 graph (and one static quantisation,
`--variants` naming it), each put through the export's own int8 check (the same validation
pairs, order, early stops and decision as `alignserve export`).

    .venv/bin/python -m bench.int8_variants --tag reward

The gate asks int8 to keep the order of at least 99% of the validation pairs fp32 decides (its
calibrated P at least 0.05 from even) and to lose at most 2 points of accuracy (95% paired
bootstrap interval); see training/int8_gate.py. Each variant is also timed on the same pairs
against the fp32 graph, one session each, in this process.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from models import store
from models.artifact import FP32, TOKENIZER_FILE
from models.calibration import sigmoid
from models.inputs import EncodedPair, PairEncoder, pad_batch
from models.session import open_session, run
from training.checks import validation_check
from training.data.reward_data import load_reward_data
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


# 2026-12-06: static quantisation, activations at scales fixed by calibration rather than taken
# per call, so that an item's score would not depend on the batch it shares and the service's
# lanes could batch int8 calls (they run one item per call today). Calibrated on training
# pairs, never on the validation pairs the gate then checks. On the fused graph most tensors
# are outputs of contrib ops the quantiser cannot type, so it leaves them in fp32: the variant
# passes the gate but runs at about fp32's speed (docs/measurements.md, int8).
STATIC: dict[str, dict[str, Any]] = {
    "static (QDQ), per channel, 7-bit weights, min-max calibration": {
        "calibrate_method": CalibrationMethod.MinMax},
}


class Calibration(CalibrationDataReader):
    """Padded batches of encoded items, as the graph's feeds."""

    def __init__(self, items: list[EncodedPair], pad_id: int, batch: int = 16) -> None:
        self.batches = iter([pad_batch(items[i:i + batch], pad_id)
                             for i in range(0, len(items), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def calibration_items(encoder: PairEncoder, count: int) -> list[EncodedPair]:
    """`count` pairs' chosen sides from the pooled training split, sampled with a fixed seed."""
    train = load_reward_data(other_sources=False).splits["train"]
    pairs = random.Random(0).sample(train, count)
    return encoder.encode_batch([p.prompt for p in pairs], [p.chosen for p in pairs])


def quantise(fp32: Path, graph: Path, name: str, calibration: list[EncodedPair], pad_id: int
             ) -> None:
    """The variant `name` of `fp32`'s int8 graph, written to `graph`."""
    if name in STATIC:  # the head stays fp32: its bias has no int32 scale over the pooled mean
        quantize_static(str(fp32), str(graph), Calibration(calibration, pad_id),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded(fp32, "head"),
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                        **STATIC[name])
        return
    options = dict(VARIANTS[name])
    if "exclude" in options:
        options["nodes_to_exclude"] = excluded(fp32, options.pop("exclude"))
    quantize_dynamic(str(fp32), str(graph), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **options)


def items_per_s(graph: Path, items: list[EncodedPair], pad_id: int) -> float:
    session = open_session(graph)
    started = time.perf_counter()
    run(session, items, pad_id=pad_id)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="reward", help="a stored reward model")
    parser.add_argument("--variants", nargs="+", choices=[*VARIANTS, *STATIC],
                        default=list(VARIANTS), metavar="NAME",
                        help="the variants to run (default: every dynamic one)")
    parser.add_argument("--calibration-pairs", type=int, default=256,
                        help="training pairs a static variant is calibrated on")
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
    calibration = (calibration_items(encoder, args.calibration_pairs)
                   if set(args.variants) & set(STATIC) else [])
    for i, name in enumerate(args.variants):
        graph = workdir / f"variant{i}.onnx"
        quantise(fp32, graph, name, calibration, encoder.pad_id)
        if name in STATIC:
            alone_vs_batched_graph(name, graph, check.items[:256], encoder.pad_id)
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
        alone_vs_batched_graph(name, path, items, pad_id)


def alone_vs_batched_graph(name: str, graph: Path, items: list[EncodedPair], pad_id: int
                           ) -> None:
    session = open_session(graph)
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
