"""The int8 variants' exclusions name nodes the quantiser really leaves in fp32."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

from bench.int8_variants import VARIANTS, excluded
from models.artifact import FP32


@pytest.mark.parametrize("part", sorted({v["exclude"] for v in VARIANTS.values()
                                         if "exclude" in v}))
def test_each_part_left_in_fp32_stays_float(tiny_artifact: Path, tmp_path: Path, part: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    fused = tiny_artifact / FP32
    names = excluded(fused, part)
    assert names
    caplog.set_level(logging.ERROR)  # the quantiser's advice to pre-process, on every run
    out = tmp_path / "variant.onnx"
    quantize_dynamic(str(fused), str(out), per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8, nodes_to_exclude=names,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    kept = {node.name: node.op_type for node in onnx.load(str(out)).graph.node}
    float_ops = {"MatMul", "Attention", "EmbedLayerNormalization"}
    # the head's Gemm is quantised as a MatMul of its own name: that name must be the one left
    assert any(kept.get(name) in float_ops for name in names)
    assert not any(name + "_quant" in kept for name in names)
