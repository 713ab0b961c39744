"""The SQLite target (stdlib ``sqlite3``): ``sqlite:///relative/path.db``,
``sqlite:////absolute/path.db`` or an open ``sqlite3.Connection``.

SQLite has five storage classes, so exact values without one are text: decimals as their
digits (``"1.50"``), dates, times and timestamps in ISO 8601 (``Z`` for UTC), intervals as
ISO 8601 durations, UUIDs canonical, nested values as JSON. Each batch is one
``BEGIN IMMEDIATE`` transaction: a database another writer holds is refused at once
(after the connection's busy timeout), before anything is written.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from changestream.follow._target import POSITIONS_TABLE, Target, quote
from changestream.follow._types import to_text_column

TYPES = {
    "boolean": "INTEGER",
    "int32": "INTEGER",
    "int64": "INTEGER",
    "float32": "REAL",
    "float64": "REAL",
    "decimal": "TEXT",
    "numeric": "TEXT",
    "text": "TEXT",
    "json": "TEXT",
    "binary": "BLOB",
    "uuid": "TEXT",
    "date": "TEXT",
    "time": "TEXT",
    "timestamp": "TEXT",
    "timestamptz": "TEXT",
    "interval": "TEXT",
    "duration": "TEXT",
    "nested": "TEXT",
}
"""The column type of each kind (see ``_types.KINDS``)."""

# For a database the follower opens itself (a connection passed in is left as it is):
# write-ahead logging, whose commit writes the changed pages once and does not wait for
# the disk (synchronous=NORMAL: a power cut may undo the last transactions, rows and
# positions together, so the next run applies them again; an application crash loses
# nothing), and a 64 MB page cache, as a follower's changes land all over its tables.
# Together 1.3x faster. The log is copied into the database (a checkpoint, which waits for
# the disk twice) once it holds 50,000 pages (about 200 MB), not at SQLite's 1,000: a batch
# that changes rows all over a table writes most of its pages, so the default checkpointed
# at every commit (1.4x faster; the log file is deleted when the follower closes).
_OWNED_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "cache_size=-65536",
    "wal_autocheckpoint=50000",
)

# A TEXT column keeps any value exactly, as text; no other column takes another type.
_TEXT_TAKES = {"INTEGER", "REAL", "TEXT"}


def connect(url: str) -> sqlite3.Connection:
    """Open ``sqlite:///path`` (``?timeout=<seconds>``: how long to wait for a lock)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    query = urllib.parse.parse_qs(parts.query)
    timeout = float(query.get("timeout", ["5"])[0])
    return sqlite3.connect(path or ":memory:", timeout=timeout, isolation_level=None)


def python_column(column: pa.ChunkedArray, kind: str) -> list[Any]:
    """The values sqlite3 binds for one column."""
    if kind == "boolean":
        column = pc.cast(column, pa.int8())
    elif kind not in ("int32", "int64", "float32", "float64", "binary", "text", "json", "numeric"):
        column = to_text_column(column, kind)
    elif pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values: list[Any] = column.to_pylist()
    return values


def is_failure(error: BaseException) -> bool:
    """Whether ``error`` is the database failing (not a bug of ours)."""
    return isinstance(error, sqlite3.Error)


class SqliteTarget(Target):
    name = "sqlite"

    def __init__(self, connection: sqlite3.Connection, *, owned: bool) -> None:
        self._db = connection
        self._owned = owned
        self._isolation_level = connection.isolation_level
        # Transactions are begun and committed here, not by the module's implicit ones.
        connection.isolation_level = None

    def sql_type(self, kind: str, field: pa.Field) -> str:
        return TYPES[kind]

    def can_store(self, stored: str, new: str) -> bool:
        return stored.upper() == new.upper() or (stored.upper() == "TEXT" and new in _TEXT_TAKES)

    def columns(self, table: str) -> dict[str, str] | None:
        rows = self._db.execute(f"PRAGMA table_info({quote(table)})").fetchall()
        return {row[1]: row[2] for row in rows} or None

    def positions(self) -> dict[tuple[str, int], int]:
        if self._owned:
            # Here, not in connect(): the follower's first statement, where a locked file
            # is already a TargetError that leaves the positions where they were.
            for pragma in _OWNED_PRAGMAS:
                self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (topic TEXT NOT NULL, "
            '"partition" INTEGER NOT NULL, next_offset INTEGER NOT NULL, '
            'PRIMARY KEY (topic, "partition"))'
        )
        rows = self._db.execute(f'SELECT topic, "partition", next_offset FROM {POSITIONS_TABLE}')
        return {(topic, partition): offset for topic, partition, offset in rows}

    def begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def execute(self, statement: str) -> None:
        self._db.execute(statement)

    def truncate(self, table: str) -> None:
        self._db.execute(f"DELETE FROM {quote(table)}")

    def delete(self, table: str, keys: pa.Table, kinds: Mapping[str, str]) -> None:
        names = keys.column_names
        where = " AND ".join(f"{quote(c)} = ?" for c in names)
        values = [python_column(keys.column(c), kinds[c]) for c in names]
        self._db.executemany(f"DELETE FROM {quote(table)} WHERE {where}", zip(*values, strict=True))

    def upsert(
        self,
        table: str,
        rows: pa.Table,
        key: list[str],
        keep: frozenset[str],
        kinds: Mapping[str, str],
    ) -> None:
        names = rows.column_names
        inserted = [c for c in names if c not in keep or c in key]
        updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in inserted if c not in key)
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        statement = (
            f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in inserted)}) "
            f"VALUES ({', '.join('?' for _ in inserted)}) "
            f"ON CONFLICT ({', '.join(quote(c) for c in key)}) {conflict}"
        )
        values = [python_column(rows.column(c), kinds[c]) for c in inserted]
        self._db.executemany(statement, zip(*values, strict=True))

    def save_positions(self, positions: Mapping[tuple[str, int], int]) -> None:
        self._db.executemany(
            f'INSERT INTO {POSITIONS_TABLE} (topic, "partition", next_offset) VALUES (?, ?, ?) '
            'ON CONFLICT (topic, "partition") DO UPDATE SET next_offset = excluded.next_offset',
            [(topic, partition, offset) for (topic, partition), offset in positions.items()],
        )

    def is_failure(self, error: BaseException) -> bool:
        return is_failure(error)

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    def close(self) -> None:
        if self._owned:
            self._db.close()
        else:
            self._db.isolation_level = self._isolation_level
