"""Would another int8 quantisation pass the gate? Variants of onnxruntime's dynamic
quantisation of a stored reward artifact's fused fp32 graph, each put through the export's own
int8 check (the same validation pairs, order, early stops and decision as `alignserve export`).

    .venv/bin/python -m bench.int8_variants --tag reward

The gate asks int8 to keep the order of at least 97% of validation pairs and to lose at most 2
points of accuracy (95% paired bootstrap interval); see training/export.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from models import store
from models.artifact import FP32, TOKENIZER_FILE
from models.inputs import PairEncoder
from training.data.reward_data import load_reward_data
from training.export import decide_int8, pairwise_check
from training.pairs import EncodedPairs

VARIANTS: dict[str, dict[str, Any]] = {
    "every supported op, per channel (what export does)": {"per_channel": True},
    "MatMul only, per channel": {"per_channel": True, "op_types_to_quantize": ["MatMul"]},
    "MatMul and Attention, per channel": {"per_channel": True,
                                          "op_types_to_quantize": ["MatMul", "Attention"]},
    "MatMul only, per tensor": {"per_channel": False, "op_types_to_quantize": ["MatMul"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="reward", help="a stored reward model")
    args = parser.parse_args()
    stored = store.get(args.tag)
    encoder = PairEncoder.from_file(stored.path / TOKENIZER_FILE, stored.manifest.input)
    validation = EncodedPairs.build(encoder, load_reward_data(None).splits["validation"])
    check = pairwise_check(validation.chosen, validation.rejected)
    fp32 = stored.path / FP32
    workdir = Path(tempfile.mkdtemp(prefix="alignserve-int8-"))
    print(f"{store.resolve(args.tag)}: {check.examples} validation pairs")
    for i, (name, options) in enumerate(VARIANTS.items()):
        graph = workdir / f"variant{i}.onnx"
        quantize_dynamic(str(fp32), str(graph), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **options)
        started = time.perf_counter()
        scored = check.outputs(fp32, graph, encoder.pad_id)
        d = decide_int8(check, scored.fp32, scored.int8, scored.rows)
        print(f"{name}: order kept {d.agreement:.1%} of {d.examples_checked} pairs, accuracy "
              f"{d.fp32:.1%} -> {d.int8:.1%} (drop interval [{d.drop_interval[0]:+.2f}, "
              f"{d.drop_interval[1]:+.2f}] points): "
              f"{'accepted' if d.accepted else 'rejected'} ({time.perf_counter() - started:.0f} s)",
              flush=True)


if __name__ == "__main__":
    main()
