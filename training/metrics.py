"""Pairwise preference metrics, in numpy, checked against hand-computed values in tests.

All take the reward margin d = r_chosen - r_rejected and a temperature T, with
P(chosen over rejected) = sigmoid(d / T). Every pair's outcome is "chosen wins", so calibration
is measured on the symmetrised set (each pair seen in both orders, label 1 for p and 0 for 1 - p);
otherwise ECE would only see one class.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.calibration import sigmoid


def bin_index(probs: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each probability in [0, 1]; 1.0 falls in the last bin."""
    return np.minimum((probs * bins).astype(int), bins - 1)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, bins: int = 15) -> float:
    """Equal-width bins over [0, 1]; sum over bins of (share of items) * |accuracy - confidence|,
    where accuracy is the mean label and confidence the mean predicted probability."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        return float("nan")
    index = bin_index(p, bins)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.mean() * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(total)


def symmetrised(margins: ArrayLike, temperature: float = 1.0
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p = sigmoid(np.asarray(margins, dtype=np.float64) / temperature)
    return np.concatenate([p, 1.0 - p]), np.concatenate([np.ones_like(p), np.zeros_like(p)])


def pairwise_metrics(margins: ArrayLike, temperature: float = 1.0, bins: int = 15
                     ) -> dict[str, float]:
    d = np.asarray(margins, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no pairs to evaluate")
    z = d / temperature
    p = sigmoid(z)
    probs, labels = symmetrised(d, temperature)
    return {
        "accuracy": float((d > 0).mean()),  # a tie (d == 0) counts as wrong
        "log_loss": float(np.logaddexp(0.0, -z).mean()),  # -log sigmoid(z), computed stably
        "brier": float(((1.0 - p) ** 2).mean()),
        "ece": expected_calibration_error(probs, labels, bins),
        "mean_margin": float(d.mean()),
        "n": float(d.size),
    }


def length_metrics(chosen: ArrayLike, rejected: ArrayLike, chosen_length: ArrayLike,
                   rejected_length: ArrayLike) -> dict[str, float]:
    """How a set's figures relate to response length (lengths in characters):
    longer_wins        the accuracy of "the longer reply wins" on the same pairs (a tie in
                       length counts half)
    acc_chosen_shorter the reward's accuracy on the pairs whose chosen reply is the shorter one
    length_corr        Pearson correlation of reward and log length over every response
    A figure that does not exist for the set (no chosen-shorter pair, constant rewards) is left
    out rather than given as NaN."""
    c, r = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    lc, lr = (np.asarray(x, dtype=np.float64) for x in (chosen_length, rejected_length))
    shorter = lc < lr
    rewards, lengths = np.concatenate([c, r]), np.log1p(np.concatenate([lc, lr]))
    varied = rewards.std() > 0 and lengths.std() > 0
    out = {"longer_wins": float(((lc > lr) + 0.5 * (lc == lr)).mean()),
           "n_chosen_shorter": float(shorter.sum())}
    if shorter.any():
        out["acc_chosen_shorter"] = float((c[shorter] > r[shorter]).mean())
    if varied:
        out["length_corr"] = float(np.corrcoef(rewards, lengths)[0, 1])
    return out


def cut_metrics(chosen: ArrayLike, rejected: ArrayLike, chosen_cut: ArrayLike,
                rejected_cut: ArrayLike) -> dict[str, float]:
    """How the reward does where the model's window cuts one reply of a pair and not the other
    (it reads a cut reply to the window's edge only):
    acc_chosen_cut     the accuracy on the pairs whose chosen reply alone is cut
    acc_rejected_cut   the accuracy on the pairs whose rejected reply alone is cut
    with their numbers of pairs (n_chosen_cut, n_rejected_cut); an accuracy over no pair is
    left out."""
    c, r = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    cut_c, cut_r = np.asarray(chosen_cut, dtype=bool), np.asarray(rejected_cut, dtype=bool)
    out: dict[str, float] = {}
    for side, alone in (("chosen", cut_c & ~cut_r), ("rejected", cut_r & ~cut_c)):
        out[f"n_{side}_cut"] = float(alone.sum())
        if alone.any():
            out[f"acc_{side}_cut"] = float((c[alone] > r[alone]).mean())
    return out
