"""``read_table``: a table's current state, folded in memory from its change log.

The changes read are kept until ``TableState.FOLD_ROWS`` of them are pending, then folded
into the state: only the stored rows whose keys the pending changes name are collapsed with
them (``_changes.collapse``); the other rows are kept as they are. A fold then costs the
changes and one lookup of their keys over the table, not a re-collapse of the whole table,
and memory holds the table, the pending changes and the rows they touch. Filtering the
table after a fold and sorting it at the end go column by column (``_per_column``), each old
column let go before the next is made: the table is never held twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from changestream._core import ChangeStream, ConfigError
from changestream.follow._changes import (
    UNAVAILABLE_COLUMN,
    collapse,
    key_columns,
    key_groups,
    row_columns,
)
from changestream.follow._registry import Registry


class TableState:
    """One table's state while ``read_table`` reads: the rows so far (the row columns of
    every schema version seen), and the changes read since they were last folded in."""

    FOLD_ROWS = 200_000

    def __init__(self, key: list[str]) -> None:
        self.key = key
        self.columns: list[str] = []
        self.rows: pa.Table | None = None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def add(self, records: pa.RecordBatch | pa.Table) -> None:
        row = row_columns(records.schema)
        if not row:
            # Tombstones before any row of the topic: nothing before them to delete.
            return
        self.columns.extend(c for c in row if c not in self.columns)
        unavailable = [UNAVAILABLE_COLUMN] if UNAVAILABLE_COLUMN in records.schema.names else []
        kept = [*row, "_op", *unavailable]
        changes = (
            records if isinstance(records, pa.Table) else pa.Table.from_batches([records])
        ).select(kept)
        ops = changes.column("_op")
        if pa.types.is_dictionary(ops.type):
            changes = changes.set_column(kept.index("_op"), "_op", ops.cast(pa.string()))
        self.pending.append(changes)
        self.pending_rows += changes.num_rows
        if self.pending_rows >= self.FOLD_ROWS:
            self.fold()

    def fold(self) -> pa.Table:
        """Apply the pending changes to the state; returns the rows (row columns)."""
        if not self.pending:
            return self.rows if self.rows is not None else pa.table({})
        changes = pa.concat_tables(self.pending, promote_options="permissive")
        self.pending, self.pending_rows = [], 0
        untouched, self.rows = self.rows, None
        if untouched is not None and untouched.num_rows:
            # The stored rows of the keys changed go through the collapse as reads before
            # the changes: a change keeping an unchanged TOASTed value takes it from them.
            touched = _rows_with_keys(untouched, changes, self.key)
            stored = untouched.filter(touched)
            untouched_rows = pc.invert(touched)
            holder, untouched = [untouched], None
            untouched = _per_column(holder, lambda c: c.filter(untouched_rows))
            stored = stored.append_column("_op", pa.repeat("read", stored.num_rows))
            changes = pa.concat_tables([stored, changes], promote_options="permissive")
        # Columns a later schema added come after the metadata columns when concatenated:
        # put every row column (of any version) first again.
        columns = self.columns
        changes = changes.select(columns + [c for c in changes.column_names if c not in columns])
        collapsed = collapse(changes, self.key)
        parts = [u.rows.select(columns) for u in collapsed.upserts if u.rows.num_rows]
        if untouched is not None and untouched.num_rows and not collapsed.truncate:
            parts.insert(0, untouched)
        rows = (
            pa.concat_tables(parts, promote_options="permissive").select(columns)
            if parts
            else changes.select(columns).slice(0, 0)
        )
        self.rows = rows
        # Give back what the fold's copies took (pyarrow's allocator keeps it otherwise).
        pa.default_memory_pool().release_unused()
        return rows


def _per_column(
    holder: list[pa.Table], step: Callable[[pa.ChunkedArray], pa.ChunkedArray]
) -> pa.Table:
    """The table in ``holder`` with ``step`` applied to each column. The table is taken out
    of ``holder`` (its only reference) and each column is let go as soon as its replacement
    is made, so the peak is the table and one column, not two tables."""
    table = holder.pop()
    schema, columns = table.schema, table.columns
    del table
    for i in range(len(columns)):
        columns[i] = step(columns[i])
    return pa.Table.from_arrays(columns, schema=schema)


def _rows_with_keys(rows: pa.Table, changes: pa.Table, key: list[str]) -> pa.ChunkedArray:
    """Which of ``rows`` have a key that one of ``changes`` has (every row, when a key
    column's type changed between them: the lookup needs one type)."""
    if any(rows.schema.field(k).type != changes.schema.field(k).type for k in key):
        return pa.chunked_array([pa.repeat(True, rows.num_rows)])
    if len(key) == 1:
        stored, changed = key_columns(rows, key), key_columns(changes, key)
        return pc.is_in(stored.column(0), value_set=pc.unique(changed.column(0)))
    # Several key columns (is_in takes one): the rows whose key group has a change in it.
    both = pa.concat_tables([rows.select(key), changes.select(key)], promote_options="permissive")
    groups = key_groups(both, key)
    stored, changed = groups.slice(0, rows.num_rows), groups.slice(rows.num_rows)
    return pc.is_in(stored, value_set=pc.unique(changed))


def run_read_table(
    topic: str,
    stream_options: Mapping[str, Any],
    *,
    table: str | None,
    primary_key: Sequence[str] | None,
) -> pa.Table:
    """:func:`changestream.follow.read_table`: ``stream_options`` are ChangeStream's."""
    key = list(primary_key or ())
    if not key:
        registry = Registry(
            stream_options["schema_registry_url"],
            stream_options.get("registry"),
            stream_options.get("registry_timeout", 30.0),
        )
        found = registry.key_columns(topic)
        if found is None:
            raise ConfigError(f"topic {topic!r} has no key schema: pass primary_key=[columns]")
        key = found
    by_table: dict[str, TableState] = {}
    with ChangeStream(topic, start="earliest", until="end", **stream_options) as stream:
        for batch in stream.batches(max_rows=20_000, max_wait=0.5):
            records = batch.to_pyarrow()
            if records.num_rows:
                name = batch.table or topic.rsplit(".", 1)[-1]
                if table is None or name == table:
                    by_table.setdefault(name, TableState(key)).add(records)
    if table is None and len(by_table) > 1:
        raise ConfigError(
            f"topic {topic!r} holds the tables {sorted(by_table)}: pass table= to pick one"
        )
    state = by_table.get(table) if table is not None else next(iter(by_table.values()), None)
    if state is None:
        return pa.table({})
    rows = [state.fold()]
    state.rows = None
    by_table.clear()
    order = pc.sort_indices(key_columns(rows[0], key), sort_keys=[(k, "ascending") for k in key])
    return _per_column(rows, lambda c: c.take(order))
