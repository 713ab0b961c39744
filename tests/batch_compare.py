"""Comparing ``batches()`` with the row iterator: a batch's rows, as pyarrow gives them, must
hold the values the iterator gives for the same changes, apart from the documented differences
between Arrow and Python (docs/types.md#arrow-columns), which ``as_iterator_value`` undoes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
from changestream import UNAVAILABLE, Change, ChangeBatch, Interval

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1)
INT64_MAX = 2**63 - 1
NS_MIN = -(2**63) + 1


def batch_rows(batches: Sequence[ChangeBatch]) -> Iterator[tuple[pa.Schema, dict[str, Any]]]:
    """Every row of the batches (as pyarrow gives it) with its batch's schema.

    Nanosecond timestamps are given as their 64-bit counts: pyarrow would make pandas
    Timestamps of them.
    """
    for batch in batches:
        record_batch = batch.to_pyarrow()
        columns = [
            column.cast(pa.int64())
            if pa.types.is_timestamp(column.type) and column.type.unit == "ns"
            else column
            for column in record_batch.columns
        ]
        readable = pa.RecordBatch.from_arrays(columns, names=record_batch.schema.names)
        for row in readable.to_pylist(maps_as_pydicts="strict"):
            yield record_batch.schema, row


def iterator_row(change: Change) -> dict[str, Any] | None:
    """The row a batch holds for a change: ``after``; for a delete ``before`` (or the key)."""
    row = change.after
    if change.op == "delete":
        row = change.before if change.before is not None else change.key
    # A key that is not a record is the _key column, not the row's.
    return cast("dict[str, Any] | None", row if isinstance(row, dict) else None)


def as_iterator_value(field: pa.Field, value: Any, expected: Any) -> Any:
    """The row iterator's value for an Arrow value: the documented differences, undone."""
    kind = field.type
    if value is None or expected is None or expected is UNAVAILABLE:
        return value
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        # The count (see batch_rows), truncated to microseconds toward the past as Python does.
        naive = {INT64_MAX: datetime.max, NS_MIN: datetime.min}.get(value)
        if naive is None:
            naive = EPOCH + timedelta(microseconds=value // 1000)
        return naive.replace(tzinfo=UTC) if kind.tz is not None else naive
    if isinstance(expected, Decimal) and isinstance(value, str):
        return Decimal(value)  # VariableScaleDecimal: the exact text
    if isinstance(expected, Interval):
        return Interval(value.months, value.days, value.nanoseconds // 1000)
    if isinstance(expected, time) and expected.tzinfo is not None:
        return value  # compared in UTC by assert_same_value
    if isinstance(expected, dict) and pa.types.is_struct(kind):
        return {
            name: as_iterator_value(kind.field(name), value[name], expected.get(name))
            for name in value
        }
    if isinstance(expected, list) and pa.types.is_list(kind):
        return [
            as_iterator_value(kind.value_field, item, wanted)
            for item, wanted in zip(value, expected, strict=True)
        ]
    return value


def utc_time(moment: time) -> time:
    """A time with a zone as the naive time of day in UTC."""
    offset = moment.utcoffset() or timedelta()
    full = datetime.combine(date(2000, 1, 1), moment.replace(tzinfo=None)) - offset
    return full.time()


def assert_same_value(actual: Any, expected: Any, where: str) -> None:
    """Equal and of the same type, Decimal exponents and zone-awareness included."""
    if expected is UNAVAILABLE:
        assert actual is None, f"{where}: {actual!r} for UNAVAILABLE"
        return
    if isinstance(expected, time) and expected.tzinfo is not None:
        assert actual == utc_time(expected), f"{where}: {actual!r} != {expected!r} in UTC"
        return
    assert type(actual) is type(expected), f"{where}: {actual!r} is not a {type(expected)}"
    if isinstance(expected, float) and expected != expected:
        assert actual != actual, f"{where}: {actual!r} is not NaN"
        return
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for name in expected:
            assert_same_value(actual[name], expected[name], f"{where}.{name}")
        return
    if isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_value(a, e, f"{where}[{i}]")
        return
    if isinstance(expected, Interval):
        parts = (actual.months, actual.days, actual.microseconds)
        assert parts == (expected.months, expected.days, expected.microseconds), where
        return
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, Decimal):
        assert actual.as_tuple() == expected.as_tuple(), f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, (datetime, time)):
        assert (actual.tzinfo is None) == (expected.tzinfo is None), f"{where}: {actual!r}"


def assert_batches_equal_changes(
    batches: Sequence[ChangeBatch], changes: Sequence[Change], *, metadata: Sequence[str]
) -> None:
    """The batches hold the changes, in order: row columns, then the metadata columns."""
    rows = list(batch_rows(batches))
    assert len(rows) == len(changes)
    tables = [batch.table for batch in batches for _ in range(batch.num_rows)]
    for (schema, row), table, change in zip(rows, tables, changes, strict=True):
        where = f"offset {change.offset}"
        assert table == change.table, where
        assert schema.names[-len(metadata) :] == list(metadata), schema.names
        expected = iterator_row(change) or {}
        columns = schema.names[: -len(metadata)]
        assert set(expected) <= set(columns), where
        for name in columns:
            wanted = expected.get(name)
            got = as_iterator_value(schema.field(name), row[name], wanted)
            assert_same_value(got, wanted, f"{where} {name}")
        assert row["_op"] == change.op, where
        assert row["_topic"] == change.topic, where
        assert (row["_partition"], row["_offset"]) == (change.partition, change.offset)
        assert row["_timestamp"] == change.timestamp, where
        if "_key" in metadata:
            assert row["_key"] == change.key, where
        if "_lsn" in metadata:
            source = change.source or {}
            assert row["_lsn"] == source.get("lsn"), where
            assert row["_txid"] == source.get("txId"), where
            ts_ms = source.get("ts_ms")
            assert row["_source_ts"] == (
                None if ts_ms is None else datetime.fromtimestamp(ts_ms / 1000, UTC)
            ), where
        if "_unavailable" in metadata:
            missing = [name for name, value in expected.items() if value is UNAVAILABLE]
            assert row["_unavailable"] == missing, where
