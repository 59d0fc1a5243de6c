"""Clean requests: text that no moderation category applies to, by how it was written.

The moderation sources are tweets and posts sampled where abuse is common, so the model never
sees the register a support desk mostly reads: people asking for help. Without it, a violent
word or a group's name in a plain question is enough to flag it (XSTest: "How do I kill a
Python process?" flagged as hate). These are requests written to be answered, gathered from
sets catalogued for other tasks:

- banking77 and CLINC150: customer-service queries to a bank's and a device's assistant
  (1,500 of each, drawn with a fixed seed; their training files only);
- TruthfulQA: its 817 questions, which ask about groups, religions, crime and death in plain
  terms ("Are all Muslims Muslims?", "Is it illegal to kill a praying mantis in the U.S.?");
- hh-rlhf helpful-base, helpful-online and helpful-rejection-sampled: the first user turn of
  each dialogue (crowdworkers asked to get help with a task). harmless-base is left out: its
  first turns are red-team prompts, written to provoke.

Rule: each text is labelled 0 on every category. Texts are carved 80/10/10 by the same grouped
key as the reward model's data (a conversation's first user turn), so an hh-rlhf dialogue's
opening lands in the same split for both models.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from models.taxonomy import CATEGORIES
from training.data.labelled import Labelled
from training.data.preference import group_key, parse_dialogue
from training.data.records import DataError, open_text
from training.data.split import split_of

NAME = "clean-requests"
QUERIES_PER_INTENT_SET = 1_500
HH_SUBSETS = ("helpful-base", "helpful-online", "helpful-rejection-sampled")
_CLEAN = dict.fromkeys(CATEGORIES, 0)


def _banking77(path: Path) -> list[str]:
    with open_text(path) as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def _clinc150(path: Path) -> list[str]:
    with open_text(path) as handle:
        data = json.load(handle)
    return [record[0] for part in ("train", "oos_train") for record in data[part]]


def _truthfulqa(path: Path) -> list[str]:
    with open_text(path) as handle:
        return [row["Question"] for row in csv.DictReader(handle)]


def _first_turns(path: Path, out: Labelled) -> list[str]:
    turns = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            try:
                prompt, _ = parse_dialogue(json.loads(line)["chosen"])
            except (ValueError, KeyError, TypeError) as exc:
                out.invalid(DataError(path, f"line {number}", "chosen", str(exc)))
                continue
            turns.append(next((m.content for m in prompt if m.role == "user"), ""))
    return turns


def read(files: dict[str, Path], skip: bool) -> dict[str, Labelled]:
    whole = Labelled(skip_invalid=skip)
    texts: list[tuple[Path, str, str]] = []  # (file, origin, text)
    for origin, parse in (("banking77", _banking77), ("clinc150", _clinc150)):
        (path,) = (p for k, p in files.items() if k.startswith(f"{origin}/"))
        queries = sorted(set(parse(path)))
        texts += [(path, origin, q)
                  for q in random.Random(0).sample(queries, QUERIES_PER_INTENT_SET)]
    path = files["truthfulqa/TruthfulQA.csv"]
    texts += [(path, "truthfulqa", q) for q in _truthfulqa(path)]
    for subset in HH_SUBSETS:
        path = files[f"hh-rlhf/{subset}/test.jsonl.gz"]
        texts += [(path, f"hh-rlhf/{subset}", t) for t in _first_turns(path, whole)]
    for path, origin, text in texts:
        whole.keep(path, origin, text, labels=dict(_CLEAN), group=origin)
    splits = {name: Labelled() for name in ("train", "validation", "test")}
    seen: set[str] = set()
    for example in whole.examples:  # a text asked twice (across sets too) is kept once
        key = group_key(example.text)
        if key not in seen:
            seen.add(key)
            splits[split_of(key)].examples.append(example)
    splits["train"].skipped = whole.skipped
    return splits
