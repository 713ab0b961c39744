"""Debezium envelopes: op mapping, key/before/after/source, positions, tombstones.

Events are written as Debezium's PostgreSQL connector writes them (see
tests/cdc.py), encoded by confluent-kafka's AvroSerializer, and read back with
``ChangeStream(..., until="end")``; every decoded field is compared with what
was produced.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from cdc import (
    CdcProducer,
    Delivered,
    Row,
    debezium_event,
    debezium_orders_envelope_schema,
    debezium_orders_key_schema,
    debezium_source,
)
from changestream import Change, ChangeStream

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]

OP_NAMES = {"c": "insert", "u": "update", "d": "delete", "r": "read"}


def f32(x: float) -> float:
    """``x``, checked to be exactly representable as an Avro float (float32)."""
    assert struct.unpack("<f", struct.pack("<f", x))[0] == x, x
    return x


# Rows chosen to catch decoding bugs: int32 and int64 limits, longs beyond
# 2^31, negative keys, float32-exact floats (incl. max and the smallest
# subnormal), awkward doubles, empty and non-ASCII strings (and a NUL char),
# bytes with 0x00/0xff, nulls in nullable fields (including the [T, "null"]
# union where null is branch 1), and both booleans.
ROW_A: Row = {
    "id": 1,
    "customer_id": -1,
    "quantity": 2**31 - 1,
    "priority": -32768,
    "status": "pending",
    "note": None,
    "currency": "EUR",
    "weight_kg": f32(1.5),
    "total": 0.1,
    "discount": None,
    "gift_wrap": True,
    "paid": None,
    "payload": b"\x00\xff",
}
ROW_B: Row = {
    "id": 2,
    "customer_id": 2**31,
    "quantity": -(2**31),
    "priority": 32767,
    "status": "",
    "note": "",
    "currency": None,
    "weight_kg": f32(-0.25),
    "total": 1e300,
    "discount": -2.5e-300,
    "gift_wrap": False,
    "paid": False,
    "payload": b"",
}
ROW_C: Row = {
    "id": -7,
    "customer_id": -(2**63),
    "quantity": 0,
    "priority": 0,
    "status": "crêpe 🥞",
    "note": "naïve \u0000 日本語",
    "currency": "",
    "weight_kg": f32(3.4028234663852886e38),
    "total": 5e-324,
    "discount": 0.0,
    "gift_wrap": True,
    "paid": True,
    "payload": bytes(range(256)),
}
ROW_1001: Row = {
    "id": 1001,
    "customer_id": 2**63 - 1,
    "quantity": 3,
    "priority": 1,
    "status": "pending",
    "note": "leave at the door",
    "currency": "EUR",
    "weight_kg": None,
    "total": -1234.5678,
    "discount": None,
    "gift_wrap": False,
    "paid": False,
    "payload": None,
}
ROW_1002: Row = {
    "id": 1002,
    "customer_id": 2**40 + 7,
    "quantity": 1,
    "priority": -1,
    "status": "crêpe 🥞",
    "note": None,
    "currency": "CHF",
    "weight_kg": f32(2.0**-149),
    "total": 19.99,
    "discount": 0.5,
    "gift_wrap": True,
    "paid": None,
    "payload": b"\xff\x00\xff",
}
ROW_1001_SHIPPED: Row = {
    **ROW_1001,
    "status": "shipped",
    "paid": True,
    "weight_kg": f32(0.125),
    "note": None,
}
ROW_1003: Row = {**ROW_1002, "id": 1003, "customer_id": -(2**40), "status": "new"}


def prefix() -> str:
    """A fresh Debezium topic prefix (the namespace of the registered records)."""
    return f"shop_{uuid4().hex[:8]}"


def read_all(open_stream: OpenStream, topics: str | list[str]) -> list[Change]:
    with open_stream(topics, until="end") as stream:
        return list(stream)


def key_of(row: Row) -> Row:
    return {"id": row["id"]}


def orders_sequence(pfx: str, now_ms: int) -> list[tuple[Row | None, Row | None]]:
    """A snapshot, inserts, an update, a delete + its tombstone, and one more insert."""

    def src(
        snapshot: str | None, lsn: int | None, tx_id: int | None, *, xmin: int | None = None
    ) -> Row:
        return debezium_source(
            pfx,
            table="orders",
            ts_ms=now_ms - 5000,
            snapshot=snapshot,
            lsn=lsn,
            tx_id=tx_id,
            xmin=xmin,
        )

    def event(op: str, before: Row | None, after: Row | None, source: Row, **kw: Any) -> Row:
        return debezium_event(op, before=before, after=after, source=source, ts_ms=now_ms, **kw)

    tx = {"id": "771:36241320", "total_order": 2, "data_collection_order": 1}
    return [
        (key_of(ROW_A), event("r", None, ROW_A, src("first", 36240000, 760))),
        (key_of(ROW_B), event("r", None, ROW_B, src("true", 36240000, 760))),
        (key_of(ROW_C), event("r", None, ROW_C, src("last", 36240000, 760))),
        (key_of(ROW_1001), event("c", None, ROW_1001, src("false", 36241000, 770))),
        (key_of(ROW_1002), event("c", None, ROW_1002, src("false", 36241320, 771), transaction=tx)),
        (
            key_of(ROW_1001),
            event("u", ROW_1001, ROW_1001_SHIPPED, src(None, 2**40 + 3, 2**33, xmin=12)),
        ),
        (key_of(ROW_1002), event("d", ROW_1002, None, src("false", 36250000, 772))),
        (key_of(ROW_1002), None),  # the tombstone Debezium writes after each delete
        (key_of(ROW_1003), event("c", None, ROW_1003, src("incremental", None, None))),
    ]


def assert_change_matches(change: Change, sent: Delivered) -> None:
    """``change`` is the decoding of the Debezium event ``sent``, field by field."""
    value = sent.value
    assert isinstance(value, dict)
    where = f"{sent.topic}[{sent.partition}]@{sent.offset}"
    assert change.topic == sent.topic, where
    assert change.partition == sent.partition, where
    assert change.offset == sent.offset, where
    assert change.op == OP_NAMES[value["op"]], where
    assert change.key == sent.key, where
    assert change.before == value["before"], where
    assert change.after == value["after"], where
    assert change.source == value["source"], where
    assert change.table == value["source"]["table"], where
    assert change.timestamp is not None, where
    assert change.timestamp.utcoffset() == timedelta(0), where
    assert change.timestamp == sent.timestamp, where


def test_envelope_sequence_field_by_field(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    pfx = prefix()
    started = datetime.now(timezone.utc)
    sent = cdc.produce(
        topic,
        debezium_orders_key_schema(pfx),
        debezium_orders_envelope_schema(pfx),
        orders_sequence(pfx, int(time.time() * 1000)),
        partition=0,
    )
    finished = datetime.now(timezone.utc)
    events = [d for d in sent if d.value is not None]

    changes = read_all(open_stream, topic)

    # The tombstone is swallowed: one change per non-null value, nothing else.
    assert len(changes) == len(events) == len(sent) - 1
    assert [c.op for c in changes] == [
        "read",
        "read",
        "read",
        "insert",
        "insert",
        "update",
        "delete",
        "insert",
    ]
    for change, event in zip(changes, events, strict=True):
        assert_change_matches(change, event)
        assert change.table == "orders"
        assert change.timestamp is not None
        assert started - timedelta(seconds=5) <= change.timestamp <= finished + timedelta(seconds=5)

    offsets = [c.offset for c in changes]
    assert offsets == sorted(set(offsets)), "offsets must be strictly increasing"
    tombstone = sent[7]
    assert tombstone.value is None
    assert tombstone.offset not in offsets

    # Spot checks that do not depend on the produced dicts being right.
    update = changes[5]
    assert update.before is not None
    assert update.after is not None
    assert (update.before["status"], update.after["status"]) == ("pending", "shipped")
    assert update.source is not None
    assert update.source["snapshot"] is None
    assert update.source["txId"] == 2**33
    assert update.source["lsn"] == 2**40 + 3
    delete = changes[6]
    assert delete.key == {"id": 1002}
    assert delete.after is None
    assert delete.before is not None
    assert delete.before["currency"] == "CHF"
    assert changes[0].source is not None
    assert changes[0].source["snapshot"] == "first"
    assert changes[2].after is not None
    assert changes[2].after["customer_id"] == -(2**63)
    assert changes[7].source is not None
    assert changes[7].source["lsn"] is None


def test_types_roundtrip_through_before_and_after(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    """Every awkward row goes through both ``before`` and ``after`` of an update."""
    pfx = prefix()
    now_ms = int(time.time() * 1000)
    src = debezium_source(pfx, table="orders", ts_ms=now_ms, lsn=99, tx_id=1)
    rows = [ROW_A, ROW_B, ROW_C, ROW_1001, ROW_1002]
    records: list[tuple[Row | None, Row | None]] = [
        (key_of(old), debezium_event("u", before=old, after=new, source=src, ts_ms=now_ms))
        for old, new in zip(rows, [*rows[1:], rows[0]], strict=True)
    ]
    sent = cdc.produce(
        topic, debezium_orders_key_schema(pfx), debezium_orders_envelope_schema(pfx), records
    )

    changes = read_all(open_stream, topic)

    assert len(changes) == len(sent)
    for change, event in zip(changes, sent, strict=True):
        assert_change_matches(change, event)
        assert change.op == "update"
        # Types, not just equality (True == 1, 0.0 == 0 in Python).
        assert change.after is not None
        for column, expected in event.value["after"].items():
            assert type(change.after[column]) is type(expected), column


def test_stream_ends_after_a_trailing_tombstone(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    """until="end" stops even when the partition's last message is a swallowed tombstone."""
    pfx = prefix()
    now_ms = int(time.time() * 1000)
    src = debezium_source(pfx, table="orders", ts_ms=now_ms, lsn=500, tx_id=9)
    sent = cdc.produce(
        topic,
        debezium_orders_key_schema(pfx),
        debezium_orders_envelope_schema(pfx),
        [
            (
                key_of(ROW_A),
                debezium_event("c", before=None, after=ROW_A, source=src, ts_ms=now_ms),
            ),
            (
                key_of(ROW_A),
                debezium_event("d", before=ROW_A, after=None, source=src, ts_ms=now_ms),
            ),
            (key_of(ROW_A), None),
        ],
    )

    changes = read_all(open_stream, topic)

    assert [c.op for c in changes] == ["insert", "delete"]
    for change, event in zip(changes, sent[:2], strict=True):
        assert_change_matches(change, event)


def test_poll_returns_changes_then_none_at_end(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    pfx = prefix()
    now_ms = int(time.time() * 1000)
    src = debezium_source(pfx, table="orders", ts_ms=now_ms, snapshot="true", lsn=7, tx_id=3)
    sent = cdc.produce(
        topic,
        debezium_orders_key_schema(pfx),
        debezium_orders_envelope_schema(pfx),
        [
            (key_of(r), debezium_event("r", before=None, after=r, source=src, ts_ms=now_ms))
            for r in (ROW_A, ROW_B)
        ],
    )

    with open_stream(topic, until="end") as stream:
        polled = [stream.poll(timeout=30.0), stream.poll(timeout=30.0)]
        assert stream.poll(timeout=1.0) is None

    for change, event in zip(polled, sent, strict=True):
        assert change is not None
        assert_change_matches(change, event)


@pytest.mark.parametrize("topic", [3], indirect=True)
def test_three_partitions_each_event_once_in_partition_order(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    pfx = prefix()
    now_ms = int(time.time() * 1000)
    lsn = 1000

    def src() -> Row:
        nonlocal lsn
        lsn += 8
        return debezium_source(pfx, table="orders", ts_ms=now_ms, lsn=lsn, tx_id=lsn // 8)

    records: list[tuple[Row | None, Row | None]] = []
    rows = {
        i: {**ROW_1001, "id": i, "customer_id": -i * 2**33, "quantity": i} for i in range(1, 31)
    }
    for i, row in rows.items():
        records.append(
            ({"id": i}, debezium_event("c", before=None, after=row, source=src(), ts_ms=now_ms))
        )
    for i in range(1, 31, 2):  # interleaved updates across the partitions
        new = {**rows[i], "status": f"shipped-{i}", "paid": True}
        records.append(
            ({"id": i}, debezium_event("u", before=rows[i], after=new, source=src(), ts_ms=now_ms))
        )
        rows[i] = new
    for i in range(3, 31, 5):  # deletes, each followed by its tombstone
        records.append(
            ({"id": i}, debezium_event("d", before=rows[i], after=None, source=src(), ts_ms=now_ms))
        )
        records.append(({"id": i}, None))

    sent = cdc.produce(
        topic,
        debezium_orders_key_schema(pfx),
        debezium_orders_envelope_schema(pfx),
        records,
        partition=lambda key: key["id"] % 3,
    )
    assert {d.partition for d in sent} == {0, 1, 2}
    events = [d for d in sent if d.value is not None]

    changes = read_all(open_stream, topic)

    # Every event exactly once, no tombstone.
    assert len(changes) == len(events)
    assert sorted((c.partition, c.offset) for c in changes) == sorted(
        (d.partition, d.offset) for d in events
    )
    # Per partition: the produced order, and each change equal to its event.
    for partition in range(3):
        got = [c for c in changes if c.partition == partition]
        want = [d for d in events if d.partition == partition]
        assert [c.offset for c in got] == [d.offset for d in want]
        for change, event in zip(got, want, strict=True):
            assert_change_matches(change, event)
