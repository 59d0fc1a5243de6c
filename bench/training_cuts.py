"""Which side of each kind of a reward preset's training pairs its window cuts: no model is run.

    .venv/bin/python -m bench.training_cuts --preset default [--seed 0] [--contrast-whole KINDS]

A reply longer than the window is read to its edge only. Per kind of training pair (the human
pairs, each contrast kind), how many have neither reply cut, the chosen alone, the rejected
alone, or both, in the mix the preset trains on with that seed (the same sample `alignserve train
reward` draws). A kind that cuts the worse reply alone far more often than the better one can
teach that a reply filling the window is worse (docs/measurements.md, the contrast pairs read
whole).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench.http_load import machine
from bench.validation_parts import CUTS, window_cuts
from models.artifact import TOKENIZER_FILE
from models.inputs import PairEncoder
from training.config import PRESETS, TrainConfig
from training.data.records import PreferencePair
from training.data.reward_data import load_reward_data
from training.modeling import resolve_backbone
from training.pairs import CONTRAST_SUBSET, EncodedPairs
from training.reward import input_format, seen_whole, training_pairs

HUMAN = "human"


def kind_of(pair: PreferencePair) -> str:
    return pair.subset.removeprefix(CONTRAST_SUBSET) if pair.subset.startswith(
        CONTRAST_SUBSET) else HUMAN


def cut_counts(config: TrainConfig, data_dir: Path | None = None) -> dict[str, dict[str, int]]:
    """Per kind of the config's training pairs, how many fall in each of CUTS."""
    encoder = PairEncoder.from_file(resolve_backbone(config.backbone) / TOKENIZER_FILE,
                                    input_format(config))
    data = load_reward_data(data_dir, other_sources=False)
    pairs = training_pairs(data.splits["train"], config, seen_whole(encoder))
    masks = window_cuts(EncodedPairs.build(encoder, pairs))
    counts: dict[str, Counter[str]] = {}
    for i, pair in enumerate(pairs):
        part = next(name for name, mask in masks.items() if mask[i])
        counts.setdefault(kind_of(pair), Counter())[part] += 1
    return {kind: {part: counts[kind][part] for part in CUTS} for kind in sorted(counts)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contrast-whole", default=None, metavar="KINDS",
                        help="as `alignserve train reward --contrast-whole`")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the counts as JSON")
    args = parser.parse_args(argv)
    config = replace(PRESETS[args.preset], seed=args.seed)
    if args.contrast_whole is not None:
        try:
            config = replace(config, contrast_whole=args.contrast_whole)
        except ValueError as exc:  # a kind that does not exist: the reason, no traceback
            parser.error(str(exc))

    counts = cut_counts(config, args.data_dir)
    width = max(map(len, counts)) + 2
    print("kind".ljust(width) + "".join(part.removeprefix("cut: ").rjust(15) for part in CUTS))
    for kind, row in counts.items():
        print(kind.ljust(width) + "".join(str(row[part]).rjust(15) for part in CUTS))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "preset": args.preset,
                                        "seed": args.seed, "contrast_whole": config.contrast_whole,
                                        "counts": counts}, indent=1) + "\n")


if __name__ == "__main__":
    main()
