"""The benchmark data: the same topics for every variant, produced once and then reused.

Two datasets of N events each, in topics whose names carry N and ``DATA_VERSION``:

- ``debezium``: Debezium PostgreSQL connector envelopes (Kafka Connect ``AvroConverter``
  schemas) for a 10-column ``orders`` table, ops mixed c/u/d 60/30/10. The table has
  ``REPLICA IDENTITY FULL``, so updates and deletes carry the whole ``before`` row.
- ``rows``: Bottled Water-style flat rows of the same 10 columns, every one ``["null", T]``.

Both are keyed by the primary key (Debezium's ``Key`` record, Bottled Water's ``orders_pkey``),
encoded with fastavro's ``schemaless_writer`` behind the Confluent 5-byte frame, with the
schemas registered in the stack's registry under ``<topic>-key`` / ``<topic>-value``, and
spread over 6 partitions by the producer's key hash.

Change ``DATA_VERSION`` whenever the schemas or the generator change: the topic names change
with it, so stale data is never measured.
"""

from __future__ import annotations

import io
import json
import random
import struct
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from fastavro import parse_schema, schemaless_writer

DATA_VERSION = "v1"
PARTITIONS = 6
DATASETS = ("debezium", "rows")

Schema = dict[str, Any]


def topic_name(dataset: str, events: int) -> str:
    return f"bench.{dataset}.orders.{DATA_VERSION}.n{events}"


# ---------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------

PREFIX = "shop"
NAMESPACE = f"{PREFIX}.public.orders"


def _connect(avro_type: str, name: str, **extra: Any) -> Schema:
    """A Kafka Connect semantic type as AvroConverter writes it."""
    return {"type": avro_type, "connect.version": 1, **extra, "connect.name": name}


_DECIMAL_10_2 = _connect(
    "bytes",
    "org.apache.kafka.connect.data.Decimal",
    scale=2,
    precision=10,
    logicalType="decimal",
    **{"connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}},
)

# orders(id integer PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL,
#        quantity integer NOT NULL, unit_price numeric(10,2) NOT NULL,
#        total double precision NOT NULL, currency text DEFAULT 'EUR',
#        created_at timestamp NOT NULL, updated_at timestamptz, note text)
DEBEZIUM_COLUMNS: list[Schema] = [
    {"name": "id", "type": "int"},
    {"name": "customer_id", "type": "long"},
    {"name": "status", "type": "string"},
    {"name": "quantity", "type": "int"},
    {"name": "unit_price", "type": _DECIMAL_10_2},
    {"name": "total", "type": "double"},
    {
        "name": "currency",
        "type": [{"type": "string", "connect.default": "EUR"}, "null"],
        "default": "EUR",
    },
    {"name": "created_at", "type": _connect("long", "io.debezium.time.MicroTimestamp")},
    {
        "name": "updated_at",
        "type": ["null", _connect("string", "io.debezium.time.ZonedTimestamp")],
        "default": None,
    },
    {"name": "note", "type": ["null", "string"], "default": None},
]

_OPT_LONG: Schema = {"type": ["null", "long"], "default": None}
_OPT_STRING: Schema = {"type": ["null", "string"], "default": None}

DEBEZIUM_SOURCE: Schema = {
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
        {"name": "sequence", **_OPT_STRING},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "txId", **_OPT_LONG},
        {"name": "lsn", **_OPT_LONG},
        {"name": "xmin", **_OPT_LONG},
    ],
    "connect.name": "io.debezium.connector.postgresql.Source",
}

DEBEZIUM_KEY: Schema = {
    "type": "record",
    "name": "Key",
    "namespace": NAMESPACE,
    "fields": [{"name": "id", "type": "int"}],
    "connect.name": f"{NAMESPACE}.Key",
}

DEBEZIUM_ENVELOPE: Schema = {
    "type": "record",
    "name": "Envelope",
    "namespace": NAMESPACE,
    "fields": [
        {
            "name": "before",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Value",
                    "fields": DEBEZIUM_COLUMNS,
                    "connect.name": f"{NAMESPACE}.Value",
                },
            ],
            "default": None,
        },
        {"name": "after", "type": ["null", "Value"], "default": None},
        {"name": "source", "type": DEBEZIUM_SOURCE},
        {
            "name": "transaction",
            "type": [
                "null",
                {
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
                },
            ],
            "default": None,
        },
        {"name": "op", "type": "string"},
        {"name": "ts_ms", **_OPT_LONG},
    ],
    "connect.version": 1,
    "connect.name": f"{NAMESPACE}.Envelope",
}

BW_NAMESPACE = "com.martinkl.bottledwater.dbschema.public"

ROWS_KEY: Schema = {
    "type": "record",
    "name": "orders_pkey",
    "namespace": BW_NAMESPACE,
    "fields": [{"name": "id", "type": ["null", "int"]}],
}

ROWS_VALUE: Schema = {
    "type": "record",
    "name": "orders",
    "namespace": BW_NAMESPACE,
    "fields": [
        {"name": name, "type": ["null", avro_type]}
        for name, avro_type in [
            ("id", "int"),
            ("customer_id", "long"),
            ("status", "string"),
            ("quantity", "int"),
            (
                "unit_price",
                {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            ),
            ("total", "double"),
            ("currency", "string"),
            ("created_at", {"type": "long", "logicalType": "timestamp-micros"}),
            ("updated_at", "string"),
            ("note", "string"),
        ]
    ],
}

SCHEMAS: dict[str, tuple[Schema, Schema]] = {
    "debezium": (DEBEZIUM_KEY, DEBEZIUM_ENVELOPE),
    "rows": (ROWS_KEY, ROWS_VALUE),
}


# ---------------------------------------------------------------------------
# Rows and events
# ---------------------------------------------------------------------------

STATUSES = ("pending", "paid", "packed", "shipped", "delivered", "cancelled")
CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP", None)
NOTES = (None, None, None, "leave at the door", "gift: please wrap", "call before delivery")
BASE = datetime(2026, 3, 1, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _row(rng: random.Random, order_id: int, seconds: int, status: str) -> dict[str, Any]:
    quantity = rng.randint(1, 20)
    unit_cents = rng.randint(99, 99_999)
    created = BASE + timedelta(seconds=seconds - rng.randint(0, 86_400))
    updated = BASE + timedelta(seconds=seconds, microseconds=rng.randint(0, 999_999))
    return {
        "id": order_id,
        "customer_id": rng.randint(1, 5_000_000_000),
        "status": status,
        "quantity": quantity,
        "unit_price": Decimal(unit_cents).scaleb(-2),
        "total": quantity * unit_cents / 100,
        "currency": rng.choice(CURRENCIES),
        "created_at": (created - EPOCH) // timedelta(microseconds=1),
        "updated_at": updated.isoformat().replace("+00:00", "Z"),
        "note": rng.choice(NOTES),
    }


def events(
    dataset: str, count: int, seed: int = 42
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` (key, value) pairs of ``dataset``, the same for the same seed."""
    rng = random.Random(seed)
    live: list[int] = []  # ids created and not deleted (order does not matter)
    next_id = 1
    lsn = 0x1_0000_0000
    tx = 700_000
    for i in range(count):
        roll = rng.random()
        ts_ms = int((BASE - EPOCH).total_seconds() * 1000) + i * 3
        seconds = i * 3 // 1000
        if roll < 0.6 or len(live) < 100:
            op = "c"
            order_id, next_id = next_id, next_id + 1
            live.append(order_id)
            before, after = None, _row(rng, order_id, seconds, "pending")
        else:
            slot = rng.randrange(len(live))
            order_id = live[slot]
            before = _row(rng, order_id, seconds - 60, rng.choice(STATUSES))
            if roll < 0.9:
                op = "u"
                updated = BASE + timedelta(seconds=seconds, microseconds=rng.randint(0, 999_999))
                after = dict(
                    before,
                    status=rng.choice(STATUSES),
                    updated_at=updated.isoformat().replace("+00:00", "Z"),
                )
            else:
                op = "d"
                after = None
                live[slot] = live[-1]
                live.pop()
        lsn += rng.randint(80, 400)
        if rng.random() < 0.3:
            tx += 1
        if dataset == "debezium":
            key = {"id": order_id}
            value = {
                "before": before,
                "after": after,
                "source": {
                    "version": "3.6.1.Final",
                    "connector": "postgresql",
                    "name": PREFIX,
                    "ts_ms": ts_ms - 5,
                    "snapshot": "false",
                    "db": "shop",
                    "sequence": json.dumps([str(lsn - 64), str(lsn)]),
                    "schema": "public",
                    "table": "orders",
                    "txId": tx,
                    "lsn": lsn,
                    "xmin": None,
                },
                "transaction": None,
                "op": op,
                "ts_ms": ts_ms,
            }
            yield key, value
        else:
            # Bottled Water writes the new row for inserts and updates and a null value for
            # deletes; here every event is a row (a "delete" writes the old row once more), so
            # every variant decodes N values.
            yield {"id": order_id}, (after if after is not None else before)  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Producing
# ---------------------------------------------------------------------------


def encoder(schema: Schema, schema_id: int) -> Callable[[Any], bytes]:
    parsed = parse_schema(schema)
    header = struct.pack(">bI", 0, schema_id)

    def encode(obj: Any) -> bytes:
        out = io.BytesIO()
        out.write(header)
        schemaless_writer(out, parsed, obj)
        return out.getvalue()

    return encode


def _counts(bootstrap: str, topic: str) -> int | None:
    """Messages held by ``topic`` (high - low watermarks summed), or None if it does not exist."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return None
        total = 0
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def _schemas_resolve(bootstrap: str, registry_url: str, topic: str) -> bool:
    """Whether the registry still has the schemas of the first message of partition 0."""
    import urllib.error
    import urllib.request

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        messages = consumer.consume(num_messages=1, timeout=10)
    finally:
        consumer.close()
    if not messages or messages[0].error() is not None:
        return False
    for payload in (messages[0].key(), messages[0].value()):
        if payload is None or len(payload) < 5:
            return False
        schema_id = struct.unpack_from(">I", payload, 1)[0]
        url = f"{registry_url.rstrip('/')}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=30):
                pass
        except urllib.error.URLError:
            return False
    return True


def ensure(dataset: str, events_wanted: int, bootstrap: str, registry_url: str) -> str:
    """The topic holding ``events_wanted`` events of ``dataset``; produced if missing."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import (
        NewTopic,
    )  # re-exported by confluent_kafka.admin, untyped there

    with warnings.catch_warnings(record=True):
        # The registry client imports authlib's deprecated httpx integration, which warns
        # (through its own "always" filter, so only recording silences it).
        from confluent_kafka.schema_registry import Schema as SRSchema
        from confluent_kafka.schema_registry import SchemaRegistryClient

    topic = topic_name(dataset, events_wanted)
    held = _counts(bootstrap, topic)
    if held == events_wanted and _schemas_resolve(bootstrap, registry_url, topic):
        return topic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if held is not None:
        print(
            f"  {topic} holds {held} events (wanted {events_wanted}), or the registry no longer "
            "has its schemas: recreating",
            file=sys.stderr,
        )
        for future in admin.delete_topics([topic], operation_timeout=60).values():
            future.result(timeout=120)
        time.sleep(2)
    for future in admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]
    ).values():
        future.result(timeout=120)

    key_schema, value_schema = SCHEMAS[dataset]
    registry = SchemaRegistryClient({"url": registry_url})
    key_id = registry.register_schema(f"{topic}-key", SRSchema(json.dumps(key_schema), "AVRO"))
    value_id = registry.register_schema(
        f"{topic}-value", SRSchema(json.dumps(value_schema), "AVRO")
    )
    encode_key = encoder(key_schema, key_id)
    encode_value = encoder(value_schema, value_id)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "none",
            "acks": "1",
        }
    )
    failures: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.monotonic()
    value_bytes = 0
    for i, (key, value) in enumerate(events(dataset, events_wanted)):
        payload = encode_value(value)
        value_bytes += len(payload)
        while True:
            try:
                producer.produce(topic, key=encode_key(key), value=payload, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
        if i and i % 200_000 == 0:
            print(f"  {topic}: {i} produced", file=sys.stderr)
    remaining = producer.flush(300)
    registry.close()
    if remaining or failures:
        raise RuntimeError(f"producing {topic}: {remaining} undelivered, errors {failures[:3]}")
    held = _counts(bootstrap, topic)
    if held != events_wanted:
        raise RuntimeError(f"{topic} holds {held} events after producing {events_wanted}")
    print(
        f"  {topic}: {events_wanted} events produced in {time.monotonic() - started:.1f} s, "
        f"values {value_bytes / events_wanted:.0f} bytes on average",
        file=sys.stderr,
    )
    return topic
