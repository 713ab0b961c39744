"""Comparing two topics written for the same tables: the real Debezium connector's and capture's.

The schemas come from the registry as registered (``registered_schema``); the record names
carry the writer's topic prefix, which ``with_prefix`` substitutes so the two can be compared
as JSON. The events are decoded by confluent-kafka's AvroDeserializer (tests/pg_capture.py's
``read_independently``); ``comparable`` removes from an event what names the writer instance
or the moment it wrote, and nothing else.
"""

from __future__ import annotations

import json
import math
from typing import Any
from uuid import uuid4

from cdc import registry_conf
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

# `source` fields that depend on the writer, not on the change: the connector's version and
# the times the event was made. The logical name is compared after prefix substitution.
WRITER_SOURCE_FIELDS = ("version", "ts_ms", "ts_us", "ts_ns")
# Envelope fields set to the writer's clock when it wrote the event.
WRITER_ENVELOPE_FIELDS = ("ts_ms", "ts_us", "ts_ns")
# `source` fields of a snapshot row that name the writer's own slot and snapshot transaction:
# each writer creates its slot at its own moment, in its own transaction.
SNAPSHOT_SOURCE_FIELDS = ("lsn", "txId", "sequence")


def registered_schema(registry_url: str, subject: str) -> Any:
    """The latest schema registered under ``subject``, parsed."""
    with SchemaRegistryClient(registry_conf(registry_url)) as registry:
        return json.loads(registry.get_latest_version(subject).schema.schema_str)


def with_prefix(value: Any, old: str, new: str) -> Any:
    """``value`` with every string that starts with ``old.`` (a record name, a namespace, a
    ``connect.name``) or equals ``old`` (the logical name) starting with ``new`` instead."""
    if isinstance(value, dict):
        return {key: with_prefix(item, old, new) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(with_prefix(item, old, new) for item in value)
    if isinstance(value, str) and (value == old or value.startswith(old + ".")):
        return new + value[len(old) :]
    return value


def comparable(event: tuple[Any, Any]) -> tuple[Any, Any]:
    """A (key, value) event without the writer's version and clock (and, for snapshot rows,
    without the writer's slot position and transaction); NaN spelled out so that equal events
    compare equal."""
    key, value = event
    if value is None:
        return key, None
    value = dict(value)
    for name in WRITER_ENVELOPE_FIELDS:
        value.pop(name, None)
    source = dict(value["source"])
    for name in WRITER_SOURCE_FIELDS:
        source.pop(name, None)
    if value.get("op") == "r":
        for name in SNAPSHOT_SOURCE_FIELDS:
            source.pop(name, None)
    value["source"] = source
    return key, _nan_spelled(value)


def _nan_spelled(value: Any) -> Any:
    """``value`` with float NaNs as the string ``"NaN"``, which compares equal to itself."""
    if isinstance(value, dict):
        return {key: _nan_spelled(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_spelled(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def message_headers(bootstrap_servers: str, topic: str) -> list[dict[str, bytes]]:
    """The headers of every message of ``topic`` (one partition), in order."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"headers-{uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partition = TopicPartition(topic, 0, 0)
        _, end = consumer.get_watermark_offsets(partition, timeout=30)
        consumer.assign([partition])
        out: list[dict[str, bytes]] = []
        while len(out) < end:
            message = consumer.poll(10)
            assert message is not None, f"timed out reading {topic}"
            assert message.error() is None, message.error()
            raw = message.headers() or []
            pairs = list(raw.items()) if isinstance(raw, dict) else raw
            out.append({name: _as_bytes(value) for name, value in pairs})
        return out
    finally:
        consumer.close()


def _as_bytes(value: str | bytes | None) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return value or b""
