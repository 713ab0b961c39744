"""Malformed input: each bad message raises a typed error from iteration.

Good rows (encoded by confluent-kafka's AvroSerializer) come first and are
delivered; the next ``next()`` raises for the bad message, and the error names
its topic, partition and offset. Everything goes to partition 1 of a
2-partition topic, the bad message at offset 3 (so those numbers are not
defaults), followed by one more good row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from cdc import BW_ORDERS_KEY_SCHEMA, BW_ORDERS_SCHEMA, CdcProducer, Delivered, Row
from changestream import (
    ChangeStream,
    ChangeStreamError,
    DecodeError,
    SchemaNotFoundError,
    SchemaRegistryError,
)

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]

PARTITION = 1
UNKNOWN_SCHEMA_ID = 999999

ROWS: list[Row] = [
    {
        "id": i,
        "customer_id": 10 * i,
        "quantity": i,
        "status": f"status {i}",
        "weight_kg": 0.5,
        "total": 9.75,
        "paid": i % 2 == 0,
        # Last column: 32 bytes, so cutting the tail leaves a length with too few bytes behind it.
        "payload": bytes([0xFF, 0x00]) * 16,
    }
    for i in range(1, 5)
]


@pytest.fixture
def bad_topic(make_topic: Callable[..., str]) -> str:
    return make_topic(2)


def produce_good(cdc: CdcProducer, topic: str) -> list[Delivered]:
    """Three good rows at offsets 0, 1, 2 of the partition."""
    sent = cdc.produce(
        topic,
        BW_ORDERS_KEY_SCHEMA,
        BW_ORDERS_SCHEMA,
        [({"id": r["id"]}, r) for r in ROWS[:3]],
        partition=PARTITION,
    )
    assert [d.offset for d in sent] == [0, 1, 2]
    return sent


def good_value_bytes(cdc: CdcProducer, topic: str) -> bytes:
    """A correct Confluent-framed payload for the topic's value subject (not produced)."""
    payload = cdc.serialize(topic, BW_ORDERS_SCHEMA, ROWS[3])
    assert payload[0] == 0
    assert len(payload) > 40
    return payload


def good_key_bytes(cdc: CdcProducer, topic: str) -> bytes:
    return cdc.serialize(topic, BW_ORDERS_KEY_SCHEMA, {"id": ROWS[3]["id"]}, is_key=True)


def mentions_number(text: str, number: int) -> bool:
    return re.search(rf"(?<!\d){number}(?!\d)", text) is not None


def expect_error_at(
    cdc: CdcProducer,
    open_stream: OpenStream,
    topic: str,
    good: list[Delivered],
    bad: Delivered,
    error_type: type[ChangeStreamError],
) -> ChangeStreamError:
    """Read the good rows, then check that the next ``next()`` raises ``error_type`` for ``bad``.

    A good row is produced after the bad one, so an implementation that skips
    the bad message returns that row instead of raising (rather than hanging).
    """
    [trailer] = cdc.produce(
        topic,
        BW_ORDERS_KEY_SCHEMA,
        BW_ORDERS_SCHEMA,
        [({"id": 5}, {**ROWS[0], "id": 5})],
        partition=PARTITION,
    )
    assert trailer.offset == bad.offset + 1
    with open_stream(topic, until="end") as stream:
        for sent in good:
            change = next(stream)
            assert (change.partition, change.offset) == (sent.partition, sent.offset)
            assert change.after == sent.value
        with pytest.raises(error_type) as info:
            next(stream)
    error = info.value
    assert isinstance(error, ChangeStreamError)
    assert error.topic == bad.topic
    assert error.partition == bad.partition
    assert error.offset == bad.offset
    message = str(error)
    assert topic in message, message
    rest = message.replace(topic, " ")
    assert mentions_number(rest, bad.partition), f"partition {bad.partition} not in: {message}"
    assert mentions_number(rest, bad.offset), f"offset {bad.offset} not in: {message}"
    return error


def test_bad_magic_byte(cdc: CdcProducer, bad_topic: str, open_stream: OpenStream) -> None:
    good = produce_good(cdc, bad_topic)
    payload = b"\x01" + good_value_bytes(cdc, bad_topic)[1:]
    [bad] = cdc.produce_raw(
        bad_topic, [(good_key_bytes(cdc, bad_topic), payload)], partition=PARTITION
    )

    expect_error_at(cdc, open_stream, bad_topic, good, bad, DecodeError)


def test_json_payload(cdc: CdcProducer, bad_topic: str, open_stream: OpenStream) -> None:
    good = produce_good(cdc, bad_topic)
    payload = json.dumps({"id": 4, "status": "not avro"}).encode()
    [bad] = cdc.produce_raw(
        bad_topic, [(good_key_bytes(cdc, bad_topic), payload)], partition=PARTITION
    )

    expect_error_at(cdc, open_stream, bad_topic, good, bad, DecodeError)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda p: p[:-10], id="tail-cut"),
        pytest.param(lambda p: p[:5], id="framing-only"),
        pytest.param(lambda p: p[:3], id="short-framing"),
    ],
)
def test_truncated_payload(
    cdc: CdcProducer, bad_topic: str, open_stream: OpenStream, cut: Callable[[bytes], bytes]
) -> None:
    good = produce_good(cdc, bad_topic)
    payload = cut(good_value_bytes(cdc, bad_topic))
    [bad] = cdc.produce_raw(
        bad_topic, [(good_key_bytes(cdc, bad_topic), payload)], partition=PARTITION
    )

    expect_error_at(cdc, open_stream, bad_topic, good, bad, DecodeError)


def test_unknown_schema_id(cdc: CdcProducer, bad_topic: str, open_stream: OpenStream) -> None:
    good = produce_good(cdc, bad_topic)
    body = good_value_bytes(cdc, bad_topic)[5:]
    payload = b"\x00" + UNKNOWN_SCHEMA_ID.to_bytes(4, "big") + body
    [bad] = cdc.produce_raw(
        bad_topic, [(good_key_bytes(cdc, bad_topic), payload)], partition=PARTITION
    )

    error = expect_error_at(cdc, open_stream, bad_topic, good, bad, SchemaNotFoundError)

    assert isinstance(error, SchemaRegistryError)
    assert str(UNKNOWN_SCHEMA_ID) in str(error)


def test_bad_magic_byte_in_key(cdc: CdcProducer, bad_topic: str, open_stream: OpenStream) -> None:
    good = produce_good(cdc, bad_topic)
    [bad] = cdc.produce_raw(
        bad_topic, [(b"\x07not a key", good_value_bytes(cdc, bad_topic))], partition=PARTITION
    )

    expect_error_at(cdc, open_stream, bad_topic, good, bad, DecodeError)
