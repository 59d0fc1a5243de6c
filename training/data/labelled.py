"""Loaders for labelled text: moderation sets, behavioural test suites and intent sets.

Every loader validates each record and locates a bad one by file, line and field, like the
preference loaders; `Labelled.skip_invalid` skips and counts instead. A moderation example
carries only the categories its source labels (the rest are unknown, not negative).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.taxonomy import CATEGORIES
from training.data.records import DataError, Skips, iter_jsonl, open_text

MODERATION_TEXT_LIMIT = 20_000  # characters; longer records are refused as malformed


@dataclass(frozen=True)
class TextExample:
    text: str
    labels: dict[str, int] = field(default_factory=dict)  # moderation: category -> 0/1
    label: str = ""  # intents: the class; HateCheck: the group a case targets
    group: str = ""  # what it belongs to: a split, a HateCheck functionality, a harm area


@dataclass(kw_only=True)
class Labelled(Skips):
    """The texts a loader kept, and what it skipped."""

    examples: list[TextExample] = field(default_factory=list)

    def keep(self, path: Path, where: str, text: Any, **fields: Any) -> None:
        if not isinstance(text, str) or not text.strip():
            self.invalid(DataError(path, where, "text", "missing or empty text"))
        elif len(text) > MODERATION_TEXT_LIMIT:
            self.invalid(DataError(path, where, "text", f"longer than {MODERATION_TEXT_LIMIT} "
                                   "characters"))
        else:
            self.examples.append(TextExample(text.strip(), **fields))


def _csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, "header", missing[0], f"column missing (have "
                            f"{reader.fieldnames})")
        # line numbers count the header as line 1
        return [(f"line {reader.line_num}", row) for row in reader]


def _binary(path: Path, where: str, name: str, value: Any) -> int:
    if str(value).strip() not in {"0", "1"}:
        raise DataError(path, where, name, f"expected 0 or 1, got {value!r}")
    return int(str(value).strip())


# --- moderation training sets ---------------------------------------------------------------

def load_davidson(path: Path, out: Labelled) -> None:
    """class 0 hate, 1 offensive (not hate), 2 neither: hate speech is offensive too."""
    for where, row in _csv_rows(path, ("tweet", "class")):
        if row["class"] not in {"0", "1", "2"}:
            out.invalid(DataError(path, where, "class", f"expected 0, 1 or 2, got "
                                  f"{row['class']!r}"))
            continue
        cls = int(row["class"])
        out.keep(path, where, row["tweet"], labels={"hate": int(cls == 0),
                                                    "offensive": int(cls in (0, 1))})


def load_tweeteval(texts: Path, labels: Path, category: str, out: Labelled) -> None:
    """One text per line in one file, its 0/1 label on the same line of the other."""
    with open_text(texts) as t, open_text(labels) as lab:
        text_lines, label_lines = t.read().splitlines(), lab.read().splitlines()
    if len(text_lines) != len(label_lines):
        raise DataError(labels, "whole file", None, f"{len(label_lines)} labels for "
                        f"{len(text_lines)} texts in {texts.name}")
    for number, (text, value) in enumerate(zip(text_lines, label_lines, strict=True), 1):
        try:
            label = _binary(labels, f"line {number}", "label", value)
        except DataError as error:
            out.invalid(error)
            continue
        out.keep(texts, f"line {number}", text, labels={category: label})


# EDOS's sexist categories that attack or demean women for their gender: hate by the
# taxonomy's definition. Its "3. animosity" and "4. prejudiced discussions" hold prejudice that
# is not always an attack, so they leave hate unknown, as do non-sexist posts (EDOS labels
# sexism only: a post it calls not sexist may still attack another group).
EDOS_HATE = ("1", "2")  # label_category "1. threats, plans to harm and incitement", "2. derogation"


def load_edos(path: Path, split: str, out: Labelled) -> None:
    """EDOS (SemEval-2023 Task 10), the rows of one split (train, dev or test). sexism: the
    aggregated label_sexist; hate: 1 for its threats and derogation (`EDOS_HATE`), unknown
    otherwise. Its category "1. threats, plans to harm and incitement" is too thin (443 posts,
    sexist threats only) to train a threat category on: see models/taxonomy.py."""
    for where, row in _csv_rows(path, ("text", "label_sexist", "split")):
        if row["split"] != split:
            continue
        if row["label_sexist"] not in ("sexist", "not sexist"):
            out.invalid(DataError(path, where, "label_sexist", "expected 'sexist' or 'not "
                                  f"sexist', got {row['label_sexist']!r}"))
            continue
        labels = {"sexism": int(row["label_sexist"] == "sexist")}
        if (row.get("label_category") or "").split(".")[0] in EDOS_HATE:
            labels["hate"] = 1
        out.keep(path, where, row["text"], labels=labels)


# ConvAbuse's per-annotator block: the five is_abuse levels, then the abuse types and targets.
_CONVABUSE_LEVELS = (1, 0, -1, -2, -3)
_CONVABUSE_BLOCK = 17  # columns per annotator
_CONVABUSE_TYPES = {"sexism": 9, "sexual_harassment": 10}  # offsets inside a block
# Abuse for a protected attribute, the taxonomy's hate: ableist, homophobic, racist, sexist,
# transphobic (not "intellectual": insulting someone's intelligence is not hate).
_CONVABUSE_IDENTITY = (5, 6, 8, 9, 11)


def _ticked(cell: str) -> bool:
    """A cell is ticked when it holds a 1 ("1", or "0, 1" where an item was rated twice)."""
    return "1" in {v.strip() for v in cell.split(",")}


def _majority(votes: list[bool]) -> int | None:
    """1 or 0 by strict majority of the annotators who rated the item; a tie is unknown."""
    yes = sum(votes)
    return None if not votes or 2 * yes == len(votes) else int(2 * yes > len(votes))


def load_convabuse(path: Path, out: Labelled) -> None:
    """ConvAbuse: user turns addressed to three conversational agents, each rated by several
    annotators. An annotator rated a turn when one of its five is_abuse levels is ticked
    (1 = not abusive … -3 = strongly abusive; the most severe counts when several are).
    harassment: a strict majority of the raters put it at -1 or below (every turn is addressed
    to the agent, so its abuse is aimed at the agent or a person); sexual_harassment and
    sexism: a strict majority ticked that abuse type; hate: a strict majority ticked one of the
    types that attack a protected attribute (`_CONVABUSE_IDENTITY`), so an insult with none is
    not hate. A tie leaves the category unknown. offensive is unknown (ConvAbuse does not label
    it in those terms). Columns are read by position: the file's header repeats one
    annotator's column name."""
    with open_text(path) as handle:
        rows = list(csv.reader(handle))
    if not rows or "user" not in rows[0] or "Annotator1_is_abuse.1" not in rows[0]:
        raise DataError(path, "header", "user", "not a ConvAbuse file (no user or "
                        "Annotator1_is_abuse.1 column)")
    header, user, first = rows[0], rows[0].index("user"), rows[0].index("Annotator1_is_abuse.1")
    annotators = (len(header) - first) // _CONVABUSE_BLOCK
    for number, row in enumerate(rows[1:], 2):
        where = f"line {number}"
        if len(row) != len(header):
            out.invalid(DataError(path, where, None, f"{len(row)} columns, the header has "
                                  f"{len(header)}"))
            continue
        abusive: list[bool] = []
        types: dict[str, list[bool]] = {k: [] for k in (*_CONVABUSE_TYPES, "hate")}
        for a in range(annotators):
            block = row[first + a * _CONVABUSE_BLOCK:first + (a + 1) * _CONVABUSE_BLOCK]
            levels = [lvl for lvl, cell in zip(_CONVABUSE_LEVELS, block[:5], strict=True)
                      if _ticked(cell)]
            if not levels:
                continue  # this annotator did not rate the turn
            abusive.append(min(levels) <= -1)
            for category, offset in _CONVABUSE_TYPES.items():
                types[category].append(_ticked(block[offset]))
            types["hate"].append(any(_ticked(block[i]) for i in _CONVABUSE_IDENTITY))
        if not abusive:
            out.invalid(DataError(path, where, "Annotator*_is_abuse", "no annotator rated it"))
            continue
        votes = {"harassment": _majority(abusive),
                 **{k: _majority(v) for k, v in types.items()}}
        out.keep(path, where, row[user], labels={k: v for k, v in votes.items()
                                                  if v is not None})


def load_moderation_jsonl(path: Path, out: Labelled) -> None:
    """Your own data: {"text": ..., "labels": {"hate": 0|1, "offensive": 0|1}}; a category
    left out is unknown for that record."""
    for where, obj in iter_jsonl(path, out):
        labels = obj.get("labels")
        if not isinstance(labels, dict) or not labels:
            out.invalid(DataError(path, where, "labels", "expected an object of category: 0|1"))
            continue
        unknown = sorted(set(labels) - set(CATEGORIES))
        if unknown:
            out.invalid(DataError(path, where, "labels", f"unknown categories {unknown}; "
                                  f"known: {list(CATEGORIES)}"))
            continue
        try:
            parsed = {k: _binary(path, where, f"labels.{k}", v) for k, v in labels.items()}
        except DataError as error:
            out.invalid(error)
            continue
        out.keep(path, where, obj.get("text"), labels=parsed)


# --- behavioural suites: evaluated, never trained on ----------------------------------------

def load_hatecheck(path: Path, out: Labelled) -> None:
    """group: the functionality; label: the group the case targets ('' for none)."""
    for where, row in _csv_rows(path, ("functionality", "test_case", "label_gold")):
        if row["label_gold"] not in {"hateful", "non-hateful"}:
            out.invalid(DataError(path, where, "label_gold", f"unexpected {row['label_gold']!r}"))
            continue
        out.keep(path, where, row["test_case"], labels={"hate": int(row["label_gold"] ==
                                                                    "hateful")},
                 group=row["functionality"], label=row.get("target_ident") or "")


def load_xstest(path: Path, out: Labelled) -> None:
    """label 'safe' prompts must not be flagged; 'unsafe' ones should be."""
    for where, row in _csv_rows(path, ("prompt", "type", "label")):
        if row["label"] not in {"safe", "unsafe"}:
            out.invalid(DataError(path, where, "label", f"unexpected {row['label']!r}"))
            continue
        out.keep(path, where, row["prompt"], label=row["label"], group=row["type"])


def load_simplesafetytests(path: Path, out: Labelled) -> None:
    """Every prompt is clearly unsafe and should be flagged."""
    for where, row in _csv_rows(path, ("prompts_final", "harm_area")):
        out.keep(path, where, row["prompts_final"], label="unsafe", group=row["harm_area"])


# --- intents --------------------------------------------------------------------------------

def load_banking77(path: Path, out: Labelled) -> None:
    for where, row in _csv_rows(path, ("text", "category")):
        if not row["category"].strip():
            out.invalid(DataError(path, where, "category", "empty intent"))
            continue
        out.keep(path, where, row["text"], label=row["category"].strip())


def load_clinc150(path: Path, split: str, out: Labelled) -> None:
    """`split` is train, val or test; its out-of-scope queries (oos_<split>) come labelled
    'oos', and are used only to choose and test the out-of-scope threshold."""
    with open_text(path) as handle:
        data = json.load(handle)
    for part in (split, f"oos_{split}"):
        if part not in data:
            raise DataError(path, "top level", part, "split missing")
        for number, record in enumerate(data[part], 1):
            where = f"{part} record {number}"
            if (not isinstance(record, list) or len(record) != 2
                    or not all(isinstance(x, str) for x in record)):
                out.invalid(DataError(path, where, None, "expected [text, intent]"))
                continue
            out.keep(path, where, record[0], label=record[1])


def load_intent_jsonl(path: Path, out: Labelled) -> None:
    """Your own intents: {"text": ..., "label": "<intent>"}."""
    for where, obj in iter_jsonl(path, out):
        label = obj.get("label")
        if not isinstance(label, str) or not label.strip():
            out.invalid(DataError(path, where, "label", "expected a non-empty string"))
            continue
        out.keep(path, where, obj.get("text"), label=label.strip())
