"""The durable feedback store: one interface, two back-ends.

- SQLite (the embedded default): one file, WAL journal, synchronous=FULL, so a committed
  transaction survives the process being killed and the machine losing power; secure_delete,
  so an erased record's text is overwritten rather than left in free pages.
- PostgreSQL (several replicas): a DSN; a commit returns once the server has made it durable
  (synchronous_commit, the server's default).

`add` stores a batch in one transaction and returns only after the commit: the service
acknowledges nothing that is not on disk. Ids are the client's and idempotent: a record whose
id is already stored is reported as a duplicate and the stored one is kept.

Both back-ends share the SQL below; only the connection, the placeholder and the day
expression differ. Times are UTC seconds since the epoch (a float) in both.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from feedback.records import STORED, Kind, Record, Stored

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    model_version TEXT,
    request_id TEXT,
    source TEXT,
    record TEXT NOT NULL
)"""
INDEXES = ("CREATE INDEX IF NOT EXISTS feedback_kind_time ON feedback (kind, received_at)",
           "CREATE INDEX IF NOT EXISTS feedback_time ON feedback (received_at)")
COLUMNS = "id, kind, received_at, model_version, request_id, source, record"


class StoreError(RuntimeError):
    """The store cannot be reached or refused a write; nothing was acknowledged."""


@dataclass(frozen=True)
class Added:
    stored: list[str]  # ids newly committed
    duplicates: list[str]  # ids that were already stored (the stored record was kept)


@dataclass(frozen=True)
class Count:
    kind: str
    source: str | None
    model_version: str | None
    day: str  # YYYY-MM-DD, UTC
    records: int


def source_class(source: str | None) -> str:
    """'agent:42' -> 'agent': what metrics and stats group by (bounded cardinality)."""
    return (source or "unknown").split(":", 1)[0][:32] or "unknown"


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("times must carry a time zone (UTC)")
    return moment.timestamp()


class FeedbackStore(ABC):
    """What the service and the CLI use; see the module docstring for the guarantees."""

    placeholder = "?"
    day_expression = ""
    insert_ignore = "INSERT INTO feedback ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING"

    @abstractmethod
    def _connection(self) -> AbstractContextManager[Any]:
        """A connection inside one transaction: committed on exit, rolled back on error."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the records are, for logs and errors (never a password)."""

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cursor = conn.execute(self._sql(sql), params)
            return list(cursor.fetchall()) if cursor.description else []

    def create(self) -> None:
        with self._connection() as conn:
            for statement in (SCHEMA, *INDEXES):
                conn.execute(statement)

    def add(self, records: Sequence[Record], now: datetime | None = None) -> Added:
        """Store a batch in one transaction; returns after the commit."""
        moment = _epoch(now or datetime.now(UTC))
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise ValueError("the same id appears twice in one batch")
        insert = self._sql(self.insert_ignore.format(columns=COLUMNS,
                                                     values=", ".join("?" * 7)))
        stored = []
        with self._connection() as conn:
            for record in records:
                cursor = conn.execute(insert, (
                    record.id, record.kind, moment, record.model_version, record.request_id,
                    record.source, record.model_dump_json(exclude_none=True)))
                if cursor.rowcount == 1:
                    stored.append(record.id)
        fresh = set(stored)
        return Added(stored, [i for i in ids if i not in fresh])

    def get(self, record_id: str) -> Stored | None:
        rows = self._execute("SELECT record, received_at FROM feedback WHERE id = ?",
                             (record_id,))
        return _stored(*rows[0]) if rows else None

    def delete(self, record_id: str) -> bool:
        with self._connection() as conn:
            cursor = conn.execute(self._sql("DELETE FROM feedback WHERE id = ?"), (record_id,))
            return bool(cursor.rowcount == 1)

    def purge(self, older_than_days: float, now: datetime | None = None) -> int:
        """Erase every record received more than `older_than_days` ago; how many."""
        cutoff = _epoch((now or datetime.now(UTC)) - timedelta(days=older_than_days))
        with self._connection() as conn:
            cursor = conn.execute(self._sql("DELETE FROM feedback WHERE received_at < ?"),
                                  (cutoff,))
            return int(cursor.rowcount)

    def select(self, kind: Kind | None = None, since: datetime | None = None,
               until: datetime | None = None) -> Iterator[Stored]:
        """Records in the order received (then by id), optionally of one kind and in
        [since, until)."""
        where, params = self._filters(kind, since, until)
        rows = self._execute(f"SELECT record, received_at FROM feedback {where} "
                             "ORDER BY received_at, id", params)
        for record, received_at in rows:
            yield _stored(record, received_at)

    def stats(self, kind: Kind | None = None, since: datetime | None = None,
              until: datetime | None = None) -> list[Count]:
        """Counts by kind, source, model version and day (UTC)."""
        where, params = self._filters(kind, since, until)
        day = self.day_expression
        rows = self._execute(
            f"SELECT kind, source, model_version, {day} AS day, COUNT(*) FROM feedback {where} "
            f"GROUP BY kind, source, model_version, {day} ORDER BY day, kind, source, "
            "model_version", params)
        return [Count(k, s, v, str(d), int(n)) for k, s, v, d, n in rows]

    @staticmethod
    def _filters(kind: Kind | None, since: datetime | None, until: datetime | None
                 ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for clause, value in (("kind = ?", kind),
                              ("received_at >= ?", since and _epoch(since)),
                              ("received_at < ?", until and _epoch(until))):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _stored(record: str, received_at: float) -> Stored:
    return Stored.model_validate({"record": json.loads(record),
                                  "received_at": datetime.fromtimestamp(received_at, UTC)},
                                 context=STORED)


class SqliteStore(FeedbackStore):
    day_expression = "date(received_at, 'unixepoch')"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, one writer at a time (SQLite allows no more); callers run store
        # calls in threads, so it is shared across them under a lock.
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
        self._lock = threading.Lock()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON",
                       "busy_timeout=30000"):
            self._conn.execute(f"PRAGMA {pragma}")
        self.create()

    def _connection(self) -> AbstractContextManager[Any]:
        return _SqliteTransaction(self._conn, self._lock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def describe(self) -> str:
        return f"SQLite at {self.path}"


class _SqliteTransaction:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.lock.release()
            raise StoreError(f"feedback store: {exc}") from exc
        return self.conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is None:
                self.conn.execute("COMMIT")  # durable here: WAL + synchronous=FULL
            else:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise StoreError(f"feedback store: {error}") from error
        finally:
            self.lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"feedback store: {exc}") from exc


class PostgresStore(FeedbackStore):
    placeholder = "%s"
    day_expression = "to_char(to_timestamp(received_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._errors = (psycopg.Error,)
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        self._where = f"PostgreSQL {info.get('host', 'localhost')}:{info.get('port', 5432)}/" \
                      f"{info.get('dbname', '')}"
        try:
            self.pool = ConnectionPool(dsn, min_size=1, max_size=max_connections, open=True,
                                       timeout=10, kwargs={"connect_timeout": 5})
            self.pool.wait(timeout=10)
        except Exception as exc:  # psycopg_pool.PoolTimeout or psycopg.Error
            raise StoreError(f"feedback store: cannot reach {self._where}: {exc}") from exc
        self.create()

    def _connection(self) -> AbstractContextManager[Any]:
        return _PostgresTransaction(self)

    def close(self) -> None:
        self.pool.close()

    def describe(self) -> str:
        return self._where


class _PostgresTransaction:
    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.context: Any = None

    def __enter__(self) -> Any:
        try:
            self.context = self.store.pool.connection()  # commits on a clean exit
            return self.context.__enter__()
        except Exception as exc:
            raise StoreError(f"feedback store: {self.store.describe()}: {exc}") from exc

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            self.context.__exit__(kind, exc, tb)
        except self.store._errors as error:
            raise StoreError(f"feedback store: {self.store.describe()}: {error}") from error
        if isinstance(exc, self.store._errors):
            raise StoreError(f"feedback store: {self.store.describe()}: {exc}") from exc


def open_store(path: str | Path | None = None, dsn: str | None = None) -> FeedbackStore:
    """PostgreSQL when a DSN is given, else SQLite at `path`."""
    if dsn:
        return PostgresStore(dsn)
    if not path:
        raise ValueError("give a SQLite path or a PostgreSQL DSN")
    return SqliteStore(Path(path))


def open_configured(path: str | None = None, dsn: str | None = None) -> FeedbackStore:
    """The store the service uses: a DSN or path given here, else ALIGNSERVE_FEEDBACK_DSN,
    else ALIGNSERVE_FEEDBACK_DB, else feedback.sqlite3 in the working directory."""
    dsn = dsn or os.environ.get("ALIGNSERVE_FEEDBACK_DSN") or None
    path = path or os.environ.get("ALIGNSERVE_FEEDBACK_DB") or "feedback.sqlite3"
    if not dsn and not Path(path).exists():
        raise FileNotFoundError(f"no feedback store at {path} (give --feedback-db or "
                                "--feedback-dsn, or set ALIGNSERVE_FEEDBACK_DB)")
    return open_store(path, dsn)
