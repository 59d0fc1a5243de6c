from __future__ import annotations

from collections import Counter

from training.data.records import PreferencePair
from training.data.reward_data import HELD_OUT, POOLED, load_reward_data, source_of
from training.data.split import split_of, split_pairs


def test_split_is_deterministic_and_near_80_10_10() -> None:
    groups = [f"conversation {i}" for i in range(20000)]
    counts = Counter(split_of(g) for g in groups)
    assert [split_of(g) for g in groups[:100]] == [split_of(g) for g in groups[:100]]
    assert abs(counts["train"] / 20000 - 0.8) < 0.01
    assert abs(counts["validation"] / 20000 - 0.1) < 0.01


def test_a_group_never_spans_splits() -> None:
    pairs = [PreferencePair("p", f"a{i}", f"b{i}", group=f"g{i % 50}") for i in range(1000)]
    splits = split_pairs(pairs)
    seen = {name: {p.group for p in members} for name, members in splits.items()}
    assert not (seen["train"] & seen["validation"] or seen["train"] & seen["test"]
                or seen["validation"] & seen["test"])
    assert sum(len(v) for v in splits.values()) == 1000


def test_real_pooled_split_is_disjoint_by_prompt_and_conversation() -> None:
    data = load_reward_data()
    splits = data.splits
    hh = {name: [p for p in pairs if source_of(p) == "hh-rlhf"] for name, pairs in splits.items()}
    assert sum(len(v) for v in hh.values()) == 8486  # hh-rlhf's split is what it always was
    assert {source_of(p) for p in splits["train"]} == {"hh-rlhf", *POOLED}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not {p.group for p in splits[a]} & {p.group for p in splits[b]}
        assert not {str(p.prompt) for p in splits[a]} & {str(p.prompt) for p in splits[b]}
    assert data.eval_sets["hh-rlhf"] == hh["test"]
    for source in POOLED:
        assert data.eval_sets[source] == [p for p in splits["test"] if source_of(p) == source]
    assert set(HELD_OUT) | {"behaviour"} <= set(data.eval_sets)
    assert not {source_of(p) for p in splits["train"]} & set(HELD_OUT)
    splits_only = load_reward_data(other_sources=False)
    assert splits_only.splits == splits
    assert set(splits_only.eval_sets) == {"hh-rlhf", *POOLED}
