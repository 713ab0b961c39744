"""Followers: keep a SQLite, DuckDB or PostgreSQL copy of the source tables, exactly once.

:func:`follow` applies a change stream to a database, one transaction per batch holding
the rows and the positions after them, and starts where the database's positions say;
:func:`read_table` gives a table's current state as a ``pyarrow.Table``. The README's
"Followers" section documents the semantics and the type table of each target.

Modules: ``_apply`` (the apply loop), ``_read_table`` (folding a table in memory),
``_changes`` (collapsing a batch by key), ``_types`` (column kinds), ``_registry`` (key and
``connect.name`` lookups), ``_target`` (the target interface and its errors), ``targets``
(opening a URL or a connection), and one module per target: ``sqlite``, ``duckdb``,
``postgresql``. pyarrow is imported when a follower runs, so ``import changestream`` does
not need it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from changestream.follow._target import POSITIONS_TABLE, SchemaChangeError, TargetError

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

    from changestream._core import _OAuthToken
    from changestream.follow._apply import FollowCounters

__all__ = [
    "POSITIONS_TABLE",
    "SchemaChangeError",
    "TargetError",
    "follow",
    "read_table",
]


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError("followers need pyarrow: pip install 'changestream[follow]'") from e


def follow(
    topics: str | Sequence[str],
    target: Any,
    *,
    bootstrap_servers: str,
    schema_registry_url: str,
    group_id: str | None = None,
    until: Literal["end"] | datetime.datetime | None = None,
    tables: Mapping[str, str] | Callable[[str], str] | None = None,
    primary_keys: Mapping[str, Sequence[str]] | None = None,
    on_decode_error: Literal["raise", "skip", "dead_letter"] = "raise",
    format: Literal["auto", "debezium", "row"] = "auto",
    reader_schema: str | Mapping[str, Any] | None = None,
    kafka: Mapping[str, str | int | float | bool] | None = None,
    registry: Mapping[str, str] | None = None,
    registry_timeout: float = 30.0,
    max_buffer_bytes: int = 8 * 1024 * 1024,
    progress: bool = False,
    oauth_cb: Callable[[str], _OAuthToken] | None = None,
    batch_rows: int = 20_000,
    batch_wait: float = 0.5,
) -> FollowCounters:
    """Keep ``target`` equal to the source tables of ``topics``; blocks (until ``until``).

    ``target``: ``sqlite:///path``, ``duckdb:///path``, ``postgresql://…``, or an open
    ``sqlite3``, ``duckdb`` or psycopg 3 connection (left open). One table per source
    table (``tables`` maps source names to target names, as a dict or a function); columns
    and types from the value schema; the primary key from the key schema (``<topic>-key``)
    or ``primary_keys={source_table: [columns]}``. Each batch (at most ``batch_rows``
    changes of one table, handed over ``batch_wait`` seconds after its first) and the
    positions after it are one transaction in the target, and the stream starts at the
    positions stored there (``_changestream_positions``), so a crash repeats and skips
    nothing; with a ``group_id`` too (the group only shares the partitions out), each
    partition the target has no position for starts at the beginning. The other options
    are :class:`changestream.ChangeStream`'s; ``max_buffer_bytes`` defaults to 8 MiB
    here, since a database applies changes slower than Kafka hands them out and more
    read-ahead only takes memory.

    Returns :class:`FollowCounters`. Raises :class:`TargetError` when the database refuses
    a batch (locked, read-only, full) and :class:`SchemaChangeError` when a column changes
    type in a way the table cannot follow; nothing of that batch is applied.
    """
    _require_pyarrow()
    from changestream.follow._apply import run_follow

    return run_follow(
        topics,
        target,
        {
            "bootstrap_servers": bootstrap_servers,
            "schema_registry_url": schema_registry_url,
            "group_id": group_id,
            "until": until,
            "on_decode_error": on_decode_error,
            "format": format,
            "reader_schema": reader_schema,
            "kafka": kafka,
            "registry": registry,
            "registry_timeout": registry_timeout,
            "max_buffer_bytes": max_buffer_bytes,
            "progress": progress,
            "oauth_cb": oauth_cb,
        },
        tables=tables,
        primary_keys=primary_keys,
        batch_rows=batch_rows,
        batch_wait=batch_wait,
    )


def read_table(
    topic: str,
    *,
    bootstrap_servers: str,
    schema_registry_url: str,
    table: str | None = None,
    primary_key: Sequence[str] | None = None,
    on_decode_error: Literal["raise", "skip", "dead_letter"] = "raise",
    format: Literal["auto", "debezium", "row"] = "auto",
    reader_schema: str | Mapping[str, Any] | None = None,
    kafka: Mapping[str, str | int | float | bool] | None = None,
    registry: Mapping[str, str] | None = None,
    registry_timeout: float = 30.0,
    max_buffer_bytes: int = 8 * 1024 * 1024,
    progress: bool = False,
    oauth_cb: Callable[[str], _OAuthToken] | None = None,
) -> pa.Table:
    """The current state of ``topic``'s table, read from the earliest message to the end:
    one row per key, deletes removed, truncates honoured, unchanged TOASTed values taken
    from the key's earlier changes, as a ``pyarrow.Table`` sorted by the key
    (``.to_pandas()``, ``polars.from_arrow(...)``).

    A topic holding several tables needs ``table=``; the key is the key schema's fields
    (``<topic>-key``) or ``primary_key``. The other options are ChangeStream's;
    ``max_buffer_bytes`` defaults to 8 MiB (as for ``follow``): more read-ahead does not
    make the read faster, and the memory is better left to the table.
    """
    _require_pyarrow()
    from changestream.follow._read_table import run_read_table

    return run_read_table(
        topic,
        {
            "bootstrap_servers": bootstrap_servers,
            "schema_registry_url": schema_registry_url,
            "on_decode_error": on_decode_error,
            "format": format,
            "reader_schema": reader_schema,
            "kafka": kafka,
            "registry": registry,
            "registry_timeout": registry_timeout,
            "max_buffer_bytes": max_buffer_bytes,
            "progress": progress,
            "oauth_cb": oauth_cb,
        },
        table=table,
        primary_key=primary_key,
    )
