"""Classifiers: text batching, the two objectives, and calibrated decisions.

Moderation is multi-label: one logit per category, a masked binary cross-entropy (a category
the source did not label is unknown, so it contributes nothing), one temperature and one
threshold per category. Intents are multi-class: softmax cross-entropy, one temperature, and for
sets with out-of-scope queries a confidence threshold below which the answer is out_of_scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.inputs import EncodedPair, PairEncoder, pad_batch
from models.manifest import OperatingCurve
from training.data.labelled import TextExample
from training.modeling import AnyModel, ScoringModel
from training.scoring import score, to_torch
from training.temperature import fit_softmax_temperature, fit_temperature
from training.trainer import Batch, Objective

UNKNOWN = -1


@dataclass(frozen=True)
class EncodedTexts:
    items: list[EncodedPair]
    targets: np.ndarray  # multilabel: (n, K) in {0, 1, UNKNOWN}; multiclass: (n,) class index

    @classmethod
    def multilabel(cls, encoder: PairEncoder, examples: Sequence[TextExample],
                   categories: Sequence[str]) -> EncodedTexts:
        targets = np.array([[e.labels.get(c, UNKNOWN) for c in categories] for e in examples],
                           dtype=np.int64).reshape(len(examples), len(categories))
        return cls(encoder.encode_texts([e.text for e in examples]), targets)

    @classmethod
    def multiclass(cls, encoder: PairEncoder, examples: Sequence[TextExample],
                   labels: Sequence[str]) -> EncodedTexts:
        index = {label: i for i, label in enumerate(labels)}
        return cls(encoder.encode_texts([e.text for e in examples]),
                   np.array([index[e.label] for e in examples], dtype=np.int64))

    def lengths(self) -> list[int]:
        return [len(item) for item in self.items]

    def collate(self, indices: list[int], pad_id: int = 0) -> Batch:
        batch = to_torch(pad_batch([self.items[i] for i in indices], pad_id))
        batch["targets"] = torch.from_numpy(self.targets[indices])
        return batch


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the known labels only."""
    known = targets != UNKNOWN
    losses = F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0).float(),
                                                reduction="none")
    return (losses * known).sum() / known.sum().clamp(min=1)


def attention_entropy(attentions: Sequence[torch.Tensor], attention_mask: torch.Tensor
                      ) -> torch.Tensor:
    """Entropy-based attention regularisation's quantity (Attanasio et al. 2022, "EAR"): per
    layer, each real token's attention averaged over the heads, its entropy over the real
    tokens, the mean over the real tokens; summed over the layers, the mean over the batch.
    Low entropy is a token that attends to a few words; the regulariser rewards spreading it,
    against a classifier that learns single words (a group's name) as the label. Each averaged
    row is renormalised, since attention dropout rescales what training returns."""
    mask = attention_mask.to(attentions[0].dtype)
    keys = mask[:, None, :]  # (batch, 1, key)
    total = torch.zeros((), dtype=mask.dtype, device=mask.device)
    for layer in attentions:
        rows = layer.mean(dim=1) * keys  # (batch, query, key), padding's share dropped
        rows = rows / rows.sum(-1, keepdim=True).clamp(min=1e-12)
        # -p log p, with log's argument kept off 0 so a padded key's gradient stays finite
        per_token = -(rows * rows.clamp(min=1e-12).log()).sum(-1)  # (batch, query)
        total = total + ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    return total


def known_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The share of the known labels a logit's sign gets right."""
    known = targets != UNKNOWN
    correct = ((logits.detach() > 0) == (targets == 1)) & known
    return (correct.sum() / known.sum().clamp(min=1)).item()


def multilabel_objective(entropy_weight: float = 0.0) -> Objective:
    """Masked binary cross-entropy; with entropy_weight > 0, less that weight times
    attention_entropy (the model must return its attention: ScoringModel)."""
    def objective(model: ScoringModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        targets = batch["targets"]
        inputs = {k: v for k, v in batch.items() if k != "targets"}
        if not entropy_weight:
            logits = model(**inputs)
            return masked_bce(logits, targets), {"accuracy": known_accuracy(logits, targets)}
        logits, attentions = model.forward_with_attentions(**inputs)
        entropy = attention_entropy(attentions, inputs["attention_mask"])
        return (masked_bce(logits, targets) - entropy_weight * entropy,
                {"accuracy": known_accuracy(logits, targets), "attention_entropy": entropy.item()})

    return objective


def multiclass_objective() -> Objective:
    def objective(model: ScoringModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        targets = batch["targets"]
        logits = model(**{k: v for k, v in batch.items() if k != "targets"})
        accuracy = (logits.detach().argmax(-1) == targets).float().mean().item()
        return F.cross_entropy(logits, targets), {"accuracy": accuracy}

    return objective


def predict_logits(model: AnyModel, encoder: PairEncoder, texts: Sequence[str],
                   max_tokens: int = 4096, desc: str = "predict") -> np.ndarray:
    return score(model, encoder.encode_texts(list(texts)), max_tokens, encoder.pad_id, desc)


def fit_category_temperatures(logits: np.ndarray, targets: np.ndarray,
                              categories: Sequence[str]) -> dict[str, float]:
    """One temperature per category, on that category's known validation labels."""
    out = {}
    for k, category in enumerate(categories):
        known = targets[:, k] != UNKNOWN
        if not known.any():
            raise ValueError(f"no validation labels for {category}: cannot calibrate it")
        signs = 2 * targets[known, k] - 1
        out[category] = fit_temperature(signs * logits[known, k])
    return out


def fit_intent_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    return fit_softmax_temperature(logits, targets)


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the best F1 (ties: the higher threshold, fewer flags). Flagged means
    probability >= threshold, so the candidates are the observed probabilities."""
    order = np.argsort(-probs, kind="stable")
    p, y = probs[order], labels[order].astype(np.float64)
    positives = y.sum()
    if positives == 0:
        return 1.0
    tp = np.cumsum(y)
    flagged = np.arange(1, len(y) + 1)
    f1 = 2 * tp / (flagged + positives)
    # only where the next probability differs can a threshold separate these from the rest
    last_of_tie = np.append(p[1:] != p[:-1], True)
    f1 = np.where(last_of_tie, f1, -1.0)
    return float(p[int(np.argmax(f1))])


def operating_curve(probs: np.ndarray, labels: np.ndarray, points: int = 200
                    ) -> OperatingCurve:
    """Precision and recall at every distinct threshold (flagged: probability >= threshold),
    from high to low, thinned to at most `points` thresholds spread evenly over the ranks
    (the highest and the lowest kept)."""
    order = np.argsort(-probs, kind="stable")
    p, y = probs[order], labels[order].astype(np.float64)
    tp = np.cumsum(y)
    flagged = np.arange(1, len(y) + 1)
    ends = np.flatnonzero(np.append(p[1:] != p[:-1], True))  # the last of each tie
    if len(ends) > points:
        ends = ends[np.unique(np.linspace(0, len(ends) - 1, points).round().astype(int))]
    positives = int(y.sum())
    return OperatingCurve(
        thresholds=[float(p[i]) for i in ends],
        precision=[float(tp[i] / flagged[i]) for i in ends],
        recall=[float(tp[i] / positives) if positives else 0.0 for i in ends],
        n=len(y), positives=positives)


def out_of_scope_threshold(confidence: np.ndarray, in_scope: np.ndarray,
                           correct: np.ndarray) -> float:
    """The confidence threshold that maximises (in-scope accuracy + out-of-scope recall) / 2,
    where an in-scope query counts only when its top intent is right and clears the threshold,
    and an out-of-scope one when it does not clear it."""
    candidates = np.unique(np.concatenate([[0.0], confidence]))
    best, best_score = 0.0, -1.0
    n_in, n_out = max(1, int(in_scope.sum())), max(1, int((~in_scope).sum()))
    for t in candidates:
        accepted = confidence >= t
        score_ = ((accepted & correct & in_scope).sum() / n_in
                  + (~accepted & ~in_scope).sum() / n_out) / 2
        if score_ > best_score:
            best, best_score = float(t), float(score_)
    return best
