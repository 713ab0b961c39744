"""The apply loop: read batches, collapse them, write rows and positions in one transaction.

Each ``ChangeBatch`` (one table, one value schema) becomes one target transaction: the
table created or widened (``ADD COLUMN``) as the schema asks, then the truncate, deletes and
upserts the batch collapses to, then the positions after it. The stream starts where the
target's positions say, so a crash at any moment resumes exactly after the last committed
batch: nothing is applied twice, nothing skipped. While the target applies one batch, a
reader thread fetches and decodes the next (one batch ahead, no more); each batch travels
with the stream's positions taken when it was handed over, before the next was asked for,
so the positions a transaction stores never run ahead of its rows.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from changestream._core import ChangeStream, ChangeStreamError, ConfigError
from changestream.follow._changes import Collapsed, collapse, last_change_rows, row_columns
from changestream.follow._registry import Registry
from changestream.follow._target import SchemaChangeError, Target, TargetError
from changestream.follow._types import kind_of
from changestream.follow.targets import open_target

TableNames = Mapping[str, str] | Callable[[str], str] | None


@dataclass
class FollowCounters:
    """What :func:`follow` did."""

    changes: int = 0
    """Changes read and applied (before collapsing by key)."""
    transactions: int = 0
    """Target transactions committed (one per batch)."""
    upserted: int = 0
    """Rows inserted or replaced (after collapsing)."""
    deleted: int = 0
    """Delete statements' rows (after collapsing; a key not stored deletes nothing)."""
    truncated: int = 0
    tables_created: int = 0
    columns_added: int = 0


@dataclass
class _Batch:
    """A ``ChangeBatch`` as the reader thread hands it over."""

    records: pa.RecordBatch
    table: str | None
    schema_id: int | None
    finished: dict[tuple[str, int], int]
    """``stream.positions()`` when the batch was handed over."""


def _read_ahead(
    stream: ChangeStream, batch_rows: int, batch_wait: float
) -> Generator[_Batch, None, None]:
    """``stream.batches()``, fetched and decoded by a thread one batch ahead of the caller,
    so Kafka, decoding and the target's work overlap (``batches()`` releases the GIL while it
    waits, and so do the database drivers). An error of the reader is raised here."""
    handed: queue.Queue[_Batch | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: _Batch | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in stream.batches(max_rows=batch_rows, max_wait=batch_wait):
                item = _Batch(
                    batch.to_pyarrow(), batch.table, batch.schema_id, dict(stream.positions())
                )
                if not put(item):
                    return
            put(None)
        except BaseException as error:  # handed to the caller, raised there
            put(error)

    reader = threading.Thread(target=read, name="changestream-follow-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = handed.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # A reader still waiting for changes (the caller stopped early) hands over a batch
        # within batch_wait of its first change, then sees the stop; one waiting for changes
        # that never come stays behind, a daemon thread, until the stream's close ends it.
        reader.join(timeout=batch_wait + 1.0)


@dataclass
class _Table:
    name: str
    key: list[str]
    columns: dict[str, str]
    """The target's ``{column: declared type}``."""


class _Follower:
    def __init__(
        self,
        target: Target,
        registry: Registry,
        tables: TableNames,
        primary_keys: Mapping[str, Sequence[str]],
    ) -> None:
        self.target = target
        self.registry = registry
        self.tables = tables
        self.primary_keys = primary_keys
        self.known: dict[str, _Table] = {}
        self.saved: dict[tuple[str, int], int] = {}
        self.counters = FollowCounters()

    def table_name(self, source: str) -> str:
        if self.tables is None:
            return source
        if callable(self.tables):
            return self.tables(source)
        return self.tables.get(source, source)

    def apply(self, batch: _Batch, finished: Mapping[tuple[str, int], int]) -> None:
        records = pa.Table.from_batches([batch.records])
        if records.num_rows == 0:
            return
        first = (
            records.column("_topic")[0].as_py(),
            records.column("_partition")[0].as_py(),
            records.column("_offset")[0].as_py(),
        )
        where = f"topic {first[0]!r} partition {first[1]} offset {first[2]}"
        source = batch.table or first[0].rsplit(".", 1)[-1]
        name = self.table_name(source)
        key = list(self.primary_keys.get(source, ()))
        if not key:
            found = self.registry.key_columns(first[0])
            if found is None:
                raise _located(
                    ConfigError(
                        f"{where}: table {source!r} has no key schema (subject "
                        f"'{first[0]}-key'), so its rows have no primary key to follow; "
                        "pass primary_keys={table: [columns]}"
                    ),
                    first,
                )
            key = found
        columns = row_columns(records.schema)
        if not columns:
            # Tombstones read before any value of their topic: the stream knows no row
            # schema yet, so they carry no key columns.
            self._skip_tombstones(records, first, where, finished)
            return
        missing = [k for k in key if k not in columns]
        if missing:
            raise _located(
                ConfigError(f"{where}: the key columns {missing} are not columns of {source!r}"),
                first,
            )
        connect_names = self.registry.connect_names(batch.schema_id)
        kinds = {c: kind_of(records.schema.field(c), connect_names.get(c)) for c in columns}
        wanted = {c: self.target.sql_type(kinds[c], records.schema.field(c)) for c in columns}
        table = self.known.get(name)
        if table is None:
            stored = self.target.columns(name)
            if stored is not None:
                table = self.known[name] = _Table(name, key, stored)
        added: dict[str, str] = {}
        if table is not None:
            for column, sql_type in wanted.items():
                if column not in table.columns:
                    added[column] = sql_type
                elif not self.target.can_store(table.columns[column], sql_type):
                    raise _located(
                        SchemaChangeError(
                            f"{where}: column {column!r} of table {name!r} is "
                            f"{table.columns[column]} in the {self.target.name} target, and "
                            f"the new schema makes it {sql_type}, which it cannot store; "
                            "nothing of this batch was applied"
                        ),
                        first,
                    )
        collapsed = collapse(records, key)
        positions = {**finished, **_batch_positions(records, finished)}
        advanced = {p: o for p, o in positions.items() if o > self.saved.get(p, -1)}

        target = self.target
        try:
            target.begin()
            if table is None:
                target.create_table(name, wanted, key)
                self.counters.tables_created += 1
            for column, sql_type in added.items():
                target.add_column(name, column, sql_type)
                self.counters.columns_added += 1
            stored_columns = dict(wanted) if table is None else {**table.columns, **added}
            self._write(name, key, collapsed, kinds, stored_columns)
            target.save_positions(advanced)
            target.commit()
        except BaseException as error:
            target.rollback()
            self.known.pop(name, None)
            if target.is_failure(error):
                raise _target_error(target, error, f"{where}: table {name!r}", first) from None
            raise
        self.known[name] = _Table(name, key, stored_columns)
        self.saved.update(advanced)
        counters = self.counters
        counters.changes += collapsed.changes
        counters.transactions += 1
        counters.truncated += int(collapsed.truncate)
        counters.deleted += collapsed.deletes.num_rows
        counters.upserted += sum(u.rows.num_rows for u in collapsed.upserts)

    def _skip_tombstones(
        self,
        records: pa.Table,
        first: tuple[str, int, int],
        where: str,
        finished: Mapping[tuple[str, int], int],
    ) -> None:
        """A Debezium tombstone repeats the delete before it (already applied): it only
        moves the positions. A flat-row tombstone is the delete itself, and without its key
        columns it cannot be applied: an error, never a silent drop."""
        if not self.registry.is_envelope(first[0]):
            raise _located(
                ConfigError(
                    f"{where}: a tombstone (delete) of a flat-row topic read before any row "
                    "of it, so its key columns are unknown; it cannot be applied"
                ),
                first,
            )
        self.save_final({**finished, **_batch_positions(records, finished)})

    def _write(
        self,
        name: str,
        key: list[str],
        collapsed: Collapsed,
        kinds: dict[str, str],
        stored: Mapping[str, str],
    ) -> None:
        if collapsed.truncate:
            self.target.truncate(name)
        if collapsed.deletes.num_rows:
            self.target.delete(name, collapsed.deletes, kinds)
        for upserts in collapsed.upserts:
            rows = upserts.rows
            if rows.num_rows == 0:
                continue
            # A column the schema dropped stays in the table, NULL from then on.
            all_kinds = dict(kinds)
            for column in stored:
                if column not in rows.column_names:
                    rows = rows.append_column(column, pa.nulls(rows.num_rows, pa.string()))
                    all_kinds[column] = "text"
            self.target.upsert(name, rows, key, upserts.keep, all_kinds)

    def save_final(self, finished: Mapping[tuple[str, int], int]) -> None:
        """Store positions the stream passed without a batch (suppressed tombstones,
        transaction markers at the end) in a transaction of their own."""
        advanced = {p: o for p, o in finished.items() if o > self.saved.get(p, -1)}
        if not advanced:
            return
        try:
            self.target.begin()
            self.target.save_positions(advanced)
            self.target.commit()
        except BaseException as error:
            self.target.rollback()
            if self.target.is_failure(error):
                raise _target_error(self.target, error, "saving positions", None) from None
            raise
        self.saved.update(advanced)


def _partitions(
    topics: str | Sequence[str], stream_options: dict[str, Any]
) -> list[tuple[str, int]]:
    """Every partition of ``topics`` now: a group-less stream from the end to the end."""
    listing = {k: v for k, v in stream_options.items() if k not in ("group_id", "until")}
    listing["progress"] = False
    with ChangeStream(topics, start="latest", until="end", **listing) as stream:
        for _ in stream:
            pass
        return list(stream.positions())


def _batch_positions(
    records: pa.Table, finished: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """The position after the batch in each of its partitions (never behind ``finished``)."""
    positions: dict[tuple[str, int], int] = {}
    located = records.select(["_topic", "_partition", "_offset"])
    by_offset = located.take(pc.sort_indices(located, sort_keys=[("_offset", "ascending")]))
    # Sorted by partition next (a stable sort), each partition's last row has its highest offset.
    for row in by_offset.take(last_change_rows(by_offset, ["_topic", "_partition"])).to_pylist():
        at = (str(row["_topic"]), int(row["_partition"]))
        positions[at] = max(finished.get(at, 0), int(row["_offset"]) + 1)
    return positions


def _located(error: ChangeStreamError, at: tuple[str, int, int] | None) -> ChangeStreamError:
    if at is not None:
        error.topic, error.partition, error.offset = at
    return error


def _target_error(
    target: Target, error: BaseException, what: str, at: tuple[str, int, int] | None
) -> TargetError:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    result = TargetError(
        f"{what}: the {target.name} target failed ({type(error).__name__}: {message}); "
        "nothing was written and the stored positions did not move"
    )
    result.retriable = target.is_transient(error)
    _located(result, at)
    return result


def run_follow(
    topics: str | Sequence[str],
    target: Any,
    stream_options: dict[str, Any],
    *,
    tables: TableNames,
    primary_keys: Mapping[str, Sequence[str]] | None,
    batch_rows: int,
    batch_wait: float,
) -> FollowCounters:
    """:func:`changestream.follow.follow`: ``stream_options`` are ChangeStream's."""
    schema_registry_url = stream_options["schema_registry_url"]
    registry = stream_options.get("registry")
    registry_timeout = stream_options.get("registry_timeout", 30.0)
    opened = open_target(target)
    try:
        follower = _Follower(
            opened,
            Registry(schema_registry_url, registry, registry_timeout),
            tables,
            primary_keys or {},
        )
        try:
            stored = opened.positions()
        except BaseException as error:
            opened.rollback()
            if opened.is_failure(error):
                raise _target_error(opened, error, "reading the stored positions", None) from None
            raise
        follower.saved = dict(stored)
        start: Any = stored or "earliest"
        if stream_options.get("group_id"):
            # Every partition starts where the target says, and from the beginning when it
            # has no position there: never at the group's committed position, which may be
            # another target's.
            start = {p: 0 for p in _partitions(topics, stream_options)} | stored
        with ChangeStream(topics, start=start, **stream_options) as stream:
            with contextlib.closing(_read_ahead(stream, batch_rows, batch_wait)) as batches:
                for batch in batches:
                    follower.apply(batch, batch.finished)
            follower.save_final(stream.positions())
        return follower.counters
    finally:
        opened.close()
