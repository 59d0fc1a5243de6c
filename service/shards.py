"""The input of `alignserve score` cut into shards, and each shard's output written whole.

Shard i holds records [i * size, (i + 1) * size) of a JSONL file (found by the byte offset
where it starts, so a worker reads only its shard) or a Parquet file (by row). Its scored
records go to OUT/part-NNNNN.jsonl (or .parquet) and the records it could not score to
OUT/rejected-NNNNN.jsonl, each in one atomic rename: a part that exists is a shard done, which
is how a job run again resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = (".jsonl", ".parquet")


@dataclass(frozen=True)
class Plan:
    """How the input is cut: shard i holds records [i * size, (i + 1) * size)."""

    input: Path
    output: Path
    size: int
    shards: int
    offsets: tuple[int, ...] = ()  # JSONL: the byte offset where each shard starts

    @property
    def suffix(self) -> str:
        return self.input.suffix

    def part(self, shard: int) -> Path:
        return self.output / f"part-{shard:05d}{self.suffix}"

    def rejected(self, shard: int) -> Path:
        return self.output / f"rejected-{shard:05d}.jsonl"

    def pending(self) -> list[int]:
        return [i for i in range(self.shards) if not self.part(i).exists()]


def plan(input: Path, output: Path, size: int) -> Plan:
    if input.suffix not in FORMATS:
        raise ValueError(f"{input}: the input must be .jsonl or .parquet")
    if size < 1:
        raise ValueError("--shard-size must be at least 1")
    if input.suffix == ".parquet":
        rows = _parquet(input).metadata.num_rows
        return Plan(input, output, size, -(-rows // size))
    offsets, position, lines = [], 0, 0
    with input.open("rb") as stream:
        for line in stream:
            if lines % size == 0:
                offsets.append(position)
            position += len(line)
            lines += 1
    return Plan(input, output, size, len(offsets), tuple(offsets))


def _parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError("Parquet needs pyarrow: pip install 'alignserve[batch]'") from exc
    return pq.ParquetFile(path)


def read_shard(plan: Plan, shard: int) -> tuple[list[Any], list[int]]:
    """The shard's records (a JSONL line that is not JSON stays a string, to be rejected) and
    the line (1-based) or row (0-based) of each."""
    first = shard * plan.size
    if plan.suffix == ".parquet":
        rows: list[Any] = []
        for batch in _parquet(plan.input).iter_batches(batch_size=plan.size):
            if len(rows) + batch.num_rows > first:
                rows += batch.to_pylist()
            else:
                rows += [None] * batch.num_rows
            if len(rows) >= first + plan.size:
                break
        records = rows[first:first + plan.size]
        return records, list(range(first, first + len(records)))
    records = []
    with plan.input.open("rb") as stream:
        stream.seek(plan.offsets[shard])
        for _ in range(plan.size):
            line = stream.readline()
            if not line:
                break
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                records.append(f"not JSON: {exc}")
    return records, list(range(first + 1, first + 1 + len(records)))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def write_part(path: Path, rows: list[dict[str, Any]]) -> None:
    if path.suffix != ".parquet":
        write_jsonl(path, rows)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    temporary = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows), temporary)
    os.replace(temporary, path)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as stream:
        return sum(1 for _ in stream)


def merged(plan: Plan) -> Iterator[dict[str, Any]]:
    """Every scored record, shard by shard (for tests and small jobs)."""
    for shard in range(plan.shards):
        part = plan.part(shard)
        if part.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(part).to_pylist()
        else:
            with part.open() as stream:
                yield from (json.loads(line) for line in stream)
