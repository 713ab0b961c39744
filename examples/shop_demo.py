"""Follow a small shop database's change stream with changestream.

The script first plays Debezium: it publishes the change events that Debezium's
PostgreSQL connector would write for a shop database with ``customers`` and
``orders`` tables (a snapshot, then inserts, updates and deletes). Then it
follows both topics with ``changestream.ChangeStream`` and prints each change
as it arrives.

Start the services and run it from the repository root:

    tests/stack/stack.sh up
    python examples/shop_demo.py

Connection settings come from ``KAFKA_BOOTSTRAP_SERVERS`` and
``SCHEMA_REGISTRY_URL``, or from ``.stack.env`` (written by the stack script).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from changestream import Change, ChangeStream
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

Row = dict[str, Any]

# Column types of the two tables, as Debezium maps them to Avro.
TABLES: dict[str, list[dict[str, Any]]] = {
    "customers": [
        {"name": "id", "type": "int"},
        {"name": "name", "type": "string"},
        {"name": "email", "type": ["null", "string"], "default": None},
    ],
    "orders": [
        {"name": "id", "type": "int"},
        {"name": "customer_id", "type": "int"},
        {"name": "status", "type": "string"},
        {"name": "total", "type": "double"},
    ],
}


def connection_settings() -> tuple[str, str]:
    """Kafka bootstrap servers and schema registry URL, from the environment or .stack.env."""
    env = dict(os.environ)
    stack_env = Path(__file__).resolve().parent.parent / ".stack.env"
    if stack_env.exists():
        for line in stack_env.read_text().splitlines():
            key, sep, value = line.removeprefix("export ").partition("=")
            if sep and not key.startswith("#"):
                env.setdefault(key.strip(), (shlex.split(value) or [""])[0])
    return env["KAFKA_BOOTSTRAP_SERVERS"], env["SCHEMA_REGISTRY_URL"]


# --- Part 1: publish the change events, as Debezium would --------------------------------------


class FakeDebezium:
    """Writes change events as Debezium does: a topic per table, Avro with a schema registry."""

    def __init__(self, prefix: str, bootstrap_servers: str, registry: SchemaRegistryClient) -> None:
        self.prefix = prefix
        self.producer = Producer(
            {"bootstrap.servers": bootstrap_servers, "enable.idempotence": True}
        )
        self.lsn = 24_000_000
        self.events = 0  # change events written (tombstones not counted)
        conf = {"auto.register.schemas": True, "subject.name.strategy": topic_subject_name_strategy}
        self.serializers = {
            table: (
                AvroSerializer(registry, key_schema(prefix, table), conf=conf),
                AvroSerializer(registry, envelope_schema(prefix, table, columns), conf=conf),
            )
            for table, columns in TABLES.items()
        }

    def topic(self, table: str) -> str:
        return f"{self.prefix}.public.{table}"  # Debezium's topic naming: <prefix>.<schema>.<table>

    def emit(
        self, table: str, op: str, before: Row | None, after: Row | None, snapshot: str = "false"
    ) -> None:
        """Publish one change event.

        ``op`` is Debezium's code: c (insert), u (update), d (delete) or r (snapshot read).
        """
        self.lsn += 56
        now_ms = int(time.time() * 1000)
        row = after if after is not None else before
        assert row is not None
        key = {"id": row["id"]}
        value = {
            "before": before,
            "after": after,
            "source": {
                "version": "3.6.1.Final",
                "connector": "postgresql",
                "name": self.prefix,
                "ts_ms": now_ms,
                "snapshot": snapshot,
                "db": "shop",
                "schema": "public",
                "table": table,
                "txId": self.lsn // 1000,
                "lsn": self.lsn,
            },
            "op": op,
            "ts_ms": now_ms,
        }
        self.send(table, key, value)
        self.events += 1
        if op == "d":
            self.send(
                table, key, None
            )  # Debezium follows every delete with a tombstone for compaction

    def send(self, table: str, key: Row, value: Row | None) -> None:
        topic = self.topic(table)
        key_serializer, value_serializer = self.serializers[table]
        self.producer.produce(
            topic,
            key=key_serializer(key, SerializationContext(topic, MessageField.KEY)),
            value=value_serializer(value, SerializationContext(topic, MessageField.VALUE)),
        )


def key_schema(prefix: str, table: str) -> str:
    """The key schema Debezium registers: the primary-key columns."""
    fields = [{"name": "id", "type": "int"}]
    return json.dumps(
        {"type": "record", "name": "Key", "namespace": f"{prefix}.public.{table}", "fields": fields}
    )


def envelope_schema(prefix: str, table: str, columns: list[dict[str, Any]]) -> str:
    """The value schema Debezium registers: an Envelope with before/after rows and source."""
    namespace = f"{prefix}.public.{table}"
    value = {"type": "record", "name": "Value", "fields": columns}
    source = {
        "type": "record",
        "name": "Source",
        "namespace": "io.debezium.connector.postgresql",
        "fields": [
            {"name": "version", "type": "string"},
            {"name": "connector", "type": "string"},
            {"name": "name", "type": "string"},
            {"name": "ts_ms", "type": "long"},
            {"name": "snapshot", "type": ["string", "null"], "default": "false"},
            {"name": "db", "type": "string"},
            {"name": "schema", "type": "string"},
            {"name": "table", "type": "string"},
            {"name": "txId", "type": ["null", "long"], "default": None},
            {"name": "lsn", "type": ["null", "long"], "default": None},
        ],
    }
    fields = [
        {"name": "before", "type": ["null", value], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},
        {"name": "source", "type": source},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": None},
    ]
    return json.dumps(
        {"type": "record", "name": "Envelope", "namespace": namespace, "fields": fields}
    )


def publish_shop_history(db: FakeDebezium) -> None:
    """A snapshot of the customers, then a little shop activity."""
    # Tables use REPLICA IDENTITY FULL, so updates and deletes carry the old row in `before`.
    customers = [
        {"id": 1, "name": "Ada", "email": "ada@example.com"},
        {"id": 2, "name": "Zoë", "email": None},
        {"id": 3, "name": "Linus", "email": "linus@example.com"},
    ]
    for i, customer in enumerate(customers):
        db.emit(
            "customers", "r", None, customer, snapshot="last" if i == len(customers) - 1 else "true"
        )

    orders = {
        1001: {"id": 1001, "customer_id": 1, "status": "pending", "total": 25.0},
        1002: {"id": 1002, "customer_id": 2, "status": "pending", "total": 9.5},
        1003: {"id": 1003, "customer_id": 1, "status": "pending", "total": 42.0},
    }
    for order in orders.values():
        db.emit("orders", "c", None, order)

    def update(table: str, old: Row, **changes: Any) -> Row:
        new = {**old, **changes}
        db.emit(table, "u", old, new)
        return new

    orders[1001] = update("orders", orders[1001], status="shipped")
    update("customers", customers[1], email="zoe@example.org")
    orders[1002] = update("orders", orders[1002], status="cancelled")
    db.emit("orders", "d", orders[1002], None)
    orders[1001] = update("orders", orders[1001], status="delivered")
    db.emit("customers", "d", customers[2], None)
    if db.producer.flush(30):
        raise SystemExit("some change events were not delivered to Kafka")


# --- Part 2: follow the change stream with changestream -----------------------------------------


def describe(change: Change) -> str:
    """One readable line per change."""
    line = f"{change.op:<7} {change.table or '?':<10} key={change.key}"
    if change.op == "update" and change.before is not None and change.after is not None:
        before, after = change.before, change.after
        diff = [
            f"{col}: {before.get(col)!r} -> {new!r}"
            for col, new in after.items()
            if before.get(col) != new
        ]
        return f"{line}  {', '.join(diff)}"
    if change.op == "delete":
        return f"{line}  before={change.before}"
    return f"{line}  after={change.after}"


def main() -> int:
    bootstrap_servers, registry_url = connection_settings()

    # A fresh topic prefix per run, so reruns start from empty topics. The broker creates
    # the topics on first write, as it does for Debezium under Kafka Connect.
    with SchemaRegistryClient({"url": registry_url}) as registry:
        db = FakeDebezium(f"shop{uuid4().hex[:6]}", bootstrap_servers, registry)
        publish_shop_history(db)
    topics = [db.topic(table) for table in TABLES]
    print(f"published {db.events} change events to {', '.join(topics)}\n")

    # Follow both topics from the beginning; until="end" stops at the end of what is there now.
    seen = 0
    with ChangeStream(
        topics,
        bootstrap_servers=bootstrap_servers,
        schema_registry_url=registry_url,
        start="earliest",
        until="end",
    ) as stream:
        for change in stream:
            print(describe(change))
            seen += 1

    # Debezium's tombstones are not changes: changestream does not deliver them.
    print(f"\n{seen} changes")
    if seen != db.events:
        print(f"expected {db.events} changes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
