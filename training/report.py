"""What a run leaves behind for a person: report.json, plots, and a summary table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
import numpy as np

from training.metrics import bin_index, symmetrised


def write_json(path: Path, report: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_training(history: Sequence[Mapping[str, float]], path: Path) -> Path:
    steps = np.array([h["step"] for h in history])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    window = max(1, len(history) // 20)
    for ax, key in zip(axes, ("loss", "accuracy", "lr"), strict=True):
        values = np.array([h[key] for h in history])
        smoothed = key != "lr" and window > 1
        ax.plot(steps, values, alpha=0.3 if smoothed else 1.0, color="tab:blue",
                label="per step")
        if smoothed:
            ax.plot(steps[window - 1:], _smooth(values, window), color="tab:blue",
                    label=f"mean of {window}")
            ax.legend(loc="best", fontsize=8)
        ax.set_title({"loss": "training loss", "accuracy": "training pair accuracy",
                      "lr": "learning rate"}[key])
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(curves: Mapping[str, tuple[np.ndarray, float]], path: Path,
                     bins: int = 15) -> Path:
    """One reliability curve per (margins, temperature), on the symmetrised pairs."""
    return plot_probability_reliability(
        {label: symmetrised(margins, t) for label, (margins, t) in curves.items()}, path,
        "predicted P(a preferred over b)", bins)


def plot_probability_reliability(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                                 path: Path, xlabel: str, bins: int = 15) -> Path:
    """One reliability curve per (probabilities, 0/1 outcomes)."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect calibration")
    for label, (probs, labels) in curves.items():
        index = bin_index(np.asarray(probs), bins)
        xs, ys = [], []
        for b in range(bins):
            mask = index == b
            if mask.sum() >= 5:  # a bin of a handful of items is noise
                xs.append(probs[mask].mean())
                ys.append(labels[mask].mean())
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("observed frequency")
    ax.set_title(f"reliability ({bins} bins)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """Precision against recall for each (probabilities, 0/1 labels)."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for label, (probs, labels) in curves.items():
        order = np.argsort(-probs, kind="stable")
        y = labels[order].astype(float)
        if not y.sum():
            continue
        tp = np.cumsum(y)
        ax.plot(tp / y.sum(), tp / np.arange(1, len(y) + 1), label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reward_distributions(chosen: np.ndarray, rejected: np.ndarray, title: str,
                              path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    edges = np.histogram_bin_edges(np.concatenate([chosen, rejected]), bins=40)
    axes[0].hist(chosen, bins=edges, alpha=0.55, label="chosen", color="tab:green")
    axes[0].hist(rejected, bins=edges, alpha=0.55, label="rejected", color="tab:red")
    axes[0].set_title(f"rewards, {title}")
    axes[0].legend()
    margins = chosen - rejected
    axes[1].hist(margins, bins=40, color="tab:blue")
    axes[1].axvline(0, color="black", lw=1)
    axes[1].set_title(f"r_chosen - r_rejected ({(margins > 0).mean():.1%} > 0)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_table(results: Mapping[str, Mapping[str, float]],
                  columns: Sequence[str] = ("accuracy", "log_loss", "brier", "ece",
                                            "mean_margin", "n")) -> str:
    width = max(len(name) for name in results) + 2
    widths = [max(12, len(c) + 2) for c in columns]
    lines = [f"{'set':<{width}}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths,
                                                                      strict=True))]
    for name, metrics in results.items():
        cells = "".join(_cell(metrics.get(c), c == "n", w) for c, w in zip(columns, widths,
                                                                          strict=True))
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def _cell(value: float | None, count: bool, width: int = 12) -> str:
    if value is None or value != value:  # absent or NaN
        return f"{'-':>{width}}"
    return f"{int(value):>{width}d}" if count else f"{value:>{width}.4f}"
