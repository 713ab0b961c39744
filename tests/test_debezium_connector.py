"""The real Debezium PostgreSQL connector: what it writes, read back and compared with PostgreSQL.

One Kafka Connect worker (the stack's ``debezium`` service, see tests/debezium.py) runs one
connector per group of settings, all registered at once so they snapshot in parallel:

- ``default``: the connector's defaults (decimals precise, adaptive times, intervals as
  microseconds, hstore as JSON text) on every table, logical messages included;
- ``strings``: ``decimal.handling.mode=string``, ``time.precision.mode=adaptive_time_microseconds``,
  ``interval.handling.mode=string``, ``hstore.handling.mode=map`` and
  ``provide.transaction.metadata=true``;
- ``connect``: ``decimal.handling.mode=double`` and ``time.precision.mode=connect``;
- ``unwrap`` and ``unwrap_rewrite``: the ExtractNewRecordState SMT, with its defaults and with
  ``add.fields=op,table,lsn`` and ``delete.tombstone.handling.mode=rewrite``.

Each table is one concern. Rows written before the connectors start are read by their
snapshot (JDBC), the same rows written after by streaming (pgoutput): two code paths in
Debezium. Every cell is compared with what PostgreSQL returns for it (tests/pg_types.py), in
the iterator and in ``batches()``. The tables and topics are new for each run (a random
prefix); ``CHANGESTREAM_KEEP_DEBEZIUM_DATA=1`` keeps the tables afterwards, for debugging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from batch_compare import assert_batches_equal_changes, batch_rows
from changestream import UNAVAILABLE, Change, ChangeBatch, ChangeStream, DecodeError
from debezium import Connect, connectors, postgres_connector, start_debezium
from pg_types import (
    TYPE_COLUMNS,
    TYPE_ROWS,
    assert_cell,
    expected,
    select_sql,
    type_row_values,
    types_ddl,
)

pytestmark = [pytest.mark.timeout(600, func_only=True)]

DEBEZIUM_METADATA = [
    "_op", "_topic", "_partition", "_offset", "_timestamp", "_lsn", "_txid", "_source_ts",
    "_unavailable",
]  # fmt: skip
SNAPSHOT_IDS = sorted(TYPE_ROWS)
STREAM_IDS = [i + 10 for i in SNAPSHOT_IDS]
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "strings": {
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive_time_microseconds",
        "interval.handling.mode": "string",
        "hstore.handling.mode": "map",
        "provide.transaction.metadata": "true",
    },
    "connect": {"decimal.handling.mode": "double", "time.precision.mode": "connect"},
}
UNWRAP = {
    "transforms": "unwrap",
    "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
}
UNWRAP_REWRITE = {
    **UNWRAP,
    "transforms.unwrap.add.fields": "op,table,lsn",
    "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
}
BIG_TEXT = "".join(f"{i:08x}{uuid4().hex}" for i in range(400))  # ~16 kB, TOASTed out of line


@dataclass
class Capture:
    """The schema the tables live in, the connectors' names, and how to read their topics."""

    run: str
    schema: str
    stack: dict[str, str]
    dsn: str

    def topic(self, variant: str, table: str) -> str:
        return f"{self.run}_{variant}.{self.schema}.{table}"

    def open(self, topics: str | list[str], **kwargs: Any) -> ChangeStream:
        return ChangeStream(
            topics,
            bootstrap_servers=self.stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=self.stack["SCHEMA_REGISTRY_URL"],
            until="end",
            **kwargs,
        )

    def changes(self, topic: str, **kwargs: Any) -> list[Change]:
        with self.open(topic, **kwargs) as stream:
            return list(stream)

    def batches(self, topic: str, **kwargs: Any) -> list[ChangeBatch]:
        with self.open(topic, **kwargs) as stream:
            return list(stream.batches(max_rows=10_000, max_wait=30.0))


SETUP_SQL = """
create extension if not exists hstore;
create schema {s};
create table {s}.toast (id integer primary key, big text, n integer);
create table {s}.ident_full (id integer primary key, v text, n integer);
alter table {s}.ident_full replica identity full;
create table {s}.ident_default (id integer primary key, v text, n integer);
create table {s}.pk (id integer primary key, v text);
create table {s}.trunc (id integer primary key);
create table {s}.far_dates (id integer primary key, d date);
create table {s}.tx_a (id integer primary key);
create table {s}.tx_b (id integer primary key);
create table {s}.rows (id integer primary key, v text);
"""

STREAM_SQL = """
update {s}.toast set n = 2 where id = 1;
update {s}.ident_full set v = 'changed', n = 2 where id = 1;
delete from {s}.ident_full where id = 1;
update {s}.ident_default set v = 'changed', n = 2 where id = 1;
delete from {s}.ident_default where id = 1;
update {s}.pk set id = 2 where id = 1;
truncate {s}.trunc;
insert into {s}.far_dates values (2, '10000-01-01'), (3, '0044-03-15 BC'), (4, '2024-01-01');
insert into {s}.rows values (2, 'two');
update {s}.rows set v = 'one!' where id = 1;
delete from {s}.rows where id = 2;
"""

# Messages on each topic once streaming is done (tombstones included).
EXPECTED_DEFAULT = {
    "types": 10,
    "toast": 2,
    "ident_full": 4,  # read, update, delete, tombstone
    "ident_default": 4,
    "pk": 4,  # read, delete of the old key, its tombstone, insert of the new one
    "trunc": 2,
    "far_dates": 4,
    "tx_a": 1,
    "tx_b": 1,
}


def _connector_configs(capture: Capture) -> dict[str, dict[str, str]]:
    s = capture.schema
    configs = {}
    for variant, settings in VARIANTS.items():
        tables = [f"{s}.types"] if variant != "default" else [f"{s}\\..*"]
        if variant == "strings":
            tables += [f"{s}.tx_a", f"{s}.tx_b"]
        name = f"{capture.run}_{variant}"
        configs[name] = postgres_connector(
            capture.stack,
            name=name,
            topic_prefix=name,
            tables=tables,
            **{key.replace(".", "__"): value for key, value in settings.items()},
        )
    for variant, transform in (("unwrap", UNWRAP), ("unwrap_rewrite", UNWRAP_REWRITE)):
        name = f"{capture.run}_{variant}"
        configs[name] = postgres_connector(
            capture.stack, name=name, topic_prefix=name, tables=[f"{s}.rows"]
        )
        configs[name].update(transform)
    return configs


@pytest.fixture(scope="module")
def capture(stack: dict[str, str]) -> Iterator[Capture]:
    # `stack` (the shared services) first; Kafka Connect is added to them.
    stack = start_debezium()
    run = f"dbz{uuid4().hex[:8]}"
    capture = Capture(run=run, schema=run, stack=stack, dsn=stack["POSTGRES_DSN"])
    s = capture.schema
    with psycopg.connect(capture.dsn, autocommit=True) as db:
        db.execute(SETUP_SQL.format(s=s))
        db.execute(types_ddl(s))
        for row_id in SNAPSHOT_IDS:
            names, values = type_row_values(row_id)
            db.execute(
                f"insert into {s}.types ({names}) values ({', '.join(['%s'] * len(values))})",
                values,
            )
        db.execute(f"insert into {s}.toast values (1, %s, 1)", [BIG_TEXT])
        for table in ("ident_full", "ident_default"):
            db.execute(f"insert into {s}.{table} values (1, 'one', 1)")
        db.execute(f"insert into {s}.pk values (1, 'one'); insert into {s}.trunc values (1)")
        db.execute(f"insert into {s}.far_dates values (1, '2000-01-01')")
        db.execute(f"insert into {s}.rows values (1, 'one')")
        connect = Connect(stack)
        try:
            with connectors(connect, _connector_configs(capture)):
                # The snapshots first, so that what follows is streamed.
                snapshot = {capture.topic(v, "types"): len(SNAPSHOT_IDS) for v in VARIANTS}
                snapshot[capture.topic("unwrap", "rows")] = 1
                snapshot[capture.topic("unwrap_rewrite", "rows")] = 1
                connect.wait_for_messages(snapshot)
                for row_id in STREAM_IDS:
                    names, values = type_row_values(row_id)
                    db.execute(
                        f"insert into {s}.types ({names}) "
                        f"values ({', '.join(['%s'] * len(values))})",
                        values,
                    )
                db.execute(STREAM_SQL.format(s=s))
                with db.transaction():
                    db.execute(f"insert into {s}.tx_a values (1)")
                    db.execute(f"insert into {s}.tx_b values (1)")
                    db.execute(
                        "select pg_logical_emit_message(true, %s, 'in a transaction')",
                        [f"{run}_default"],
                    )
                db.execute(
                    "select pg_logical_emit_message(false, %s, %s::bytea)",
                    [f"{run}_default", b"\x00\xffraw"],
                )
                final = {capture.topic("default", t): n for t, n in EXPECTED_DEFAULT.items()}
                final.update({capture.topic(v, "types"): 10 for v in VARIANTS})
                final[f"{run}_default.message"] = 2
                final[capture.topic("strings", "tx_a")] = 1
                final[f"{run}_strings.transaction"] = 2
                # read, insert, update, and the delete as a tombstone / a rewritten row
                final[capture.topic("unwrap", "rows")] = 4
                final[capture.topic("unwrap_rewrite", "rows")] = 4
                connect.wait_for_messages(final)
                yield capture
        finally:
            connect.close()
            if not os.environ.get("CHANGESTREAM_KEEP_DEBEZIUM_DATA"):
                db.execute(f"drop schema {s} cascade")
                # The connectors dropped their slots; Debezium leaves its publications.
                for name in _connector_configs(capture):
                    db.execute(f"drop publication if exists {name}")


def _postgres_rows(capture: Capture) -> dict[int, tuple[Any, ...]]:
    with psycopg.connect(capture.dsn) as db:
        db.execute("set timezone = 'UTC'; set intervalstyle = 'iso_8601'; set datestyle = 'ISO'")
        return {row[0]: row[1:] for row in db.execute(select_sql(capture.schema)).fetchall()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_type_equals_postgres_in_the_iterator_and_in_batches(
    capture: Capture, variant: str
) -> None:
    """Snapshot and streamed rows of every type, ±infinity and NaN included, equal what
    PostgreSQL returns for them under each connector setting; the batches equal the iterator."""
    settings = VARIANTS[variant]
    topic = capture.topic(variant, "types")
    changes = capture.changes(topic)
    pg_rows = _postgres_rows(capture)
    assert [c.after["id"] for c in changes if c.after] == SNAPSHOT_IDS + STREAM_IDS
    for change in changes:
        assert change.after is not None
        row_id = change.after["id"]
        assert change.op == ("read" if row_id in SNAPSHOT_IDS else "insert"), row_id
        assert set(change.after) == {"id", *(c.name for c in TYPE_COLUMNS)}
        for column, pg_value in zip(TYPE_COLUMNS, pg_rows[row_id], strict=True):
            where = f"{variant} row {row_id} {column.name} ({column.sql_type})"
            wanted = expected(column, pg_value, settings)
            assert_cell(column, change.after[column.name], wanted, where)
    assert_batches_equal_changes(capture.batches(topic), changes, metadata=DEBEZIUM_METADATA)


def test_unchanged_toasted_column_is_unavailable(capture: Capture) -> None:
    topic = capture.topic("default", "toast")
    snapshot, update = capture.changes(topic)
    assert snapshot.after == {"id": 1, "big": BIG_TEXT, "n": 1}
    assert update.op == "update"
    assert update.after == {"id": 1, "big": UNAVAILABLE, "n": 2}
    rows = [row for _, row in batch_rows(capture.batches(topic))]
    assert rows[1]["big"] is None
    assert rows[1]["_unavailable"] == ["big"]
    assert rows[0]["big"] == BIG_TEXT
    assert rows[0]["_unavailable"] == []


def test_replica_identity_full_and_default(capture: Capture) -> None:
    """FULL gives the whole row before an update or delete; the default only the key."""
    full = capture.changes(capture.topic("default", "ident_full"))
    default = capture.changes(capture.topic("default", "ident_default"))
    one = {"id": 1, "v": "one", "n": 1}
    changed = {"id": 1, "v": "changed", "n": 2}
    assert [(c.op, c.before, c.after) for c in full] == [
        ("read", None, one),
        ("update", one, changed),
        ("delete", changed, None),
    ]
    assert [(c.op, c.before, c.after) for c in default] == [
        ("read", None, one),
        ("update", None, changed),
        ("delete", {"id": 1, "v": None, "n": None}, None),
    ]
    for change in full + default:
        assert change.key == {"id": 1}


def test_primary_key_change_is_a_delete_then_an_insert(capture: Capture) -> None:
    changes = capture.changes(capture.topic("default", "pk"))
    assert [(c.op, c.key, c.before, c.after) for c in changes] == [
        ("read", {"id": 1}, None, {"id": 1, "v": "one"}),
        ("delete", {"id": 1}, {"id": 1, "v": None}, None),
        ("insert", {"id": 2}, None, {"id": 2, "v": "one"}),
    ]
    tombstones = capture.changes(capture.topic("default", "pk"), emit_tombstones=True)
    assert [(c.op, c.tombstone, c.key) for c in tombstones][2] == ("delete", True, {"id": 1})


def test_truncate(capture: Capture) -> None:
    changes = capture.changes(capture.topic("default", "trunc"))
    assert [(c.op, c.table) for c in changes] == [("read", "trunc"), ("truncate", "trunc")]
    assert changes[1].key is None
    assert changes[1].after is None
    assert changes[1].source is not None
    assert changes[1].source["table"] == "trunc"


def test_logical_decoding_messages(capture: Capture) -> None:
    """``pg_logical_emit_message`` comes out as op ``message`` with ``after`` = prefix and
    content; ``source["txId"]`` is set for a transactional message, None otherwise."""
    topic = f"{capture.run}_default.message"
    prefix = f"{capture.run}_default"
    changes = capture.changes(topic)
    assert [(c.op, c.before, c.after) for c in changes] == [
        ("message", None, {"prefix": prefix, "content": b"in a transaction"}),
        ("message", None, {"prefix": prefix, "content": b"\x00\xffraw"}),
    ]
    assert {c.table for c in changes} == {"message"}
    assert changes[0].source is not None
    assert changes[0].source["txId"] is not None
    assert changes[1].source is not None
    assert changes[1].source["txId"] is None
    batches = capture.batches(topic)
    rows = [row for _, row in batch_rows(batches)]
    assert [(r["_op"], r["prefix"], r["content"]) for r in rows] == [
        ("message", prefix, b"in a transaction"),
        ("message", prefix, b"\x00\xffraw"),
    ]
    assert_batches_equal_changes(batches, changes, metadata=DEBEZIUM_METADATA)


def test_a_multi_table_transaction(capture: Capture) -> None:
    """Both rows carry the transaction's txId; the transaction block's id is ``txId:LSN``."""
    with capture.open(
        [capture.topic("strings", "tx_a"), capture.topic("strings", "tx_b")]
    ) as stream:
        changes = list(stream)
    assert sorted(c.table or "" for c in changes) == ["tx_a", "tx_b"]
    tx_ids = {c.source["txId"] for c in changes if c.source}
    assert len(tx_ids) == 1
    (tx_id,) = tx_ids
    orders = set()
    for change in changes:
        assert change.transaction is not None
        assert change.transaction["id"].startswith(f"{tx_id}:"), change.transaction
        assert change.transaction["data_collection_order"] == 1
        orders.add(change.transaction["total_order"])
    assert orders == {1, 2}
    # The transaction topic has a BEGIN and an END per transaction with captured rows.
    markers = [
        m.after or {}
        for m in capture.changes(f"{capture.run}_strings.transaction")
        if str((m.after or {}).get("id", "")).split(":")[0] == str(tx_id)
    ]
    assert [(m["status"], m["event_count"]) for m in markers] == [("BEGIN", None), ("END", 2)]


def _far_dates(capture: Capture) -> str:
    return capture.topic("default", "far_dates")


def test_a_date_outside_python_raises_naming_the_message(capture: Capture) -> None:
    topic = _far_dates(capture)
    with capture.open(topic) as stream:
        assert next(stream).after == {"id": 1, "d": date(2000, 1, 1)}
        with pytest.raises(DecodeError) as raised:
            next(stream)
    assert (raised.value.topic, raised.value.partition, raised.value.offset) == (topic, 0, 1)
    assert "outside years 1 to 9999" in str(raised.value)
    with capture.open(topic) as stream, pytest.raises(DecodeError) as in_batches:
        list(stream.batches(max_rows=10_000, max_wait=30.0))
    assert in_batches.value.offset == 1


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
def test_decode_policy_applies_to_dates_outside_python(capture: Capture, policy: str) -> None:
    """Year 10000 and 44 BC are skipped or set aside; the other rows arrive, in both APIs."""
    topic = _far_dates(capture)
    with capture.open(topic, on_decode_error=policy) as stream:
        ids = [c.after["id"] for c in stream if c.after]
        dead = stream.dead_letters() if policy == "dead_letter" else []
        stats = stream.stats()
    assert ids == [1, 4]
    if policy == "skip":
        assert stats["skipped"] == 2
    else:
        assert [(d.topic, d.offset) for d in dead] == [(topic, 1), (topic, 2)]
    rows = [row for _, row in batch_rows(capture.batches(topic, on_decode_error=policy))]
    assert [row["id"] for row in rows] == [1, 4]


def test_unwrap_smt_with_op_table_lsn_and_rewritten_deletes(capture: Capture) -> None:
    """Rows with ``__op``, ``__table``, ``__lsn`` get their real op and table; a delete
    rewritten with ``__deleted: "true"`` is a delete whose ``before`` is the row."""
    changes = capture.changes(capture.topic("unwrap_rewrite", "rows"))
    rows = [c.after if c.after is not None else c.before for c in changes]
    assert [(c.op, c.table, c.key) for c in changes] == [
        ("read", "rows", {"id": 1}),
        ("insert", "rows", {"id": 2}),
        ("update", "rows", {"id": 1}),
        ("delete", "rows", {"id": 2}),
    ]
    assert changes[3].after is None
    projected = [{k: v for k, v in (row or {}).items() if k != "__lsn"} for row in rows]
    assert projected == [
        {"id": 1, "v": "one", "__op": "r", "__table": "rows", "__deleted": "false"},
        {"id": 2, "v": "two", "__op": "c", "__table": "rows", "__deleted": "false"},
        {"id": 1, "v": "one!", "__op": "u", "__table": "rows", "__deleted": "false"},
        {"id": 2, "v": None, "__op": "d", "__table": "rows", "__deleted": "true"},
    ]
    lsns = [(row or {})["__lsn"] for row in rows[1:]]
    assert all(isinstance(lsn, int) for lsn in lsns)
    assert lsns == sorted(lsns)
    assert_batches_equal_changes(
        capture.batches(capture.topic("unwrap_rewrite", "rows")),
        changes,
        metadata=["_op", "_topic", "_partition", "_offset", "_timestamp", "_unavailable"],
    )


def test_unwrap_smt_defaults(capture: Capture) -> None:
    """Flat rows: upserts, and the tombstone after a delete is the delete of its key."""
    changes = capture.changes(capture.topic("unwrap", "rows"))
    assert [(c.op, c.key, c.after, c.tombstone) for c in changes] == [
        ("upsert", {"id": 1}, {"id": 1, "v": "one"}, False),
        ("upsert", {"id": 2}, {"id": 2, "v": "two"}, False),
        ("upsert", {"id": 1}, {"id": 1, "v": "one!"}, False),
        ("delete", {"id": 2}, None, True),
    ]
