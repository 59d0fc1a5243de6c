"""A cue balance against the moderation default, over seeds, and the rule that chose it.

    .venv/bin/python -m bench.identity_balance --runs runs/identity     # ~22 min on 2 cores
    .venv/bin/python -m bench.identity_balance --cue violence --runs runs/violence

Trains `alignserve train moderation --preset default` with and without the cue's balance
(`--identity-balance` or `--violence-balance`; training/data/identity.py) for each seed, into
RUNS/base-SEED and RUNS/balance-SEED (a run whose report.json exists is read, not retrained),
then prints validation and test figures side by side and applies the rule fixed before the
first run (commit 213011c, for the identity balance; the violence balance is held to the same):

    the balance becomes the default if, over the seeds, (a) the mean validation hate AUPRC
    falls by at most 0.02 and (b) the mean validation hate flag rate on clean texts with the cue
    (that name a group; with a word of violence) falls.

Test splits, HateCheck and XSTest are printed for reading after the choice; the rule never reads
them. Writes --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.moderation_arms import TAIL_ROWS, arm_rows, figure, model_dirs, print_table, train
from training.data.identity import CUES, Cue

MAX_AUPRC_LOSS = 0.02


def rows(entry: str) -> list[tuple[str, str, str]]:
    """(label, report key, field) for the cue's bench; validation first: the rule reads only
    those."""
    cue = CUES[entry]

    def flagged(where: str, key: str, side: str) -> tuple[str, str, str]:
        return (f"{where}: clean {side.replace('_', ' ')} flagged as hate", f"{key}/{entry}",
                f"hate_flag_rate_{side}")

    return [
        ("validation hate AUPRC", "validation/hate", "auprc"),
        flagged("validation", "validation", cue.has),
        flagged("validation", "validation", cue.lacks),
        ("validation hate recall", "validation/hate", "recall"),
        ("HateCheck non-hateful flagged", "hatecheck", "non_hateful_flag_rate"),
        ("HateCheck hateful caught", "hatecheck", "hateful_recall"),
        flagged("HateCheck", "hatecheck", cue.has),
        flagged("HateCheck", "hatecheck", cue.lacks),
        ("HateCheck negated hate right", "hatecheck/negate_neg_nh", "accuracy"),
        ("HateCheck counter-speech (reference) right", "hatecheck/counter_ref_nh", "accuracy"),
        ("HateCheck abuse of individuals right", "hatecheck/target_indiv_nh", "accuracy"),
        ("HateCheck abuse of other groups right", "hatecheck/target_group_nh", "accuracy"),
        ("HateCheck positive statements right", "hatecheck/ident_pos_nh", "accuracy"),
        ("HateCheck neutral statements right", "hatecheck/ident_neutral_nh", "accuracy"),
        ("HateCheck threats caught", "hatecheck/threat_dir_h", "accuracy"),
        ("XSTest safe prompts flagged", "xstest", "over_flagging_rate"),
        ("Davidson hate AUPRC", "davidson/hate", "auprc"),
        ("TweetEval hate AUPRC", "tweeteval-hate/hate", "auprc"),
        flagged("TweetEval hate", "tweeteval-hate", cue.has),
        ("EDOS sexism AUPRC", "edos/sexism", "auprc"),
        *TAIL_ROWS,
    ]


def rule(base: list[dict[str, Any]], balance: list[dict[str, Any]], entry: str = "identity"
         ) -> tuple[float, float, bool]:
    """(change of the mean validation hate AUPRC, change of the mean validation hate flag rate
    on clean texts with the cue, adopt?), on validation figures only."""
    def change(key: str, field: str) -> float:
        return (statistics.mean(figure(r, key, field) for r in balance)
                - statistics.mean(figure(r, key, field) for r in base))

    cue: Cue = CUES[entry]
    auprc = change("validation/hate", "auprc")
    flagged = change(f"validation/{entry}", f"hate_flag_rate_{cue.has}")
    return auprc, flagged, auprc >= -MAX_AUPRC_LOSS and flagged < 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cue", choices=sorted(CUES), default="identity")
    parser.add_argument("--runs", type=Path, default=None, help="default: runs/CUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    cue = CUES[args.cue]
    arms = {"base": [], "balance": [f"--{cue.name}"]}
    runs = args.runs or Path("runs") / args.cue
    reports = {arm: [train(runs, arm, seed, flags) for seed in args.seeds]
               for arm, flags in arms.items()}
    table = arm_rows(reports, rows(args.cue))
    print_table(table, ("default", cue.name.replace("-", " ")), args.seeds, 52, 22)

    auprc_change, flag_change, adopted = rule(reports["base"], reports["balance"], args.cue)
    print(f"\nrule: validation hate AUPRC {auprc_change:+.3f} (at most -{MAX_AUPRC_LOSS} allowed), "
          f"clean {cue.has.replace('_', ' ')} flagged {flag_change:+.3f} (must fall): "
          f"{'ADOPT ' + cue.name if adopted else 'keep the default'}")
    mix = [r["training_mix"].get(cue.mix_key) for r in reports["balance"]]
    print(f"training mix: {mix}")
    if args.out:
        args.out.write_text(json.dumps({
            "cue": args.cue, "seeds": args.seeds, "table": table, "auprc_change": auprc_change,
            "flag_change": flag_change, "adopted": adopted, f"{cue.mix_key}_mix": mix,
            "runs": model_dirs(reports)},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
