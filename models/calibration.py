"""The calibrated probabilities, computed the same way by training (to fit and evaluate the
temperatures) and by the service (to answer): sigmoid(z / T) and softmax(z / T)."""

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
