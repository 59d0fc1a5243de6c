"""The model Infinity serves in bench/peers.py, and the scores its engines should give.

    .venv-infinity/bin/python -m bench.peer_infinity_model MODEL_DIR OUT_DIR CHECK_JSON

Runs in Infinity's own virtual environment (its transformers and onnxruntime). Infinity's
/rerank serves sequence-classification models, so MODEL_DIR's encoder and linear head become a
BertForSequenceClassification (the head reads the pooled [CLS] token instead of the mean of the
response tokens: other scores than alignserve's, the same work). Writes to OUT_DIR the model,
its tokenizer, its ONNX export and that export's int8 quantisation (model_quantized.onnx, which
Infinity's ONNX engine picks on a CPU), and expected.json: for each (query, document) pair of
CHECK_JSON the logit with token_type_ids ("with", what the torch engine computes) and without
("without_token_type_ids", what the ONNX engine computes), both from PyTorch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from bench.peer_fastapi import tokenizer


def main() -> None:
    source, out, check = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    model = BertForSequenceClassification.from_pretrained(source / "encoder", num_labels=1)
    head = load_file(source / "head.safetensors")
    with torch.no_grad():
        model.classifier.weight.copy_(head["weight"])
        model.classifier.bias.copy_(head["bias"])
    model.eval().save_pretrained(out)
    tok = tokenizer(source)
    tok.save_pretrained(out)
    # optimum's own exporter fails on this torch; torch's TorchScript exporter gives the graph
    # optimum's would (its ORTModel fills the token_type_ids that Infinity leaves out with 0).
    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = tok(["a question"], ["an answer"], return_tensors="pt", return_token_type_ids=True)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    torch.onnx.export(model, tuple(sample[n] for n in names), out / "model.onnx",
                      input_names=names, output_names=["logits"],
                      dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    # What optimum's AutoQuantizationConfig.avx512(is_static=False, per_channel=False) asks.
    quantize_dynamic(str(out / "model.onnx"), str(out / "model_quantized.onnx"),
                     per_channel=False, weight_type=QuantType.QInt8)

    pairs = [tuple(p) for p in json.loads(check.read_text())]
    batch = tok([q.strip() for q, _ in pairs], [d.strip() for _, d in pairs], padding=True,
                truncation="longest_first", return_tensors="pt")
    with torch.inference_mode():
        with_types = model(**batch).logits.squeeze(-1).tolist()
        del batch["token_type_ids"]
        without = model(**batch).logits.squeeze(-1).tolist()
    (out / "expected.json").write_text(json.dumps(
        {"pairs": pairs, "with": with_types, "without_token_type_ids": without}))


if __name__ == "__main__":
    main()
