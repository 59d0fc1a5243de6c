"""Reward model: Bradley-Terry objective, pair batching, and pair scoring."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.inputs import EncodedPair, PairEncoder, Prompt, pad_batch, render_prompt
from training.data.records import PreferencePair
from training.modeling import ScoringModel
from training.scoring import score, to_torch
from training.trainer import Batch, Objective


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


@dataclass(frozen=True)
class EncodedPairs:
    chosen: list[EncodedPair]
    rejected: list[EncodedPair]
    margin: np.ndarray

    @classmethod
    def build(cls, encoder: PairEncoder, pairs: Sequence[PreferencePair]) -> EncodedPairs:
        prompts = [p.prompt for p in pairs]
        return cls(encoder.encode_batch(prompts, [p.chosen for p in pairs]),
                   encoder.encode_batch(prompts, [p.rejected for p in pairs]),
                   np.array([p.margin for p in pairs], dtype=np.float32))

    def lengths(self) -> list[int]:
        return [max(len(c), len(r)) for c, r in zip(self.chosen, self.rejected, strict=True)]

    def collate(self, indices: list[int], pad_id: int = 0) -> Batch:
        """Chosen then rejected in one padded batch: one forward pass scores both halves."""
        items = [self.chosen[i] for i in indices] + [self.rejected[i] for i in indices]
        batch = to_torch(pad_batch(items, pad_id))
        batch["margin"] = torch.from_numpy(self.margin[indices])
        return batch


def reward_objective(use_margin: bool, center: float) -> Objective:
    def objective(model: ScoringModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = {k: v for k, v in batch.items() if k != "margin"}
        rewards = model(**inputs).squeeze(-1)
        chosen, rejected = rewards.chunk(2)
        loss = bradley_terry_loss(chosen, rejected, batch["margin"] if use_margin else None,
                                  center)
        diff = (chosen - rejected).detach()
        return loss, {"accuracy": (diff > 0).float().mean().item(), "margin": diff.mean().item()}

    return objective


def score_pairs(model: ScoringModel, encoder: PairEncoder, pairs: Sequence[PreferencePair],
                max_tokens: int = 4096, desc: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """(r_chosen, r_rejected). Each distinct (prompt, response) is scored once: FineGrained
    pairs four answers six ways, so this halves its cost."""
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
    rewards = score(model, encoder.encode_batch(prompts, responses), max_tokens,
                    encoder.pad_id, desc)[:, 0]
    return rewards[index[:, 0]], rewards[index[:, 1]]
