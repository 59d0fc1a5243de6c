"""Entropy-based attention regularisation against the moderation default, over seeds, and the
rule that decides it.

    .venv/bin/python -m bench.attention_entropy --runs runs/attention     # 8-9 min a run, 2 cores

Trains `alignserve train moderation --preset default` with and without `--attention-entropy
WEIGHT` (training/texts.py; Attanasio et al. 2022, "EAR", whose weight 0.01 is the default here)
for each seed, into RUNS/base-SEED and RUNS/entropy-SEED (a run whose report.json exists is read,
not retrained), then prints validation and test figures side by side and applies the rule fixed
before the first run (2026-12-07):

    the regulariser joins the default if, over the seeds, (a) the mean validation AUPRC over the
    categories (the figure the int8 gate reads) falls by at most 0.01, and (b) the mean
    validation hate flag rate on clean texts that name a group falls.

(b) is the bias the method is for: a classifier that learns a group's name as the label flags
clean texts that name the group. Test splits, HateCheck and XSTest are printed for reading after
the choice; the rule never reads them. Writes --out as JSON.

At 0.01 (bench/results/attention-entropy-cpu.json) the rule kept the default: mean validation
AUPRC -0.025, clean texts naming a group flagged 33.0 -> 29.4%. A third of it, 0.003, was held
to the same rule, fixed before its runs (its own --runs, the default's runs copied in), and the
rule took it into the default (bench/results/attention-entropy-0.003-cpu.json: mean validation
AUPRC -0.001, clean texts naming a group flagged 33.0 -> 32.2%):

    .venv/bin/python -m bench.attention_entropy --weight 0.003 --runs runs/attention-0.003

Between the two, 0.005, fixed before its runs (2026-12-07, night; the same base runs copied
in): it replaces 0.003 in the default if the same rule takes it and its mean validation hate
flag rate on clean texts that name a group is below 0.003's, what a stronger weight is for:

    .venv/bin/python -m bench.attention_entropy --weight 0.005 --runs runs/attention-0.005

It did, and 0.005 is the default since (bench/results/attention-entropy-0.005-cpu.json: mean
validation AUPRC -0.008, clean texts naming a group flagged 33.0 -> 28.6%, against 32.2% at
0.003).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.identity_balance import rows
from bench.moderation_arms import arm_rows, figure, model_dirs, print_table, train
from bench.obfuscation import validation_auprc
from training.data.identity import CUES

MAX_LOSS = 0.01


def rule(base: list[dict[str, Any]], entropy: list[dict[str, Any]]
         ) -> tuple[float, float, bool]:
    """(change of the mean validation AUPRC over the categories, change of the mean validation
    hate flag rate on clean texts that name a group, adopt?), on validation figures only."""
    def change(measure: Any) -> float:
        return (statistics.mean(measure(r) for r in entropy)
                - statistics.mean(measure(r) for r in base))

    named = f"hate_flag_rate_{CUES['identity'].has}"
    auprc = change(validation_auprc)
    flagged = change(lambda r: figure(r, "validation/identity", named))
    return auprc, flagged, auprc >= -MAX_LOSS and flagged < 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/attention"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--weight", type=float, default=0.01)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    # the default preset carries a weight since this bench chose one: the base arm asks for
    # none, so it stays the default it was measured against
    arms = {"base": ["--attention-entropy", "0"],
            "entropy": ["--attention-entropy", str(args.weight)]}
    reports = {arm: [train(args.runs, arm, seed, flags) for seed in args.seeds]
               for arm, flags in arms.items()}
    table: dict[str, dict[str, list[float]]] = {
        "validation mean AUPRC (the rule)": {a: [validation_auprc(r) for r in reports[a]]
                                             for a in arms}}
    violence = [row for row in rows("violence") if "violence" in row[0]]
    table.update(arm_rows(reports, [*rows("identity"), *violence]))
    print_table(table, ("default", f"entropy {args.weight:g}"), args.seeds, 52, 24)

    auprc, flagged, adopted = rule(reports["base"], reports["entropy"])
    print(f"\nrule: validation mean AUPRC {auprc:+.3f} (at most -{MAX_LOSS} allowed), clean "
          f"texts naming a group flagged as hate {flagged:+.3f} (must fall): "
          f"{'ADOPT the regulariser' if adopted else 'keep the default'}")
    if args.out:
        args.out.write_text(json.dumps({
            "seeds": args.seeds, "weight": args.weight, "table": table,
            "validation_auprc_change": auprc, "named_group_flag_change": flagged,
            "adopted": adopted,
            "runs": model_dirs(reports)},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
