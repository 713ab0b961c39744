"""Arrow batches (issue 5 item 2): ``stream.batches()`` yields ``ChangeBatch`` objects.

A batch holds changes of one table under one value schema. Its rows must equal what the row
iterator gives for the same messages (read twice from the same topic), column by column and
type by type. Where Arrow cannot hold the row iterator's Python value as is, the batch holds
the documented equivalent, and :func:`as_iterator_value` below turns one into the other; each
such case is a line there:

- ``UNAVAILABLE`` is null, with the column named in ``_unavailable``;
- a ``VariableScaleDecimal`` is its exact decimal text;
- an ``Interval`` is Arrow's month_day_nano (nanoseconds = 1000 x microseconds);
- a time of day with a zone is a naive time in UTC;
- a timestamp with a zone is an instant in UTC (the offset of each row is not kept);
- a nanosecond timestamp keeps its nanoseconds (Python drops them), and ``±infinity`` in it
  is the largest (smallest) 64-bit nanosecond count (``-2**63 + 1``: ``-2**63`` is NaT).
"""

from __future__ import annotations

import _thread
import asyncio
import signal
import struct
import threading
import time as clock
from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]  # pyarrow ships no type information
import pytest
from batch_compare import (
    INT64_MAX,
    NS_MIN,
    assert_batches_equal_changes,
)
from cdc import (
    BW_ORDERS_KEY_SCHEMA,
    BW_ORDERS_SCHEMA,
    ORDER_COLUMNS,
    CdcProducer,
    Row,
    debezium_envelope_schema,
    debezium_event,
    debezium_key_schema,
    debezium_source,
    with_field,
)
from changestream import (
    Change,
    ChangeBatch,
    ChangeStream,
    ConfigError,
    DecodeError,
)
from group_offsets import committed
from test_types import (
    AVRO_LOGICAL,
    AVRO_PRIMITIVES,
    BOTTLED_WATER_ROWS,
    BOTTLED_WATER_SCHEMA,
    DEBEZIUM_COLUMNS,
    DEBEZIUM_ROWS,
    produce,
    record_of,
    rows_of,
)

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]
METADATA = ["_op", "_topic", "_partition", "_offset", "_timestamp"]
DEBEZIUM_METADATA = [*METADATA, "_lsn", "_txid", "_source_ts", "_unavailable"]


# ---------------------------------------------------------------------------
# Reading a topic both ways
# ---------------------------------------------------------------------------


def read_changes(open_stream: OpenStream, topic: str, **kwargs: Any) -> list[Change]:
    with open_stream(topic, until="end", **kwargs) as stream:
        return list(stream)


def read_batches(open_stream: OpenStream, topic: str, **kwargs: Any) -> list[ChangeBatch]:
    max_rows = kwargs.pop("max_rows", 10_000)
    with open_stream(topic, until="end", **kwargs) as stream:
        # The bounded read hands the last batch over at the end: max_wait never splits one.
        return list(stream.batches(max_rows=max_rows, max_wait=30.0))


# ---------------------------------------------------------------------------
# Debezium envelopes and flat rows
# ---------------------------------------------------------------------------

PREFIX = "shop"
ORDERS_KEY = debezium_key_schema(PREFIX, "orders", [{"name": "id", "type": "int"}])
ORDERS_ENVELOPE = debezium_envelope_schema(PREFIX, "orders", ORDER_COLUMNS)


def order(i: int, **changes: Any) -> Row:
    row = {
        "id": i,
        "customer_id": 1000 + i,
        "quantity": i % 7,
        "priority": i % 3,
        "status": "new",
        "note": None if i % 2 else f"note {i}",
        "currency": "EUR",
        "weight_kg": 0.5 * i,
        "total": 10.25 * i,
        "discount": None,
        "gift_wrap": i % 2 == 0,
        "paid": None,
        "payload": bytes([i % 256]),
    }
    row.update(changes)
    return row


def produce_debezium_orders(cdc: CdcProducer, topic: str, count: int) -> None:
    """Inserts of ``count`` orders, an update of each even one, a delete of every fifth."""
    records: list[tuple[Row | None, Row | None]] = []
    lsn = 1000

    def event(op: str, before: Row | None, after: Row | None, tx_id: int) -> Row:
        nonlocal lsn
        lsn += 8
        source = debezium_source(PREFIX, table="orders", ts_ms=1_700_000_000_000 + lsn, lsn=lsn)
        source["txId"] = tx_id
        return debezium_event(op, before=before, after=after, source=source, ts_ms=1)

    for i in range(count):
        records.append(({"id": i}, event("c", None, order(i), tx_id=i)))
    for i in range(0, count, 2):
        records.append(({"id": i}, event("u", order(i), order(i, status="paid"), tx_id=100 + i)))
    for i in range(0, count, 5):
        records.append(({"id": i}, event("d", order(i), None, tx_id=200 + i)))
        records.append(({"id": i}, None))  # Debezium's tombstone, swallowed by default
    cdc.produce(topic, ORDERS_KEY, ORDERS_ENVELOPE, records, partition=0)


def test_debezium_batches_equal_the_row_iterator(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    produce_debezium_orders(cdc, topic, 40)
    changes = read_changes(open_stream, topic)
    batches = read_batches(open_stream, topic)
    assert len(changes) == 40 + 20 + 8
    assert [len(b) for b in batches] == [len(changes)]
    (batch,) = batches
    assert batch.table == "orders"
    assert batch.num_rows == len(changes)
    assert isinstance(batch.schema_id, int)
    assert repr(batch) == f'ChangeBatch(table="orders", schema_id={batch.schema_id}, num_rows=68)'
    assert_batches_equal_changes(batches, changes, metadata=DEBEZIUM_METADATA)
    schema = batch.to_pyarrow().schema
    assert schema.field("_op").type == pa.dictionary(pa.int8(), pa.string())
    assert schema.field("_topic").type == pa.dictionary(pa.int32(), pa.string())
    assert schema.field("_partition").type == pa.int32()
    assert schema.field("_offset").type == pa.int64()
    assert schema.field("_timestamp").type == pa.timestamp("ms", "UTC")
    assert schema.field("_source_ts").type == pa.timestamp("ms", "UTC")
    assert schema.field("id").type == pa.int32()
    assert schema.field("weight_kg").type == pa.float32()
    assert schema.metadata == {
        b"changestream.table": b"orders",
        b"changestream.schema_id": str(batch.schema_id).encode(),
    }


@pytest.mark.parametrize("emit_tombstones", [False, True], ids=["passed", "emitted"])
def test_debezium_tombstones_between_rows_pass_with_them_or_are_deletes(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream, emit_tombstones: bool
) -> None:
    """Debezium's tombstone after each delete, in the middle of the stream: not delivered
    (passed with the rows around it, positions reaching the end) or, with
    ``emit_tombstones``, a delete of its key, as in the row iterator."""
    topic = make_topic()
    lsn = 1000

    def event(op: str, before: Row | None, after: Row | None) -> Row:
        nonlocal lsn
        lsn += 8
        source = debezium_source(PREFIX, table="orders", ts_ms=1_700_000_000_000 + lsn, lsn=lsn)
        return debezium_event(op, before=before, after=after, source=source, ts_ms=1)

    records: list[tuple[Row | None, Row | None]] = []
    for i in range(60):
        records.append(({"id": i}, event("c", None, order(i))))
        if i % 3 == 2:
            records.append(({"id": i}, event("d", order(i), None)))
            records.append(({"id": i}, None))
    cdc.produce(topic, ORDERS_KEY, ORDERS_ENVELOPE, records, partition=0)
    options = {"emit_tombstones": emit_tombstones}
    changes = read_changes(open_stream, topic, **options)
    assert len(changes) == 60 + 20 + (20 if emit_tombstones else 0)
    with open_stream(topic, until="end", **options) as stream:
        batches = list(stream.batches(max_rows=25, max_wait=30.0))
        assert stream.positions() == {(topic, 0): len(records)}
        assert stream.stats()["delivered"] == len(changes)
    assert all(len(batch) <= 25 for batch in batches)
    assert_batches_equal_changes(batches, changes, metadata=DEBEZIUM_METADATA)


def test_flat_rows_with_tombstone_deletes(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """Bottled Water: upserts, and deletes as tombstones whose key fills the key columns."""
    topic = make_topic()
    rows = [
        {
            "id": i,
            "customer_id": i * 10,
            "quantity": i,
            "status": "new",
            "weight_kg": 1.5,
            "total": 2.25 * i,
            "paid": i % 2 == 0,
            "payload": None,
        }
        for i in range(10)
    ]
    records: list[tuple[Row | None, Row | None]] = [({"id": r["id"]}, r) for r in rows]
    records += [({"id": i}, None) for i in (3, 7)]
    cdc.produce(topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, records, partition=0)
    changes = read_changes(open_stream, topic)
    batches = read_batches(open_stream, topic)
    assert [c.op for c in changes] == ["upsert"] * 10 + ["delete"] * 2
    assert [b.table for b in batches] == ["orders"]
    assert_batches_equal_changes(batches, changes, metadata=METADATA)
    deleted = batches[0].to_pyarrow().to_pylist()[-1]
    assert deleted["id"] == 7
    assert deleted["_op"] == "delete"
    assert deleted["status"] is None


def test_a_schema_change_starts_a_new_batch(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    v2 = with_field(BW_ORDERS_SCHEMA, {"name": "region", "type": ["null", "string"]})
    first = [({"id": i}, {"id": i, "status": "v1"}) for i in range(3)]
    second = [({"id": i}, {"id": i, "status": "v2", "region": "eu"}) for i in range(3, 5)]
    cdc.produce(topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, first, partition=0)
    cdc.produce(topic, BW_ORDERS_KEY_SCHEMA, v2, second, partition=0)
    batches = read_batches(open_stream, topic)
    assert [len(b) for b in batches] == [3, 2]
    assert batches[0].schema_id != batches[1].schema_id
    assert "region" not in batches[0].to_pyarrow().schema.names
    assert batches[1].to_pyarrow().column("region").to_pylist() == ["eu", "eu"]
    assert_batches_equal_changes(batches, read_changes(open_stream, topic), metadata=METADATA)


def test_a_reader_schema_gives_the_readers_columns(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    records = [({"id": i}, {"id": i, "status": "new"}) for i in range(3)]
    cdc.produce(topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, records, partition=0)
    reader = with_field(BW_ORDERS_SCHEMA, {"name": "region", "type": "string", "default": "eu"})
    changes = read_changes(open_stream, topic, reader_schema=reader)
    batches = read_batches(open_stream, topic, reader_schema=reader)
    assert batches[0].to_pyarrow().column("region").to_pylist() == ["eu"] * 3
    assert_batches_equal_changes(batches, changes, metadata=METADATA)


def test_a_key_that_is_not_a_record_is_the_key_column(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """A tombstone says which row it deletes by its key alone."""
    topic = make_topic()
    records: list[tuple[Any, Any]] = [(f"order-{i}", {"id": i, "status": "new"}) for i in range(3)]
    records.append(("order-1", None))
    cdc.produce(topic, {"type": "string"}, BW_ORDERS_SCHEMA, records, partition=0)
    changes = read_changes(open_stream, topic)
    batches = read_batches(open_stream, topic)
    assert_batches_equal_changes(batches, changes, metadata=[*METADATA, "_key"])
    table = batches[0].to_pyarrow()
    assert table.column("_key").to_pylist() == ["order-0", "order-1", "order-2", "order-1"]
    assert table.column("id").to_pylist() == [0, 1, 2, None]
    assert table.column("_op").to_pylist()[-1] == "delete"


def test_max_rows_splits_batches(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    records = [({"id": i}, {"id": i, "status": "new"}) for i in range(25)]
    cdc.produce(topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, records, partition=0)
    batches = read_batches(open_stream, topic, max_rows=10)
    assert [len(b) for b in batches] == [10, 10, 5]
    offsets = [o for b in batches for o in b.to_pyarrow().column("_offset").to_pylist()]
    assert offsets == list(range(25))


def test_max_rows_must_be_positive(make_topic: Callable[..., str], open_stream: OpenStream) -> None:
    with open_stream(make_topic()) as stream, pytest.raises(ConfigError, match="max_rows"):
        stream.batches(max_rows=0)


# ---------------------------------------------------------------------------
# Every type of docs/types.md, against the row iterator
# ---------------------------------------------------------------------------


def test_avro_types_equal_the_row_iterator(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    goldens = AVRO_PRIMITIVES + AVRO_LOGICAL
    wire, _ = rows_of(goldens)
    produce("fastavro", cdc, topic, record_of("Everything", goldens), wire)
    changes = read_changes(open_stream, topic)
    batches = read_batches(open_stream, topic)
    assert_batches_equal_changes(batches, changes, metadata=METADATA)
    schema = batches[0].to_pyarrow().schema
    expected_types = {
        "enum": pa.dictionary(pa.int32(), pa.string()),
        "fixed": pa.binary(4),
        "map": pa.map_(pa.string(), pa.int64()),
        "record": pa.struct([pa.field("x", pa.int32())]),
        "null": pa.null(),
        "decimal_bytes": pa.decimal128(38, 4),
        "decimal_fixed": pa.decimal128(38, 2),
        # A bytes decimal does not say its size: this batch holds a 45-digit value.
        "decimal_45_digits": pa.decimal256(76, 5),
        "uuid": pa.uuid(),
        "uuid_fixed": pa.uuid(),
        "date": pa.date32(),
        "time_millis": pa.time64("us"),
        "timestamp_millis": pa.timestamp("us", "UTC"),
        "timestamp_nanos": pa.timestamp("ns", "UTC"),
        "local_timestamp_micros": pa.timestamp("us"),
        "local_timestamp_nanos": pa.timestamp("ns"),
        "duration": pa.month_day_nano_interval(),
    }
    for name, arrow_type in expected_types.items():
        assert schema.field(name).type == arrow_type, name
    # polars has no 256-bit decimal: to_polars() gives the exact text.
    frame = batches[0].to_polars()
    assert frame["decimal_45_digits"].to_list()[:2] == [
        "1234567890123456789012345678901234567890.12345",
        "-0.00001",
    ]
    assert frame["decimal_bytes"].dtype == pl.Decimal(38, 4)


def test_debezium_types_equal_the_row_iterator(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    key_schema = debezium_key_schema(PREFIX, "everything", [{"name": "id", "type": "int"}])
    value_schema = debezium_envelope_schema(PREFIX, "everything", DEBEZIUM_COLUMNS)
    source = debezium_source(PREFIX, table="everything", ts_ms=1_709_210_096_000, lsn=10, tx_id=7)
    values = [
        debezium_event("c", before=None, after=wire, source=source, ts_ms=1)
        for wire, _ in DEBEZIUM_ROWS
    ]
    keys: list[Row | None] = [{"id": wire["id"]} for wire, _ in DEBEZIUM_ROWS]
    produce("confluent", cdc, topic, value_schema, values, key_schema, keys)
    changes = read_changes(open_stream, topic)
    batches = read_batches(open_stream, topic)
    assert_batches_equal_changes(batches, changes, metadata=DEBEZIUM_METADATA)
    table = batches[0].to_pyarrow()
    assert table.column("_unavailable").to_pylist()[1] == ["doc", "xml", "body", "blob", "tags"]
    expected_types = {
        "d": pa.date32(),
        "t_ns": pa.time64("us"),
        "ts_ms": pa.timestamp("us"),
        "ts_ns": pa.timestamp("ns"),
        "tstz": pa.timestamp("us", "UTC"),
        "timetz": pa.time64("us"),
        "iv_us": pa.duration("us"),
        "iv_iso": pa.month_day_nano_interval(),
        "num": pa.string(),
        "price": pa.decimal128(38, 2),
        "ratio": pa.decimal128(38, 6),
        "uid": pa.uuid(),
        "location": pa.struct(
            [
                pa.field("x", pa.float64()),
                pa.field("y", pa.float64()),
                pa.field("wkb", pa.binary()),
                pa.field("srid", pa.int32()),
            ]
        ),
        "tags": pa.list_(pa.string()),
    }
    for name, arrow_type in expected_types.items():
        assert table.schema.field(name).type == arrow_type, name
    # Infinity in a nanosecond column: the largest and smallest 64-bit count.
    ns = table.column("ts_ns").cast(pa.int64()).to_pylist()
    assert ns[2:] == [INT64_MAX, NS_MIN]
    assert batches[0].to_pandas()["ts_ns"].isna().sum() == 0
    # polars has no calendar interval: to_polars() gives its parts.
    frame = batches[0].to_polars()
    assert frame.schema["iv_iso"] == pl.Struct(
        {"months": pl.Int32, "days": pl.Int32, "nanoseconds": pl.Int64}
    )
    assert frame["iv_iso"][0] == {"months": 14, "days": 3, "nanoseconds": 14_706_780_000_000}
    assert frame["tstz"].dtype == pl.Datetime("us", "UTC")


def test_bottled_water_types_equal_the_row_iterator(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    produce("confluent", cdc, topic, BOTTLED_WATER_SCHEMA, [w for w, _ in BOTTLED_WATER_ROWS])
    changes = read_changes(open_stream, topic)
    batches = read_batches(open_stream, topic)
    assert_batches_equal_changes(batches, changes, metadata=METADATA)
    schema = batches[0].to_pyarrow().schema
    assert schema.field("day").type == pa.date32()
    assert schema.field("at").type == pa.timestamp("us")
    assert schema.field("at_tz").type == pa.timestamp("us", "UTC")
    assert schema.field("clock_tz").type == pa.time64("us")
    assert schema.field("span").type == pa.month_day_nano_interval()


def test_a_union_of_several_types_is_a_struct_of_its_branches(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    schema = {
        "type": "record",
        "name": "Mixed",
        "fields": [{"name": "u", "type": ["null", "long", "string"]}],
    }
    produce("fastavro", cdc, topic, schema, [{"u": 5}, {"u": "five"}, {"u": None}])
    (batch,) = read_batches(open_stream, topic)
    assert batch.to_pyarrow().column("u").to_pylist() == [
        {"long": 5, "string": None},
        {"long": None, "string": "five"},
        None,
    ]


def test_a_value_arrow_cannot_hold_is_a_decode_error_naming_the_message(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """An Avro duration of 2**31 months fits a Python Interval, not Arrow's 32-bit months."""
    topic = make_topic()
    span = {"type": "fixed", "name": "Span", "size": 12, "logicalType": "duration"}
    schema = {"type": "record", "name": "Spans", "fields": [{"name": "span", "type": span}]}
    months = [1, 2**31, 3]
    wire = [{"span": struct.pack("<III", m, 0, 0)} for m in months]
    produce("fastavro", cdc, topic, schema, wire)
    with open_stream(topic, until="end") as stream:
        batches = stream.batches(max_rows=1)
        assert next(batches).to_pyarrow().column("span")[0].as_py().months == 1
        with pytest.raises(DecodeError, match="month_day_nano") as raised:
            next(batches)
        assert (raised.value.topic, raised.value.offset) == (topic, 1)
        # As the row iterator: the next call goes on after it.
        assert next(batches).to_pyarrow().column("span")[0].as_py().months == 3


# ---------------------------------------------------------------------------
# Consumers: pyarrow, pandas, polars, DuckDB
# ---------------------------------------------------------------------------


def test_pyarrow_pandas_polars_and_duckdb_read_a_batch(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    produce_debezium_orders(cdc, topic, 20)
    (batch,) = read_batches(open_stream, topic)
    rows = len(batch)

    record_batch = pa.record_batch(batch)
    assert record_batch.num_rows == rows
    assert record_batch.equals(batch.to_pyarrow())
    assert pa.table(batch).num_rows == rows
    assert pa.RecordBatchReader.from_stream(batch).read_all().num_rows == rows

    frame = batch.to_pandas()
    assert type(frame).__module__.startswith("pandas")
    assert type(frame).__name__ == "DataFrame"
    assert len(frame) == rows
    counts = frame["_op"].value_counts().to_dict()
    assert {op: n for op, n in counts.items() if n} == {"insert": 20, "update": 10, "delete": 4}
    assert str(frame["_timestamp"].dtype) == "datetime64[ms, UTC]"

    polars_frame = pl.DataFrame(batch)
    assert polars_frame.height == rows
    assert polars_frame.equals(batch.to_polars())
    assert polars_frame.schema["total"] == pl.Float64
    assert polars_frame.filter(pl.col("_op") == "delete").height == 4
    from_arrow = pl.from_arrow(record_batch)
    assert isinstance(from_arrow, pl.DataFrame)
    assert from_arrow.height == rows

    # DuckDB finds the batch by its variable name and reads it through __arrow_c_stream__.
    totals = duckdb.sql("select _op, count(*) as n from batch group by _op order by _op")
    assert totals is not None
    assert totals.fetchall() == [("delete", 4), ("insert", 20), ("update", 10)]
    paid = duckdb.sql("select count(*) from record_batch where status = 'paid'")
    assert paid is not None
    assert paid.fetchall() == [(10,)]


# ---------------------------------------------------------------------------
# Positions, async iteration, Ctrl-C
# ---------------------------------------------------------------------------


def test_asking_for_the_next_batch_finishes_the_previous_one(
    stack: dict[str, str],
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic()
    records = [({"id": i}, {"id": i, "status": "new"}) for i in range(30)]
    cdc.produce(topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, records, partition=0)
    group = f"batches-{topic}"
    with open_stream(topic, group_id=group, start="earliest") as stream:
        batches = stream.batches(max_rows=10, max_wait=0.5)
        first = next(batches)
        assert stream.positions().get((topic, 0), 0) == 0, "a batch handed out is not finished"
        second = next(batches)
        assert stream.positions() == {(topic, 0): 10}, "the next one finishes it"
        assert (len(first), len(second)) == (10, 10)
    # Closing commits what was finished: the first batch, not the second.
    assert committed(stack, group, topic, 1) == {0: 10}


def test_async_batches(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    produce_debezium_orders(cdc, topic, 30)
    changes = read_changes(open_stream, topic)

    async def read() -> list[ChangeBatch]:
        async with open_stream(topic, until="end") as stream:
            return [batch async for batch in stream.batches(max_rows=25, max_wait=0.5)]

    batches = asyncio.run(read())
    assert [len(b) for b in batches] == [25, 25, 1]
    assert_batches_equal_changes(batches, changes, metadata=DEBEZIUM_METADATA)


def test_cancelled_async_waits_lose_nothing(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """Waits cancelled again and again while rows arrive: every row comes once, in order, and
    a batch is finished only once the next one was asked for."""
    topic = make_topic()

    async def produce_slowly() -> None:
        for start in range(0, 50, 10):
            rows = [({"id": i}, {"id": i, "status": "new"}) for i in range(start, start + 10)]
            await asyncio.to_thread(
                cdc.produce, topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, rows, 0
            )
            await asyncio.sleep(0.1)

    async def scenario() -> list[int]:
        ids: list[int] = []
        async with open_stream(topic) as stream:
            batches = stream.batches(max_rows=7, max_wait=0.05)
            producer = asyncio.create_task(produce_slowly())
            cancelled = 0
            while len(ids) < 50:
                try:
                    batch = await asyncio.wait_for(batches.__anext__(), timeout=0.01)
                except asyncio.TimeoutError:
                    cancelled += 1
                    continue
                # Handing this batch out finished the previous one, not this one.
                assert stream.positions().get((topic, 0), 0) == len(ids)
                ids += batch.to_pyarrow().column("id").to_pylist()
            await producer
            assert cancelled > 10
        return ids

    assert asyncio.run(scenario()) == list(range(50))


def test_ctrl_c_interrupts_a_blocked_batch_wait(
    make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """One Ctrl-C ends the wait. Python raises KeyboardInterrupt only where SIGINT was not
    ignored when it started (a job started with ``&`` by a script ignores it), so the test
    sets the handler a terminal's Python has; a second interrupt ends a lost wait early."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open_stream(make_topic()) as stream:
            batches = stream.batches()
            timers = [
                threading.Timer(0.5, _thread.interrupt_main),
                threading.Timer(5.0, _thread.interrupt_main),
            ]
            started = clock.monotonic()
            for timer in timers:
                timer.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    next(batches)
            finally:
                for timer in timers:
                    timer.cancel()
            elapsed = clock.monotonic() - started
    finally:
        signal.signal(signal.SIGINT, previous)
    assert elapsed < 2.0, "the first Ctrl-C did not interrupt the wait"
