"""Identity balance against the moderation default, over seeds, and the rule that chose it.

    .venv/bin/python -m bench.identity_balance --runs runs/identity     # ~22 min on 2 cores

Trains `alignserve train moderation --preset default` with and without `--identity-balance`
(training/data/identity.py) for each seed, into RUNS/base-SEED and RUNS/balance-SEED (a run
whose report.json exists is read, not retrained), then prints validation and test figures side
by side and applies the rule fixed before the first run (commit 213011c):

    identity balance becomes the default if, over the seeds, (a) the mean validation hate AUPRC
    falls by at most 0.02 and (b) the mean validation hate flag rate on clean texts that name a
    group falls.

Test splits, HateCheck and XSTest are printed for reading after the choice; the rule never reads
them. Writes --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.moderation_arms import TAIL_ROWS, figure, print_table, train

MAX_AUPRC_LOSS = 0.02
ARMS = {"base": [], "balance": ["--identity-balance"]}
# (label, report key, field); validation first: the rule reads only those
ROWS = [
    ("validation hate AUPRC", "validation/hate", "auprc"),
    ("validation: clean naming a group flagged as hate", "validation/identity",
     "hate_flag_rate_naming_a_group"),
    ("validation: clean naming none flagged as hate", "validation/identity",
     "hate_flag_rate_naming_none"),
    ("validation hate recall", "validation/hate", "recall"),
    ("HateCheck non-hateful flagged", "hatecheck", "non_hateful_flag_rate"),
    ("HateCheck hateful caught", "hatecheck", "hateful_recall"),
    ("HateCheck: clean naming a group flagged", "hatecheck/identity",
     "hate_flag_rate_naming_a_group"),
    ("HateCheck negated hate right", "hatecheck/negate_neg_nh", "accuracy"),
    ("HateCheck positive statements right", "hatecheck/ident_pos_nh", "accuracy"),
    ("HateCheck neutral statements right", "hatecheck/ident_neutral_nh", "accuracy"),
    ("XSTest safe prompts flagged", "xstest", "over_flagging_rate"),
    ("Davidson hate AUPRC", "davidson/hate", "auprc"),
    ("TweetEval hate AUPRC", "tweeteval-hate/hate", "auprc"),
    ("TweetEval hate: clean naming a group flagged", "tweeteval-hate/identity",
     "hate_flag_rate_naming_a_group"),
    ("EDOS sexism AUPRC", "edos/sexism", "auprc"),
    *TAIL_ROWS,
]


def rule(base: list[dict[str, Any]], balance: list[dict[str, Any]]
         ) -> tuple[float, float, bool]:
    """(change of the mean validation hate AUPRC, change of the mean validation hate flag rate
    on clean texts naming a group, adopt?), on validation figures only."""
    def change(key: str, field: str) -> float:
        return (statistics.mean(figure(r, key, field) for r in balance)
                - statistics.mean(figure(r, key, field) for r in base))

    auprc = change("validation/hate", "auprc")
    flagged = change("validation/identity", "hate_flag_rate_naming_a_group")
    return auprc, flagged, auprc >= -MAX_AUPRC_LOSS and flagged < 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/identity"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    reports = {arm: [train(args.runs, arm, seed, flags) for seed in args.seeds]
               for arm, flags in ARMS.items()}
    table = {label: {arm: [figure(r, key, field) for r in reports[arm]] for arm in ARMS}
             for label, key, field in ROWS}
    print_table(table, ("default", "identity balance"), args.seeds, 52, 22)

    auprc_change, flag_change, adopted = rule(reports["base"], reports["balance"])
    print(f"\nrule: validation hate AUPRC {auprc_change:+.3f} (at most -{MAX_AUPRC_LOSS} allowed), "
          f"clean naming a group flagged {flag_change:+.3f} (must fall): "
          f"{'ADOPT identity balance' if adopted else 'keep the default'}")
    mix = [r["training_mix"].get("identity_balance") for r in reports["balance"]]
    print(f"training mix: {mix}")
    if args.out:
        args.out.write_text(json.dumps({
            "seeds": args.seeds, "table": table, "auprc_change": auprc_change,
            "flag_change": flag_change, "adopted": adopted, "identity_balance_mix": mix,
            "runs": {arm: [r["model_dir"] for r in reports[arm]] for arm in ARMS}},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
