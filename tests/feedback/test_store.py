"""The feedback store, the same tests on both back-ends: SQLite in a temporary file and a real
PostgreSQL server started for the session (tests/postgres.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from feedback.records import RECORD, ModerationFeedback, PreferenceFeedback, Record, export_line
from feedback.store import FeedbackStore, open_store, source_class
from models.inputs import ChatTurn

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def preference(i: int, **extra: object) -> Record:
    return RECORD.validate_python({"kind": "preference", "id": f"p-{i}", "prompt": f"q {i}",
                                   "chosen": "good", "rejected": "bad", **extra})


@pytest.fixture
def store(feedback_backend: dict[str, str]) -> Iterator[FeedbackStore]:
    opened = open_store(**feedback_backend)
    yield opened
    opened.close()


def test_add_get_and_idempotent_resend(store: FeedbackStore) -> None:
    first = store.add([preference(1, source="agent:42", model_version="reward:v1"),
                       preference(2)], now=NOW)
    assert first.stored == ["p-1", "p-2"] and first.duplicates == []
    # A retried batch, one record changed: the stored one is kept, nothing is duplicated.
    again = store.add([preference(1, chosen="other"), preference(3)], now=NOW)
    assert again.stored == ["p-3"] and again.duplicates == ["p-1"]
    got = store.get("p-1")
    assert got is not None and got.received_at == NOW
    assert got.record.model_dump() == preference(1, source="agent:42",
                                                 model_version="reward:v1").model_dump()
    assert [s.record.id for s in store.select()] == ["p-1", "p-2", "p-3"]
    assert store.get("missing") is None


def test_delete_erases(store: FeedbackStore) -> None:
    store.add([preference(1)], now=NOW)
    assert store.delete("p-1") is True
    assert store.get("p-1") is None
    assert store.delete("p-1") is False


def test_purge_removes_only_old_records(store: FeedbackStore) -> None:
    store.add([preference(1)], now=NOW - timedelta(days=40))
    store.add([preference(2)], now=NOW - timedelta(days=2))
    assert store.purge(30, now=NOW) == 1
    assert [s.record.id for s in store.select()] == ["p-2"]


def test_select_and_stats_filter_by_kind_and_time(store: FeedbackStore) -> None:
    moderation = RECORD.validate_python({"kind": "moderation", "id": "m-1", "text": "you idiot",
                                         "labels": {"offensive": True, "hate": None},
                                         "source": "moderator:7"})
    intent = RECORD.validate_python({"kind": "intent", "id": "i-1", "text": "card lost",
                                     "intent": "lost_or_stolen_card"})
    store.add([preference(1, source="agent:1"), preference(2, source="agent:1")],
              now=NOW - timedelta(days=1))
    store.add([moderation, intent], now=NOW)
    assert [s.record.id for s in store.select(kind="preference")] == ["p-1", "p-2"]
    assert [s.record.id for s in store.select(since=NOW)] == ["i-1", "m-1"]
    assert [s.record.id for s in store.select(until=NOW)] == ["p-1", "p-2"]
    counts = {(c.kind, c.source, c.day): c.records for c in store.stats()}
    assert counts == {("preference", "agent:1", "2026-11-26"): 2,
                      ("moderation", "moderator:7", "2026-11-27"): 1,
                      ("intent", None, "2026-11-27"): 1}
    assert export_line(moderation) == {"text": "you idiot", "labels": {"offensive": 1},
                                       "id": "m-1", "source": "moderator:7"}


def test_concurrent_batches_are_all_stored(store: FeedbackStore) -> None:
    def write(worker: int) -> None:
        for batch in range(5):
            store.add([preference(worker * 100 + batch * 10 + k) for k in range(10)])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(store.select())) == 200


def test_a_batch_with_a_repeated_id_is_refused_whole(store: FeedbackStore) -> None:
    with pytest.raises(ValueError, match="twice"):
        store.add([preference(1), preference(1)])
    assert list(store.select()) == []


@pytest.mark.parametrize(("record", "field"), [
    ({"kind": "preference", "prompt": "q", "chosen": "a", "rejected": "a"}, "same text"),
    ({"kind": "preference", "chosen": "a", "rejected": "b"}, "exactly one"),
    ({"kind": "preference", "messages": [{"role": "user", "content": "q"},
                                         {"role": "assistant", "content": "a"}],
      "chosen": "a", "rejected": "b"}, "the last turn is the assistant's"),
    ({"kind": "preference", "prompt": "q", "chosen": "a", "rejected": "b", "margin": -1},
     "margin"),
    ({"kind": "moderation", "text": "t", "labels": {"violence": True}}, "unknown categories"),
    ({"kind": "moderation", "text": "t", "labels": {"hate": None}}, "every label is unknown"),
    ({"kind": "intent", "text": "", "intent": "x"}, "text"),
    ({"kind": "intent", "text": "t", "intent": "x", "id": "a/b"}, "id"),
    ({"kind": "rating", "text": "t"}, "kind"),
])
def test_bad_records_name_the_problem(record: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RECORD.validate_python(record)


def test_a_record_stored_under_the_laxer_rule_still_reads(store: FeedbackStore) -> None:
    """Histories ending with the assistant's turn were accepted before the rule: they read
    back (nothing stored is lost), while the same record is refused as new."""
    fields = {"kind": "preference", "id": "old-1", "chosen": "a", "rejected": "b",
              "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(ValidationError, match="last turn"):
        RECORD.validate_python(fields)
    old = PreferenceFeedback.model_construct(
        **{**fields, "messages": [ChatTurn(**m) for m in fields["messages"]]})
    store.add([old], now=NOW)
    got = store.get("old-1")
    assert got is not None and got.record.model_dump() == old.model_dump()
    assert [s.record.id for s in store.select()] == ["old-1"]


def test_source_class_bounds_what_metrics_see() -> None:
    assert source_class("agent:42") == "agent"
    assert source_class(None) == "unknown"
    assert source_class("x" * 100) == "x" * 32


def test_records_round_trip_as_json() -> None:
    record = RECORD.validate_python({"kind": "preference", "messages": [
        {"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b", "margin": 2})
    assert RECORD.validate_json(record.model_dump_json()) == record
    line = export_line(record)
    assert line["messages"] == [{"role": "user", "content": "hi"}] and line["margin"] == 2
    assert isinstance(record, type(RECORD.validate_python(json.loads(record.model_dump_json()))))
    assert not isinstance(record, ModerationFeedback)
