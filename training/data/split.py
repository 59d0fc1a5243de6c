"""Deterministic train / validation / test split, grouped so no group lands in two splits.

A pair's split is a function of its group key alone (a hash), so it does not depend on file
order, on which other sets were loaded, or on a seed: the same conversation always lands in the
same split, in every run and on every machine.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Literal, TypeVar

from training.data.records import PreferencePair

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")


def split_of(group: str, fractions: tuple[float, float] = (0.8, 0.1)) -> Split:
    train, validation = fractions
    digest = hashlib.sha256(f"alignserve-split:{group}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < train:
        return "train"
    return "validation" if position < train + validation else "test"


def split_pairs(pairs: Sequence[PreferencePair]) -> dict[Split, list[PreferencePair]]:
    out: dict[Split, list[PreferencePair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        out[split_of(pair.group)].append(pair)
    return out


T = TypeVar("T")


def sample(items: list[T], limit: int | None, seed: int) -> list[T]:
    """At most `limit` items, drawn with the seed (all of them when there are fewer)."""
    if limit and limit < len(items):
        return random.Random(seed).sample(items, limit)
    return items
