"""The PostgreSQL target: ``postgresql://…`` or an open psycopg 3 connection
(``pip install changestream[postgresql]``).

A collapsed batch goes in with ``COPY … FROM STDIN (FORMAT csv)`` into a temporary table
(the CSV written by pyarrow from the Arrow columns, without a Python loop over rows for
numbers, text and times), then one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` and one
``DELETE … USING`` per table. Types are PostgreSQL's own: ``numeric`` (exact, any scale),
``timestamp with time zone`` for instants, ``interval``, ``uuid``, ``jsonb`` for Debezium's
``Json`` and nested values.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]

from changestream.follow._target import POSITIONS_TABLE, Target, quote
from changestream.follow._types import to_text_column

try:
    import psycopg
except ImportError as e:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "the PostgreSQL target needs psycopg 3: pip install 'changestream[postgresql]'"
    ) from e

TYPES = {
    "boolean": "boolean",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "decimal": "numeric",
    "numeric": "numeric",
    "text": "text",
    "json": "jsonb",
    "binary": "bytea",
    "uuid": "uuid",
    "date": "date",
    "time": "time without time zone",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "interval": "interval",
    "duration": "interval",
    "nested": "jsonb",
}
"""The column type of each kind (``format_type``'s spelling, so stored types compare)."""

_WIDER = {
    ("bigint", "integer"),
    ("numeric", "integer"),
    ("numeric", "bigint"),
    ("double precision", "real"),
    ("double precision", "integer"),
    *(("text", t) for t in ("integer", "bigint", "numeric", "boolean", "uuid", "date", "jsonb")),
}
# Kinds pyarrow's CSV writer cannot write as PostgreSQL reads them.
_AS_TEXT = {"decimal", "uuid", "interval", "duration", "nested", "timestamp", "timestamptz"}
_names = itertools.count()


def connect(url: str) -> Any:
    return psycopg.connect(url)


def is_failure(error: BaseException) -> bool:
    """Whether ``error`` is the database failing (not a bug of ours)."""
    return isinstance(error, psycopg.Error)


def _csv_column(column: pa.ChunkedArray, kind: str) -> pa.Array | pa.ChunkedArray:
    if kind == "binary":
        return pa.array(
            [None if b is None else "\\x" + b.hex() for b in column.to_pylist()], pa.string()
        )
    if kind in _AS_TEXT:
        return to_text_column(column, kind)
    if kind == "time":
        return pc.cast(column, pa.string())
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


class PostgresqlTarget(Target):
    name = "postgresql"

    def __init__(self, connection: Any, *, owned: bool) -> None:
        self._db = connection
        self._owned = owned

    def sql_type(self, kind: str, field: pa.Field) -> str:
        return TYPES[kind]

    def can_store(self, stored: str, new: str) -> bool:
        return stored == new or (stored, new) in _WIDER

    def columns(self, table: str) -> dict[str, str] | None:
        rows = self._db.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            [quote(table)],
        ).fetchall()
        return {name: data_type for name, data_type in rows} or None

    def positions(self) -> dict[tuple[str, int], int]:
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (topic text NOT NULL, "
            '"partition" integer NOT NULL, next_offset bigint NOT NULL, '
            'PRIMARY KEY (topic, "partition"))'
        )
        rows = self._db.execute(
            f'SELECT topic, "partition", next_offset FROM {POSITIONS_TABLE}'
        ).fetchall()
        self._db.commit()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def begin(self) -> None:
        if self._db.autocommit:
            self._db.execute("BEGIN")

    def commit(self) -> None:
        if self._db.autocommit:
            self._db.execute("COMMIT")
        else:
            self._db.commit()

    def rollback(self) -> None:
        if self._db.autocommit:
            if self._db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self._db.execute("ROLLBACK")
        else:
            self._db.rollback()

    def execute(self, statement: str) -> None:
        self._db.execute(statement)

    def truncate(self, table: str) -> None:
        self._db.execute(f"TRUNCATE {quote(table)}")

    def _stage(self, table: str, rows: pa.Table, kinds: Mapping[str, str]) -> str:
        """COPY ``rows`` into a temporary table shaped like ``table``'s columns of the same
        names, dropped at commit; returns its name."""
        stage = f"_changestream_stage_{next(_names)}"
        names = rows.column_names
        self._db.execute(
            f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS "
            f"SELECT {', '.join(quote(c) for c in names)} FROM {quote(table)} WITH NO DATA"
        )
        text = pa.table(
            [_csv_column(rows.column(c), kinds[c]) for c in names],
            names=[f"c{i}" for i in range(len(names))],
        )
        buffer = io.BytesIO()
        pacsv.write_csv(
            text,
            buffer,
            pacsv.WriteOptions(include_header=False, quoting_style="needed"),
        )
        columns = ", ".join(quote(c) for c in names)
        with self._db.cursor().copy(f"COPY {stage} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buffer.getbuffer())
        return stage

    def delete(self, table: str, keys: pa.Table, kinds: Mapping[str, str]) -> None:
        stage = self._stage(table, keys, kinds)
        # Join by the key's index: a table the planner has no statistics for yet (one
        # this run created) otherwise gets a hash join that reads the whole table per batch.
        # SET LOCAL ends with the batch's transaction; its other statements join nothing.
        self._db.execute("SET LOCAL enable_hashjoin = off")
        self._db.execute("SET LOCAL enable_mergejoin = off")
        where = " AND ".join(f"t.{quote(c)} = k.{quote(c)}" for c in keys.column_names)
        self._db.execute(f"DELETE FROM {quote(table)} AS t USING {stage} AS k WHERE {where}")

    def upsert(
        self,
        table: str,
        rows: pa.Table,
        key: list[str],
        keep: frozenset[str],
        kinds: Mapping[str, str],
    ) -> None:
        inserted = [c for c in rows.column_names if c not in keep or c in key]
        stage = self._stage(table, rows.select(inserted), kinds)
        columns = ", ".join(quote(c) for c in inserted)
        updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in inserted if c not in key)
        conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        self._db.execute(
            f"INSERT INTO {quote(table)} ({columns}) SELECT {columns} FROM {stage} "
            f"ON CONFLICT ({', '.join(quote(c) for c in key)}) {conflict}"
        )

    def save_positions(self, positions: Mapping[tuple[str, int], int]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(
                f'INSERT INTO {POSITIONS_TABLE} (topic, "partition", next_offset) '
                'VALUES (%s, %s, %s) ON CONFLICT (topic, "partition") '
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(topic, partition, offset) for (topic, partition), offset in positions.items()],
            )

    def is_failure(self, error: BaseException) -> bool:
        return is_failure(error)

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, psycopg.errors.LockNotAvailable | psycopg.OperationalError)

    def close(self) -> None:
        if self._owned:
            self._db.close()
