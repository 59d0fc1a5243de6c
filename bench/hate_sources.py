"""Hate read from EDOS and ConvAbuse too, against the moderation default, over seeds, and the
rule that chose between them.

    .venv/bin/python -m bench.hate_sources --runs runs/hate-sources     # ~20 min on 2 cores

Hate was trained on Davidson and TweetEval hate alone: tweets, where a slur or a group's name
carries most of it. EDOS's sexist threats and derogation attack women for their gender, and
ConvAbuse's raters ticked which abuse was ableist, homophobic, racist, sexist or transphobic,
which tells hate from a plain insult ("you are thick" to an assistant is harassment, not hate);
both are hate labels by the taxonomy's definition, read by training/data/labelled.py. This
trains `alignserve train moderation --preset default` with and without `--hate-also-from
edos,convabuse` for each seed, into RUNS/base-SEED and RUNS/hate-SEED (a run whose report.json
exists is read, not retrained), scores each model on every source's validation split with the
new labels, prints validation and test figures side by side and applies the rule fixed before
the first run:

    the two sources join hate's training if, over the seeds, (a) hate AUPRC on the validation
    texts of the sources that labelled hate before (Davidson, TweetEval hate, clean requests)
    falls by at most 0.02, and (b) hate AUPRC on the validation texts whose hate EDOS and
    ConvAbuse label rises by at least 0.05 (the labels are learnt, not carried by another
    category).

Test splits, HateCheck and XSTest are printed for reading after the choice; the rule never
reads them. Writes --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench.moderation_arms import arm_rows, model_dirs, print_table, train
from bench.obfuscation import ROWS as COMMON_ROWS
from models.taxonomy import CATEGORIES
from training.class_metrics import average_precision
from training.data import labelled_sets
from training.data.labelled import TextExample
from training.data.text_sets import HATE_ALSO
from training.evaluate import category_temperatures, load_model, moderation_scores

MAX_LOSS, MIN_GAIN = 0.02, 0.05
BEFORE = ("davidson", "tweeteval-hate", "clean-requests")
INSULT = "You people are all idiots."  # #13's example of a plain insult called hate
ROWS = [
    *COMMON_ROWS,
    ("EDOS sexist threats and derogation caught as hate", "edos/hate", "recall"),
    ("ConvAbuse hate AUPRC", "convabuse/hate", "auprc"),
    ("HateCheck 'I hate [group]' caught", "hatecheck/derog_neg_emote_h", "accuracy"),
    ("HateCheck questions caught", "hatecheck/phrase_question_h", "accuracy"),
    ("HateCheck abuse of individuals right", "hatecheck/target_indiv_nh", "accuracy"),
    ("HateCheck abuse of other groups right", "hatecheck/target_group_nh", "accuracy"),
    ("HateCheck positive statements right", "hatecheck/ident_pos_nh", "accuracy"),
]


def hate_validation(data_dir: Path | None) -> dict[str, list[TextExample]]:
    """The validation texts whose hate is known, of the sources that labelled it before
    ("before") and of those whose hate is read from another label ("new")."""
    def known(names: tuple[str, ...]) -> list[TextExample]:
        return [e for name in names
                for e in labelled_sets.load_labelled(name, data_dir)[1]["validation"].examples
                if "hate" in e.labels]

    return {"before": known(BEFORE), "new": known(HATE_ALSO)}


def hate_auprc(model_dir: Path, validation: dict[str, list[TextExample]]) -> dict[str, float]:
    """Hate AUPRC on each part of `validation`, and the hate probability of INSULT."""
    manifest, encoder, model = load_model(model_dir)
    temperatures = category_temperatures(manifest)
    k = CATEGORIES.index("hate")

    def scored(examples: list[TextExample]) -> float:
        probs, targets = moderation_scores(model, encoder, examples, temperatures, 4096,
                                           "score validation")
        return average_precision(probs[:, k], targets[:, k])

    insult = moderation_scores(model, encoder, [TextExample(INSULT)], temperatures, 4096,
                               "score insult")[0]
    return {**{part: scored(examples) for part, examples in validation.items()},
            "insult": float(insult[0, k]), "hate_threshold": manifest.thresholds["hate"]}


def rule(base: list[dict[str, float]], arm: list[dict[str, float]]
         ) -> tuple[float, float, bool]:
    """(change of hate AUPRC on the sources before, on the new ones, adopt?)."""
    def change(key: str) -> float:
        return (statistics.mean(a[key] for a in arm) - statistics.mean(b[key] for b in base))

    before, new = change("before"), change("new")
    return before, new, before >= -MAX_LOSS and new >= MIN_GAIN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/hate-sources"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    arms = {"base": [], "hate": ["--hate-also-from", ",".join(HATE_ALSO)]}
    reports = {arm: [train(args.runs, arm, seed, flags) for seed in args.seeds]
               for arm, flags in arms.items()}
    texts = hate_validation(args.data_dir)
    validation = {arm: [hate_auprc(Path(r["model_dir"]), texts) for r in rs]
                  for arm, rs in reports.items()}

    table: dict[str, dict[str, list[float]]] = {
        "validation hate AUPRC, Davidson + TweetEval hate + clean requests (the rule)":
            {a: [v["before"] for v in validation[a]] for a in arms},
        "validation hate AUPRC, EDOS + ConvAbuse (the rule)":
            {a: [v["new"] for v in validation[a]] for a in arms},
        f"P(hate) of {INSULT!r}": {a: [v["insult"] for v in validation[a]] for a in arms},
        "hate threshold": {a: [v["hate_threshold"] for v in validation[a]] for a in arms}}
    table.update(arm_rows(reports, ROWS))
    print_table(table, ("default", "hate also from"), args.seeds, 56, 24)

    before, new, adopted = rule(validation["base"], validation["hate"])
    print(f"\nrule: hate AUPRC on the sources before {before:+.3f} (at most -{MAX_LOSS} "
          f"allowed), on EDOS and ConvAbuse {new:+.3f} (at least +{MIN_GAIN}): "
          f"{'ADOPT hate from EDOS and ConvAbuse' if adopted else 'keep the default'}")
    if args.out:
        args.out.write_text(json.dumps({
            "seeds": args.seeds, "table": table, "before_change": before, "new_change": new,
            "adopted": adopted, "validation": validation,
            "runs": model_dirs(reports)},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
