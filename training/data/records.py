"""Normalised records, the error that names file, line and field, and the skip counter."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from models.inputs import Prompt


class DataError(ValueError):
    """A record that cannot be used, located precisely enough to fix it."""

    def __init__(self, path: Path, where: str, field_name: str | None, problem: str,
                 reason: str = "invalid") -> None:
        self.path, self.where, self.field, self.problem, self.reason = (
            path, where, field_name, problem, reason)
        about = f", field '{field_name}'" if field_name else ""
        super().__init__(f"{path}, {where}{about}: {problem}")


@dataclass(frozen=True)
class PreferencePair:
    prompt: Prompt
    chosen: str
    rejected: str
    margin: float = 0.0
    subset: str = ""
    group: str = ""  # pairs sharing a group never land in different splits


@dataclass(kw_only=True)
class Skips:
    """What a loader skipped or dropped, by reason. An invalid record stops the load unless
    `skip_invalid`, when it is counted instead."""

    skipped: Counter[str] = field(default_factory=Counter)
    skip_invalid: bool = False

    def invalid(self, error: DataError) -> None:
        if not self.skip_invalid:
            raise error
        self.skipped[error.reason] += 1


@dataclass(kw_only=True)
class Loaded(Skips):
    """The preference pairs a loader kept, and what it skipped."""

    pairs: list[PreferencePair] = field(default_factory=list)

    def keep(self, pair: PreferencePair) -> None:
        if pair.chosen == pair.rejected:
            self.skipped["chosen == rejected"] += 1
        else:
            self.pairs.append(pair)


def open_text(path: Path) -> IO[str]:
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_jsonl(path: Path, loaded: Skips) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, object) for every non-blank line; bad JSON goes through `loaded.invalid`."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                loaded.invalid(DataError(path, where, None, f"invalid JSON ({exc.msg})"))
                continue
            if not isinstance(obj, dict):
                loaded.invalid(DataError(path, where, None, "expected a JSON object"))
                continue
            yield where, obj


def iter_json_list(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, item) for a file holding one JSON list; records are numbered from 1."""
    with open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"line {exc.lineno}", None, f"invalid JSON ({exc.msg})") from exc
    if not isinstance(data, list):
        raise DataError(path, "top level", None, "expected a JSON list of records")
    for number, item in enumerate(data, start=1):
        yield f"record {number}", item


def from_validation_error(path: Path, where: str, exc: ValidationError) -> DataError:
    """The first pydantic error, as a DataError naming the field."""
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or None
    return DataError(path, where, loc, first["msg"])
