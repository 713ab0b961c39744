"""The DuckDB target: ``duckdb:///path.duckdb`` or an open ``duckdb`` connection
(``pip install changestream[duckdb]``).

Batches go in as Arrow: DuckDB reads the collapsed batch's buffers, deletes the batch's
keys and inserts its rows with one ``DELETE … USING`` and one ``INSERT … SELECT`` per table
(``ON CONFLICT DO UPDATE`` only for rows keeping unchanged TOASTed values), without a
Python loop over rows.
Types are DuckDB's own (``DECIMAL(38, s)``, ``TIMESTAMP WITH TIME ZONE``, ``INTERVAL``,
``UUID``); an unconstrained ``numeric`` is its exact text, nested values JSON text.
"""

from __future__ import annotations

import contextlib
import itertools
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from changestream.follow._target import POSITIONS_TABLE, Target, quote
from changestream.follow._types import to_text_column

try:
    import duckdb
except ImportError as e:  # pragma: no cover - exercised without the extra only
    raise ImportError("the DuckDB target needs duckdb: pip install 'changestream[duckdb]'") from e

TYPES = {
    "boolean": "BOOLEAN",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "numeric": "VARCHAR",
    "text": "VARCHAR",
    "json": "VARCHAR",
    "binary": "BLOB",
    "uuid": "UUID",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "interval": "INTERVAL",
    "duration": "INTERVAL",
    "nested": "VARCHAR",
}
"""The column type of each kind; ``decimal`` is ``DECIMAL(38, scale)``."""

# Widenings a stored column can follow without losing a value.
_WIDER = {
    ("BIGINT", "INTEGER"),
    ("DOUBLE", "FLOAT"),
    ("DOUBLE", "INTEGER"),
    *(("VARCHAR", t) for t in ("INTEGER", "BIGINT", "BOOLEAN", "UUID", "DATE", "TIME")),
}
# Kinds DuckDB does not take from Arrow as the column type: handed over as text, cast in SQL.
_AS_TEXT = {"uuid", "nested"}
_names = itertools.count()
# DuckDB checkpoints (rewrites the changed row groups into the file) whenever its WAL
# passes a threshold, 16 MB by default. A follower's changes land all over the table, so
# each checkpoint rewrites most of it; until one, the changed rows stay in memory. Replaying
# a follower's batches (benches/duckdb_replay.py) at 32 MB: 1M events' worth 2.5 s and
# 262-282 MB peak RSS, 4M 14.5-17.5 s and 296-298 MB; at 1 GB, 2.1 s and 305-321 MB, but 4M
# 11.3-12.9 s and 577-626 MB, growing with the changes until the WAL reaches 1 GB; at 16 MB,
# 1M 3.1 s.
_CHECKPOINT = {"checkpoint_threshold": "32MB"}


def connect(url: str) -> Any:
    """Open ``duckdb:///path`` (``duckdb://`` alone: in memory).

    With one DuckDB thread: the follower's statements are small, and the other core reads
    and decodes the next batch meanwhile (the same speed, some 60 MB less memory)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    return duckdb.connect(path or ":memory:", config={"threads": 1, **_CHECKPOINT})


def is_failure(error: BaseException) -> bool:
    """Whether ``error`` is the database failing (not a bug of ours)."""
    return isinstance(error, duckdb.Error)


class DuckdbTarget(Target):
    name = "duckdb"

    def __init__(self, connection: Any, *, owned: bool) -> None:
        self._db = connection
        self._owned = owned
        # Each table's declared types, for the casts of every batch: DuckDB answers
        # information_schema slowly. Forgotten on any statement that may change a table.
        self._declared: dict[str, dict[str, str]] = {}

    def sql_type(self, kind: str, field: pa.Field) -> str:
        if kind == "decimal":
            t = field.type
            if t.precision > 38:
                return "VARCHAR"
            return f"DECIMAL(38,{t.scale})"
        return TYPES[kind]

    def can_store(self, stored: str, new: str) -> bool:
        stored, new = stored.upper(), new.upper()
        if stored == new or (stored, new) in _WIDER:
            return True
        if stored.startswith("DECIMAL") and new in ("INTEGER", "BIGINT"):
            return stored == "DECIMAL(38,0)" or new == "INTEGER"
        return stored == "VARCHAR" and new.startswith("DECIMAL")

    def columns(self, table: str) -> dict[str, str] | None:
        rows = self._db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return {name: data_type for name, data_type in rows} or None

    def positions(self) -> dict[tuple[str, int], int]:
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (topic VARCHAR NOT NULL, "
            '"partition" INTEGER NOT NULL, next_offset BIGINT NOT NULL, '
            'PRIMARY KEY (topic, "partition"))'
        )
        rows = self._db.execute(
            f'SELECT topic, "partition", next_offset FROM {POSITIONS_TABLE}'
        ).fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def begin(self) -> None:
        self._db.begin()

    def commit(self) -> None:
        self._db.commit()

    def rollback(self) -> None:
        self._declared.clear()
        with contextlib.suppress(duckdb.TransactionException):  # none was open
            self._db.rollback()

    def execute(self, statement: str) -> None:
        self._declared.clear()
        self._db.execute(statement)

    def _declared_types(self, table: str) -> dict[str, str]:
        declared = self._declared.get(table)
        if declared is None:
            declared = self._declared[table] = self.columns(table) or {}
        return declared

    def truncate(self, table: str) -> None:
        self._db.execute(f"DELETE FROM {quote(table)}")

    def _register(self, rows: pa.Table, kinds: Mapping[str, str]) -> str:
        """Register ``rows`` as a view for one statement, text where DuckDB needs it."""
        for index, name in enumerate(rows.column_names):
            column = rows.column(index)
            kind = kinds[name]
            if kind in _AS_TEXT or (kind == "decimal" and column.type.precision > 38):
                rows = rows.set_column(index, name, to_text_column(column, kind))
            elif pa.types.is_dictionary(column.type):
                rows = rows.set_column(index, name, column.cast(column.type.value_type))
        view = f"__changestream_rows_{next(_names)}"
        self._db.register(view, rows)
        return view

    def delete(self, table: str, keys: pa.Table, kinds: Mapping[str, str]) -> None:
        view = self._register(keys, kinds)
        try:
            stored = self._declared_types(table)
            where = " AND ".join(
                f"{quote(table)}.{quote(c)} = CAST(k.{quote(c)} AS {stored[c]})"
                for c in keys.column_names
            )
            self._db.execute(f"DELETE FROM {quote(table)} USING {view} AS k WHERE {where}")
        finally:
            self._db.unregister(view)

    def upsert(
        self,
        table: str,
        rows: pa.Table,
        key: list[str],
        keep: frozenset[str],
        kinds: Mapping[str, str],
    ) -> None:
        stored = self._declared_types(table)
        inserted = [c for c in rows.column_names if c not in keep or c in key]
        view = self._register(rows.select(inserted), kinds)
        try:
            selected = ", ".join(f"CAST({quote(c)} AS {stored[c]})" for c in inserted)
            into = f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in inserted)})"
            if stored.keys() <= set(inserted):
                # Every column replaced: deleting the keys and inserting the rows is the
                # same, and an order of magnitude faster than DuckDB's ON CONFLICT DO UPDATE.
                where = " AND ".join(
                    f"{quote(table)}.{quote(c)} = CAST(r.{quote(c)} AS {stored[c]})" for c in key
                )
                self._db.execute(f"DELETE FROM {quote(table)} USING {view} AS r WHERE {where}")
                self._db.execute(f"{into} SELECT {selected} FROM {view}")
                return
            updates = ", ".join(
                f"{quote(c)} = excluded.{quote(c)}" for c in inserted if c not in key
            )
            conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            self._db.execute(
                f"{into} SELECT {selected} FROM {view} "
                f"ON CONFLICT ({', '.join(quote(c) for c in key)}) {conflict}"
            )
        finally:
            self._db.unregister(view)

    def save_positions(self, positions: Mapping[tuple[str, int], int]) -> None:
        if not positions:
            return
        # One statement: DuckDB's executemany runs one statement per row.
        rows = ", ".join("(?, ?, ?)" for _ in positions)
        values = [v for (topic, partition), at in positions.items() for v in (topic, partition, at)]
        self._db.execute(
            f'INSERT INTO {POSITIONS_TABLE} (topic, "partition", next_offset) VALUES {rows} '
            'ON CONFLICT (topic, "partition") DO UPDATE SET next_offset = excluded.next_offset',
            values,
        )

    def is_failure(self, error: BaseException) -> bool:
        return is_failure(error)

    def close(self) -> None:
        if self._owned:
            self._db.close()
