"""Misspelt copies of training texts against the moderation default, over seeds, and the rule
that chose between them.

    .venv/bin/python -m bench.obfuscation --runs runs/obfuscation     # ~20 min on 2 cores

Trains `alignserve train moderation --preset default` with and without `--obfuscation SHARE`
(training/data/obfuscation.py) for each seed, into RUNS/base-SEED and RUNS/obfuscation-SEED (a
run whose report.json exists is read, not retrained), scores each model on a misspelt copy of
the validation split (every text misspelt by the same function, its own seed, so no copy seen
in training), then prints validation and test figures side by side and applies the rule fixed
before the first run:

    obfuscation joins the default if, over the seeds, (a) the mean validation AUPRC over the
    categories (the figure the int8 gate reads) falls by at most 0.01, and (b) the mean AUPRC
    over the categories on the misspelt validation copy rises by at least 0.01.

Test splits, HateCheck (whose spelling functionalities are the misspellings' outside check) and
XSTest are printed for reading after the choice; the rule never reads them. Writes --out as
JSON.

`--preset full` asks the same of the full preset (every training text, 128 tokens; 43 to 48
minutes a run on an AVX2-only 2-core CPU, two side by side at one thread each): the same rule, on
seed 0 alone (fixed before its runs, 2026-12-06), took them into it too (2026-12-07); seed 1,
read after, met it again.

    .venv/bin/python -m bench.obfuscation --preset full --seeds 0 --runs runs/obfuscation-full
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.moderation_arms import TAIL_ROWS, arm_rows, figure, model_dirs, print_table, train
from models.taxonomy import CATEGORIES
from training.class_metrics import average_precision
from training.config import MODERATION_PRESETS
from training.data.labelled import TextExample
from training.data.obfuscation import NAME, obfuscate
from training.data.text_sets import load_moderation_data
from training.evaluate import category_temperatures, load_model, moderation_scores
from training.texts import UNKNOWN

MAX_LOSS, MIN_GAIN = 0.01, 0.01
SPELLING = ("spell_char_swap_h", "spell_char_del_h", "spell_space_del_h", "spell_space_add_h",
            "spell_leet_h")
# (label, report key, field); validation first: the rule reads only those and the misspelt copy
ROWS = [
    ("validation hate AUPRC", "validation/hate", "auprc"),
    ("validation hate recall", "validation/hate", "recall"),
    ("HateCheck non-hateful flagged", "hatecheck", "non_hateful_flag_rate"),
    ("HateCheck hateful caught", "hatecheck", "hateful_recall"),
    *[(f"HateCheck {f[:-2]} caught", f"hatecheck/{f}", "accuracy") for f in SPELLING],
    ("HateCheck negated hate right", "hatecheck/negate_neg_nh", "accuracy"),
    ("XSTest safe prompts flagged", "xstest", "over_flagging_rate"),
    ("Davidson hate AUPRC", "davidson/hate", "auprc"),
    ("TweetEval hate AUPRC", "tweeteval-hate/hate", "auprc"),
    ("TweetEval offensive AUPRC", "tweeteval-offensive/offensive", "auprc"),
    ("EDOS sexism AUPRC", "edos/sexism", "auprc"),
    *TAIL_ROWS,
]


def validation_auprc(report: dict[str, Any]) -> float:
    """The mean validation AUPRC over the categories the report has."""
    return statistics.mean(figure(report, f"validation/{c}", "auprc") for c in CATEGORIES
                           if f"validation/{c}" in report["eval"])


def misspelt_validation(data_dir: Path | None) -> list[TextExample]:
    """The validation split with every text misspelt, the same for every model scored."""
    rng = random.Random(f"{NAME}:validation")
    return [replace(e, text=obfuscate(e.text, rng))
            for e in load_moderation_data(data_dir, suites=False).validation]


def misspelt_auprc(model_dir: Path, examples: list[TextExample]) -> dict[str, float]:
    """AUPRC per category, and their mean, on the misspelt validation split."""
    manifest, encoder, model = load_model(model_dir)
    probs, targets = moderation_scores(model, encoder, examples,
                                       category_temperatures(manifest), 4096,
                                       "score misspelt validation")
    out = {}
    for k, category in enumerate(CATEGORIES):
        known = targets[:, k] != UNKNOWN
        if known.any() and targets[known, k].any():
            out[category] = average_precision(probs[known, k], targets[known, k])
    out["mean"] = float(np.mean(list(out.values())))
    return out


def rule(base: list[float], arm: list[float], base_misspelt: list[float],
         arm_misspelt: list[float]) -> tuple[float, float, bool]:
    """(change of the mean validation AUPRC, change of the misspelt copy's, adopt?)."""
    clean = statistics.mean(arm) - statistics.mean(base)
    misspelt = statistics.mean(arm_misspelt) - statistics.mean(base_misspelt)
    return clean, misspelt, clean >= -MAX_LOSS and misspelt >= MIN_GAIN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/obfuscation"))
    parser.add_argument("--preset", choices=sorted(MODERATION_PRESETS), default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    # both presets have carried misspelt copies since this bench chose them: the base arm asks
    # for none, so it stays the preset it was measured against
    arms = {"base": ["--obfuscation", "0"], "obfuscation": ["--obfuscation", str(args.share)]}
    reports = {arm: [train(args.runs, arm, seed, flags, args.preset) for seed in args.seeds]
               for arm, flags in arms.items()}
    examples = misspelt_validation(args.data_dir)
    misspelt = {arm: [misspelt_auprc(Path(r["model_dir"]), examples) for r in rs]
                for arm, rs in reports.items()}

    clean_rule = {a: [validation_auprc(r) for r in reports[a]] for a in arms}
    misspelt_rule = {a: [m["mean"] for m in misspelt[a]] for a in arms}
    table: dict[str, dict[str, list[float]]] = {
        "validation mean AUPRC (the rule)": clean_rule,
        "misspelt validation mean AUPRC (the rule)": misspelt_rule,
        "misspelt validation hate AUPRC": {a: [m["hate"] for m in misspelt[a]] for a in arms}}
    table.update(arm_rows(reports, ROWS))
    print_table(table, (args.preset, f"obfuscation {args.share:g}"), args.seeds, 48, 24)

    clean, spelt, adopted = rule(clean_rule["base"], clean_rule["obfuscation"],
                                 misspelt_rule["base"], misspelt_rule["obfuscation"])
    print(f"\nrule: validation mean AUPRC {clean:+.3f} (at most -{MAX_LOSS} allowed), misspelt "
          f"validation {spelt:+.3f} (at least +{MIN_GAIN}): "
          f"{'ADOPT obfuscation' if adopted else f'keep the {args.preset} preset'}")
    if args.out:
        args.out.write_text(json.dumps({
            "preset": args.preset, "seeds": args.seeds, "share": args.share, "table": table,
            "validation_auprc_change": clean, "misspelt_auprc_change": spelt,
            "adopted": adopted, "misspelt": misspelt,
            "runs": model_dirs(reports)},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
