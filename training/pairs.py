"""Reward model: Bradley-Terry objective, pair batching, and pair scoring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.calibration import reward_of
from models.inputs import EncodedPair, PairEncoder, Prompt, pad_batch, render_prompt
from training.data.records import PreferencePair
from training.modeling import AnyModel, ScoringModel
from training.scoring import score, to_torch
from training.trainer import Batch


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor,
                       margin: torch.Tensor | None = None, center: float = 0.0) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), plus an optional centring term
    center * mean((r_chosen + r_rejected)^2) that pins the reward scale's zero."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center:
        loss = loss + center * ((chosen + rejected) ** 2).mean()
    return loss


CONTRAST_SUBSET = "contrast/"  # training/data/contrast.py's pairs: labelled by construction


@dataclass(frozen=True)
class EncodedPairs:
    chosen: list[EncodedPair]
    rejected: list[EncodedPair]
    margin: np.ndarray
    human: np.ndarray  # 1.0 where people labelled the pair, 0.0 for a contrast pair

    @classmethod
    def build(cls, encoder: PairEncoder, pairs: Sequence[PreferencePair]) -> EncodedPairs:
        prompts = [p.prompt for p in pairs]
        return cls(encoder.encode_batch(prompts, [p.chosen for p in pairs]),
                   encoder.encode_batch(prompts, [p.rejected for p in pairs]),
                   np.array([p.margin for p in pairs], dtype=np.float32),
                   np.array([not p.subset.startswith(CONTRAST_SUBSET) for p in pairs],
                            dtype=np.float32))

    def lengths(self) -> list[int]:
        return [max(len(c), len(r)) for c, r in zip(self.chosen, self.rejected, strict=True)]

    def collate(self, indices: list[int], pad_id: int = 0) -> Batch:
        """Chosen then rejected in one padded batch: one forward pass scores both halves."""
        items = [self.chosen[i] for i in indices] + [self.rejected[i] for i in indices]
        batch = to_torch(pad_batch(items, pad_id))
        batch["margin"] = torch.from_numpy(self.margin[indices])
        batch["human"] = torch.from_numpy(self.human[indices])
        return batch


def model_inputs(batch: Batch) -> Batch:
    """The tensors the model reads: a pair batch also carries each pair's margin and whether
    people labelled it."""
    return {k: v for k, v in batch.items() if k not in ("margin", "human")}


def response_log_length(batch: Batch) -> torch.Tensor:
    """log(1 + response tokens) of each input: segment B, without the closing [SEP]."""
    tokens = (batch["token_type_ids"] * batch["attention_mask"]).sum(dim=1) - 1
    return torch.log1p(tokens.clamp(min=0).float())


MIN_CORRELATED = 4  # items: a correlation over fewer says nothing


def squared_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x, y = x.float() - x.float().mean(), y - y.mean()
    return (x * y).sum() ** 2 / ((x * x).sum() * (y * y).sum()).clamp(min=1e-8)


class RewardObjective(nn.Module):
    """Bradley-Terry on (r_chosen, r_rejected), with length decoupled from r.

    With `length_term`, training scores a reply r(x) + w * log(1 + tokens), w learnt: the
    linear term absorbs the share of the preference that length explains, so r need not.
    `decorrelation` times the squared in-batch correlation of r and log length keeps r from
    encoding length anyway. The service serves r alone (w lives here, not in the model); w
    trains at the head's learning rate. Without `contrast_in_length_terms`, both read only the
    human-labelled pairs (a batch's "human"), where length is a bias of the labels; a
    contrast pair's length difference comes with the cue it teaches."""

    def __init__(self, use_margin: bool, center: float, length_term: bool = False,
                 decorrelation: float = 0.0, contrast_in_length_terms: bool = True) -> None:
        super().__init__()
        self.use_margin, self.center = use_margin, center
        self.length_term, self.decorrelation = length_term, decorrelation
        self.contrast_in_length_terms = contrast_in_length_terms
        self.length_weight = nn.Parameter(torch.zeros(()), requires_grad=length_term)

    def forward(self, model: ScoringModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = model_inputs(batch)
        rewards = model(**inputs).squeeze(-1).float()
        length = response_log_length(inputs)
        # Each item's weight in the length terms (chosen, then rejected): None reads them all.
        human = (None if self.contrast_in_length_terms or "human" not in batch
                 else batch["human"].float().repeat(2))
        if self.length_term:
            scored_length = length if human is None else length * human
            scores = rewards + self.length_weight * scored_length
        else:
            scores = rewards
        chosen, rejected = scores.chunk(2)
        loss = bradley_terry_loss(chosen, rejected,
                                  batch["margin"] if self.use_margin else None, self.center)
        if self.decorrelation:
            if human is None:
                loss = loss + self.decorrelation * squared_correlation(rewards, length)
            elif int((kept := human > 0).sum()) >= MIN_CORRELATED:
                loss = loss + self.decorrelation * squared_correlation(rewards[kept],
                                                                       length[kept])
        served_chosen, served_rejected = rewards.detach().chunk(2)
        diff = served_chosen - served_rejected
        return loss, {"accuracy": (diff > 0).float().mean().item(),
                              "margin": diff.mean().item(),
                              "length_weight": float(self.length_weight.detach())}


@dataclass(frozen=True)
class PairInputs:
    """Each distinct (prompt, response) of some pairs encoded once, and where each pair's chosen
    and rejected replies are among them: FineGrained pairs four answers six ways, so scoring
    these halves its cost."""

    items: list[EncodedPair]
    index: np.ndarray  # (pairs, 2): the rows in `items` of each pair's chosen and rejected reply
    pad_id: int

    @classmethod
    def build(cls, encoder: PairEncoder, pairs: Sequence[PreferencePair]) -> PairInputs:
        keys: dict[tuple[str, str], int] = {}
        prompts: list[Prompt] = []
        responses: list[str] = []
        index = np.zeros((len(pairs), 2), dtype=np.int64)
        for row, pair in enumerate(pairs):
            rendered = render_prompt(pair.prompt, encoder.format)
            for col, response in enumerate((pair.chosen, pair.rejected)):
                key = (rendered, response)
                if key not in keys:
                    keys[key] = len(prompts)
                    prompts.append(pair.prompt)
                    responses.append(response)
                index[row, col] = keys[key]
        return cls(encoder.encode_batch(prompts, responses), index, encoder.pad_id)

    def score(self, model: AnyModel, max_tokens: int = 4096, desc: str = "score"
              ) -> tuple[np.ndarray, np.ndarray]:
        """(r_chosen, r_rejected)."""
        rewards = reward_of(score(model, self.items, max_tokens, self.pad_id, desc))
        return rewards[self.index[:, 0]], rewards[self.index[:, 1]]

    def cut(self) -> tuple[np.ndarray, np.ndarray]:
        """Whether the window cuts each pair's chosen and rejected reply."""
        truncated = np.array([item.response_truncated for item in self.items], dtype=bool)
        return truncated[self.index[:, 0]], truncated[self.index[:, 1]]


def score_pairs(model: AnyModel, encoder: PairEncoder, pairs: Sequence[PreferencePair],
                max_tokens: int = 4096, desc: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """(r_chosen, r_rejected), each distinct (prompt, response) scored once."""
    return PairInputs.build(encoder, pairs).score(model, max_tokens, desc)
