"""Produce change events for the tests with an independent encoder.

Every event a test reads back is encoded here by confluent-kafka-python's
``AvroSerializer`` (fastavro underneath), registered in the stack's schema
registry under the default TopicNameStrategy subjects (``<topic>-key`` and
``<topic>-value``) and framed as Confluent's serializer frames it (magic byte 0,
4-byte big-endian schema id, Avro body). changestream's own code never encodes
a test event, so the tests check our decoder against someone else's encoder.

The schemas follow what the real producers register:

- Debezium's PostgreSQL connector through Kafka Connect's ``AvroConverter``
  (record ``Envelope`` in namespace ``<prefix>.public.<table>``, ``before`` and
  ``after`` sharing one ``Value`` record, ``source`` record
  ``io.debezium.connector.postgresql.Source``, ``connect.*`` properties, and
  ``[T, "null"]`` unions for optional fields that have a non-null default);
- Bottled Water (record named after the table in namespace
  ``com.martinkl.bottledwater.dbschema.<schema>``, every column ``["null", T]``
  and no defaults; the key record is named after the primary-key index).

Only primitive Avro types and nullable unions are used; logical types are
covered elsewhere.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from confluent_kafka import KafkaError as ProducerKafkaError
from confluent_kafka import Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

Row = dict[str, Any]
Schema = dict[str, Any]
# Where a message goes: the producer's partitioner (None), a fixed partition, or
# a function of the key (the dict, or None for an unkeyed message).
Partition = int | Callable[[Any], int] | None

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def registry_conf(url: str) -> dict[str, Any]:
    """confluent-kafka's schema registry client settings for the tests: a request that gets no
    answer within 20 s is retried (the client retries transport errors, timeouts included)
    instead of waiting forever on a stalled connection."""
    return {"url": url, "timeout": 20}


@dataclass(frozen=True)
class Delivered:
    """One produced message, where the broker put it, and what went in."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: Any
    """The key handed to the serializer (a dict), raw bytes for a raw message, or None."""
    value: Any
    """The value handed to the serializer (a dict), raw bytes for a raw message, or None."""
    key_bytes: bytes | None
    value_bytes: bytes | None

    @property
    def timestamp(self) -> datetime:
        """The message timestamp the broker acknowledged, as an aware UTC datetime."""
        return EPOCH + timedelta(milliseconds=self.timestamp_ms)


class CdcProducer:
    """Produce Avro change events (or raw bytes) and report where they landed."""

    def __init__(self, bootstrap_servers: str, schema_registry_url: str) -> None:
        self.registry = SchemaRegistryClient(registry_conf(schema_registry_url))
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                # Idempotence keeps produce order = log order within a partition,
                # even when librdkafka retries.
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        self._serializers: dict[tuple[str, bool], AvroSerializer] = {}

    def close(self) -> None:
        """Deliver anything still queued and close the registry client's HTTP session."""
        self._producer.flush(30)
        self.registry.close()

    def serializer(self, schema: Schema, *, is_key: bool) -> AvroSerializer:
        """The AvroSerializer for ``schema`` (one per schema text, cached)."""
        schema_str = json.dumps(schema)
        cache_key = (schema_str, is_key)
        if cache_key not in self._serializers:
            self._serializers[cache_key] = AvroSerializer(
                self.registry,
                schema_str,
                conf={
                    "auto.register.schemas": True,
                    # Spelled out: the client's own default is the ASSOCIATED
                    # strategy, which asks the registry for topic associations
                    # first. Real CDC producers use <topic>-key / <topic>-value.
                    "subject.name.strategy": topic_subject_name_strategy,
                },
            )
        return self._serializers[cache_key]

    def serialize(self, topic: str, schema: Schema, obj: Row, *, is_key: bool = False) -> bytes:
        """Encode ``obj`` as a Confluent-framed Avro payload, registering ``schema``."""
        field = MessageField.KEY if is_key else MessageField.VALUE
        payload = self.serializer(schema, is_key=is_key)(obj, SerializationContext(topic, field))
        assert payload is not None
        return payload

    def produce(
        self,
        topic: str,
        key_schema: Schema | None,
        value_schema: Schema | None,
        records: Sequence[tuple[Row | None, Row | None]],
        partition: Partition = None,
    ) -> list[Delivered]:
        """Serialize and produce ``(key, value)`` pairs in order; ``None`` means a null key/value.

        Flushes, checks that every message was acknowledged, and returns one
        :class:`Delivered` per record, in the order given.
        """
        encoded: list[tuple[Any, Any, bytes | None, bytes | None, int | None]] = []
        for key, value in records:
            key_bytes = None
            if key is not None:
                assert key_schema is not None, "a keyed record needs a key schema"
                key_bytes = self.serialize(topic, key_schema, key, is_key=True)
            value_bytes = None
            if value is not None:
                assert value_schema is not None, "a non-null value needs a value schema"
                value_bytes = self.serialize(topic, value_schema, value)
            encoded.append((key, value, key_bytes, value_bytes, _partition_for(partition, key)))
        return self._send(topic, encoded)

    def produce_raw(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None]],
        partition: Partition = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> list[Delivered]:
        """Produce raw key/value bytes as given (for malformed input), each message with
        ``headers`` if given."""
        encoded = [(k, v, k, v, _partition_for(partition, k)) for k, v in records]
        return self._send(topic, encoded, headers)

    def _send(
        self,
        topic: str,
        encoded: Sequence[tuple[Any, Any, bytes | None, bytes | None, int | None]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> list[Delivered]:
        results: list[Delivered | None] = [None] * len(encoded)
        errors: list[str] = []

        def on_delivery(index: int) -> Callable[[ProducerKafkaError | None, Message], None]:
            key, value, key_bytes, value_bytes, _ = encoded[index]

            def report(err: ProducerKafkaError | None, msg: Message) -> None:
                if err is not None:
                    errors.append(f"message {index}: {err}")
                    return
                _, timestamp_ms = msg.timestamp()
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None
                assert offset is not None
                results[index] = Delivered(
                    topic, partition, offset, timestamp_ms, key, value, key_bytes, value_bytes
                )

            return report

        for index, (_, _, key_bytes, value_bytes, partition) in enumerate(encoded):
            kwargs: dict[str, Any] = {
                "key": key_bytes,
                "value": value_bytes,
                "on_delivery": on_delivery(index),
            }
            if partition is not None:
                kwargs["partition"] = partition
            if headers is not None:
                kwargs["headers"] = headers
            self._producer.produce(topic, **kwargs)
            self._producer.poll(0)
        remaining = self._producer.flush(60)
        assert remaining == 0, f"{remaining} messages to {topic} were not delivered"
        assert not errors, f"delivery to {topic} failed: {errors}"
        delivered = [r for r in results if r is not None]
        assert len(delivered) == len(encoded)
        return delivered


def _partition_for(partition: Partition, key: Any) -> int | None:
    if callable(partition):
        return partition(key)
    return partition


# ---------------------------------------------------------------------------
# Debezium (PostgreSQL connector, Kafka Connect AvroConverter)
# ---------------------------------------------------------------------------

DEBEZIUM_VERSION = "3.6.1.Final"

# The order row as Debezium's PostgreSQL connector describes this table:
#   id integer PRIMARY KEY, customer_id bigint NOT NULL, quantity integer NOT NULL,
#   priority smallint NOT NULL, status text NOT NULL, note text,
#   currency text DEFAULT 'EUR', weight_kg real, total double precision NOT NULL,
#   discount double precision, gift_wrap boolean NOT NULL, paid boolean, payload bytea
ORDER_COLUMNS: list[Schema] = [
    {"name": "id", "type": "int"},
    {"name": "customer_id", "type": "long"},
    {"name": "quantity", "type": "int"},
    {"name": "priority", "type": {"type": "int", "connect.type": "int16"}},
    {"name": "status", "type": "string"},
    {"name": "note", "type": ["null", "string"], "default": None},
    # An optional column with a non-null default: AvroConverter puts null second.
    {
        "name": "currency",
        "type": [{"type": "string", "connect.default": "EUR"}, "null"],
        "default": "EUR",
    },
    {"name": "weight_kg", "type": ["null", "float"], "default": None},
    {"name": "total", "type": "double"},
    {"name": "discount", "type": ["null", "double"], "default": None},
    {"name": "gift_wrap", "type": "boolean"},
    {"name": "paid", "type": ["null", "boolean"], "default": None},
    {"name": "payload", "type": ["null", "bytes"], "default": None},
]

CUSTOMER_COLUMNS: list[Schema] = [
    {"name": "id", "type": "int"},
    {"name": "name", "type": "string"},
    {"name": "email", "type": ["null", "string"], "default": None},
]

_OPTIONAL_LONG: Schema = {"type": ["null", "long"], "default": None}
_OPTIONAL_STRING: Schema = {"type": ["null", "string"], "default": None}

DEBEZIUM_POSTGRES_SOURCE: Schema = {
    "type": "record",
    "name": "Source",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {
            "name": "snapshot",
            "type": [
                {
                    "type": "string",
                    "connect.version": 1,
                    "connect.parameters": {
                        "allowed": "true,first,first_in_data_collection,"
                        "last_in_data_collection,last,false,incremental"
                    },
                    "connect.default": "false",
                    "connect.name": "io.debezium.data.Enum",
                },
                "null",
            ],
            "default": "false",
        },
        {"name": "db", "type": "string"},
        {"name": "sequence", **_OPTIONAL_STRING},
        {"name": "ts_us", **_OPTIONAL_LONG},
        {"name": "ts_ns", **_OPTIONAL_LONG},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "txId", **_OPTIONAL_LONG},
        {"name": "lsn", **_OPTIONAL_LONG},
        {"name": "xmin", **_OPTIONAL_LONG},
    ],
    "connect.name": "io.debezium.connector.postgresql.Source",
}

DEBEZIUM_TRANSACTION_BLOCK: Schema = {
    "type": "record",
    "name": "block",
    "namespace": "event",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": "event.block",
}


def debezium_key_schema(prefix: str, table: str, key_fields: Sequence[Schema]) -> Schema:
    """The key schema Debezium registers: record ``Key`` in ``<prefix>.public.<table>``."""
    namespace = f"{prefix}.public.{table}"
    return {
        "type": "record",
        "name": "Key",
        "namespace": namespace,
        "fields": copy.deepcopy(list(key_fields)),
        "connect.name": f"{namespace}.Key",
    }


def debezium_envelope_schema(prefix: str, table: str, columns: Sequence[Schema]) -> Schema:
    """The value schema Debezium registers for a table: the ``Envelope`` record."""
    namespace = f"{prefix}.public.{table}"
    value = {
        "type": "record",
        "name": "Value",
        "fields": copy.deepcopy(list(columns)),
        "connect.name": f"{namespace}.Value",
    }
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": namespace,
        "fields": [
            {"name": "before", "type": ["null", value], "default": None},
            # The second use of Value is a by-name reference, as AvroConverter writes it.
            {"name": "after", "type": ["null", "Value"], "default": None},
            {"name": "source", "type": copy.deepcopy(DEBEZIUM_POSTGRES_SOURCE)},
            {
                "name": "transaction",
                "type": ["null", copy.deepcopy(DEBEZIUM_TRANSACTION_BLOCK)],
                "default": None,
            },
            {"name": "op", "type": "string"},
            {"name": "ts_ms", **_OPTIONAL_LONG},
            {"name": "ts_us", **_OPTIONAL_LONG},
            {"name": "ts_ns", **_OPTIONAL_LONG},
        ],
        "connect.version": 2,
        "connect.name": f"{namespace}.Envelope",
    }


def debezium_orders_key_schema(prefix: str) -> Schema:
    return debezium_key_schema(prefix, "orders", [{"name": "id", "type": "int"}])


def debezium_orders_envelope_schema(prefix: str) -> Schema:
    return debezium_envelope_schema(prefix, "orders", ORDER_COLUMNS)


def debezium_source(
    prefix: str,
    *,
    table: str,
    ts_ms: int,
    snapshot: str | None = "false",
    lsn: int | None = None,
    tx_id: int | None = None,
    xmin: int | None = None,
    db: str = "shop",
) -> Row:
    """A PostgreSQL ``source`` block as the connector fills it."""
    return {
        "version": DEBEZIUM_VERSION,
        "connector": "postgresql",
        "name": prefix,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
        "db": db,
        "sequence": None if lsn is None else json.dumps([str(lsn - 64), str(lsn)]),
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
        "schema": "public",
        "table": table,
        "txId": tx_id,
        "lsn": lsn,
        "xmin": xmin,
    }


def debezium_event(
    op: str,
    *,
    before: Row | None,
    after: Row | None,
    source: Row,
    ts_ms: int,
    transaction: Row | None = None,
) -> Row:
    """A Debezium envelope value (``op`` is the one-letter code: c, u, d, r, t, m)."""
    return {
        "before": before,
        "after": after,
        "source": source,
        "transaction": transaction,
        "op": op,
        "ts_ms": ts_ms,
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
    }


# ---------------------------------------------------------------------------
# Bottled Water (flat rows)
# ---------------------------------------------------------------------------

BOTTLED_WATER_NAMESPACE = "com.martinkl.bottledwater.dbschema.public"


def bottled_water_row_schema(table: str, columns: Sequence[tuple[str, str]]) -> Schema:
    """A Bottled Water row schema: every column ``["null", T]``, no defaults."""
    return {
        "type": "record",
        "name": table,
        "namespace": BOTTLED_WATER_NAMESPACE,
        "fields": [{"name": name, "type": ["null", avro_type]} for name, avro_type in columns],
    }


def bottled_water_key_schema(table: str, columns: Sequence[tuple[str, str]]) -> Schema:
    """A Bottled Water key schema: named after the primary-key index, columns nullable."""
    return bottled_water_row_schema(f"{table}_pkey", columns)


BW_ORDER_COLUMNS: list[tuple[str, str]] = [
    ("id", "int"),
    ("customer_id", "long"),
    ("quantity", "int"),
    ("status", "string"),
    ("weight_kg", "float"),
    ("total", "double"),
    ("paid", "boolean"),
    ("payload", "bytes"),
]

BW_ORDERS_KEY_SCHEMA = bottled_water_key_schema("orders", [("id", "int")])
BW_ORDERS_SCHEMA = bottled_water_row_schema("orders", BW_ORDER_COLUMNS)

BW_CUSTOMERS_KEY_SCHEMA = bottled_water_key_schema("customers", [("id", "int")])
BW_CUSTOMERS_SCHEMA = bottled_water_row_schema(
    "customers", [("id", "int"), ("name", "string"), ("email", "string")]
)


def with_field(schema: Schema, field: Schema) -> Schema:
    """A copy of a record schema with one more field at the end (a new schema version)."""
    evolved = copy.deepcopy(schema)
    evolved["fields"].append(copy.deepcopy(field))
    return evolved
