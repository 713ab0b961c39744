"""Helpers for the capture tests: SQL through ``psql`` and a private capture setup per test.

Every test gets its own PostgreSQL schema, publication, replication slot and topic prefix, so
tests never see each other's tables or events, and ``cleanup`` drops them (a forgotten slot
would hold WAL forever).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import changestream
from cdc import registry_conf
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

FIELD = "\x1f"
RECORD = "\x1e"
NULL = "\x01NULL\x01"


def psql(dsn: str, sql: str) -> list[list[str | None]]:
    """Run ``sql`` with psql; the rows of the last statement as text (None for NULL)."""
    done = subprocess.run(
        [
            "psql",
            dsn,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            FIELD,
            "-R",
            RECORD,
            "-P",
            f"null={NULL}",
            "-c",
            "SET TimeZone = 'UTC'",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"psql failed: {done.stderr}")
    out = done.stdout.rstrip("\n")
    if not out:
        return []
    return [
        [None if value == NULL else value for value in line.split(FIELD)]
        for line in out.split(RECORD)
        if line.strip("\n")
    ]


@dataclass
class CaptureSetup:
    """One test's schema, slot, publication and topic prefix on the stack."""

    stack: dict[str, str]
    name: str = field(default_factory=lambda: f"cap_{uuid4().hex[:10]}")

    @property
    def dsn(self) -> str:
        return self.stack["POSTGRES_DSN"]

    @property
    def schema(self) -> str:
        return self.name

    def sql(self, sql: str) -> list[list[str | None]]:
        return psql(self.dsn, sql)

    def topic(self, table: str) -> str:
        return f"{self.name}.{self.schema}.{table}"

    def capture(self, tables: Sequence[str], **kwargs: Any) -> dict[str, int]:
        """``changestream.capture`` of these tables (in this test's schema) until now."""
        options: dict[str, Any] = {
            "dsn": self.dsn,
            "bootstrap_servers": self.stack["KAFKA_BOOTSTRAP_SERVERS"],
            "schema_registry_url": self.stack["SCHEMA_REGISTRY_URL"],
            "tables": [f"{self.schema}.{t}" for t in tables],
            "topic_prefix": self.name,
            "slot": self.name,
            "publication": self.name,
            "until": "now",
        }
        options.update(kwargs)
        result: dict[str, int] = changestream.capture(**options)
        return result

    def confirmed_flush_lsn(self) -> int:
        rows = self.sql(
            f"SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots "
            f"WHERE slot_name = '{self.name}'"
        )
        assert rows, "the slot does not exist"
        return int(rows[0][0] or 0)

    def cleanup(self) -> None:
        self.sql(
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = '{self.name}' AND NOT active"
        )
        self.sql(f"DROP PUBLICATION IF EXISTS {self.name}")
        self.sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def read_independently(stack: dict[str, str], topic: str) -> list[tuple[Any, Any]]:
    """Every (key, value) of ``topic``, decoded by confluent-kafka's AvroDeserializer."""
    with SchemaRegistryClient(registry_conf(stack["SCHEMA_REGISTRY_URL"])) as registry:
        return _read(stack, topic, AvroDeserializer(registry))


def _read(
    stack: dict[str, str], topic: str, deserializer: AvroDeserializer
) -> list[tuple[Any, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": f"check-{uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=30)[1] for p in partitions}
        consumer.assign(partitions)
        out: list[tuple[Any, Any]] = []
        remaining = {p: end for p, end in ends.items() if end > 0}
        while remaining:
            message = consumer.poll(10)
            assert message is not None, f"timed out reading {topic}"
            if message.error():
                raise KafkaException(message.error())
            partition = int(message.partition() or 0)
            offset = int(message.offset() or 0)
            key_context = SerializationContext(topic, MessageField.KEY)
            value_context = SerializationContext(topic, MessageField.VALUE)
            key = deserializer(message.key(), key_context) if message.key() else None
            value = deserializer(message.value(), value_context) if message.value() else None
            out.append((key, value))
            if offset + 1 >= remaining.get(partition, 0):
                remaining.pop(partition, None)
        return out
    finally:
        consumer.close()
