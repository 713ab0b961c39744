"""Followers (issue 11): SQLite, DuckDB and PostgreSQL copies of Debezium-shaped tables.

Each target follows two tables' change streams (tests/follow_support.py: every type of the
README's Debezium table, inserts, snapshot reads, updates with unavailable TOASTed values,
deletes with tombstones, primary-key changes, truncates, a column added and one dropped)
in three runs, each resuming from the positions stored in the target; after each run the
target's rows are compared, row by row and column by column, with the state computed
from the produced events, and at the end its positions with the topics' ends. Then the
error paths: a column changing type, a read-only or locked target.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import changestream
import pytest
from cdc import CdcProducer, debezium_envelope_schema, debezium_event, debezium_key_schema
from cdc import debezium_source as source_block
from changestream import cli
from changestream.follow import SchemaChangeError, TargetError
from changestream.follow._read_table import TableState
from confluent_kafka import Consumer, TopicPartition
from follow_support import (
    KINDS,
    Workload,
    canonical,
    canonical_rows,
    read_positions,
    read_target,
    target_url,
)

TARGETS = ["sqlite", "duckdb", "postgresql"]


@pytest.fixture
def location(
    request: pytest.FixtureRequest, tmp_path: Path, stack: dict[str, str]
) -> Iterator[str]:
    """Where the target lives: a file for SQLite and DuckDB, a fresh schema's URL for
    PostgreSQL (``search_path`` set through the URL's ``options``)."""
    kind = request.param
    if kind == "sqlite":
        yield str(tmp_path / "copy.db")
    elif kind == "duckdb":
        yield str(tmp_path / "copy.duckdb")
    else:
        import psycopg

        schema = f"follow_{uuid.uuid4().hex[:10]}"
        dsn = stack["POSTGRES_DSN"]
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'CREATE SCHEMA "{schema}"')
        yield _with_search_path(dsn, schema)
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _with_search_path(dsn: str, schema: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    assert parts.scheme.startswith("postgres"), "POSTGRES_DSN is expected as a URL"
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-csearch_path={schema}"))
    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    return urllib.parse.urlunsplit(parts._replace(query=encoded))


def _kind(location: str) -> str:
    if location.endswith(".db"):
        return "sqlite"
    if location.endswith(".duckdb"):
        return "duckdb"
    return "postgresql"


def topic_ends(stack: dict[str, str], topics: dict[str, int]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"], "group.id": "x"})
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for topic, partitions in topics.items()
            for p in range(partitions)
        }
    finally:
        consumer.close()


def run_follow(stack: dict[str, str], topics: list[str], target: Any, **kwargs: Any) -> Any:
    return changestream.follow(
        topics,
        target,
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        until="end",
        **kwargs,
    )


def assert_tables_equal(kind: str, location: str, workload: Workload) -> None:
    for table in workload.tables:
        expected = canonical_rows(workload.expected(table))
        found = read_target(kind, location, table.name)
        assert sorted(found) == sorted(expected), (
            f"{table.name}: keys differ: missing {sorted(expected.keys() - found.keys())[:10]}, "
            f"extra {sorted(found.keys() - expected.keys())[:10]}"
        )
        for key, row in expected.items():
            assert found[key] == row, f"{table.name} row {key}: {found[key]} != {row}"


def make_workload(cdc: CdcProducer, make_topic: Callable[..., str], seed: int) -> Workload:
    prefix = f"follow{uuid.uuid4().hex[:8]}"
    workload = Workload(cdc, prefix, seed)
    for table in workload.tables:
        name = make_topic(table.partitions)
        table.topic = name
    return workload


@pytest.mark.parametrize("location", TARGETS, indirect=True)
def test_follower_equals_the_source_after_each_run(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], location: str
) -> None:
    kind = _kind(location)
    workload = make_workload(cdc, make_topic, seed=11)
    topics = [t.topic for t in workload.tables]
    url = target_url(kind, location)

    workload.changes(400)
    first = run_follow(stack, topics, url)
    assert first.changes > 0
    assert first.tables_created == 2
    assert_tables_equal(kind, location, workload)

    workload.evolve()  # v2 adds a column
    workload.changes(300)
    second = run_follow(stack, topics, url)
    assert second.columns_added == 1
    assert second.tables_created == 0
    assert_tables_equal(kind, location, workload)

    workload.evolve()  # v3 drops one: it stays, NULL in rows written from then on
    workload.changes(300)
    workload.finish()
    third = run_follow(stack, topics, url)
    assert third.columns_added == 0
    assert third.truncated + second.truncated + first.truncated >= 1
    assert_tables_equal(kind, location, workload)

    ends = topic_ends(stack, {t.topic: t.partitions for t in workload.tables})
    assert read_positions(kind, location) == ends
    # Every change was applied once: the runs' counts add up to what was produced, less
    # the tombstones the stream does not deliver.
    changes = first.changes + second.changes + third.changes
    assert changes == workload.produced - workload.tombstones
    # A run with nothing new applies nothing.
    assert run_follow(stack, topics, url).changes == 0


@pytest.mark.parametrize("fold_rows", [200_000, 40])
def test_read_table_equals_the_source(
    stack: dict[str, str],
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    fold_rows: int,
) -> None:
    # read_table folds the changes read into the table every fold_rows changes: at the end
    # only (the default here), or many times, with UNAVAILABLE values, primary-key changes
    # and truncates crossing the folds.
    monkeypatch.setattr(TableState, "FOLD_ROWS", fold_rows)
    workload = make_workload(cdc, make_topic, seed=12)
    workload.changes(300)
    workload.evolve()
    workload.changes(300)
    workload.finish()
    for table in workload.tables:
        state = changestream.read_table(
            table.topic,
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        )
        rows = state.to_pylist()
        ids = [row["id"] for row in rows]
        assert ids == sorted(ids)
        found = {row["id"]: {c: canonical(KINDS[c], v) for c, v in row.items()} for row in rows}
        expected = canonical_rows(workload.expected(table))
        assert found.keys() == expected.keys(), table.name
        for key, row in expected.items():
            assert found[key] == row, f"{table.name} row {key}"


def _widget_schemas(prefix: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    key = debezium_key_schema(prefix, "widgets", [{"name": "id", "type": "int"}])
    v1 = debezium_envelope_schema(
        prefix, "widgets", [{"name": "id", "type": "int"}, {"name": "size", "type": "int"}]
    )
    v2 = debezium_envelope_schema(
        prefix, "widgets", [{"name": "id", "type": "int"}, {"name": "size", "type": "string"}]
    )
    return key, v1, v2


def _widget(prefix: str, op: str, row: dict[str, Any]) -> dict[str, Any]:
    source = source_block(prefix, table="widgets", ts_ms=1_700_000_000_000)
    return debezium_event(op, before=None, after=row, source=source, ts_ms=1_700_000_000_000)


@pytest.mark.parametrize("location", TARGETS, indirect=True)
def test_incompatible_type_change_names_the_message_and_applies_nothing(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], location: str
) -> None:
    kind = _kind(location)
    url = target_url(kind, location)
    prefix = f"widgets{uuid.uuid4().hex[:6]}"
    topic = make_topic()
    key, v1, v2 = _widget_schemas(prefix)
    cdc.produce(
        topic, key, v1, [({"id": i}, _widget(prefix, "c", {"id": i, "size": i})) for i in range(3)]
    )
    run_follow(stack, [topic], url)
    before = read_positions(kind, location)
    assert before == {(topic, 0): 3}

    # The same batch: an update under the old schema, then the first change of the new one.
    cdc.produce(topic, key, v1, [({"id": 0}, _widget(prefix, "u", {"id": 0, "size": 100}))])
    sent = cdc.produce(topic, key, v2, [({"id": 1}, _widget(prefix, "u", {"id": 1, "size": "L"}))])
    with pytest.raises(SchemaChangeError) as raised:
        run_follow(stack, [topic], url)
    error = raised.value
    assert isinstance(error, changestream.ChangeStreamError)
    assert (error.topic, error.partition, error.offset) == (topic, 0, sent[0].offset)
    assert "size" in str(error)
    assert f"offset {sent[0].offset}" in str(error)
    # The update under the old schema was its own batch and is in; nothing of the new one.
    assert read_positions(kind, location) == {(topic, 0): sent[0].offset}
    rows = _widget_rows(kind, location)
    assert rows == {0: 100, 1: 1, 2: 2}
    # Running again fails the same way, at the same message.
    with pytest.raises(SchemaChangeError):
        run_follow(stack, [topic], url)
    assert read_positions(kind, location) == {(topic, 0): sent[0].offset}


def _widget_rows(kind: str, location: str) -> dict[int, Any]:
    if kind == "sqlite":
        db = sqlite3.connect(location)
        rows = dict(db.execute("SELECT id, size FROM widgets").fetchall())
        db.close()
        return rows
    if kind == "duckdb":
        import duckdb

        with duckdb.connect(location, read_only=True) as ddb:
            return dict(ddb.execute("SELECT id, size FROM widgets").fetchall())
    import psycopg

    with psycopg.connect(location) as pdb:
        return {i: s for i, s in pdb.execute("SELECT id, size FROM widgets")}


def _read_only_connection(kind: str, location: str) -> Any:
    if kind == "sqlite":
        return sqlite3.connect(f"file:{location}?mode=ro", uri=True)
    if kind == "duckdb":
        import duckdb

        return duckdb.connect(location, read_only=True)
    import psycopg

    db = psycopg.connect(location)
    db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    db.commit()
    return db


@pytest.mark.parametrize("location", TARGETS, indirect=True)
def test_read_only_target_is_a_clear_error_and_the_next_run_resumes(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], location: str
) -> None:
    kind = _kind(location)
    url = target_url(kind, location)
    workload = make_workload(cdc, make_topic, seed=13)
    topics = [t.topic for t in workload.tables]
    workload.changes(100, allow_truncate=False)
    run_follow(stack, topics, url)
    stored = read_positions(kind, location)
    rows = {t.name: read_target(kind, location, t.name) for t in workload.tables}
    workload.changes(100, allow_truncate=False)
    workload.finish()

    connection = _read_only_connection(kind, location)
    try:
        with pytest.raises(TargetError) as raised:
            run_follow(stack, topics, connection)
    finally:
        connection.close()
    error = raised.value
    assert f"the {kind} target failed" in str(error)
    assert "positions did not move" in str(error)
    assert read_positions(kind, location) == stored
    assert {t.name: read_target(kind, location, t.name) for t in workload.tables} == rows

    run_follow(stack, topics, url)
    assert_tables_equal(kind, location, workload)


def test_locked_sqlite_target_is_a_retriable_error(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    path = str(tmp_path / "locked.db")
    workload = make_workload(cdc, make_topic, seed=14)
    topics = [t.topic for t in workload.tables]
    workload.changes(50, allow_truncate=False)
    workload.finish()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TargetError) as raised:
            run_follow(stack, topics, f"sqlite:///{path}?timeout=0.2")
        assert raised.value.retriable
        assert "locked" in str(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert read_positions("sqlite", path) == {}
    run_follow(stack, topics, f"sqlite:///{path}")
    assert_tables_equal("sqlite", path, workload)


def test_sqlite_url_opens_wal_and_a_connection_passed_in_keeps_its_settings(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    workload = make_workload(cdc, make_topic, seed=17)
    topics = [t.topic for t in workload.tables]
    workload.changes(60, allow_truncate=False)
    workload.finish()
    opened = str(tmp_path / "opened.db")
    run_follow(stack, topics, f"sqlite:///{opened}")
    check = sqlite3.connect(opened)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        check.close()
    assert_tables_equal("sqlite", opened, workload)

    passed_path = str(tmp_path / "passed.db")
    passed = sqlite3.connect(passed_path)
    try:
        run_follow(stack, topics, passed)
        assert passed.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert passed.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, the default
    finally:
        passed.close()
    assert_tables_equal("sqlite", passed_path, workload)


def test_group_member_starts_at_the_targets_positions_not_the_groups(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    workload = make_workload(cdc, make_topic, seed=16)
    topics = [t.topic for t in workload.tables]
    group = f"follow-{uuid.uuid4().hex[:8]}"
    workload.changes(150)
    workload.finish()
    first = f"sqlite:///{tmp_path / 'first.db'}"
    run_follow(stack, topics, first, group_id=group)
    assert_tables_equal("sqlite", str(tmp_path / "first.db"), workload)
    # The group has committed the end; a new, empty target in the same group starts from
    # the beginning all the same.
    run_follow(stack, topics, f"sqlite:///{tmp_path / 'second.db'}", group_id=group)
    assert_tables_equal("sqlite", str(tmp_path / "second.db"), workload)
    # And a target that has positions resumes there: nothing more to apply.
    assert run_follow(stack, topics, first, group_id=group).changes == 0


def test_keyless_topic_is_refused(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic()
    prefix = f"keyless{uuid.uuid4().hex[:6]}"
    _, v1, _ = _widget_schemas(prefix)
    sent = cdc.produce(topic, None, v1, [(None, _widget(prefix, "c", {"id": 1, "size": 1}))])
    with pytest.raises(changestream.ConfigError) as raised:
        run_follow(stack, [topic], f"sqlite:///{tmp_path / 'keyless.db'}")
    assert "primary_keys" in str(raised.value)
    assert raised.value.offset == sent[0].offset
    # With the key named, the table follows.
    counters = run_follow(
        stack, [topic], f"sqlite:///{tmp_path / 'keyless.db'}", primary_keys={"widgets": ["id"]}
    )
    assert counters.upserted == 1


def test_cli_follows_into_sqlite(
    stack: dict[str, str],
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workload = make_workload(cdc, make_topic, seed=15)
    workload.changes(100)
    workload.finish()
    path = str(tmp_path / "cli.db")
    status = cli.main(
        [
            "follow",
            *(t.topic for t in workload.tables),
            "--to",
            f"sqlite:///{path}",
            "--until",
            "end",
            "--bootstrap-servers",
            stack["KAFKA_BOOTSTRAP_SERVERS"],
            "--schema-registry-url",
            stack["SCHEMA_REGISTRY_URL"],
            "--kafka",
            "fetch.wait.max.ms=100",
        ]
    )
    assert status == 0
    assert "changes applied" in capsys.readouterr().out
    assert_tables_equal("sqlite", path, workload)

    bad = cli.main(
        [
            "follow",
            workload.items.topic,
            "--to",
            "mysql://x",
            "--until",
            "end",
            "--bootstrap-servers",
            "x",
            "--schema-registry-url",
            "http://x",
        ]
    )
    assert bad == 1
    assert "ConfigError" in capsys.readouterr().err


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_utc_instants_become_iso_text_with_z(unit: str) -> None:
    """The text SQLite and PostgreSQL get for an aware timestamp: the instant in UTC, ISO
    8601 with "Z", the digits of the column's unit; nulls stay null; a column in another
    zone keeps that zone's offset."""
    import pyarrow as pa  # type: ignore[import-untyped]
    from changestream.follow._types import to_text_column

    instants = [
        datetime(2024, 1, 31, 23, 45, 6, 789000, tzinfo=timezone.utc),
        None,
        datetime(1969, 7, 20, 20, 17, 40, tzinfo=timezone(timedelta(hours=-4))),
    ]
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]

    def iso(value: datetime) -> str:
        utc = value.astimezone(timezone.utc)
        fraction = f"{utc.microsecond:06d}000"[:digits]
        return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"

    column = pa.array(instants, pa.timestamp(unit, tz="UTC"))
    chunked = pa.chunked_array([column, column])
    expected = [None if v is None else iso(v) for v in instants]
    assert to_text_column(column, "timestamptz").to_pylist() == expected
    assert to_text_column(chunked, "timestamptz").to_pylist() == expected * 2
    paris = to_text_column(column.cast(pa.timestamp(unit, tz="Europe/Paris")), "timestamptz")
    assert paris.to_pylist()[0].startswith("2024-02-01T00:45:06")
    assert paris.to_pylist()[0].endswith("+0100")
