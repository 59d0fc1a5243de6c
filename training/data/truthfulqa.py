"""TruthfulQA as honesty preferences: a true answer over a false one to the same question.

Each question lists correct and incorrect answers ("; "-separated). Every incorrect answer is
paired with one correct answer, taken in turn, so a question yields as many pairs as it has
false answers and no true answer is used far more often than the others. "I have no comment"
is a correct answer in TruthfulQA's scoring, but as a preferred reply it would teach evasion, so
it is used only where a question has no other correct answer.
"""

from __future__ import annotations

import csv
from pathlib import Path

from training.data.preference import group_key
from training.data.records import DataError, Loaded, PreferencePair, open_text

NO_COMMENT = "i have no comment"
_FIELDS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


def answers(cell: str) -> list[str]:
    return [a.strip() for a in cell.split(";") if a.strip()]


def load_truthfulqa(path: Path, loaded: Loaded) -> None:
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in _FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, "line 1", missing[0], "is missing from the header")
        for number, row in enumerate(reader, start=2):
            where = f"line {number}"
            question = (row["Question"] or "").strip()
            correct = answers(row["Correct Answers"] or "")
            incorrect = answers(row["Incorrect Answers"] or "")
            for name, value in (("Question", question), ("Correct Answers", correct),
                                ("Incorrect Answers", incorrect)):
                if not value:
                    loaded.invalid(DataError(path, where, name, "is empty"))
                    break
            else:
                best = (row["Best Answer"] or "").strip()
                preferred = [a for a in dict.fromkeys([best, *correct])
                             if a and a.lower().rstrip(".") != NO_COMMENT] or correct
                for i, wrong in enumerate(incorrect):
                    loaded.keep(PreferencePair(question, preferred[i % len(preferred)], wrong,
                                               0.0, "truthfulqa", group_key(question)))
