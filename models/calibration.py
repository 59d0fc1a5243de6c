"""The calibrated probabilities, computed the same way by training (to fit and evaluate the
temperatures) and by the service (to answer): sigmoid(z / T) and softmax(z / T); and a reward
model's reward from its graph's outputs (one column, or an ensemble's k members)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def sigmoid(x: ArrayLike) -> NDArray[np.float64]:
    """1 / (1 + e^-x), without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


def softmax(z: ArrayLike, axis: int = -1) -> NDArray[np.float64]:
    shifted = np.asarray(z, dtype=np.float64)
    shifted = shifted - shifted.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=axis, keepdims=True), dtype=np.float64)


def reward_of(outputs: ArrayLike) -> NDArray[np.float64]:
    """The reward a graph's outputs (items x members) mean: the members' mean (one member: its
    own output)."""
    return np.asarray(np.asarray(outputs, dtype=np.float64).mean(axis=1), dtype=np.float64)


def conservative_reward(outputs: ArrayLike, rule: str, penalty: float
                        ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(members' standard deviation, conservative reward) per item: mean - penalty * std, or
    the members' minimum (rule "min")."""
    members = np.asarray(outputs, dtype=np.float64)
    std = members.std(axis=1)
    low = members.min(axis=1) if rule == "min" else members.mean(axis=1) - penalty * std
    return std, low
