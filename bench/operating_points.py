"""Moderation's operating points on clean text: what each threshold rule flags that it should
not, and what it still catches, on the held-out splits and the behavioural suites.

    .venv/bin/python -m bench.operating_points --model runs/moderation/model
    .venv/bin/python -m bench.operating_points --model M --min-precision 0.6 0.7 0.8 \
        --out bench/results/operating-points-cpu.json

Each rule sets every category's threshold from the validation precision-recall curve the
manifest keeps (the lowest threshold whose validation precision reaches the value), exactly as
a deployment's `min_precision` does; "manifest" is the thresholds the model ships with. The
model scores each text once; only the thresholds change between rules. Rows: over-flagging
(XSTest's safe prompts flagged by any category; HateCheck's non-hateful cases flagged as hate;
the clean side of each test split, flagged by a category the source labels 0), what
is still caught (HateCheck's hateful cases, each split's positives per category) and F1.

Last, HateCheck's own curve, a diagnostic rather than an operating point: the ROC-AUC of the
hate probability on its cases, and the share of its hateful cases caught by the hate threshold
that flags a given share of its non-hateful ones (`--hatecheck-flag-rates`; #13's goal is
17.5%). That threshold is chosen on HateCheck itself, so it says what no threshold can reach,
not what the model would do. And per target group the ROC-AUC inside it, and the pooled one with
each group's scores shifted to a common non-hateful median: whether where a group's scores sit
(a threshold too low for one group, too high for another) limits the curve, or what the model
reads inside a group does.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from models.taxonomy import CATEGORIES
from training.class_metrics import roc_auc
from training.data.labelled import TextExample
from training.data.text_sets import SUITES, load_moderation_data
from training.evaluate import (
    category_temperatures,
    evaluate_moderation,
    evaluate_suites,
    load_model,
    moderation_scores,
)


def rule_thresholds(manifest: Any, min_precision: float | None
                    ) -> tuple[dict[str, float], list[str]]:
    """The manifest's own thresholds, or per category the one `min_precision` picks; and the
    categories whose curve never reaches it, which keep the manifest's."""
    thresholds, unreached = dict(manifest.thresholds), []
    if min_precision is not None:
        for category, curve in manifest.operating_curves.items():
            picked = curve.threshold_for(min_precision)
            if picked is None:
                unreached.append(category)
            else:
                thresholds[category] = picked
    return thresholds, unreached


def hatecheck_curve(examples: list[TextExample], probs: np.ndarray, flag_rates: list[float],
                    threshold: float = 0.5) -> dict[str, Any]:
    """The hate probability's ROC-AUC on HateCheck and, for each share of the non-hateful
    cases flagged, the hateful cases caught by the threshold that flags that share; per target
    group, its cases caught and flagged at `threshold` (the model's own) and its ROC-AUC."""
    hate = probs[:, CATEGORIES.index("hate")]
    hateful = np.array([e.labels["hate"] == 1 for e in examples])
    caught = {}
    for rate in flag_rates:
        at = float(np.quantile(hate[~hateful], 1 - rate, method="higher"))
        caught[f"{rate:g}"] = {"threshold": at,
                               "non_hateful_flagged": float((hate[~hateful] >= at).mean()),
                               "hateful_caught": float((hate[hateful] >= at).mean())}
    curve: dict[str, Any] = {"roc_auc": roc_auc(hate, hateful.astype(float)),
                             "at_non_hateful_flagged": caught}
    targets = np.array([e.label for e in examples])
    named = targets != ""
    if not named.any():
        return curve
    # a probability that rounded to 0 or 1 keeps a finite logit, so no offset becomes inf - inf
    clipped = np.clip(hate.astype(np.float64), 1e-12, 1 - 1e-12)
    logits = np.log(clipped / (1 - clipped))
    by_target, offset_free = {}, logits.copy()
    for target in sorted(set(targets) - {""}):
        rows = targets == target
        by_target[target] = {"roc_auc": roc_auc(hate[rows], hateful[rows].astype(float)),
                             "hateful": int((rows & hateful).sum()),
                             "non_hateful": int((rows & ~hateful).sum()),
                             "caught": float((hate[rows & hateful] >= threshold).mean()),
                             "flagged": float((hate[rows & ~hateful] >= threshold).mean())}
        offset_free[rows] -= np.median(logits[rows & ~hateful])
    return {**curve, "by_target": by_target,
            "roc_auc_named_targets": roc_auc(hate[named], hateful[named].astype(float)),
            "roc_auc_named_targets_offsets_removed": roc_auc(offset_free[named],
                                                             hateful[named].astype(float))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained model directory")
    parser.add_argument("--min-precision", type=float, nargs="*",
                        default=[0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--hatecheck-flag-rates", type=float, nargs="*", default=[0.175],
                        help="shares of HateCheck's non-hateful cases flagged, for its curve")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if bad := [r for r in args.hatecheck_flag_rates if not 0 < r < 1]:
        parser.error(f"--hatecheck-flag-rates are shares of HateCheck's non-hateful cases, "
                     f"each between 0 and 1 (exclusive), not {bad}")

    manifest, encoder, model = load_model(args.model)
    tests = load_moderation_data(args.data_dir).tests
    scored = {name: moderation_scores(model, encoder, examples, category_temperatures(manifest),
                                      4096, f"score {name}")
              for name, examples in tests.items()}

    rules: list[tuple[str, float | None]] = [(f"manifest ({manifest.threshold_goal})", None)]
    rules += [(f"min_precision {p:g}", p) for p in args.min_precision]
    results = []
    for label, min_precision in rules:
        thresholds, unreached = rule_thresholds(manifest, min_precision)
        if unreached:
            label += f" (manifest's for {', '.join(unreached)}: never reached)"
        suites = evaluate_suites(tests, {k: v[0] for k, v in scored.items() if k in SUITES},
                                 thresholds)
        row: dict[str, Any] = {
            "rule": label, "thresholds": thresholds, "unreached": unreached,
            "xstest_safe_flagged": suites["xstest"]["over_flagging_rate"],
            "hatecheck_non_hateful_flagged": suites["hatecheck"]["non_hateful_flag_rate"],
            "hatecheck_hateful_recall": suites["hatecheck"]["hateful_recall"],
            "simplesafetytests_caught": suites["simplesafetytests"]["catch_rate"],
            "splits": {}}
        for name, (probs, targets) in scored.items():
            if name in SUITES:
                continue
            per = evaluate_moderation(probs, targets, thresholds)
            over = per.get("clean", {"flag_rate": float("nan"), "n": 0})
            row["splits"][name] = {
                "clean_flagged": over["flag_rate"], "clean_n": int(over["n"]),
                **{f"{c}_{m}": per[c][m] for c in CATEGORIES if c in per
                   for m in ("precision", "recall", "f1")}}
        results.append(row)

    print(f"{'rule':<58} {'XSTest safe':>11} {'HC non-hate':>11} {'HC hateful':>10} "
          f"{'SST':>5}  clean side of each split flagged")
    for row in results:
        clean = ", ".join(f"{k} {v['clean_flagged']:.1%}" for k, v in row["splits"].items()
                          if v["clean_n"])
        print(f"{row['rule']:<58} {row['xstest_safe_flagged']:>11.1%} "
              f"{row['hatecheck_non_hateful_flagged']:>11.1%} "
              f"{row['hatecheck_hateful_recall']:>10.1%} "
              f"{row['simplesafetytests_caught']:>5.0%}  {clean}")
    print("\nper category on each test split (precision / recall / F1):")
    for row in results:
        print(f"  {row['rule']}")
        for name, split in row["splits"].items():
            cells = [f"{c} {split[f'{c}_precision']:.2f}/{split[f'{c}_recall']:.2f}/"
                     f"{split[f'{c}_f1']:.2f}" for c in CATEGORIES if f"{c}_f1" in split]
            print(f"    {name:<24} " + "; ".join(cells))
    curve = hatecheck_curve(tests["hatecheck"], scored["hatecheck"][0],
                            args.hatecheck_flag_rates, manifest.thresholds["hate"])
    print(f"\nHateCheck's own curve (thresholds chosen on HateCheck: a diagnostic): ROC-AUC of "
          f"the hate probability {curve['roc_auc']:.3f}")
    for point in curve["at_non_hateful_flagged"].values():
        print(f"  {point['non_hateful_flagged']:.1%} of the non-hateful flagged: "
              f"{point['hateful_caught']:.1%} of the hateful caught (hate >= "
              f"{point['threshold']:.3f})")
    if "by_target" in curve:
        print("  per target group at the model's hate threshold, hateful caught / non-hateful "
              "flagged, and the ROC-AUC inside the group:")
        for t, v in curve["by_target"].items():
            print(f"    {t:<16} {v['caught']:.1%} / {v['flagged']:.1%}, {v['roc_auc']:.3f}")
        print(f"  the cases that name a group: ROC-AUC {curve['roc_auc_named_targets']:.3f}; "
              f"with each group's scores moved so its non-hateful median is 0: "
              f"{curve['roc_auc_named_targets_offsets_removed']:.3f}")
    if args.out:
        args.out.write_text(json.dumps({
            "model": str(args.model), "version": manifest.version,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "rules": results, "hatecheck_curve": curve}, indent=1) + "\n")


if __name__ == "__main__":
    main()
