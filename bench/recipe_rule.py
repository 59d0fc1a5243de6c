"""The rule that decides whether a candidate recipe replaces the reward model's default, read from
validation figures only (bench/reward_recipe.py trains the candidates and applies it).

Among final candidates, on validation only, on each candidate's mean over its seeds
(--candidate-seeds; one seed's validation figures vary by 3-4 points): the hh-rlhf part must
stay within HH_SLACK points of the best candidate's (the target is hh-rlhf), and among those
the highest accuracy on the validation contrast pairs wins (what the label-free signals
taught), over the contrast kinds every candidate was evaluated on; runs without contrast
figures fall back to hh-rlhf validation alone. HH_SLACK is twice the seed-to-seed standard
deviation of hh-rlhf validation accuracy measured on the CPU default (3.6 points over 3 seeds).

Nor may a candidate buy its average by trading one cue for another: on no contrast kind may its
mean fall more than KIND_SLACK points below the final recipe's (each kind has about 100
validation pairs, so one seed's figure has a binomial sd near 5 points and a mean of three near
3). The target it guards is the behavioural suite's "70% on each functionality", which an
average cannot see. Added on 2026-11-28 after two candidates had won the average by losing 8-12
points of truncation (docs/measurements.md, "Tried ...").

Nor may it buy contrast accuracy with real preferences: its pooled validation accuracy (the
1,694 real pairs of every source; a binomial sd near 1.2 points a seed, so about 1 point for
the difference of two three-seed means) may not fall more than POOLED_SLACK points below the
final recipe's. Added on 2026-11-28 after a candidate that trained on twice the pairs of one
kind had won on that kind's own validation pairs, which come from the same generator.

And a change must be more than noise: the winner replaces the final recipe only when its mean
validation contrast accuracy is at least MIN_GAIN points above the final recipe's. One seed's
contrast accuracy varies by about 2 points (the sds of the candidates in the tables of
docs/measurements.md), so a three-seed mean by about 1.15 and the difference of two by about
1.6: MIN_GAIN is one standard error of that difference. Added on the evening of 2026-12-05,
after the dropout candidates' runs: the rule then picked dropout off by 0.9 points, as it had
picked the two defaults before by 0.3 and 0.8; it decides candidates from now on.

A candidate that adds a contrast kind the final recipe does not train (a new cue, not a new
mix) cannot show its gain on the final recipe's kinds, and on its own kind's validation pairs
it wins by construction. So, when no candidate leads by MIN_GAIN, such a candidate replaces the
final recipe if it passed the guards above (hh-rlhf validation, every kind the final recipe is
measured on, pooled validation): a new requirement is taken when it costs nothing validation
can see (the best of them on the contrast average if several). Added on the night of
2026-12-05, before the brush-off candidate's runs.

Last, what `make serve` builds must run as the service runs it on a CPU: its int8 graph. The
winner's seed-0 model goes through the export's int8 gate on this machine (`confirm`); a winner
whose int8 graph the gate rejects does not replace the final recipe, since serving its fp32
graph would cut the service's throughput by more than half for a gain within noise on hh-rlhf.
Added later that night, after the rule had chosen 3,600 pairs and a fresh clone's first run
rejected its seed-0 int8 graph (pooled validation 57.79 -> 55.96%, interval of the drop [0.65,
3.13] points; docs/measurements.md).

Which runs of the final recipe a candidate is measured against: from 2026-12-06, all six seeds
of the default (`--baseline bench/results/reward-default-cpu-v16.json "+ length term (final
recipe)"`), not the three it was chosen on. Those three were a favourable draw: on repetition
they scored 68.3% and three fresh seeds 58.7% (one seed's sd is 8.9 points there), so
KIND_SLACK had been measuring candidates against a good draw. Set after the long brush-off
candidates (which that baseline would have let through, and which stay out) and before any
candidate measured against it.

Nor may it trade one part of the target for the rest: on no hh-rlhf subset's validation pairs
(`validation/hh-rlhf/<subset>`, which reports give since 2026-12-06) may its mean fall more than
SUBSET_Z standard errors of the difference below the final recipe's (each side's seed-to-seed sd
over its seeds; the subsets hold 106-268 pairs, so their spreads differ too much for one slack
in points; with one seed on a side there is no spread, and this guard does not judge). Added on
2026-12-06 after the long brush-off pairs, chosen by the rule above with six seeds on each side,
had given up 2.4 points on harmless-base's validation pairs (2.2 standard errors; test: 5.0) for
gains on other sources, a trade the guards on hh-rlhf as a whole and on the pooled split could
not see (docs/measurements.md). SUBSET_Z is set knowing that case, so it refuses it by
construction; what it guards is the next one. A final recipe read from a results file without
those figures, beside candidates that have them, is an error, not a guard skipped: the baseline
from then on is `bench/results/reward-default-cpu-v18.json` (the same six seeds with the
figures, read from the scores their runs saved).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.config import PRESETS
from training.data.contrast import KINDS

FINAL = "+ length term (final recipe)"  # the default recipe, the ladder's last step
CONTRAST = "contrast (validation)"
HH_SLACK = 7.2
KIND_SLACK = 5.0
POOLED_SLACK = 2.0
MIN_GAIN = 1.6
SUBSET_Z = 2.0
HH_SUBSET = "validation/hh-rlhf/"


def option(field: str) -> str:
    """A setting's name as the trainer's flag spells it (brush_off: brush-off)."""
    return field.replace("_", "-")


def adds_cue(settings: dict[str, str], preset: str) -> bool:
    """Whether these settings train a contrast kind the preset leaves out (share 0)."""
    base = PRESETS[preset]
    return any(float(settings.get(option(kind)) or 0) > 0 and getattr(base, kind) == 0
               for kind in KINDS)


def choose(finals: list[dict[str, Any]], preset: str = "default") -> dict[str, Any]:
    """The final candidate the rule above picks (its seed-0 run), from validation figures
    only."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in finals:
        groups.setdefault(run["name"], []).append(run)

    def mean(name: str, key: str) -> float:
        return float(np.mean([100 * r["eval"][key]["accuracy"] for r in groups[name]]))

    best_hh = max(mean(name, "validation/hh-rlhf") for name in groups)
    eligible = [name for name in groups if mean(name, "validation/hh-rlhf") >= best_hh - HH_SLACK]
    runs = [r for name in eligible for r in groups[name]]
    kinds = set.intersection(*({k for k in r["eval"] if k.startswith(f"{CONTRAST}/")}
                               for r in runs))
    if not kinds:
        chosen = max(eligible, key=lambda name: mean(name, "validation/hh-rlhf"))
    else:
        if FINAL in eligible:
            subsets = subset_keys(groups)
            eligible = [name for name in eligible
                        if all(mean(name, k) >= mean(FINAL, k) - KIND_SLACK for k in kinds)
                        and mean(name, "validation") >= mean(FINAL, "validation") - POOLED_SLACK
                        and not any(fallen(groups[name], groups[FINAL], k) for k in subsets)]
        def contrast(name: str) -> float:
            return 100 * float(np.mean([contrast_accuracy(r, kinds) for r in groups[name]]))

        chosen = max(eligible, key=contrast)
        if FINAL in groups and contrast(chosen) - contrast(FINAL) < MIN_GAIN:
            cues = [name for name in eligible if adds_cue(groups[name][0]["settings"], preset)]
            chosen = max(cues, key=contrast) if cues else FINAL
    return min(groups[chosen], key=lambda r: r["seed"])


def subset_keys(groups: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The hh-rlhf subsets' validation keys every run reports; none when no run does (results
    written before 2026-12-06). Raises ValueError when the final recipe's runs lack keys the
    candidates have: the guard would be skipped against exactly the baseline it needs."""
    keys = {name: set.intersection(*({k for k in r["eval"] if k.startswith(HH_SUBSET)}
                                     for r in runs)) for name, runs in groups.items()}
    missing = set().union(*keys.values()) - keys[FINAL]
    if missing:
        raise ValueError(f"the final recipe's runs report no {sorted(missing)}: "
                         "read it from a results file that has them "
                         "(bench/results/reward-default-cpu-v18.json), or train it again")
    return set.intersection(*keys.values())


def fallen(runs: list[dict[str, Any]], final: list[dict[str, Any]], key: str) -> bool:
    """Whether `runs`' mean accuracy on `key` is more than SUBSET_Z standard errors of the
    difference below `final`'s. A side with one seed has no spread to judge by: never."""
    a, b = (np.array([100 * r["eval"][key]["accuracy"] for r in group]) for group in (runs, final))
    if min(len(a), len(b)) < 2:
        return False
    error = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return bool(a.mean() < b.mean() - SUBSET_Z * error)


def contrast_accuracy(run: dict[str, Any], kinds: set[str]) -> float:
    """Accuracy over the validation contrast pairs of these kinds (pair-weighted)."""
    n = [run["eval"][k]["n"] for k in kinds]
    return sum(run["eval"][k]["accuracy"] * w for k, w in zip(kinds, n, strict=True)) / sum(n)


Int8Decide = Callable[[Path], dict[str, Any]]


def int8_decision(model: Path) -> dict[str, Any]:
    """What the export's int8 gate decides for a trained model on this CPU (its graphs built in
    a temporary directory; nothing is stored): the manifest's int8 record."""
    from training.export import export_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        exported = export_checkpoint(model, Path(tmp), "reward")
    return dict(exported.quantisation["int8"])


def confirm(best: dict[str, Any], runs: list[dict[str, Any]], model: Path,
            decide: Int8Decide = int8_decision) -> dict[str, Any]:
    """`best`, when the int8 gate keeps the int8 graph of its trained `model`; else the final
    recipe's seed-0 run. The decision is recorded in `best` (and so in results.json)."""
    if best["name"] == FINAL:
        return best
    best["int8"] = decide(model)
    if best["int8"]["accepted"] == "yes":
        return best
    int8 = best["int8"]
    print(f"{best['name']}: the int8 gate rejects its seed-{best['seed']} model on this CPU "
          f"({int8['metric']} {float(int8['fp32']):.2%} -> {float(int8['int8']):.2%}, interval "
          f"of the drop [{float(int8['drop_low_points']):.2f}, "
          f"{float(int8['drop_high_points']):.2f}] points): the final recipe stays", flush=True)
    return min((r for r in runs if r["name"] == FINAL), key=lambda r: r["seed"])
