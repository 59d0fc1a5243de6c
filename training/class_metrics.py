"""Classifier metrics in numpy, checked against hand-computed values in tests.

Moderation, per category on its known labels: AUPRC (average precision), ROC-AUC, precision,
recall and F1 at the chosen threshold, and ECE of the calibrated probability. Intents: top-1
accuracy, macro-F1, and ECE of the top label's probability; with out-of-scope queries, in-scope
accuracy and out-of-scope recall at the threshold.
"""

from __future__ import annotations

import numpy as np

from training.metrics import expected_calibration_error


def average_precision(probs: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as the mean precision at each positive, ranked by
    probability (ties broken pessimistically: negatives first)."""
    y = np.asarray(labels, dtype=np.float64)
    if y.sum() == 0:
        return float("nan")
    order = np.lexsort((y, -np.asarray(probs, dtype=np.float64)))
    y = y[order]
    precision = np.cumsum(y) / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / y.sum())


def roc_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counting one half."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    positives, negatives = p[y], p[~y]
    if not len(positives) or not len(negatives):
        return float("nan")
    ranks = _average_ranks(np.concatenate([positives, negatives]))
    rank_sum = ranks[:len(positives)].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def binary_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    flagged = p >= threshold
    tp = float((flagged & y).sum())
    precision = tp / flagged.sum() if flagged.any() else float("nan")
    recall = tp / y.sum() if y.any() else float("nan")
    f1 = (2 * tp / (flagged.sum() + y.sum())) if (flagged.any() or y.any()) else float("nan")
    # a set with no negatives (EDOS's hate: only its positives are labelled) has no AUPRC
    auprc = average_precision(p, y) if not y.all() else float("nan")
    return {"auprc": auprc, "roc_auc": roc_auc(p, y),
            "precision": precision, "recall": recall, "f1": f1,
            "ece": expected_calibration_error(p, y), "flag_rate": float(flagged.mean()),
            "positives": float(y.sum()), "n": float(len(y))}


def macro_f1(predicted: np.ndarray, targets: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = ((predicted == c) & (targets == c)).sum()
        denominator = (predicted == c).sum() + (targets == c).sum()
        if denominator:
            scores.append(2 * tp / denominator)
    return float(np.mean(scores)) if scores else float("nan")


def multiclass_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    correct = predicted == targets
    return {"accuracy": float(correct.mean()),
            "macro_f1": macro_f1(predicted, targets, probs.shape[1]),
            "ece": expected_calibration_error(confidence, correct),
            "n": float(len(targets))}


def out_of_scope_metrics(probs: np.ndarray, targets: np.ndarray, in_scope: np.ndarray,
                         threshold: float) -> dict[str, float]:
    """targets hold the class for in-scope rows (anything for out-of-scope ones)."""
    confidence = probs.max(axis=1)
    accepted = confidence >= threshold
    correct = probs.argmax(axis=1) == targets
    return {"in_scope_accuracy": float((accepted & correct)[in_scope].mean()),
            "out_of_scope_recall": float((~accepted)[~in_scope].mean()),
            "out_of_scope_precision": float((~in_scope)[~accepted].mean())
            if (~accepted).any() else float("nan"),
            "threshold": threshold, "n_in_scope": float(in_scope.sum()),
            "n_out_of_scope": float((~in_scope).sum())}
