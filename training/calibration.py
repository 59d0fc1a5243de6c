"""Temperature scaling fitted by minimising log-loss on held-out margins.

The loss mean(softplus(-s * d)) is convex in s = 1/T, so a golden-section search over s
finds the optimum without a gradient or a dependency.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike


def _pair_nll(margins: np.ndarray, inverse_t: float) -> float:
    return float(np.logaddexp(0.0, -inverse_t * margins).mean())


def fit_temperature(margins: ArrayLike, low: float = 1e-3, high: float = 1e3,
                    tol: float = 1e-7) -> float:
    """The T in [1/high, 1/low] minimising the log-loss of sigmoid(margin / T)."""
    d = np.asarray(margins, dtype=np.float64)
    if d.size == 0:
        raise ValueError("cannot fit a temperature on no margins")
    inv_phi = (math.sqrt(5) - 1) / 2
    a, b = math.log(low), math.log(high)  # search log(s): the scale spans six decades
    c, e = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fe = _pair_nll(d, math.exp(c)), _pair_nll(d, math.exp(e))
    while b - a > tol:
        if fc < fe:
            b, e, fe = e, c, fc
            c = b - inv_phi * (b - a)
            fc = _pair_nll(d, math.exp(c))
        else:
            a, c, fc = c, e, fe
            e = a + inv_phi * (b - a)
            fe = _pair_nll(d, math.exp(e))
    temperature = 1.0 / math.exp((a + b) / 2)
    if temperature > 0.99 / low:
        warnings.warn(f"temperature {temperature:.0f} is at the search bound: the margins carry "
                      "no signal, so every calibrated probability is about 0.5", stacklevel=2)
    return temperature
