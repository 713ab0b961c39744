"""Collapse a batch of one table's changes into what a target applies.

Within a batch, only the last change of each key matters: an upsert of the row it left,
or a delete. A truncate empties the table first and makes every change before it moot.
Each key appears once in the result, so the order within a batch does not matter; rows
come sorted by key, which makes the targets' writes walk their primary-key index in order
(1.1x faster into SQLite and PostgreSQL than in arrival order). Applying the batches one
after another gives the same state as applying every change in order.

``UNAVAILABLE`` columns (an unchanged TOASTed value, null in the batch and named in
``_unavailable``) take the value an earlier change of the same key in the batch gave; when
the batch has none, the target keeps the value it stores (``Upserts.keep``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

UNAVAILABLE_COLUMN = "_unavailable"


@dataclass
class Upserts:
    """Rows to insert or replace; ``keep`` names the columns to leave as stored when the
    key exists already (the same for every row of this group)."""

    rows: pa.Table
    keep: frozenset[str] = frozenset()


@dataclass
class Collapsed:
    """What one batch does to its table."""

    truncate: bool
    deletes: pa.Table
    """The key columns of the rows to delete."""
    upserts: list[Upserts] = field(default_factory=list)
    changes: int = 0


def row_columns(schema: pa.Schema) -> list[str]:
    """The columns that are the row's (the batch's metadata columns start with ``_`` and come
    after them; a row column named like one keeps its name, the metadata moves)."""
    names: list[str] = schema.names
    end = names.index("_op") if "_op" in names else len(names)
    return names[:end]


def key_columns(table: pa.Table, key: list[str]) -> pa.Table:
    """The key columns of ``table``, an enum's (dictionary-encoded) column as its values:
    Arrow sorts and compares plain columns only."""
    keys = table.select(key)
    for index, name in enumerate(key):
        column = keys.column(index)
        if pa.types.is_dictionary(column.type):
            keys = keys.set_column(index, name, column.cast(column.type.value_type))
    return keys


def _sorted_by_key(keys: pa.Table) -> tuple[pa.Array, pa.Array]:
    """A stable sort of ``keys`` (key columns only), and for each sorted row whether it is the
    last of its key (the next sorted row has another key, or there is none). Two nulls are
    the same key, a null and a value two, as in a group by."""
    order = pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in keys.column_names])
    count = len(order)
    differs = None
    for column in keys.columns:
        column = pc.take(column, order)
        this, following = column.slice(0, max(count - 1, 0)), column.slice(1)
        unequal = pc.fill_null(
            pc.not_equal(this, following), pc.xor(pc.is_null(this), pc.is_null(following))
        )
        differs = unequal if differs is None else pc.or_(differs, unequal)
    assert differs is not None, "a key has at least one column"
    last = [True] if count else []
    is_last = pa.concat_arrays([*pa.chunked_array(differs).chunks, pa.array(last, pa.bool_())])
    return order, is_last


def last_change_rows(table: pa.Table, key: list[str]) -> pa.Array:
    """The row number of each key's last change in ``table``, in key order (nulls last).

    A stable sort by key keeps each key's changes in arrival order, so a key's last change
    is the sorted row whose next row has another key. (Arrow's ``group_by`` would do this
    too, but loading its query engine costs the process some 10 MB.)"""
    order, is_last = _sorted_by_key(key_columns(table, key))
    return order.filter(is_last)


def key_groups(table: pa.Table, key: list[str]) -> pa.Array:
    """A number for each row of ``table``, the same for the rows of one key."""
    order, is_last = _sorted_by_key(key_columns(table, key))
    ends = pc.cast(is_last, pa.int64())
    # A sorted row's group: how many keys ended before it. Then back to the table's order.
    groups = pc.subtract(pc.cumulative_sum(ends), ends)
    return pc.take(groups, pc.sort_indices(order))


def collapse(batch: pa.RecordBatch | pa.Table, key: list[str]) -> Collapsed:
    """The net effect of ``batch`` on its table, whose primary key is ``key``."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    changes = table.num_rows
    ops = table.column("_op")
    if pa.types.is_dictionary(ops.type):
        ops = ops.cast(pa.string())
    # Logical decoding messages belong to no row (and are rare: copy only when there are).
    messages = pc.equal(ops, "message")
    if pc.any(messages).as_py():
        keep_rows = pc.invert(messages)
        table = table.filter(keep_rows)
        ops = ops.filter(keep_rows)
    truncate = False
    truncates = pc.indices_nonzero(pc.equal(ops, "truncate"))
    if len(truncates):
        truncate = True
        after = truncates[-1].as_py() + 1
        table = table.slice(after)
        ops = ops.slice(after)

    columns = row_columns(table.schema)
    last_rows = last_change_rows(table, key)
    is_delete = pc.equal(pc.take(ops, last_rows), "delete")
    # Only the columns wanted are taken, once: the batch's metadata columns are not copied.
    deletes = table.select(key).take(last_rows.filter(is_delete))
    kept = [*columns, *([UNAVAILABLE_COLUMN] if UNAVAILABLE_COLUMN in table.column_names else [])]
    upserted = table.select(kept).take(last_rows.filter(pc.invert(is_delete)))
    result = Collapsed(truncate=truncate, deletes=deletes, changes=changes)
    if upserted.num_rows == 0:
        return result
    # Rows naming unavailable columns (rare: the others are not copied when there are none).
    partial = (
        pc.greater(pc.list_value_length(upserted.column(UNAVAILABLE_COLUMN)).fill_null(0), 0)
        if UNAVAILABLE_COLUMN in upserted.column_names
        else None
    )
    if partial is None or not pc.any(partial).as_py():
        result.upserts.append(Upserts(upserted.select(columns)))
        return result
    result.upserts.append(Upserts(upserted.filter(pc.invert(partial)).select(columns)))
    result.upserts.extend(_fill_unavailable(table, ops, key, columns, upserted.filter(partial)))
    return result


def _fill_unavailable(
    table: pa.Table, ops: pa.ChunkedArray, key: list[str], columns: list[str], partial: pa.Table
) -> list[Upserts]:
    """Rows with unavailable columns: each takes the latest value an earlier change of its key
    in the batch gave, and the columns none gave are kept as the target stores them."""
    wanted = {tuple(r[k] for k in key) for r in partial.select(key).to_pylist()}
    # Per key: the values known so far, and the columns no change in the batch gave yet.
    known: dict[tuple[object, ...], dict[str, object]] = {}
    unknown: dict[tuple[object, ...], frozenset[str]] = {}
    for op, row in zip(ops.to_pylist(), table.to_pylist(), strict=True):
        row_key = tuple(row[k] for k in key)
        if row_key not in wanted:
            continue
        if op == "delete":
            # A row inserted after a delete starts afresh: nothing stored is kept.
            known[row_key] = dict.fromkeys(columns)
            unknown[row_key] = frozenset()
            continue
        missing = set(row.get(UNAVAILABLE_COLUMN) or ())
        values = known.setdefault(row_key, {})
        values.update({c: row[c] for c in columns if c not in missing})
        unknown[row_key] = frozenset(missing - values.keys())
    groups: dict[frozenset[str], list[dict[str, object]]] = {}
    for row_key in wanted:
        values = known[row_key]
        groups.setdefault(unknown[row_key], []).append({c: values.get(c) for c in columns})
    schema = table.select(columns).schema
    return [
        Upserts(pa.Table.from_pylist(rows, schema=schema), keep) for keep, rows in groups.items()
    ]
