"""Temperature scaling fitted by minimising log-loss on held-out margins.

Both losses (pairwise or binary log-loss, and multi-class cross-entropy) are convex in s = 1/T,
so a golden-section search over s finds the optimum without a gradient or a dependency.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike


def _pair_nll(margins: np.ndarray, inverse_t: float) -> float:
    return float(np.logaddexp(0.0, -inverse_t * margins).mean())


def _golden_inverse_t(loss: Callable[[float], float], low: float, high: float,
                      tol: float) -> float:
    """argmin over s = 1/T in [low, high] of a loss convex in s, by golden-section on log s."""
    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = math.log(low), math.log(high)  # the scale spans six decades
    c, e = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fe = loss(math.exp(c)), loss(math.exp(e))
    while b - a > tol:
        if fc < fe:
            b, e, fe = e, c, fc
            c = b - inv_phi * (b - a)
            fc = loss(math.exp(c))
        else:
            a, c, fc = c, e, fe
            e = a + inv_phi * (b - a)
            fe = loss(math.exp(e))
    return math.exp((a + b) / 2)


def _at_bound(temperature: float, low: float) -> float:
    if temperature > 0.99 / low:
        warnings.warn(f"temperature {temperature:.0f} is at the search bound: the scores carry "
                      "no signal, so every calibrated probability is uninformative", stacklevel=3)
    return temperature


def fit_temperature(margins: ArrayLike, low: float = 1e-3, high: float = 1e3,
                    tol: float = 1e-7) -> float:
    """The T in [1/high, 1/low] minimising the log-loss of sigmoid(margin / T).
    For binary labels y and logits z, pass margins (2y - 1) * z."""
    d = np.asarray(margins, dtype=np.float64)
    if d.size == 0:
        raise ValueError("cannot fit a temperature on no margins")
    return _at_bound(1.0 / _golden_inverse_t(lambda s: _pair_nll(d, s), low, high, tol), low)


def fit_softmax_temperature(logits: ArrayLike, labels: ArrayLike, low: float = 1e-3,
                            high: float = 1e3, tol: float = 1e-7) -> float:
    """The T minimising the cross-entropy of softmax(logits / T) against integer labels."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or not len(y):
        raise ValueError("need logits of shape (n, classes) and n labels, n > 0")

    def cross_entropy(inverse_t: float) -> float:
        scaled = z * inverse_t
        log_norm = np.logaddexp.reduce(scaled, axis=1)
        return float((log_norm - scaled[np.arange(len(y)), y]).mean())

    return _at_bound(1.0 / _golden_inverse_t(cross_entropy, low, high, tol), low)
