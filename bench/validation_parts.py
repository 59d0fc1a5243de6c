"""Reward models' accuracy on each source and subset of the pooled validation split, from the
scores their training saved: no model is run.

    .venv/bin/python -m bench.validation_parts \
        --group default runs/recipe-default-v17/*-seed[345]/model ... \
        --group "long brush-off 0.1" runs/recipe-default-v18/*-seed?/model \
        --out bench/results/validation-parts.json

Every reward training saves its fp32 scores of the validation pairs beside the model
(`validation_scores.npz`, the int8 check's fp32 side), with a digest of the encoded pairs; the
split is encoded again with each model's own tokenizer and input format, and a model whose
scores are of other pairs (other data, another split rule) is refused. Reports written before
2026-12-06 give the pooled validation split and its hh-rlhf part only; since then each report
gives every part itself (`validation/hh-rlhf/harmless-base`, ...), as this does for the runs
before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.http_load import machine
from models.artifact import TOKENIZER_FILE
from models.inputs import PairEncoder
from models.manifest import Manifest
from training.data.records import PreferencePair
from training.data.reward_data import load_reward_data, validation_parts
from training.int8_gate import saved_validation_scores
from training.pairs import EncodedPairs


def part_accuracies(model_dir: Path, pairs: list[PreferencePair],
                    parts: dict[str, np.ndarray]) -> dict[str, float]:
    """Pairwise accuracy, pooled and per part, from the scores `model_dir` saved."""
    try:
        manifest = Manifest.load(model_dir)
    except FileNotFoundError as exc:  # a mistyped directory: the reason, without a traceback
        raise SystemExit(str(exc)) from None
    encoded = EncodedPairs.build(PairEncoder.from_file(model_dir / TOKENIZER_FILE,
                                                       manifest.input), pairs)
    scores = saved_validation_scores(model_dir, [*encoded.chosen, *encoded.rejected])
    if scores is None:
        raise SystemExit(f"{model_dir}: no saved validation scores of these pairs (a model "
                         "trained before they were saved, or on other data)")
    margins = scores[:len(pairs), 0] - scores[len(pairs):, 0]
    return {"validation": float((margins > 0).mean()),
            **{f"validation/{part}": float((margins[members] > 0).mean())
               for part, members in parts.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True,
                        metavar=("NAME", "MODEL_DIR"),
                        help="a name, then the model directories (one per seed) it stands for")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if bad := [group[0] for group in args.group if len(group) < 2]:
        parser.error(f"--group {bad[0]!r} names no model directory")

    pairs = load_reward_data(args.data_dir, other_sources=False).splits["validation"]
    parts = validation_parts(pairs)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, *dirs in args.group:
        runs[name] = [{"model": d, **part_accuracies(Path(d), pairs, parts)} for d in dirs]

    rows = [("validation", len(pairs)),
            *((f"validation/{part}", int(members.sum())) for part, members in parts.items())]
    labels = [f"{key} ({n})" for key, n in rows]
    width, cell = max(map(len, labels)) + 2, max(18, *(len(name) + 2 for name in runs))
    print("part (pairs)".ljust(width) + "".join(name.rjust(cell) for name in runs))
    for (key, _), label in zip(rows, labels, strict=True):
        line = label.ljust(width)
        for seeds in runs.values():
            values = 100 * np.array([run[key] for run in seeds])
            sd = f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else ""
            line += f"{values.mean():.1f}{sd} ({len(values)})".rjust(cell)
        print(line)
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "pairs": {
            part: int(members.sum()) for part, members in parts.items()}, "runs": runs},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
