"""Loaders that turn each preference set into PreferencePair records.

Every loader validates every record: a bad one raises DataError naming file, line (or record)
and field, unless the caller asked to skip invalid records, in which case they are counted.
Pairs whose two responses are identical teach nothing and are dropped and counted.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from models.inputs import ChatTurn, Message, check_prompt
from training.data.records import (
    DataError,
    Loaded,
    PreferencePair,
    from_validation_error,
    iter_json_list,
    iter_jsonl,
)

Text = Annotated[str, StringConstraints(min_length=1)]


def group_key(first_user_turn: str) -> str:
    """Conversations that start alike belong together in one split."""
    return " ".join(first_user_turn.lower().split())


# --- generic JSONL: users' own data -------------------------------------------------------

class PreferenceRecord(BaseModel):
    """{"prompt" | "messages", "chosen", "rejected", "margin"?, "subset"?}; other keys are
    ignored. A `subset` (e.g. "refunds") is reported on its own by `evaluate reward`."""

    prompt: Text | None = None
    messages: list[ChatTurn] | None = Field(None, min_length=1)
    chosen: Text
    rejected: Text
    margin: float = Field(0.0, allow_inf_nan=False)
    subset: Annotated[str, StringConstraints(pattern=r"^[^/]+$")] | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> PreferenceRecord:
        check_prompt(self.prompt, self.messages)
        return self


def load_generic(path: Path, loaded: Loaded, subset: str = "") -> None:
    for where, obj in iter_jsonl(path, loaded):
        try:
            record = PreferenceRecord.model_validate(obj)
        except ValidationError as exc:
            loaded.invalid(from_validation_error(path, where, exc))
            continue
        if record.messages is not None:
            prompt: str | tuple[Message, ...] = tuple(m.message() for m in record.messages)
            first = next((m.content for m in record.messages if m.role == "user"), "")
        else:
            prompt = first = record.prompt or ""
        name = subset or path.stem
        loaded.keep(PreferencePair(prompt, record.chosen, record.rejected, record.margin,
                                   f"{name}/{record.subset}" if record.subset else name,
                                   group_key(first)))


# --- hh-rlhf: whole dialogues that differ in the last assistant turn ------------------------

_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_ROLES: dict[str, Literal["user", "assistant"]] = {"Human": "user", "Assistant": "assistant"}


def parse_dialogue(text: str) -> tuple[tuple[Message, ...], str]:
    """Split '\\n\\nHuman: … \\n\\nAssistant: …' into prompt turns and the final response."""
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise ValueError("expected a dialogue starting with '\\n\\nHuman:'")
    turns = [Message(_ROLES[role], content.strip())
             for role, content in zip(parts[1::2], parts[2::2], strict=True)]
    if turns[-1].role != "assistant":
        raise ValueError("the dialogue does not end with an assistant turn")
    if not turns[-1].content:
        raise ValueError("the final assistant turn is empty")
    return tuple(turns[:-1]), turns[-1].content


def load_hh_rlhf(path: Path, loaded: Loaded, subset: str) -> None:
    for where, obj in iter_jsonl(path, loaded):
        try:
            sides = {side: _dialogue(path, where, obj, side) for side in ("chosen", "rejected")}
        except DataError as exc:
            loaded.invalid(exc)
            continue
        (prompt, chosen), (other_prompt, rejected) = sides["chosen"], sides["rejected"]
        if prompt != other_prompt:
            loaded.invalid(DataError(path, where, "rejected",
                                     "does not share the prompt turns of 'chosen'",
                                     reason="prompt mismatch"))
            continue
        first = next((m.content for m in prompt if m.role == "user"), "")
        loaded.keep(PreferencePair(prompt, chosen, rejected, 0.0, subset, group_key(first)))


def _dialogue(path: Path, where: str, obj: dict[str, Any], side: str
              ) -> tuple[tuple[Message, ...], str]:
    try:
        return parse_dialogue(_field_str(path, where, obj, side))
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(path, where, side, str(exc)) from exc


def _field_str(path: Path, where: str, obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        problem = "is missing" if value is None else f"must be a string, not {type(value).__name__}"
        raise DataError(path, where, name, problem)
    return value


# --- PandaLM: three annotators, majority vote, ties dropped --------------------------------

def majority(votes: Iterable[int]) -> int:
    """The label most annotators chose; 0 (tie) when there is no strict winner."""
    counts = Counter(votes).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return 0
    return counts[0][0]


def load_pandalm(path: Path, loaded: Loaded) -> None:
    for where, item in iter_json_list(path):
        try:
            record = _dict(path, where, item)
            instruction = _field_str(path, where, record, "instruction")
            extra = record.get("input") or ""
            responses = [_field_str(path, where, record, f"response{i}") for i in (1, 2)]
            votes = [_vote(path, where, record, f"annotator{i}") for i in (1, 2, 3)]
        except DataError as exc:
            loaded.invalid(exc)
            continue
        winner = majority(votes)
        if winner == 0:
            loaded.skipped["tie"] += 1
            continue
        prompt = f"{instruction}\n{extra}".strip()
        chosen, rejected = responses if winner == 1 else responses[::-1]
        loaded.keep(PreferencePair(prompt, chosen, rejected, 0.0, "pandalm", group_key(prompt)))


def _vote(path: Path, where: str, record: dict[str, Any], name: str) -> int:
    value = record.get(name)
    if value not in (0, 1, 2) or isinstance(value, bool):
        raise DataError(path, where, name, f"must be 0 (tie), 1 or 2, not {value!r}")
    return int(value)


def _dict(path: Path, where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise DataError(path, where, None, "expected a JSON object")
    return item


# --- HHH alignment: instruction and response wrapped in a grading prompt -------------------

_HHH = re.compile(r"###The instruction to evaluate:\n(.*?)\n\n###Response to evaluate:\n(.*?)"
                  r"\n\n###Score Rubrics:", re.DOTALL)


def load_hhh(path: Path, loaded: Loaded) -> None:
    for where, item in iter_json_list(path):
        try:
            record = _dict(path, where, item)
            source = _field_str(path, where, record, "source")
            prompt, chosen = _hhh_parts(path, where, record, "chosen_instruction")
            other, rejected = _hhh_parts(path, where, record, "rejected_instruction")
            if prompt != other:
                raise DataError(path, where, "rejected_instruction",
                                "its instruction differs from the chosen one",
                                reason="prompt mismatch")
        except DataError as exc:
            loaded.invalid(exc)
            continue
        loaded.keep(PreferencePair(prompt, chosen, rejected, 0.0, f"hhh/{source}",
                                   group_key(prompt)))


def _hhh_parts(path: Path, where: str, record: dict[str, Any], name: str) -> tuple[str, str]:
    match = _HHH.search(_field_str(path, where, record, name))
    if not match or not match.group(1).strip() or not match.group(2).strip():
        raise DataError(path, where, name, "lacks the instruction/response markers")
    return match.group(1).strip(), match.group(2).strip()


# --- FineGrainedRLHF QA feedback: 4 answers, 6 pairwise preferences per question ----------

_FG_PAIRS = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))


def load_finegrained(path: Path, loaded: Loaded) -> None:
    for where, item in iter_json_list(path):
        try:
            record = _dict(path, where, item)
            question = _field_str(path, where, record, "question")
            answers = {i: _field_str(path, where, record, f"prediction {i}") for i in range(1, 5)}
            prefs = record.get("preference")
            if not isinstance(prefs, list) or len(prefs) != 6 or any(
                    p not in (0, 1, 2) for p in prefs):
                raise DataError(path, where, "preference", "must be a list of six 0/1/2 values")
        except DataError as exc:
            loaded.invalid(exc)
            continue
        for (a, b), pref in zip(_FG_PAIRS, prefs, strict=True):
            if pref == 0:
                loaded.skipped["tie"] += 1
                continue
            chosen, rejected = (answers[a], answers[b]) if pref == 1 else (answers[b], answers[a])
            loaded.keep(PreferencePair(question, chosen, rejected, 0.0, "finegrained-qa",
                                       group_key(question)))


# --- UKPConvArg1 strict: which of two arguments on a debate side is more convincing ---------

def debate_prompt(member: str) -> str:
    """'evolution-vs-creation_evolution.csv' -> 'Debate: evolution vs creation. Side: evolution'"""
    topic, _, side = Path(member).stem.partition("_")
    return f"Debate: {topic.replace('-', ' ').strip()}. Side: {side.replace('-', ' ').strip()}"


def load_ukpconvarg(path: Path, loaded: Loaded) -> None:
    with tarfile.open(path, "r:gz") as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not member.name.endswith(".csv"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            prompt = debate_prompt(member.name)
            lines = io.TextIOWrapper(handle, encoding="utf-8").read().splitlines()
            for number, line in enumerate(lines[1:], start=2):  # line 1 is the header
                where = f"{member.name}, line {number}"
                fields = line.split("\t")
                if len(fields) != 4:
                    loaded.invalid(DataError(path, where, None,
                                             f"expected 4 tab-separated fields, got {len(fields)}"))
                    continue
                _, label, first, second = fields
                if label not in ("a1", "a2"):
                    loaded.invalid(DataError(path, where, "label", f"must be a1 or a2, not "
                                             f"{label!r}"))
                    continue
                if not first.strip() or not second.strip():
                    loaded.invalid(DataError(path, where, "a1" if not first.strip() else "a2",
                                             "is empty"))
                    continue
                chosen, rejected = (first, second) if label == "a1" else (second, first)
                loaded.keep(PreferencePair(prompt, chosen.strip(), rejected.strip(), 0.0,
                                           "ukpconvarg", group_key(prompt)))
