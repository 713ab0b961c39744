"""reader_schema=: values written under several schema versions come out in one shape
(Avro schema resolution: added fields take defaults, removed fields go, types promote)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import changestream
import pytest
from cdc import CdcProducer

Open = Callable[..., changestream.ChangeStream]

V1: dict[str, Any] = {
    "type": "record",
    "name": "orders",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "status", "type": "string"},
        {"name": "legacy_code", "type": ["null", "string"], "default": None},
    ],
}
# Version 2 drops legacy_code, adds a coupon with a default, and widens id to long.
V2: dict[str, Any] = {
    "type": "record",
    "name": "orders",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "status", "type": "string"},
        {"name": "coupon", "type": "string", "default": "NONE"},
    ],
}


def produce_both_versions(cdc: CdcProducer, topic: str) -> None:
    cdc.produce(topic, None, V1, [(None, {"id": 1, "status": "new", "legacy_code": "X1"})])
    cdc.produce(topic, None, V2, [(None, {"id": 2**40, "status": "paid", "coupon": "SPRING"})])
    cdc.produce(topic, None, V1, [(None, {"id": 3, "status": "sent", "legacy_code": None})])


def test_every_version_reads_in_the_reader_shape(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    produce_both_versions(cdc, topic)
    with open_stream(topic, until="end", reader_schema=json.dumps(V2)) as stream:
        rows = [c.after for c in stream]
    assert rows == [
        {"id": 1, "status": "new", "coupon": "NONE"},
        {"id": 2**40, "status": "paid", "coupon": "SPRING"},
        {"id": 3, "status": "sent", "coupon": "NONE"},
    ]
    # Field order follows the reader schema.
    assert all(list(row) == ["id", "status", "coupon"] for row in rows if row is not None)


def test_reader_schema_per_topic_and_as_a_dict(
    open_stream: Open, cdc: CdcProducer, make_topic: Callable[..., str]
) -> None:
    resolved, untouched = make_topic(), make_topic()
    produce_both_versions(cdc, resolved)
    produce_both_versions(cdc, untouched)
    with open_stream([resolved, untouched], until="end", reader_schema={resolved: V2}) as stream:
        rows = {(c.topic, c.offset): c.after for c in stream}
    assert rows[(resolved, 0)] == {"id": 1, "status": "new", "coupon": "NONE"}
    # The other topic's values keep their writer's shape.
    assert rows[(untouched, 0)] == {"id": 1, "status": "new", "legacy_code": "X1"}
    assert rows[(untouched, 1)] == {"id": 2**40, "status": "paid", "coupon": "SPRING"}


def test_a_reader_that_cannot_read_a_version_is_a_decode_error_at_that_message(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    produce_both_versions(cdc, topic)
    # id stays int: a long written by V2 cannot be narrowed, and V1 has no coupon default.
    narrow = copy.deepcopy(V1)
    narrow["fields"].append({"name": "coupon", "type": "string"})
    with (
        open_stream(topic, until="end", reader_schema=narrow) as stream,
        pytest.raises(changestream.DecodeError, match=r"coupon|long") as raised,
    ):
        next(stream)
    assert raised.value.offset == 0


def test_an_invalid_reader_schema_is_a_config_error(open_stream: Open, topic: str) -> None:
    with pytest.raises(changestream.ConfigError, match="reader_schema"):
        open_stream(topic, reader_schema='{"type": "record", "name": "x"}')
