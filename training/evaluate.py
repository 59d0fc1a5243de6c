"""Evaluation of a reward model on preference sets, each reported on its own and per subset.

Beside every set's accuracy stand the length-aware figures: the "longer reply wins" rule on the
same pairs, the accuracy on the pairs whose chosen reply is the shorter one, and the correlation
between the reward and the response's length over all of the set's responses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.inputs import PairEncoder
from training.data.records import PreferencePair
from training.metrics import length_metrics, pairwise_metrics
from training.modeling import ScoringModel
from training.reward import score_pairs


@dataclass
class SetResult:
    metrics: dict[str, float]
    chosen: np.ndarray
    rejected: np.ndarray


def set_result(pairs: Sequence[PreferencePair], chosen: np.ndarray, rejected: np.ndarray,
               temperature: float) -> SetResult:
    lengths = np.array([(len(p.chosen), len(p.rejected)) for p in pairs], dtype=np.float64)
    metrics = {**pairwise_metrics(chosen - rejected, temperature),
               **length_metrics(chosen, rejected, lengths[:, 0], lengths[:, 1])}
    return SetResult(metrics, chosen, rejected)


def evaluate_sets(model: ScoringModel, encoder: PairEncoder,
                  sets: Mapping[str, Sequence[PreferencePair]], temperature: float,
                  max_tokens: int = 4096) -> dict[str, SetResult]:
    """Metrics per set, and per subset where a set has several (hh-rlhf/helpful-base, hhh/…)."""
    results: dict[str, SetResult] = {}
    for name, pairs in sets.items():
        if not pairs:
            continue
        chosen, rejected = score_pairs(model, encoder, pairs, max_tokens, desc=f"eval {name}")
        results[name] = set_result(pairs, chosen, rejected, temperature)
        subsets = np.array([pair.subset for pair in pairs])
        if len(set(subsets)) > 1:
            for subset in sorted(set(subsets)):
                mask = subsets == subset
                results[subset] = set_result([p for p, m in zip(pairs, mask, strict=True) if m],
                                             chosen[mask], rejected[mask], temperature)
    return results
