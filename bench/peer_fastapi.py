"""The plain peer: a reward model served the way a team would write it in an afternoon, FastAPI
and transformers (PyTorch eager, one forward pass per request, no batching across requests).

    .venv/bin/python -m bench.peer_fastapi --model runs/reward/model --port 8001

It loads a model directory that `alignserve train reward` wrote (encoder/, head.safetensors,
tokenizer.json, manifest.json) and scores exactly as training does: the prompt rendered as
the manifest's input format says ("Human: ..."), the pair as BERT segments (with
token_type_ids), the mean of the response tokens' last hidden states, the linear head. So on
pairs that fit the window its rewards equal alignserve's for the same model, which is what
bench/peers.py checks. `POST /score {"items": [{"prompt", "response"}]}` -> `{"rewards"}`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from safetensors.torch import load_file
from transformers import AutoModel, PreTrainedTokenizerFast


class Item(BaseModel):
    prompt: str
    response: str


class ScoreRequest(BaseModel):
    items: list[Item]


def tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """The model's own tokenizer.json with BERT's special tokens named."""
    return PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"),
                                   cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                   unk_token="[UNK]", mask_token="[MASK]", model_max_length=512)


class RewardModel:
    def __init__(self, directory: Path, max_length: int) -> None:
        self.tokenizer = tokenizer(directory)
        self.encoder = AutoModel.from_pretrained(directory / "encoder").eval()
        head = load_file(directory / "head.safetensors")
        self.weight, self.bias = head["weight"], head["bias"]
        self.max_length = max_length
        fmt = json.loads((directory / "manifest.json").read_text())["input"]
        self.user = fmt["role_labels"]["user"]

    @torch.inference_mode()
    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        rendered = [f"{self.user}: {p.strip()}" for p in prompts]
        batch = self.tokenizer(rendered, responses, truncation="only_first",
                               max_length=self.max_length, padding=True, return_tensors="pt",
                               return_token_type_ids=True)
        hidden = self.encoder(**batch).last_hidden_state
        mask = (batch["attention_mask"] * batch["token_type_ids"]).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return (pooled @ self.weight.T + self.bias).squeeze(-1).tolist()


def app_for(model: RewardModel) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/score")
    def score(request: ScoreRequest) -> dict[str, list[float]]:
        # A sync endpoint: FastAPI runs it in its thread pool, as such servers usually do.
        return {"rewards": model.score([i.prompt for i in request.items],
                                       [i.response for i in request.items])}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    model = RewardModel(args.model, args.max_length)
    uvicorn.run(app_for(model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
