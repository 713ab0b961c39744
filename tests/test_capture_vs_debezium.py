"""Capture side by side with the real Debezium PostgreSQL connector: same tables, same changes.

One Kafka Connect worker (tests/debezium.py) runs Debezium's connector with its default event
settings (``decimal.handling.mode=precise``, ``time.precision.mode=adaptive``) under topic prefix
``<run>_dbz``; ``changestream.capture`` follows the same tables under prefix ``<run>_cs``. Both
read the snapshot rows, then the same stream of changes: inserts of every supported type, an
update and a delete under REPLICA IDENTITY DEFAULT and FULL, an unchanged TOASTed column, a
primary-key change, a truncate and two ``pg_logical_emit_message`` calls. Per topic, the key
and value schemas as registered (prefix substituted) and every decoded event (both read by
confluent-kafka's AvroDeserializer, tombstones included, in order) must be equal, apart from
what names the writer (``source.version``), its clock (``ts_ms``/``ts_us``/``ts_ns``) and, for
snapshot rows, its own slot and snapshot transaction; the README's differences are asserted
exactly, each in its own test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import changestream
import psycopg
import pytest
from capture_compare import comparable, message_headers, registered_schema, with_prefix
from debezium import Connect, connectors, postgres_connector, start_debezium
from pg_capture import read_independently
from pg_types import TYPE_COLUMNS, TYPE_ROWS

pytestmark = [pytest.mark.timeout(600, func_only=True)]

# Types capture refuses with a ConfigError (README, Capture): not in the compared table.
REFUSED = {"grid", "kv", "pt", "bit1", "bits", "vbits"}
COLUMNS = [c for c in TYPE_COLUMNS if c.name not in REFUSED]
SNAPSHOT_IDS = sorted(TYPE_ROWS)
STREAM_IDS = [i + 10 for i in SNAPSHOT_IDS]
BIG_TEXT = "".join(f"{i:08x}{uuid4().hex}" for i in range(400))  # ~16 kB, TOASTed out of line

SETUP_SQL = """
create table {s}.toast (id integer primary key, big text, n integer);
create table {s}.ident_full (id integer primary key, v text, n integer);
alter table {s}.ident_full replica identity full;
create table {s}.ident_default (id integer primary key, v text, n integer);
create table {s}.pk (id integer primary key, v text);
create table {s}.trunc (id integer primary key);
create table {s}.precisions (
    id integer primary key, t0 timestamptz(0), t3 timestamptz(3), t6 timestamptz,
    m3 timestamp(3), n numeric, n_req numeric not null
);
insert into {s}.ident_full values (1, 'one', 1), (2, 'two', 2);
insert into {s}.ident_default values (1, 'one', 1), (2, 'two', 2);
insert into {s}.pk values (1, 'one');
insert into {s}.trunc values (1), (2);
insert into {s}.precisions values {precision_rows};
"""

# Fractional digits of timestamptz(p) and timestamp(3) infinity; variable-scale numerics with
# trailing zeros, NaN and infinity (null in Debezium's precise mode).
PRECISION_ROWS = [
    "({id}, '2024-06-01 12:00:00+02', '2024-06-01 12:00:00+02', '2024-06-01 12:00:00+02',"
    " 'infinity', 100.00, 0.000)",
    "({id}, '2024-06-01 12:00:00.4+02', '2024-06-01 12:00:00.5+02', '2024-06-01 12:00:00.25+02',"
    " '-infinity', 'NaN', 1.2500)",
    "({id}, NULL, NULL, '2024-06-01 12:00:00.123456+02', '2024-06-01 12:00:00.5', 'Infinity',"
    " -0.10)",
]


def precision_rows(first: int) -> str:
    return ", ".join(row.format(id=first + i) for i, row in enumerate(PRECISION_ROWS))


STREAM_SQL = """
insert into {s}.precisions values {stream_precision_rows};
update {s}.types set txt = 'changed', i4 = 7 where id = 1;
delete from {s}.types where id = 2;
update {s}.toast set n = 2 where id = 1;
update {s}.ident_full set v = 'changed', n = 3 where id = 1;
delete from {s}.ident_full where id = 2;
update {s}.ident_default set v = 'changed', n = 3 where id = 1;
delete from {s}.ident_default where id = 2;
update {s}.pk set id = 2 where id = 1;
truncate {s}.trunc;
insert into {s}.trunc values (3);
"""

# Messages per table once streaming is done (tombstones included).
EXPECTED = {
    "types": 2 * len(SNAPSHOT_IDS) + 3,  # reads, inserts, update, delete + tombstone
    "toast": 2,
    "ident_full": 5,  # 2 reads, update, delete + tombstone
    "ident_default": 5,
    "pk": 4,  # read, delete of the old key + tombstone, create of the new one
    "trunc": 4,  # 2 reads, truncate, insert
    "precisions": 6,
}
TABLES = list(EXPECTED)


@dataclass
class SideBySide:
    stack: dict[str, str]
    schema: str
    debezium: str
    """Debezium's topic prefix (its connector, slot and publication have the same name)."""
    capture: str
    """Capture's topic prefix, slot and publication."""

    @property
    def message_prefix(self) -> str:
        """The prefix of the logical decoding messages (Debezium captures only those)."""
        return f"{self.schema}_msg"

    def topics(self, table: str) -> tuple[str, str]:
        """Debezium's and capture's topic of ``table``."""
        return f"{self.debezium}.{self.schema}.{table}", f"{self.capture}.{self.schema}.{table}"

    def run_capture(self) -> dict[str, int]:
        counters: dict[str, int] = changestream.capture(
            dsn=self.stack["POSTGRES_DSN"],
            bootstrap_servers=self.stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=self.stack["SCHEMA_REGISTRY_URL"],
            tables=[f"{self.schema}.{table}" for table in TABLES],
            topic_prefix=self.capture,
            slot=self.capture,
            publication=self.capture,
            until="now",
        )
        return counters

    def schemas(self, topic: str, field: str) -> Any:
        return registered_schema(self.stack["SCHEMA_REGISTRY_URL"], f"{topic}-{field}")

    def events(self, topic: str) -> list[tuple[Any, Any]]:
        return read_independently(self.stack, topic)


def _insert_type_rows(db: psycopg.Connection[Any], schema: str, ids: list[int]) -> None:
    for row_id in ids:
        row = {k: v for k, v in TYPE_ROWS[row_id % 10].items() if k not in REFUSED}
        names = ", ".join(["id", *row])
        db.execute(
            f"insert into {schema}.types ({names}) values ({', '.join(['%s'] * (len(row) + 1))})",
            [row_id, *row.values()],
        )


@pytest.fixture(scope="module")
def side_by_side(stack: dict[str, str]) -> Iterator[SideBySide]:
    # `stack` (the shared services) first; Kafka Connect is added to them.
    stack = start_debezium()
    run = f"cvd{uuid4().hex[:8]}"
    pair = SideBySide(stack=stack, schema=run, debezium=f"{run}_dbz", capture=f"{run}_cs")
    s = pair.schema
    with psycopg.connect(stack["POSTGRES_DSN"], autocommit=True) as db:
        db.execute(f"create schema {s}")
        columns = ", ".join(f"{c.name} {c.sql_type.replace('mood', f'{s}.mood')}" for c in COLUMNS)
        db.execute(f"create type {s}.mood as enum ('sad', 'ok', 'happy')")
        db.execute(f"create table {s}.types (id integer primary key, {columns})")
        _insert_type_rows(db, s, SNAPSHOT_IDS)
        db.execute(SETUP_SQL.format(s=s, precision_rows=precision_rows(1)))
        db.execute(f"insert into {s}.toast values (1, %s, 1)", [BIG_TEXT])
        connect = Connect(stack)
        config = postgres_connector(
            stack,
            name=pair.debezium,
            topic_prefix=pair.debezium,
            tables=[f"{s}.{table}" for table in TABLES],
            message__prefix__include__list=pair.message_prefix,
        )
        try:
            with connectors(connect, {pair.debezium: config}):
                pair.run_capture()
                # Debezium's snapshot done before the changes, so both stream them.
                connect.wait_for_messages(
                    {pair.topics(t)[0]: n for t, n in (("types", len(SNAPSHOT_IDS)), ("trunc", 2))}
                )
                _insert_type_rows(db, s, STREAM_IDS)
                db.execute(STREAM_SQL.format(s=s, stream_precision_rows=precision_rows(11)))
                with db.transaction():
                    db.execute(f"insert into {s}.pk values (3, 'in a transaction')")
                    db.execute(
                        "select pg_logical_emit_message(true, %s, 'in a transaction')",
                        [pair.message_prefix],
                    )
                db.execute(
                    "select pg_logical_emit_message(false, %s, %s::bytea)",
                    [pair.message_prefix, b"\x00\xffraw"],
                )
                pair.run_capture()
                expected = {pair.topics(t)[0]: n for t, n in EXPECTED.items()}
                expected[pair.topics("pk")[0]] += 1
                expected[f"{pair.debezium}.message"] = 2
                connect.wait_for_messages(expected)
                yield pair
        finally:
            connect.close()
            db.execute(f"drop schema {s} cascade")
            db.execute(f"drop publication if exists {pair.debezium}")
            db.execute(f"drop publication if exists {pair.capture}")
            db.execute(
                "select pg_drop_replication_slot(slot_name) from pg_replication_slots "
                "where slot_name = %s and not active",
                [pair.capture],
            )


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("field", ["key", "value"])
def test_registered_schemas_equal_debeziums(
    side_by_side: SideBySide, table: str, field: str
) -> None:
    """Field names and order, Avro types, defaults, ``connect.*`` attributes and record
    names (prefix substituted) as the registry holds them."""
    debezium_topic, capture_topic = side_by_side.topics(table)
    debezium = with_prefix(
        side_by_side.schemas(debezium_topic, field), side_by_side.debezium, side_by_side.capture
    )
    assert side_by_side.schemas(capture_topic, field) == debezium


@pytest.mark.parametrize("table", TABLES)
def test_events_equal_debeziums(side_by_side: SideBySide, table: str) -> None:
    """Keys, values, op sequence and tombstones, read by AvroDeserializer."""
    debezium_topic, capture_topic = side_by_side.topics(table)
    debezium = [
        comparable(with_prefix(e, side_by_side.debezium, side_by_side.capture))
        for e in side_by_side.events(debezium_topic)
    ]
    captured = [comparable(e) for e in side_by_side.events(capture_topic)]
    assert len(captured) == len(debezium)
    for index, (ours, theirs) in enumerate(zip(captured, debezium, strict=True)):
        if table == "types":
            ours, theirs = _without_date_infinity(ours, theirs)
        assert ours == theirs, f"{capture_topic} event {index}"


DATE_INFINITY = {"infinity": 2**31 - 1, "-infinity": -(2**31)}


def _without_date_infinity(ours: Any, theirs: Any) -> tuple[Any, Any]:
    """The README's documented difference: capture writes ``date`` ±infinity as the int32
    limits; Debezium writes other numbers for them (not even the same in its snapshot and its
    stream). Checked here, then left out of the comparison."""
    after: dict[str, Any] | None = ours[1]["after"] if ours[1] else None
    if after is None:
        return ours, theirs
    wanted = DATE_INFINITY.get(TYPE_ROWS[after["id"] % 10].get("d", ""))
    if wanted is None:
        return ours, theirs
    assert after["d"] == wanted
    assert theirs[1]["after"]["d"] != wanted
    return (
        (ours[0], {**ours[1], "after": {**after, "d": None}}),
        (theirs[0], {**theirs[1], "after": {**theirs[1]["after"], "d": None}}),
    )


def test_logical_messages_equal_debeziums(side_by_side: SideBySide) -> None:
    debezium_topic = f"{side_by_side.debezium}.message"
    capture_topic = f"{side_by_side.capture}.message"
    for field in ("key", "value"):
        assert side_by_side.schemas(capture_topic, field) == side_by_side.schemas(
            debezium_topic, field
        )
    debezium = [
        comparable(with_prefix(e, side_by_side.debezium, side_by_side.capture))
        for e in side_by_side.events(debezium_topic)
    ]
    captured = [comparable(e) for e in side_by_side.events(capture_topic)]
    assert captured == debezium


def test_headers_are_a_documented_difference(side_by_side: SideBySide) -> None:
    """README: capture writes no headers. Debezium marks the delete and tombstone of a key
    change with ``__debezium.newkey`` and the create with ``__debezium.oldkey`` (the key as
    JSON), and every event with ``__debezium.context.*`` (its name, task and run)."""
    debezium_topic, capture_topic = side_by_side.topics("pk")
    bootstrap = side_by_side.stack["KAFKA_BOOTSTRAP_SERVERS"]
    theirs = message_headers(bootstrap, debezium_topic)
    assert message_headers(bootstrap, capture_topic) == [{}] * len(theirs)
    key_change = [
        {
            name: value
            for name, value in headers.items()
            if not name.startswith("__debezium.context")
        }
        for headers in theirs
    ]
    assert key_change == [
        {},
        {"__debezium.newkey": b'{"id":2}'},
        {"__debezium.newkey": b'{"id":2}'},
        {"__debezium.oldkey": b'{"id":1}'},
        {},
    ]
    logical_names = {headers["__debezium.context.connectorLogicalName"] for headers in theirs}
    assert logical_names == {side_by_side.debezium.encode()}
