"""What each addition to the reward recipe changes: the ablation ladder, then more seeds of the
best final recipe. Every run is a plain `alignserve train reward`; figures come from the
report.json each one writes.

    .venv/bin/python -m bench.reward_recipe --preset default --output runs/recipe      # CPU
    .venv/bin/python -m bench.reward_recipe --preset default --finals --candidate-seeds 3 \
        --output runs/recipe-finals                     # the default's candidates, 3 seeds each
    python -m bench.reward_recipe --preset full --device cuda --parallel 8 --output runs/recipe

Ladder (seed 0): the present recipe (hh-rlhf alone) -> + pooled sources -> + each kind of
contrast pair in turn -> + length term (the final recipe), plus the final recipe at other
settings (`--finals`: the final recipe and those alone). The final candidate that `choose`
picks on validation figures (means over --candidate-seeds seeds), if `confirm` finds its int8
graph kept by the export's gate (the default preset), then runs with the seeds it lacks up to
--seeds; test figures are only read, never chosen on. Runs already in --output
(their report.json) are read rather than trained again. Writes ladder.md (a table) and
results.json to --output.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.recipe_rule import CONTRAST, FINAL, HH_SUBSET, choose, confirm, option
from training.config import PRESETS
from training.data.contrast import KINDS
from training.data.records import PreferencePair
from training.data.reward_data import load_reward_data, validation_parts

LENGTH_OFF = {"no-length-term": "", "length-decorrelation": "0"}


def without(*kinds: str) -> dict[str, str]:
    return dict.fromkeys(map(option, kinds), "0")


# The kinds some preset trains, in the order the ladder adds them (brush-off is off in both).
TRAINED = tuple(k for k in KINDS if any(getattr(p, k) > 0 for p in PRESETS.values()))
LADDER: list[tuple[str, dict[str, str]]] = [
    ("present recipe (hh-rlhf only)", {"no-pool": "", **without(*KINDS), **LENGTH_OFF}),
    ("+ pooled sources", {**without(*KINDS), **LENGTH_OFF}),
    *[(f"+ {kind} pairs", {**without(*TRAINED[i + 1:]), **LENGTH_OFF})
      for i, kind in enumerate(TRAINED)],
    ("+ length term (final recipe)", {}),
]
BEFORE = {"restatement": "0.1"}  # the default preset's restatement share before 2026-11-28
VARIANTS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "full": [("final, 1 epoch", {"epochs": "1"}),
             ("final, lr 3e-5", {"lr": "3e-5"}),
             ("final, 512 tokens", {"max-length": "512", "min-prompt-tokens": "128"})],
    # The earlier candidates (16-pair steps, with and without restatement, courtesy and
    # substitution pairs, lr 1e-4) are in bench/results/reward-default-cpu-v2.json and -v3.json.
    # The default's restatement share was 0.1 until 2026-11-28, when the rule below chose 0.2
    # ("final, restatement 0.2" in bench/results/reward-default-cpu-v5.json); the candidates
    # measured against that default keep its share, so that a rerun reproduces them.
    "default": [("final, restatement 0.1 (the default before)", BEFORE),
                ("final, contrast pairs only where the model reads both sides whole",
                 {**BEFORE, "contrast-whole": "all"}),
                ("final, repetition and restatement pairs only where read whole",
                 {**BEFORE, "contrast-whole": "repetition,restatement"}),
                # Whole restatements stop teaching truncation (their cut copies ended
                # mid-sentence), so these two give truncation twice the share.
                ("final, repetition and restatement whole, truncation 0.2",
                 {**BEFORE, "contrast-whole": "repetition,restatement", "truncation": "0.2"}),
                ("final, restatement whole, truncation 0.2",
                 {**BEFORE, "contrast-whole": "restatement", "truncation": "0.2"}),
                # 2026-12-05, against the default of 2026-11-28 (restatement 0.2), whose three
                # seeds are read from bench/results/reward-default-cpu-v5.json (--baseline):
                # the same compute, lower layers moved less (layer-wise decay, the usual remedy
                # for fine-tuning a pretrained encoder on little data), and the full preset's
                # rate alone, to tell the two apart.
                ("final, layer-wise lr decay 0.8 from lr 1e-4",
                 {"layer-decay": "0.8", "lr": "1e-4"}),
                ("final, lr 1e-4", {"lr": "1e-4"}),
                # 2026-12-05 (later), against the default of that morning (layer-wise decay,
                # read from bench/results/reward-default-cpu-v6.json with --baseline): the
                # suite's "correct over incorrect fact" stays below 70% for seed 0 (63.6%), and
                # substitution pairs are the only label-free signal aimed at it, so twice and
                # three times their share, at the same 2,400-pair budget.
                ("final, substitution 0.2", {"substitution": "0.2"}),
                ("final, substitution 0.3", {"substitution": "0.3"}),
                # 2026-12-05 (evening), against the default of that afternoon (substitution
                # 0.3, read from bench/results/reward-default-cpu-v7.json with --baseline):
                # MiniLM's dropout (0.1) draws chosen and rejected under different masks, so
                # its noise lands on the difference the loss reads; reward trainers commonly
                # turn it off (TRL's RewardConfig does by default). Off, and at half.
                ("final, dropout off", {"dropout": "0"}),
                ("final, dropout 0.05", {"dropout": "0.05"}),
                # 2026-12-05 (night), against the same default (read from -v7.json): the suite
                # had no functionality where the longer reply is the better one, and the
                # default scored short brush-offs ("Not my problem.") close to helpful replies
                # (its seed 2: 50% on the suite's new helpful_vs_brush_off). Brush-off pairs at
                # the share every kind started at, within the same 2,400-pair budget.
                ("final, brush-off pairs 0.1", {"brush-off": "0.1"}),
                # The rule kept the default over it (bench/results/reward-default-cpu-v9.json):
                # repetition's validation pairs fell 68.3 -> 54.3%, past KIND_SLACK; brush-offs
                # (the shorter side worse) and repetitions (the longer side worse) pull apart.
                # So the same brush-off pairs with twice the repetition pairs, and at half the
                # share.
                ("final, brush-off pairs 0.1, repetition 0.2",
                 {"brush-off": "0.1", "repetition": "0.2"}),
                ("final, brush-off pairs 0.05", {"brush-off": "0.05"}),
                # 2026-12-05 (late night), against the same default (read from -v7.json): every
                # candidate so far kept the budget of 2,400 pairs in 300 steps, which trains on
                # about a sixth of the pooled and contrast pairs; the full preset, on all of
                # them, scored 56.7 against 54.3 on hh-rlhf test. The first run has the room
                # (10.5-13.3 of its 20 minutes; the reward's 300 steps take about 5): half as
                # many again, 3,600 pairs in 450 steps of 8, the same mix.
                ("final, 3,600 pairs", {"max-train-pairs": "3600"}),
                # 2026-12-05 (a new session, late), against the same default (read from
                # -v7.json): the default's three seeds spread over 3 points on hh-rlhf test
                # (56.1, 53.2, 53.7) and an ensemble of three gained 1.3 points at a third of the
                # speed. Averaging the weights along one run's end (stochastic weight
                # averaging) is the free form of that: the same 300 steps, the same serving
                # cost, the mean of the weights after each of the last 150 steps.
                ("final, weights averaged over the last half", {"average-tail": "0.5"}),
                # 2026-12-06, against the same default (read from -v7.json): more than half of
                # the training pairs are contrast pairs, and their length difference is built
                # in with the cue each teaches (a whole reply is longer than its cut, a
                # restated or padded one longer than the reply), while the length
                # decorrelation penalises the reward's in-batch correlation with length over
                # every item. Truncation is the weakest kind on validation (54.8% for seed 0).
                # Here the length term and the decorrelation read the human-labelled pairs
                # only, where length is a bias of the labels.
                ("final, length terms on human pairs only",
                 {"no-contrast-in-length-terms": ""}),
                # 2026-12-06, after it, against the same default: that run showed the
                # decorrelation over the contrast items is what makes the reward learn their
                # cues rather than their lengths, so the other direction: three times its weight.
                ("final, length decorrelation 0.3", {"length-decorrelation": "0.3"}),
                # 2026-12-06 (a new session), against the same default: brush-off pairs taught
                # helpful over a brush-off (the suite's functionality 71 -> 96-100%) and lost
                # repetition's pairs (68 -> 54-61%), since their worse side was the shorter one
                # and repetition's the longer. A string of brush-offs as long as the reply
                # leaves only what is said: at the brush-off share, and twice it.
                ("final, long brush-off pairs 0.1", {"long-brush-off": "0.1"}),
                ("final, long brush-off pairs 0.2", {"long-brush-off": "0.2"}),
                # 2026-12-06 (a later session), against the default's six seeds (-v18.json):
                # the head reads the mean of the response tokens, a choice of the first
                # skeleton never measured since; the issue's sweep of the recipe before found
                # the mean over every token best among response, CLS and all-token pooling,
                # and it is the summary MiniLM was pre-trained to give.
                ("final, pooled over every token", {"pool-tokens": "all"}),
                # 2026-12-06, after it, against the same six seeds: every token's mean raised
                # relevance pairs (81.7 against 75.5%) and cost truncation and harmless-base;
                # the head reads both means side by side, so it can take the prompt's part
                # where it helps and leave it where it dilutes the reply.
                ("final, both means", {"pool-tokens": "both"}),
                # 2026-12-06 (a new session, on the Intel Xeon), against the same six seeds:
                # brush-off pairs taught helpful over a brush-off and cost harmless-base, whose
                # preferred replies are often refusals. Built from its red-team prompts too,
                # they set whatever reply was chosen there, compliance included, over one that
                # declines. Brush-off pairs at 0.1 with none on those prompts, and with a polite
                # refusal over the brush-off there (the tone of declining, not declining).
                ("final, brush-off pairs 0.1, none on red-team prompts",
                 {"brush-off": "0.1", "brush-off-harmful": "skip"}),
                ("final, brush-off pairs 0.1, a refusal over them on red-team prompts",
                 {"brush-off": "0.1", "brush-off-harmful": "refusal"}),
                # Stopped after two seeds of the first: repetition's validation pairs at 37 and
                # 46% (the default's six seeds: 63.5), the short brush-offs' old conflict. The
                # long brush-offs passed that guard over six seeds and failed only harmless-base,
                # which is what these settings are for: the same two ways, on the long kind.
                ("final, long brush-off pairs 0.1, none on red-team prompts",
                 {"long-brush-off": "0.1", "brush-off-harmful": "skip"}),
                # Stopped after two seeds too: harmless-base's validation pairs at 45.9 and
                # 45.4% (the default: 52.5 +- 1.7). Without the red-team prompts the brush-offs
                # cost harmless-base as much: the cue carries over from the other prompts.
                ("final, long brush-off pairs 0.1, a refusal over them on red-team prompts",
                 {"long-brush-off": "0.1", "brush-off-harmful": "refusal"}),
                # Every brush-off kind so far cost harmless-base, with or without its prompts:
                # a reward taught that a non-answer is worse takes refusals for non-answers.
                # Here the other side of it, on those prompts alone: a polite refusal over the
                # reply people judged the more harmful.
                ("final, decline pairs 0.1", {"decline": "0.1"}),
                # Over four seeds decline pairs raised harmless-base (55.1 against 52.5) and
                # lowered brush-offs (72.0 against 79.5): the mirror of every brush-off kind, so
                # the reward reads refusals and brush-offs as one thing. Both sides at once:
                # declining a harmful request is better (over the harmful reply, and over a
                # brush-off), answering any other is better than a brush-off.
                ("final, decline pairs and long brush-offs 0.1, a refusal over them on "
                 "red-team prompts",
                 {"decline": "0.1", "long-brush-off": "0.1", "brush-off-harmful": "refusal"}),
                # 2026-12-07, against the default's six seeds (-v18.json): a reply the 128-token
                # window cuts ends mid-sentence, as the truncation pairs' worse replies do, and
                # the default scores it as one: its seed 0 is right on 44% of the pooled
                # validation pairs where the window cuts only the chosen reply (185) and 60%
                # where it cuts only the rejected one (131), against 59% where it cuts neither
                # (1,207; `python -m bench.validation_parts`). Here a cut reply ends with a
                # marker instead, in training and in serving, so the two can be told apart; the
                # rule decides as for any candidate, and bench.validation_parts reads the cut
                # pairs on validation.
                ("final, a marker where the window cuts a reply",
                 {"cut-marker": "(continued)"}),
                # 2026-12-07 (a new session), against the default's six seeds: the marker left
                # the cut-only-chosen pairs where they were, so the ragged end is not what the
                # reward misreads there. A reply the window cuts is also read beside the fewest
                # prompt tokens (min_prompt_tokens, 32: about the last question alone), while
                # the whole reply it is compared with sees more of the conversation. Rescoring
                # only the cut replies of the default's seed 0 with 64 prompt tokens kept, no
                # training, moved those pairs 44.3 -> 51.4% and the pooled validation 56.7 ->
                # 57.7% (`python -m bench.validation_parts --prompt-floor 64`; 16 and 96 did
                # not: 40.5 and 45.4%; bench/results/validation-parts-prompt-floor-cpu.json).
                # Trained with the same floor: the full preset's 64, at the default's 128
                # tokens (a cut reply keeps 61 of them).
                ("final, 64 prompt tokens kept beside a cut reply", {"min-prompt-tokens": "64"}),
                # 2026-12-07 (a new session), against the default's six seeds: the marker and
                # the prompt floor both left the cut-only-chosen pairs where they were, and the
                # floor showed the cost of a shorter opening (repetition and truncation fall past
                # the window). What the window hides of a long reply is its ending: a whole reply
                # it cuts cannot show that it ends well, and a truncation or repetition pair whose
                # replies both pass the window reads the same on both sides. Here a cut reply is
                # read as its opening and its last 32 tokens (61 + 32 of the 93 it keeps), in
                # training and in serving; the response's opening alone is read as before when
                # it fits. Rescoring the default seed 0's cut replies so, no training, moved
                # nothing beyond noise (cut-only-chosen 44.3 -> 41.6, 45.4, 41.6% at 16, 32, 46
                # tail tokens; pooled 56.7 -> 56.2, 56.7, 57.2%): a model must learn to read a
                # tail, so the test is training; 32, the middle, fixed before the runs.
                ("final, the last 32 tokens of a cut reply read after its opening",
                 {"response-tail-tokens": "32"}),
                # 2026-12-07, after it: scoring every window of a cut reply left the default's
                # cut-only-chosen pairs where they were (bench.validation_parts --reply-windows):
                # in pairs of one reply past the window and one within it, the reward prefers
                # the shorter, against the people. The contrast kinds whose worse side is the
                # longer are where the window cuts the worse reply alone: restatement (the reply
                # said twice) and repetition, in the default's training mix, far more often than
                # truncation cuts the better one alone; so they may teach "a reply that fills the
                # window is worse". Those two kinds only where both replies are read whole (the
                # 2026-11-28 candidate, on today's default and rule; the contrast check's
                # validation pairs stay the same for every candidate). Its first runs bore the
                # 2026-11-28 entry's name, so they trained that entry (restatement 0.1) in its
                # place: bench/results/reward-whole-restatement-0.1-stopped-cpu.json.
                ("final, repetition and restatement pairs only where read whole, restatement "
                 "0.2", {"contrast-whole": "repetition,restatement"}),
                # 2026-12-07 (night), against the six seeds of -v18.json: 3,600 pairs won on
                # validation (79.5 against 77.3%) and lost on the int8 gate and the first run's
                # time. A step through the top three of MiniLM's six layers alone (the lowest
                # three and the embeddings fixed: no backward pass below them) costs about two
                # thirds of a full step by count, so the same training time holds 3,400 pairs in 425
                # steps, the same mix; the lower layers already train at a third to a half of
                # the top one's rate (layer-wise decay 0.8), and keep MiniLM's weights.
                ("final, the lowest three layers fixed, 3,400 pairs",
                 {"freeze-layers": "3", "max-train-pairs": "3400"})],
}
# The lowest three layers fixed with 3,400 pairs was stopped after seeds 0-3
# (bench/results/reward-frozen-layers-stopped-cpu.json): the rule's contrast figure 78.0 against
# 78.2%, out of reach of the 1.6-point lead, and repetition 55.5 against 63.5%, past KIND_SLACK;
# pooled validation 56.7 against 55.7%. Read after: hh-rlhf test 54.6 against 54.0%, its
# harmless-base 48.3 against 54.2% (helpful-base and helpful-online up 3.8 and 5.0 points).
# Repetition and restatement read whole (restatement 0.2) was stopped after seeds 0-3
# (bench/results/reward-whole-repetition-restatement-stopped-cpu.json): the rule's contrast
# figure 78.5 against 78.2%, out of reach of the 1.6-point lead, and truncation 50.0 against
# 58.0%, past KIND_SLACK. The cut-only-chosen validation pairs rose 44.3 -> 55.0% and the
# cut-only-rejected fell 60.3 -> 51.5%: the window-filling cue turned off, not a reply read.
# The response tail of 32 was stopped after seeds 0-3
# (bench/results/reward-response-tail-stopped-cpu.json): the rule's contrast figure 77.8 against
# 78.2%, out of reach of the 1.6-point lead, and repetition 54.8 against 63.5%, past KIND_SLACK;
# truncation rose (63.7 against 58.0), the cut-only-chosen pairs did not move (44.7%).
# The prompt floor of 64 was stopped after seeds 0 and 1
# (bench/results/reward-prompt-floor-stopped-cpu.json): the rule's contrast figure 71.6 against
# 78.2% (repetition 47.5, truncation 49.4 against 63.5, 58.0: a cut reply keeps 61 tokens, not
# 93); pooled validation rose (57.0 against 55.7), hh-rlhf test, read after, fell (54.1, 52.4
# against the default's 56.1, 53.2 on the same seeds).
# The cut marker was stopped after seeds 0 and 1 (bench/results/reward-cut-marker-stopped-cpu.json):
# the rule's contrast figure 75.1 against 78.2%, beyond reach of four more seeds, and the pairs
# whose chosen reply alone is cut stayed where they were (42.4% against the default seed 0's 44.3).
# The rule chose decline pairs with long brush-offs (bench/results/reward-default-cpu-v24.json;
# contrast 81.7 against 78.2%, every guard passed, its seed-0 int8 graph kept) and it is not the
# default: its seed 0 scored 50.9% on hh-rlhf test against 56.1%, and every brush-off variant
# has cost harmless-base test (docs/measurements.md). Decline pairs alone (-v23.json): brush-offs
# 70.3 against 79.5%, past KIND_SLACK. Long brush-offs with a refusal over them on red-team
# prompts (-v22.json): harmless-base 49.3 against 52.5%, past SUBSET_Z; repetition and
# truncation past KIND_SLACK. The two stopped after two seeds:
# bench/results/reward-brush-off-red-team-stopped-cpu.json.
# The rule kept the default over every token pooled (bench/results/reward-default-cpu-v20.json):
# harmless-base validation 49.5 against 52.5% over six seeds each, past SUBSET_Z; relevance rose
# (81.7 against 75.5%), truncation fell (51.8 against 58.0%): the shared prompt dilutes the reply.
# And over both means side by side (-v21.json): harmless-base 49.3 against 52.5%, past SUBSET_Z.
# The rule kept the default over both long brush-off candidates (-v15.json): repetition's
# validation pairs fell 9.6 and 10.0 points below seeds 0-2 of the default, past KIND_SLACK;
# three fresh seeds of the default scored what they did (58.7%), so from then on the default's
# side is read from its six seeds (bench/recipe_rule.py). Read after, harmless-base fell 54.2 ->
# 48.6% at 0.1 (its preferred replies are often refusals): they stay out.
# The rule kept the default over the length terms on human pairs only
# (bench/results/reward-default-cpu-v13.json): every contrast kind fell on validation (72.7
# against 77.3%); the decorrelation over the contrast items is what makes the reward learn their
# cues rather than their lengths. It kept it over the decorrelation at 0.3 too (-v14.json):
# contrast pairs 70.2 against 77.3%, pooled validation 54.3 against 56.4%.
# The rule chose 3,600 pairs on validation (bench/results/reward-default-cpu-v11.json), and
# its seed-0 model's int8 graph failed the export's gate in a fresh clone's first run: the
# default stays at 2,400 pairs (`confirm`, below, now makes that check part of the rule).
COLUMNS = ("validation/hh-rlhf", "hh-rlhf", "hh-rlhf/harmless-base", "oasst", "truthfulqa",
           "pandalm", "finegrained-qa", "hhh", "ukpconvarg", CONTRAST, "behaviour")


def flags(settings: dict[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in settings.items():
        out += [f"--{key}"] + ([value] if value else [])
    return out


def run_dir(root: Path, name: str, seed: int) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return root / f"{slug}-seed{seed}"


def train(name: str, settings: dict[str, str], seed: int, args: argparse.Namespace
          ) -> dict[str, Any]:
    output = run_dir(args.output, name, seed)
    if (output / "report.json").exists():  # a run finished earlier: read, not retrained
        report = json.loads((output / "report.json").read_text())
        return summarise(name, seed, settings, with_parts(report, output / "model"))
    command = [sys.executable, "-m", "training.cli", "train", "reward", "--preset", args.preset,
               "--output", str(output), "--seed", str(seed), "--device", args.device,
               "--threads", str(args.threads), *flags(settings), *args.extra]
    if args.backbone:
        command += ["--backbone", args.backbone]
    started = time.perf_counter()
    with output.with_name(output.name + ".log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name} (seed {seed}) failed; see its log in {args.output}")
    report = json.loads((output / "report.json").read_text())
    print(f"{name}, seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    return summarise(name, seed, settings, report)


def with_parts(report: dict[str, Any], model: Path) -> dict[str, Any]:
    """`report`, with each part of the validation split (`validation/hh-rlhf/harmless-base`,
    ...) read from the scores its run saved when the report predates those figures."""
    if any(key.startswith(HH_SUBSET) for key in report["eval"]):
        return report
    from bench.validation_parts import part_accuracies  # torch: only for such older runs

    pairs = validation_pairs()
    parts = part_accuracies(model, pairs, validation_parts(pairs))
    return {**report, "eval": {**{k: {"accuracy": v} for k, v in parts.items()},
                               **report["eval"]}}


@functools.cache
def validation_pairs() -> list[PreferencePair]:
    return load_reward_data(other_sources=False).splits["validation"]


def summarise(name: str, seed: int, settings: dict[str, str], report: dict[str, Any]
              ) -> dict[str, Any]:
    return {"name": name, "seed": seed, "settings": settings, "eval": report["eval"],
            "behaviour": report["behaviour"], "length_weight": report["length_weight"],
            "train_s": report["timings"]["train_s"], "pairs": report["split"]["train_used"]}


def missing_seeds(runs: list[dict[str, Any]], name: str, seeds: range) -> list[int]:
    """The seeds of `seeds` that `runs` holds no run of `name` for: what is left to train of
    the chosen recipe (none of a baseline read from a file, which holds its own)."""
    have = {run["seed"] for run in runs if run["name"] == name}
    return [seed for seed in seeds if seed not in have]


def baseline(results: Path, name: str) -> list[dict[str, Any]]:
    """The runs of an earlier results.json named `name`, as the final recipe's."""
    runs = [{**run, "name": FINAL} for run in json.loads(results.read_text())
            if run["name"] == name]
    if not runs:
        raise ValueError(f"{results} has no run named {name!r}")
    return runs


def table(runs: list[dict[str, Any]]) -> str:
    head = "| recipe | seeds | " + " | ".join(COLUMNS) + " | hh longer-wins | hh chosen-shorter " \
           "| hh length corr |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 5)]
    for name in dict.fromkeys(r["name"] for r in runs):
        group = [r for r in runs if r["name"] == name]

        def cell(key: str, metric: str = "accuracy", group: list[dict[str, Any]] = group) -> str:
            values = [100 * r["eval"][key][metric] for r in group
                      if metric in r["eval"].get(key, {})]
            if not values:
                return "–"
            spread = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
            return f"{np.mean(values):.1f}{spread}"

        hh = [cell("hh-rlhf", m) for m in ("longer_wins", "acc_chosen_shorter")]
        corr = np.mean([r["eval"]["hh-rlhf"].get("length_corr", np.nan) for r in group])
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cell(c) for c in COLUMNS)
                     + f" | {hh[0]} | {hh[1]} | {corr:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["default", "full"], default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--parallel", type=int, default=1, help="Runs at once (a GPU has room "
                        "for several MiniLM runs; on 2 CPU cores keep 1).")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--seeds", type=int, default=3, help="Seeds of the best final recipe.")
    parser.add_argument("--only-final", action="store_true",
                        help="Skip the ladder: the final recipe alone, with every seed.")
    parser.add_argument("--finals", action="store_true",
                        help="Skip the ladder: the final recipe and its variants, then more "
                             "seeds of the one the rule chooses.")
    parser.add_argument("--candidate-seeds", type=int, default=1,
                        help="Seeds of every final candidate; the choice compares their means.")
    parser.add_argument("--variants", nargs="+", metavar="NAME",
                        help="With --finals: only these final candidates (their names as in "
                             "VARIANTS), beside the final recipe.")
    parser.add_argument("--baseline", nargs=2, metavar=("RESULTS", "NAME"),
                        help="Read the final recipe's runs (every seed) from an earlier "
                             "results.json, the runs it names NAME, instead of training them: "
                             "for a final recipe unchanged since that file was written.")
    parser.add_argument("extra", nargs="*", help="Further flags for every run (after --).")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    first: list[tuple[str, dict[str, str]]]
    if args.only_final:
        first = [(FINAL, {})]
    elif args.finals:
        first = [(FINAL, {}), *VARIANTS[args.preset]]
    else:
        first = LADDER + VARIANTS[args.preset]
    if args.variants:
        unknown = set(args.variants) - {name for name, _ in VARIANTS[args.preset]}
        if unknown:
            parser.error(f"no final candidate named {sorted(unknown)}; see VARIANTS")
        first = [(n, s) for n, s in first if n == FINAL or n in args.variants]
    recorded: list[dict[str, Any]] = []
    if args.baseline:
        try:
            recorded = baseline(Path(args.baseline[0]), args.baseline[1])
        except ValueError as exc:
            parser.error(str(exc))
        first = [(n, s) for n, s in first if n != FINAL]

    def final(name: str) -> bool:
        return name == FINAL or name.startswith("final")

    jobs = [(name, settings, seed) for name, settings in first
            for seed in range(args.candidate_seeds if final(name) else 1)]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = recorded + list(pool.map(lambda job: train(job[0], job[1], job[2], args), jobs))
        best = choose([r for r in runs if final(r["name"])], args.preset)
        print(f"chosen on validation: {best['name']}", flush=True)
        if args.preset == "default":  # served on CPUs: as its int8 graph
            best = confirm(best, runs, run_dir(args.output, best["name"], best["seed"])
                           / "model")
            print(f"chosen: {best['name']}", flush=True)
        runs += list(pool.map(lambda seed: train(best["name"], best["settings"], seed, args),
                              missing_seeds(runs, best["name"], range(args.seeds))))
    (args.output / "results.json").write_text(json.dumps(runs, indent=1))
    (args.output / "ladder.md").write_text(table(runs) + "\n")
    print(table(runs))


if __name__ == "__main__":
    main()
