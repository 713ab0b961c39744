"""An ``items`` table's Debezium change stream with exact-valued columns, for the tests of
the command line, the notebook and the Airflow DAG.

Events are encoded by confluent-kafka's AvroSerializer (through :class:`cdc.CdcProducer`) with
the schema Debezium's PostgreSQL connector registers for::

    create table items (id int primary key, name text, price numeric(10,2),
                        updated timestamptz, photo bytea, uid uuid)
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from cdc import (
    CdcProducer,
    Delivered,
    Row,
    Schema,
    debezium_envelope_schema,
    debezium_event,
    debezium_key_schema,
    debezium_source,
)

PREFIX = "shop"
TABLE = "items"
ITEM_COLUMNS: list[Schema] = [
    {"name": "id", "type": "int"},
    {"name": "name", "type": ["null", "string"], "default": None},
    {
        "name": "price",
        "type": [
            "null",
            {
                "type": "bytes",
                "logicalType": "decimal",
                "precision": 10,
                "scale": 2,
                "connect.name": "org.apache.kafka.connect.data.Decimal",
                "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"},
            },
        ],
        "default": None,
    },
    {
        "name": "updated",
        "type": [
            "null",
            {
                "type": "string",
                "connect.version": 1,
                "connect.name": "io.debezium.time.ZonedTimestamp",
            },
        ],
        "default": None,
    },
    {"name": "photo", "type": ["null", "bytes"], "default": None},
    {
        "name": "uid",
        "type": [
            "null",
            {"type": "string", "connect.version": 1, "connect.name": "io.debezium.data.Uuid"},
        ],
        "default": None,
    },
]
KEY_SCHEMA = debezium_key_schema(PREFIX, TABLE, [{"name": "id", "type": "int"}])
VALUE_SCHEMA = debezium_envelope_schema(PREFIX, TABLE, ITEM_COLUMNS)
EPOCH_2026 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)

_lsn = itertools.count(1000, 64)


@dataclass(frozen=True)
class Item:
    """A row of ``items`` as the test means it, with the exact JSON ``changestream tail --json``
    must print for it."""

    id: int
    name: str
    price: Decimal
    updated: datetime
    photo: bytes
    uid: UUID

    def avro(self) -> Row:
        """The row as AvroSerializer takes it (Debezium writes timestamptz as ISO-8601 text)."""
        return {
            "id": self.id,
            "name": self.name,
            "price": self.price,
            "updated": self.updated.isoformat().replace("+00:00", "Z"),
            "photo": self.photo,
            "uid": str(self.uid),
        }

    def python(self) -> Row:
        """The row as ``Change.after`` holds it."""
        return {
            "id": self.id,
            "name": self.name,
            "price": self.price,
            "updated": self.updated,
            "photo": self.photo,
            "uid": self.uid,
        }

    def json(self) -> dict[str, Any]:
        """The row as ``tail --json`` writes it."""
        return {
            "id": self.id,
            "name": self.name,
            "price": str(self.price),
            "updated": self.updated.isoformat(),
            "photo": base64.b64encode(self.photo).decode(),
            "uid": str(self.uid),
        }


def item(n: int, *, price: str | None = None, name: str | None = None) -> Item:
    """Item number ``n``, with distinct values in every column."""
    return Item(
        id=n,
        name=name or f"item {n}",
        price=Decimal(price or f"{n}.{n % 100:02d}"),
        updated=EPOCH_2026 + timedelta(seconds=n, microseconds=n),
        photo=bytes([n % 256, 0, 255, 10]),
        uid=UUID(int=n),
    )


def produce(
    cdc: CdcProducer,
    topic: str,
    changes: list[tuple[str, Item | None, Item | None]],
    partition: int | None = None,
) -> list[Delivered]:
    """Produce Debezium envelopes ``(op, before, after)`` (op ``c``, ``u``, ``d``, ``r``) for
    ``items``, keyed by the row's id."""
    records: list[tuple[Row | None, Row | None]] = []
    for op, before, after in changes:
        row = after or before
        assert row is not None
        ts_ms = int(row.updated.timestamp() * 1000)
        source = debezium_source(PREFIX, table=TABLE, ts_ms=ts_ms, lsn=next(_lsn))
        envelope = debezium_event(
            op,
            before=before.avro() if before else None,
            after=after.avro() if after else None,
            source=source,
            ts_ms=ts_ms,
        )
        records.append(({"id": row.id}, envelope))
    return cdc.produce(topic, KEY_SCHEMA, VALUE_SCHEMA, records, partition=partition)


def inserts(
    cdc: CdcProducer, topic: str, ids: range, partition: int | None = None
) -> list[Delivered]:
    """Produce an insert of :func:`item` ``n`` for each ``n`` in ``ids``."""
    return produce(cdc, topic, [("c", None, item(n)) for n in ids], partition=partition)
