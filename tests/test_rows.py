"""Flat rows (Bottled Water style): upserts, tombstone deletes, unkeyed rows,
several tables in one stream, and schema evolution.

A flat-row topic carries the full new row as the value (every column a
``["null", T]`` union); a null value with a key is a delete. Rows are encoded by
confluent-kafka's AvroSerializer (see tests/cdc.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from cdc import (
    BW_CUSTOMERS_KEY_SCHEMA,
    BW_CUSTOMERS_SCHEMA,
    BW_ORDERS_KEY_SCHEMA,
    BW_ORDERS_SCHEMA,
    CdcProducer,
    Delivered,
    Row,
    with_field,
)
from changestream import Change, ChangeStream

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]

ORDER_1: Row = {
    "id": 1,
    "customer_id": 2**31 + 1,
    "quantity": -(2**31),
    "status": "crêpe 🥞",
    "weight_kg": 0.75,
    "total": 0.1,
    "paid": True,
    "payload": b"\x00\xff\x00",
}
ORDER_2: Row = {
    "id": 2,
    "customer_id": -(2**63),
    "quantity": 2**31 - 1,
    "status": "",
    "weight_kg": -1024.125,
    "total": 1e300,
    "paid": False,
    "payload": b"",
}
ORDER_3_ALL_NULL: Row = {
    "id": 3,
    "customer_id": None,
    "quantity": None,
    "status": None,
    "weight_kg": None,
    "total": None,
    "paid": None,
    "payload": None,
}
ORDER_1_UPDATED: Row = {**ORDER_1, "status": "shipped", "paid": None, "total": 2**53 + 0.0}


def read_all(open_stream: OpenStream, topics: str | list[str]) -> list[Change]:
    with open_stream(topics, until="end") as stream:
        return list(stream)


def assert_upsert(change: Change, sent: Delivered, table: str) -> None:
    where = f"{sent.topic}[{sent.partition}]@{sent.offset}"
    assert (change.topic, change.partition, change.offset) == (
        sent.topic,
        sent.partition,
        sent.offset,
    ), where
    assert change.op == "upsert", where
    assert change.key == sent.key, where
    assert change.before is None, where
    assert change.after == sent.value, where
    assert change.table == table, where
    assert change.source is None, where
    assert change.timestamp == sent.timestamp, where


def test_upserts_equal_the_produced_rows(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    started = datetime.now(timezone.utc)
    rows = [ORDER_1, ORDER_2, ORDER_3_ALL_NULL, ORDER_1_UPDATED]
    sent = cdc.produce(
        topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, [({"id": r["id"]}, r) for r in rows]
    )
    finished = datetime.now(timezone.utc)

    changes = read_all(open_stream, topic)

    assert len(changes) == len(rows)
    for change, row_sent in zip(changes, sent, strict=True):
        assert_upsert(change, row_sent, "orders")
        assert change.after is not None
        for column, expected in row_sent.value.items():
            assert type(change.after[column]) is type(expected), column
        assert change.timestamp is not None
        assert change.timestamp.utcoffset() == timedelta(0)
        assert started - timedelta(seconds=5) <= change.timestamp <= finished + timedelta(seconds=5)
    # An update is just the full new row again, under the same key.
    assert changes[3].key == changes[0].key == {"id": 1}
    assert changes[3].after is not None
    assert changes[3].after["status"] == "shipped"


def test_tombstone_is_a_delete_with_the_key(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    sent = cdc.produce(
        topic,
        BW_ORDERS_KEY_SCHEMA,
        BW_ORDERS_SCHEMA,
        [({"id": 1}, ORDER_1), ({"id": 2}, ORDER_2), ({"id": 1}, None), ({"id": 2}, ORDER_2)],
    )

    changes = read_all(open_stream, topic)

    assert [c.op for c in changes] == ["upsert", "upsert", "delete", "upsert"]
    assert_upsert(changes[0], sent[0], "orders")
    assert_upsert(changes[1], sent[1], "orders")
    assert_upsert(changes[3], sent[3], "orders")
    delete = changes[2]
    assert (delete.topic, delete.partition, delete.offset) == (
        topic,
        sent[2].partition,
        sent[2].offset,
    )
    assert delete.key == {"id": 1}
    assert delete.after is None
    assert delete.before is None
    assert delete.timestamp == sent[2].timestamp


def test_unkeyed_rows(cdc: CdcProducer, topic: str, open_stream: OpenStream) -> None:
    """A table without a primary key: null Kafka key, no key schema."""
    rows = [ORDER_1, ORDER_3_ALL_NULL]
    sent = cdc.produce(topic, None, BW_ORDERS_SCHEMA, [(None, r) for r in rows], partition=0)

    changes = read_all(open_stream, topic)

    assert len(changes) == 2
    for change, row_sent in zip(changes, sent, strict=True):
        assert change.key is None
        assert_upsert(change, row_sent, "orders")


def test_two_tables_in_one_stream(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    orders_topic, customers_topic = make_topic(), make_topic()
    customers = [
        {"id": 7, "name": "Zoë", "email": "zoe@example.com"},
        {"id": 8, "name": "Bob", "email": None},
    ]
    sent_customers = cdc.produce(
        customers_topic,
        BW_CUSTOMERS_KEY_SCHEMA,
        BW_CUSTOMERS_SCHEMA,
        [({"id": c["id"]}, c) for c in customers],
    )
    sent_orders = cdc.produce(
        orders_topic,
        BW_ORDERS_KEY_SCHEMA,
        BW_ORDERS_SCHEMA,
        [({"id": r["id"]}, r) for r in (ORDER_1, ORDER_2)],
    )

    changes = read_all(open_stream, [orders_topic, customers_topic])

    assert len(changes) == 4
    by_topic: dict[str, list[Change]] = {orders_topic: [], customers_topic: []}
    for change in changes:
        by_topic[change.topic].append(change)
    for change, row_sent in zip(by_topic[orders_topic], sent_orders, strict=True):
        assert_upsert(change, row_sent, "orders")
    for change, row_sent in zip(by_topic[customers_topic], sent_customers, strict=True):
        assert_upsert(change, row_sent, "customers")


def test_schema_evolution_each_row_decodes_with_its_writer_schema(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    """A new nullable column (default null) is added midway; an old producer keeps writing v1."""
    v2_schema = with_field(
        BW_ORDERS_SCHEMA, {"name": "coupon", "type": ["null", "string"], "default": None}
    )
    key = BW_ORDERS_KEY_SCHEMA
    sent = cdc.produce(
        topic, key, BW_ORDERS_SCHEMA, [({"id": 1}, ORDER_1), ({"id": 2}, ORDER_2)], partition=0
    )
    sent += cdc.produce(
        topic,
        key,
        v2_schema,
        [
            ({"id": 1}, {**ORDER_1_UPDATED, "coupon": "SPRING-10 🌸"}),
            ({"id": 3}, {**ORDER_3_ALL_NULL, "coupon": None}),
        ],
        partition=0,
    )
    sent += cdc.produce(
        topic, key, BW_ORDERS_SCHEMA, [({"id": 2}, {**ORDER_2, "status": "v1 again"})], partition=0
    )
    schema_ids = [int.from_bytes(d.value_bytes[1:5], "big") for d in sent if d.value_bytes]
    assert schema_ids[0] == schema_ids[1] == schema_ids[4] != schema_ids[2] == schema_ids[3]

    changes = read_all(open_stream, topic)

    assert len(changes) == len(sent) == 5
    for change, row_sent in zip(changes, sent, strict=True):
        assert_upsert(change, row_sent, "orders")
    assert changes[0].after is not None
    assert "coupon" not in changes[0].after
    assert changes[2].after is not None
    assert changes[2].after["coupon"] == "SPRING-10 🌸"
    assert changes[3].after is not None
    assert "coupon" in changes[3].after
    assert changes[3].after["coupon"] is None
    assert changes[4].after is not None
    assert "coupon" not in changes[4].after


def test_until_end_ignores_messages_produced_after_the_start(
    cdc: CdcProducer, topic: str, open_stream: OpenStream
) -> None:
    """The bound is the high watermark read at start: later rows are not delivered."""
    sent = cdc.produce(
        topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, [({"id": 1}, ORDER_1)], partition=0
    )
    with open_stream(topic, until="end") as stream:
        first = next(stream)
        cdc.produce(
            topic, BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, [({"id": 2}, ORDER_2)], partition=0
        )
        time.sleep(1.0)
        rest = list(stream)
    assert_upsert(first, sent[0], "orders")
    assert rest == []
