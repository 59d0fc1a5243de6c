"""The promotion gate: a challenger against the champion, on the same held-out examples.

Both models score the same examples; the gate resamples examples (paired bootstrap, a fixed
seed, so the decision is reproducible) to get a 95% interval of the challenger's gain in points
on each set. The metric is one that no temperature or threshold changes: pairwise accuracy for
a reward model, mean per-category AUPRC for moderation, top-1 accuracy for intents.

The rule (RULE): promote only when
1. on the held-out feedback the challenger is better: the gain's interval lies above 0;
2. on the original test splits pooled (the training sources' test splits, not the held-out
   sets), it loses at most `tolerance` points (point estimate);
3. on no single original set or subset (hh-rlhf/harmless-base, behaviour/polite_vs_curt, …)
   is it surely worse by more than `tolerance`: no whole interval lies below -tolerance. A
   subset counts on its own: feedback that contradicts one population (say, flipped labels on
   harmless-base) must not hide inside a pooled figure that barely moves.

"Original sets" are the training sources' test splits and the task's behavioural suite. Sources
held out of training altogether (HHH, UKPConvArg) are out-of-distribution checks: the report
shows them, the rule does not read them. Learning a deployment's preferences may move a model
away from a far domain's, and UKPConvArg's preferences are 77% "the longer argument wins": a
challenger that leans less on length loses there by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESAMPLES, SEED = 1000, 0
TOLERANCE_POINTS = 1.0
FEEDBACK = "feedback (held out)"
POOLED = "original test splits, pooled"


def rule(tolerance: float) -> str:
    return (f"promote only if (1) on the held-out feedback the challenger's gain has a 95% "
            f"paired-bootstrap interval above 0; (2) on the training sources' test splits "
            f"pooled it loses at most {tolerance:g} points; (3) on no original set or subset "
            f"does the whole interval of its gain lie below -{tolerance:g} points (original "
            f"sets: the training sources' test splits and the behavioural suite; held-out "
            f"sources are shown, not gated)")


Measure = Callable[[np.ndarray, np.ndarray], float]  # (per-example outputs, rows) -> metric


@dataclass(frozen=True)
class Scored:
    """One set as both models scored it: per-example outputs, and how to measure rows."""

    champion: np.ndarray
    challenger: np.ndarray
    measure: Measure


@dataclass(frozen=True)
class SetComparison:
    name: str
    n: int
    champion: float
    challenger: float
    gain_low: float  # points, 95% paired-bootstrap interval of challenger - champion
    gain_high: float
    gated: bool = True  # False: an out-of-distribution check, shown only

    @property
    def gain(self) -> float:
        return (self.challenger - self.champion) * 100


def examples_needed(s: SetComparison) -> int | None:
    """How many examples a set would need for a gain of this size, with this spread per
    example, to have its interval clear 0 (an interval narrows as 1/sqrt(n)): what more
    feedback would buy. None when the gain is not positive or its interval already clears 0."""
    if s.gain <= 0 or s.gain_low > 0:
        return None
    half_width = (s.gain_high - s.gain_low) / 2
    return math.ceil(s.n * (half_width / s.gain) ** 2)


def compare(name: str, scored: Scored, gated: bool = True) -> SetComparison:
    n = len(scored.champion)
    everything = np.arange(n)
    rng = np.random.default_rng(SEED)
    gains = []
    for _ in range(RESAMPLES):
        rows = rng.integers(0, n, n)
        gains.append((scored.measure(scored.challenger, rows)
                      - scored.measure(scored.champion, rows)) * 100)
    low, high = np.nanpercentile(gains, [2.5, 97.5])
    return SetComparison(name, n, scored.measure(scored.champion, everything),
                         scored.measure(scored.challenger, everything), float(low), float(high),
                         gated)


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reasons: list[str]  # why not, or what it passed
    rule: str
    metric: str
    tolerance: float
    sets: list[SetComparison]  # the feedback slice, the pooled original sets, then each set

    def record(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "reasons": self.reasons, "rule": self.rule,
                "metric": self.metric, "tolerance_points": self.tolerance,
                "feedback_examples_needed": examples_needed(self.sets[0]),
                "sets": [{**asdict(s), "gain": s.gain} for s in self.sets]}


def decide(metric: str, feedback: Scored, original: Mapping[str, Scored],
           pooled: Scored | None, tolerance: float = TOLERANCE_POINTS,
           shown: Mapping[str, Scored] | None = None) -> Decision:
    """`shown`: out-of-distribution sets, in the report but not in the rule."""
    fed = compare(FEEDBACK, feedback)
    each = [compare(name, scored) for name, scored in original.items()]
    others = [compare(name, scored, gated=False) for name, scored in (shown or {}).items()]
    pool = compare(POOLED, pooled) if pooled is not None else None
    reasons = []
    if not fed.gain_low > 0:
        needed = examples_needed(fed)
        more = ("" if needed is None else f"; a gain this size would need about {needed} "
                f"held-out examples to clear 0, not {fed.n}")
        reasons.append(f"not better on the held-out feedback: gain {fed.gain:+.1f} points, "
                       f"interval [{fed.gain_low:+.1f}, {fed.gain_high:+.1f}] does not lie "
                       f"above 0{more}")
    if pool is not None and pool.gain < -tolerance:
        reasons.append(f"worse on the original test splits pooled: {pool.gain:+.1f} points "
                       f"(tolerance -{tolerance:g})")
    for s in each:
        if s.gain_high < -tolerance:
            reasons.append(f"surely worse on {s.name}: {s.gain:+.1f} points, interval "
                           f"[{s.gain_low:+.1f}, {s.gain_high:+.1f}] below -{tolerance:g}")
    promoted = not reasons
    if promoted:
        pooled_gain = f"; original test splits pooled {pool.gain:+.1f} points" if pool else ""
        reasons = [f"better on the held-out feedback by {fed.gain:+.1f} points "
                   f"[{fed.gain_low:+.1f}, {fed.gain_high:+.1f}]{pooled_gain}; no set surely "
                   f"worse than -{tolerance:g}"]
    sets = [fed, *([pool] if pool else []), *each, *others]
    return Decision(promoted, reasons, rule(tolerance), metric, tolerance, sets)


def plot(decision: Decision, path: Path) -> Path:
    """Champion vs challenger per set, with the gain's interval written above each pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = decision.sets
    x = np.arange(len(sets))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(sets)), 4.2))
    ax.bar(x - 0.2, [s.champion for s in sets], 0.4, label="champion (in service)")
    ax.bar(x + 0.2, [s.challenger for s in sets], 0.4, label="challenger")
    for i, s in enumerate(sets):
        ax.annotate(f"{s.gain:+.1f}\n[{s.gain_low:+.1f},{s.gain_high:+.1f}]",
                    (i, max(s.champion, s.challenger)), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [s.name if s.gated else f"({s.name})" for s in sets], rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel(decision.metric)
    ax.set_ylim(0, 1.15)
    verdict = "PROMOTED" if decision.promoted else "REFUSED"
    ax.set_title(f"{verdict}: champion vs challenger ({decision.metric}; gain in points, 95% "
                 "interval; (name): shown, not gated)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def table(decision: Decision) -> str:
    head = f"{'set':<36} {'n':>6} {'champion':>9} {'challenger':>10} {'gain':>7}  95% interval"
    rows = [head, "-" * len(head)]
    for s in decision.sets:
        rows.append(f"{s.name:<36} {s.n:>6} {s.champion:>9.4f} {s.challenger:>10.4f} "
                    f"{s.gain:>+7.1f}  [{s.gain_low:+.1f}, {s.gain_high:+.1f}]"
                    + ("" if s.gated else "  shown, not gated"))
    return "\n".join(rows)
