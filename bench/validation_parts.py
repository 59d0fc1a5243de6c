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

It also splits the pairs by which replies the model's window cuts (`validation/cut: chosen
only`, ...; the reports do not): a reply longer than the window is read to its edge only, and
the default reward is right on 44% of the pairs whose chosen reply alone is cut, against 60%
where the rejected one alone is (docs/measurements.md, the cut marker).

`--prompt-floor N` adds a column per group: the same models, with the replies whose input
another prompt floor (the format's min_prompt_tokens, the prompt tokens kept beside a reply the
window cuts) changes scored again by the model at that floor, every other score the saved one;
the cut parts stay those of the model's own format. `--response-tail N` does the same for
another response tail (response_tail_tokens, the last tokens of a cut reply read after its
opening); given together, one column has both. `--reply-windows` adds a column with each reply
the window cuts scored as the mean reward of windows that read all of it (each beside the prompt
tokens the cut reply kept, as long as the stretch of it the window kept, a third overlapping the
next): whether what the window hides is what the reward misses there. These run the model, on
those replies only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from bench.http_load import machine
from models.artifact import TOKENIZER_FILE
from models.inputs import EncodedPair, PairEncoder, window_starts
from models.manifest import InputFormat, Manifest
from training.data.records import PreferencePair
from training.data.reward_data import load_reward_data, validation_parts
from training.int8_gate import saved_validation_scores
from training.modeling import load_model
from training.pairs import EncodedPairs
from training.scoring import score

CUTS = {"cut: neither": (False, False), "cut: chosen only": (True, False),
        "cut: rejected only": (False, True), "cut: both": (True, True)}


def window_cuts(encoded: EncodedPairs) -> dict[str, np.ndarray]:
    """The pairs by which of their replies the window cuts (CUTS), as masks."""
    chosen = np.array([item.response_truncated for item in encoded.chosen])
    rejected = np.array([item.response_truncated for item in encoded.rejected])
    return {name: (chosen == c) & (rejected == r) for name, (c, r) in CUTS.items()}


def part_accuracies(model_dir: Path, pairs: list[PreferencePair],
                    parts: dict[str, np.ndarray], cuts: bool = False,
                    other_format: dict[str, Any] | None = None,
                    reply_windows: bool = False) -> dict[str, float]:
    """Pairwise accuracy, pooled and per part, from the scores `model_dir` saved; with `cuts`,
    also by which replies the window cuts (`validation/cut: ...`, and `pairs/cut: ...` their
    numbers of pairs); with `other_format` (fields of the input format and their values), the
    replies whose input those values change are scored again by the model; with
    `reply_windows`, each reply the window cuts is scored as the mean over windows of it."""
    try:
        manifest = Manifest.load(model_dir)
    except FileNotFoundError as exc:  # a mistyped directory: the reason, without a traceback
        raise SystemExit(str(exc)) from None
    encoder = PairEncoder.from_file(model_dir / TOKENIZER_FILE, manifest.input)
    encoded = EncodedPairs.build(encoder, pairs)
    scores = saved_validation_scores(model_dir, [*encoded.chosen, *encoded.rejected])
    if scores is None:
        raise SystemExit(f"{model_dir}: no saved validation scores of these pairs (a model "
                         "trained before they were saved, or on other data)")
    if other_format:
        scores = rescored(model_dir, manifest, pairs, encoded, scores, other_format)
    if reply_windows:
        scores = windows_rescored(model_dir, encoder, pairs, encoded, scores)
    margins = scores[:len(pairs), 0] - scores[len(pairs):, 0]
    out = {"validation": float((margins > 0).mean()),
           **{f"validation/{part}": float((margins[members] > 0).mean())
              for part, members in parts.items()}}
    if cuts:
        for part, members in window_cuts(encoded).items():
            out[f"pairs/{part}"] = int(members.sum())
            out[f"validation/{part}"] = (float((margins[members] > 0).mean()) if members.any()
                                         else float("nan"))
    return out


def rescored(model_dir: Path, manifest: Manifest, pairs: list[PreferencePair],
             encoded: EncodedPairs, scores: np.ndarray, other_format: dict[str, Any]
             ) -> np.ndarray:
    """`scores` with the inputs that `other_format`'s values change scored again with them."""
    try:
        fmt = InputFormat.model_validate({**manifest.input.model_dump(), **other_format})
    except ValidationError as exc:  # values the window cannot hold
        reasons = "; ".join(error["msg"] for error in exc.errors())
        raise SystemExit(f"{describe(other_format)}: {reasons}") from None
    encoder = PairEncoder.from_file(model_dir / TOKENIZER_FILE, fmt)
    before = [*encoded.chosen, *encoded.rejected]
    after = [*(other := EncodedPairs.build(encoder, pairs)).chosen, *other.rejected]
    changed = [i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
    out = scores.copy()
    if changed:
        out[changed] = score(load_model(model_dir), [after[i] for i in changed],
                             pad_id=encoder.pad_id, desc=describe(other_format))
    return out


def windows_rescored(model_dir: Path, encoder: PairEncoder, pairs: list[PreferencePair],
                     encoded: EncodedPairs, scores: np.ndarray) -> np.ndarray:
    """`scores` with each reply the window cuts scored as the mean reward of windows over the
    whole reply, each read beside the prompt tokens its cut input kept and as long as the
    stretch of the reply that input kept (for a format without a cut marker or a response
    tail, the first window is that input); `encoder`, the model's own, encoded `encoded`."""
    items = [*encoded.chosen, *encoded.rejected]
    cut = [i for i, item in enumerate(items) if item.response_truncated]
    replies = [pair.chosen for pair in pairs] + [pair.rejected for pair in pairs]
    ids = encoder.tokenizer.encode_batch([replies[i] for i in cut], add_special_tokens=False)
    windows: list[EncodedPair] = []
    owners: list[int] = []
    for i, reply in zip(cut, ids, strict=True):
        item = items[i]
        head = item.token_type_ids.index(1)  # [CLS], the prompt tokens kept, the separators
        size = len(item) - head - 1  # the reply tokens the cut input kept
        for start in window_starts(len(reply.ids), size, size - size // 3):
            second = [*reply.ids[start:start + size], encoder.sep_id]
            windows.append(EncodedPair(item.input_ids[:head] + second,
                                       item.token_type_ids[:head] + [1] * len(second),
                                       item.prompt_truncated, True))
            owners.append(i)
    out = scores.copy()
    if windows:
        rewards = score(load_model(model_dir), windows, pad_id=encoder.pad_id,
                        desc="windows of cut replies")[:, 0]
        owner = np.array(owners)
        for i in cut:
            out[i, 0] = rewards[owner == i].mean()
    return out


FORMAT_FLAGS = {"prompt_floor": ("min_prompt_tokens", "prompt tokens"),
                "response_tail": ("response_tail_tokens", "tail tokens")}


def describe(other_format: dict[str, Any]) -> str:
    """A column's name for the input format's values it changes: "64 prompt tokens", ..."""
    words = {field: name for field, name in FORMAT_FLAGS.values()}
    return ", ".join(f"{value} {words[field]}" for field, value in other_format.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True,
                        metavar=("NAME", "MODEL_DIR"),
                        help="a name, then the model directories (one per seed) it stands for")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--prompt-floor", type=int, default=None, metavar="N",
                        help="also each group with the replies whose input N prompt tokens "
                        "kept beside a cut reply changes scored again (runs the models)")
    parser.add_argument("--response-tail", type=int, default=None, metavar="N",
                        help="also each group with the replies whose input the last N tokens "
                        "of a cut reply read after its opening changes scored again (runs "
                        "the models)")
    parser.add_argument("--reply-windows", action="store_true",
                        help="also each group with every reply the window cuts scored as the "
                        "mean reward of windows over all of it (runs the models)")
    args = parser.parse_args(argv)
    if bad := [group[0] for group in args.group if len(group) < 2]:
        parser.error(f"--group {bad[0]!r} names no model directory")
    other_format = {field: value for flag, (field, _) in FORMAT_FLAGS.items()
                    if (value := getattr(args, flag)) is not None}

    pairs = load_reward_data(args.data_dir, other_sources=False).splits["validation"]
    parts = validation_parts(pairs)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, *dirs in args.group:
        runs[name] = [{"model": d, **part_accuracies(Path(d), pairs, parts, cuts=True)}
                      for d in dirs]
        if other_format:
            runs[f"{name}, {describe(other_format)}"] = [
                {"model": d, **part_accuracies(Path(d), pairs, parts, cuts=True,
                                               other_format=other_format)} for d in dirs]
        if args.reply_windows:
            runs[f"{name}, every window of a cut reply"] = [
                {"model": d, **part_accuracies(Path(d), pairs, parts, cuts=True,
                                               reply_windows=True)} for d in dirs]

    first = next(iter(runs.values()))[0]  # the cut parts' sizes in the labels: the first model's
    rows = [("validation", len(pairs)),
            *((f"validation/{part}", int(members.sum())) for part, members in parts.items()),
            *((f"validation/{part}", first[f"pairs/{part}"]) for part in CUTS)]
    labels = [f"{key} ({n})" for key, n in rows]
    width, cell = max(map(len, labels)) + 2, max(18, *(len(name) + 2 for name in runs))
    print("part (pairs)".ljust(width) + "".join(name.rjust(cell) for name in runs))
    for (key, _), label in zip(rows, labels, strict=True):
        line = label.ljust(width)
        for seeds in runs.values():
            values = 100 * np.array([run[key] for run in seeds])
            values = values[~np.isnan(values)]
            sd = f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else ""
            line += f"{values.mean():.1f}{sd} ({len(values)})".rjust(cell)
        print(line)
    for name, seeds in runs.items():  # a model of another input format cuts other pairs
        if counts := {f"{part}: {run[f'pairs/{part}']}" for run in seeds for part in CUTS
                      if run[f"pairs/{part}"] != first[f"pairs/{part}"]}:
            print(f"{name}: its window cuts other pairs ({', '.join(sorted(counts))})")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "pairs": {
            **{part: int(members.sum()) for part, members in parts.items()},
            **{part: first[f"pairs/{part}"] for part in CUTS}}, "runs": runs},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
