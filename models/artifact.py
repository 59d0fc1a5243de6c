"""The artifact's file layout, defined once for training (export) and serving alike.

    <artifact>/
      model.onnx         fp32, fused, parity-checked against PyTorch
      model.int8.onnx    optional: dynamic per-channel int8, kept only if it passes the gate
      model.fp16.onnx    for GPU hosts
      tokenizer.json     the fast tokenizer (the `tokenizers` library, no torch)
      weights/           the trained PyTorch model (encoder/, head.safetensors, tokenizer.json):
                         what `alignserve retrain` continues from; the service never reads it
      manifest.json      models.manifest.Manifest
"""

from __future__ import annotations

from enum import StrEnum

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_DIR = "weights"
MANIFEST_FILE = "manifest.json"


class Quantisation(StrEnum):
    """The graphs an artifact can hold; `auto` lets the service choose by provider."""

    fp32 = "fp32"
    int8 = "int8"
    fp16 = "fp16"


GRAPH_FILES: dict[Quantisation, str] = {Quantisation.fp32: "model.onnx",
                                         Quantisation.int8: "model.int8.onnx",
                                         Quantisation.fp16: "model.fp16.onnx"}
FP32, INT8, FP16 = (GRAPH_FILES[q] for q in Quantisation)
