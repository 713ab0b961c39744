"""``changestream.capture``: PostgreSQL → Kafka, read back by changestream and by
confluent-kafka's AvroDeserializer, compared with what psql reads from the tables.

Each test has its own schema, slot, publication and topic prefix (tests/pg_capture.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Context, Decimal
from typing import Any

import changestream
import pytest
from cdc import registry_conf
from changestream import Change, ChangeStream, cli
from pg_capture import CaptureSetup, read_independently

pytestmark = [pytest.mark.timeout(180, func_only=True)]

EPOCH = datetime(1970, 1, 1)

# The column types checked, the SQL that creates them, and (per column) the SQL expression
# whose text psql returns, in a form both decoders' values are brought to.
TYPES_TABLE = """
CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE {schema}.items (
    id integer PRIMARY KEY,
    small smallint,
    big bigint NOT NULL,
    amount numeric(12, 3),
    loose numeric,
    price double precision,
    ratio real,
    flag boolean,
    note text,
    code varchar(8),
    data bytea,
    day date,
    at_ms time(3),
    at time,
    ts_ms timestamp(3),
    ts timestamp,
    tstz timestamptz,
    uid uuid,
    doc jsonb,
    feeling {schema}.mood,
    tags text[],
    dur interval,
    cash money
);
"""

CHECKED = {
    "id": "id::text",
    "small": "small::text",
    "big": "big::text",
    "amount": "amount::text",
    "loose": "loose::text",
    "price": "price::text",
    "ratio": "ratio::text",
    "flag": "flag::text",
    "note": "note",
    "code": "code",
    "data": "encode(data, 'hex')",
    "day": "(day - date '1970-01-01')::text",
    "at_ms": "(extract(epoch from at_ms) * 1000)::bigint::text",
    "at": "(extract(epoch from at) * 1000000)::bigint::text",
    "ts_ms": "(extract(epoch from ts_ms) * 1000)::bigint::text",
    "ts": "(extract(epoch from ts) * 1000000)::bigint::text",
    "tstz": "(extract(epoch from tstz) * 1000000)::bigint::text",
    "uid": "uid::text",
    "doc": "doc::text",
    "feeling": "feeling::text",
    "tags": "array_to_json(tags)::text",
    "dur": "(extract(epoch from dur) * 1000000)::bigint::text",
    "cash": "(cash::numeric)::text",
}

ROWS = [
    "(1, -32768, 9223372036854775807, 123456789.125, 3.14159265358979323846, 0.1, 1.5, true,"
    " 'héllo\tworld\\n', 'abc', '\\x00ff10', '2024-02-29', '12:34:56.789', '23:59:59.999999',"
    " '2024-02-29 12:34:56.789', '1999-12-31 23:59:59.999999', '2024-06-01 12:00:00.5+02',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2.5, null]}', 'happy',"
    " ARRAY['x', NULL, 'y z'], '3 days 04:05:06.5', 12.34)",
    "(2, NULL, -1, -0.001, -12345678901234567890.123456789, 'NaN', '-Infinity', false, '', NULL,"
    " '\\x', '1900-01-01', '00:00:00', '00:00:00', '1900-01-01 00:00:00', '1970-01-01 00:00:00',"
    " '1970-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000', '[]', 'sad', '{}',"
    " '-1 day', -5)",
    "(3, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


@pytest.fixture
def setup(stack: dict[str, str]) -> Iterator[CaptureSetup]:
    capture = CaptureSetup(stack)
    capture.sql(f"CREATE SCHEMA {capture.schema}")
    yield capture
    capture.cleanup()


def read_all(stack: dict[str, str], topics: list[str], **kwargs: Any) -> list[Change]:
    with ChangeStream(
        topics,
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        start="earliest",
        until="end",
        **kwargs,
    ) as stream:
        return list(stream)


def micros(value: Any) -> int:
    """A time, timestamp or duration as the integer the psql expressions give."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):  # io.debezium.time.ZonedTimestamp, raw
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return int((value - EPOCH) // timedelta(microseconds=1))
    if isinstance(value, time):
        return (
            value.hour * 3600 + value.minute * 60 + value.second
        ) * 1_000_000 + value.microsecond
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    months = getattr(value, "months", None)
    if months is not None:  # changestream.Interval
        return int((months * 30 + value.days) * 86_400_000_000 + value.microseconds)
    raise AssertionError(f"not a time: {value!r}")


def decimal_of(value: Any) -> Decimal:
    if isinstance(value, dict):  # VariableScaleDecimal, raw
        unscaled = int.from_bytes(value["value"], "big", signed=True)
        return Decimal(unscaled).scaleb(-value["scale"], Context(prec=1000))
    return Decimal(value)


def canonical(column: str, value: Any) -> Any:
    """A decoded value in the form of the psql expression for ``column`` (see CHECKED)."""
    if value is None:
        return None
    if column in ("id", "small", "big"):
        return int(value)
    if column in ("amount", "loose", "cash"):
        return decimal_of(value)
    if column in ("price", "ratio"):
        return str(float(value)) if value == value else "NaN"
    if column == "flag":
        return bool(value)
    if column == "data":
        return bytes(value).hex()
    if column == "day":
        return value if isinstance(value, int) else (value - date(1970, 1, 1)).days
    if column in ("at_ms", "ts_ms"):
        return value if isinstance(value, int) else micros(value) // 1000
    if column in ("at", "ts", "tstz", "dur"):
        return micros(value)
    if column == "doc":
        return json.loads(value) if isinstance(value, str) else value
    if column == "tags":
        return list(value)
    return str(value)


def expected_from_psql(text: str | None, column: str) -> Any:
    if text is None:
        return None
    if column in ("id", "small", "big", "day", "at_ms", "at", "ts_ms", "ts", "tstz", "dur"):
        return int(text)
    if column in ("amount", "loose", "cash"):
        return Decimal(text)
    if column in ("price", "ratio"):
        return str(float(text)) if text != "NaN" else "NaN"
    if column == "flag":
        return text == "true"
    if column in ("doc", "tags"):
        return json.loads(text)
    return text


def table_state(setup: CaptureSetup) -> dict[int, dict[str, Any]]:
    columns = ", ".join(CHECKED.values())
    rows = setup.sql(f"SELECT {columns} FROM {setup.schema}.items ORDER BY id")
    return {
        int(row[0] or 0): {c: expected_from_psql(v, c) for c, v in zip(CHECKED, row, strict=True)}
        for row in rows
    }


def fold(events: list[tuple[str, Any, Any]]) -> dict[int, dict[str, Any]]:
    """The rows left after applying (op, key, after) events in order."""
    state: dict[int, dict[str, Any]] = {}
    for op, key, after in events:
        if op in ("d", "delete"):
            state.pop(key, None)
        elif after is not None:
            state[key] = {c: canonical(c, after[c]) for c in CHECKED}
    return state


def test_snapshot_then_stream_every_type_equals_psql(
    setup: CaptureSetup, stack: dict[str, str]
) -> None:
    setup.sql(TYPES_TABLE.format(schema=setup.schema))
    setup.sql(f"INSERT INTO {setup.schema}.items VALUES {', '.join(ROWS[:2])}")
    first = setup.capture(["items"])
    assert first["snapshot_rows"] == 2, first

    setup.sql(
        f"INSERT INTO {setup.schema}.items VALUES {ROWS[2]};"
        f"UPDATE {setup.schema}.items SET note = 'changed', amount = 1 WHERE id = 1;"
        f"DELETE FROM {setup.schema}.items WHERE id = 2;"
        f"INSERT INTO {setup.schema}.items VALUES {ROWS[1]}"
    )
    second = setup.capture(["items"])
    assert (second["inserts"], second["updates"], second["deletes"]) == (2, 1, 1), second

    expected = table_state(setup)
    topic = setup.topic("items")

    changes = read_all(stack, [topic])
    ops = [c.op for c in changes]
    assert ops == ["read", "read", "insert", "update", "delete", "insert"], ops
    assert [c.source["snapshot"] for c in changes[:2]] == ["first", "last"]  # type: ignore[index]
    assert all(c.table == "items" for c in changes)
    assert changes[3].before is None  # REPLICA IDENTITY DEFAULT: no old row on update
    assert changes[4].before is not None
    assert changes[4].before["id"] == 2
    assert fold([(c.op, c.key["id"], c.after) for c in changes]) == expected

    raw = read_independently(stack, topic)
    # Debezium's tombstone follows the delete: null value, same key.
    assert [v["op"] if v else None for _, v in raw] == ["r", "r", "c", "u", "d", None, "c"]
    assert raw[5][0] == {"id": 2}
    assert fold([(v["op"], k["id"], v["after"]) for k, v in raw if v]) == expected
    source = raw[2][1]["source"]
    assert source["connector"] == "postgresql"
    assert source["name"] == setup.name
    assert (source["schema"], source["table"], source["snapshot"]) == (
        setup.schema,
        "items",
        "false",
    )
    assert source["txId"] > 0
    assert source["lsn"] > 0


def test_schemas_carry_debezium_names(setup: CaptureSetup, stack: dict[str, str]) -> None:
    setup.sql(TYPES_TABLE.format(schema=setup.schema))
    setup.sql(f"INSERT INTO {setup.schema}.items VALUES {ROWS[0]}")
    setup.capture(["items"])
    from confluent_kafka.schema_registry import SchemaRegistryClient

    topic = setup.topic("items")
    with SchemaRegistryClient(registry_conf(stack["SCHEMA_REGISTRY_URL"])) as registry:
        value = json.loads(registry.get_latest_version(f"{topic}-value").schema.schema_str)
        key = json.loads(registry.get_latest_version(f"{topic}-key").schema.schema_str)
    assert (value["name"], value["namespace"]) == ("Envelope", topic)
    assert value["connect.name"] == f"{topic}.Envelope"
    assert (key["name"], key["connect.name"], key["fields"]) == (
        "Key",
        f"{topic}.Key",
        [{"name": "id", "type": "int"}],
    )
    row = value["fields"][0]["type"][1]
    assert row["connect.name"] == f"{topic}.Value"
    names = {}
    for column in row["fields"]:
        kind = column["type"][1] if isinstance(column["type"], list) else column["type"]
        names[column["name"]] = kind.get("connect.name") if isinstance(kind, dict) else kind
    assert names == {
        "id": "int",
        "small": None,  # int with connect.type int16
        "big": "long",
        "amount": "org.apache.kafka.connect.data.Decimal",
        "loose": "io.debezium.data.VariableScaleDecimal",
        "price": "double",
        "ratio": "float",
        "flag": "boolean",
        "note": "string",
        "code": "string",
        "data": "bytes",
        "day": "io.debezium.time.Date",
        "at_ms": "io.debezium.time.Time",
        "at": "io.debezium.time.MicroTime",
        "ts_ms": "io.debezium.time.Timestamp",
        "ts": "io.debezium.time.MicroTimestamp",
        "tstz": "io.debezium.time.ZonedTimestamp",
        "uid": "io.debezium.data.Uuid",
        "doc": "io.debezium.data.Json",
        "feeling": "io.debezium.data.Enum",
        "tags": None,  # array of optional strings
        "dur": "io.debezium.time.MicroDuration",
        "cash": "org.apache.kafka.connect.data.Decimal",
    }
    amount = row["fields"][3]["type"][1]
    assert amount["connect.parameters"] == {"scale": "3", "connect.decimal.precision": "12"}
    assert row["fields"][0]["type"] == "int"
    assert row["fields"][2]["type"] == "long"
    feeling = row["fields"][19]["type"][1]
    assert feeling["connect.parameters"] == {"allowed": "sad,ok,happy"}


def test_nothing_lost_or_doubled_between_snapshot_and_stream(
    setup: CaptureSetup, stack: dict[str, str]
) -> None:
    table = f"{setup.schema}.counter"
    setup.sql(f"CREATE TABLE {table} (id integer PRIMARY KEY, n integer NOT NULL)")
    setup.sql(f"INSERT INTO {table} SELECT i, 0 FROM generate_series(1, 20000) i")
    # A writer commits one row at a time while the snapshot runs.
    writer = subprocess.Popen(
        [
            "psql",
            setup.dsn,
            "-X",
            "-q",
            "-c",
            f"DO $$ BEGIN FOR i IN 100001..100600 LOOP INSERT INTO {table} VALUES (i, 1); "
            f"UPDATE {table} SET n = n + 1 WHERE id = i - 100000; COMMIT; "
            "PERFORM pg_sleep(0.002); END LOOP; END $$",
        ]
    )
    try:
        first = setup.capture(["counter"])
    finally:
        assert writer.wait(timeout=120) == 0
    assert first["snapshot_rows"] >= 20000
    setup.capture(["counter"])

    changes = read_all(stack, [setup.topic("counter")])
    state: dict[int, int] = {}
    inserted: dict[int, int] = {}
    for change in changes:
        key = change.key["id"]
        if change.op in ("read", "insert"):
            inserted[key] = inserted.get(key, 0) + 1
        state[key] = change.after["n"]
    doubled = {k: n for k, n in inserted.items() if n > 1}
    assert not doubled, f"rows read or inserted twice: {list(doubled)[:10]}"
    rows = setup.sql(f"SELECT id, n FROM {table}")
    assert state == {int(i or 0): int(n or 0) for i, n in rows}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_lsn_confirmed_only_after_kafka_acknowledged(
    setup: CaptureSetup, stack: dict[str, str]
) -> None:
    table = f"{setup.schema}.acked"
    setup.sql(f"CREATE TABLE {table} (id integer PRIMARY KEY)")
    setup.capture(["acked"])
    before = setup.confirmed_flush_lsn()
    setup.sql(f"INSERT INTO {table} SELECT generate_series(1, 50)")
    # A Kafka that never answers: delivery fails, nothing may be confirmed.
    with pytest.raises(changestream.KafkaError, match="acked"):
        setup.capture(
            ["acked"],
            bootstrap_servers=f"127.0.0.1:{free_port()}",
            kafka={"message.timeout.ms": 2000},
        )
    assert setup.confirmed_flush_lsn() == before
    # The same changes are still in the slot and reach the real Kafka.
    counters = setup.capture(["acked"])
    assert counters["inserts"] == 50
    assert setup.confirmed_flush_lsn() > before
    ids = sorted(c.key["id"] for c in read_all(stack, [setup.topic("acked")]))
    assert ids == list(range(1, 51))


def test_idle_captured_tables_still_advance_the_slot(setup: CaptureSetup) -> None:
    setup.sql(f"CREATE TABLE {setup.schema}.quiet (id integer PRIMARY KEY)")
    setup.sql(f"CREATE TABLE {setup.schema}.busy (id integer PRIMARY KEY, pad text)")
    setup.capture(["quiet"])
    before = setup.confirmed_flush_lsn()
    setup.sql(
        f"INSERT INTO {setup.schema}.busy "
        "SELECT i, repeat('x', 500) FROM generate_series(1, 5000) i"
    )
    written = int(setup.sql("SELECT pg_current_wal_flush_lsn() - '0/0'")[0][0] or 0)
    counters = setup.capture(["quiet"])
    assert counters["produced"] == 0
    assert setup.confirmed_flush_lsn() >= written > before


def test_until_now_includes_a_message_written_just_before(setup: CaptureSetup) -> None:
    """A non-transactional ``pg_logical_emit_message`` is not flushed at once (no commit), yet
    it was written before the capture started: ``until="now"`` must wait for it."""
    setup.sql(f"CREATE TABLE {setup.schema}.quiet (id integer PRIMARY KEY)")
    setup.capture(["quiet"])
    seen = []
    for _ in range(6):
        setup.sql(f"SELECT pg_logical_emit_message(false, '{setup.name}', 'x')")
        seen.append(setup.capture(["quiet"])["messages"])
    assert seen == [1] * 6


def test_key_change_truncate_message_and_toast(setup: CaptureSetup, stack: dict[str, str]) -> None:
    table = f"{setup.schema}.docs"
    setup.sql(f"CREATE TABLE {table} (id integer PRIMARY KEY, title text, body text)")
    setup.capture(["docs"])
    # An incompressible body over the TOAST threshold, unchanged by the second update.
    setup.sql(
        f"INSERT INTO {table} "
        "SELECT 1, 'a', string_agg(md5(i::text), '') FROM generate_series(1, 400) i;"
        f"UPDATE {table} SET title = 'b' WHERE id = 1;"
        f"UPDATE {table} SET id = 2 WHERE id = 1;"
        f"SELECT pg_logical_emit_message(true, 'audit', 'hello');"
        f"TRUNCATE {table}"
    )
    counters = setup.capture(["docs"])
    assert counters["messages"] == 1
    assert counters["truncates"] == 1

    raw = read_independently(stack, setup.topic("docs"))
    ops = [(v["op"] if v else None, k) for k, v in raw]
    assert ops == [
        ("c", {"id": 1}),
        ("u", {"id": 1}),
        ("d", {"id": 1}),
        (None, {"id": 1}),
        ("c", {"id": 2}),
        ("t", None),
    ]
    assert raw[1][1]["after"]["title"] == "b"
    assert raw[1][1]["after"]["body"] == "__debezium_unavailable_value"
    assert len(raw[0][1]["after"]["body"]) == 400 * 32

    changes = read_all(stack, [setup.topic("docs")])
    assert [c.op for c in changes] == ["insert", "update", "delete", "insert", "truncate"]

    messages = read_independently(stack, f"{setup.name}.message")
    assert len(messages) == 1
    key, value = messages[0]
    assert key == {"prefix": "audit"}
    assert (value["op"], value["message"]) == ("m", {"prefix": "audit", "content": b"hello"})


def test_rows_format_and_table_without_primary_key(
    setup: CaptureSetup, stack: dict[str, str]
) -> None:
    setup.sql(
        f"CREATE TABLE {setup.schema}.plain (id integer PRIMARY KEY, amount numeric(6,2), day date)"
    )
    setup.sql(f"CREATE TABLE {setup.schema}.nokey (v text)")
    setup.sql(
        f"INSERT INTO {setup.schema}.plain VALUES (1, 2.50, '2024-01-02');"
        f"INSERT INTO {setup.schema}.nokey VALUES ('x')"
    )
    setup.capture(["plain", "nokey"], format="rows")
    setup.sql(f"DELETE FROM {setup.schema}.plain WHERE id = 1")
    setup.capture(["plain", "nokey"], format="rows")

    plain = read_independently(stack, setup.topic("plain"))
    assert plain == [
        ({"id": 1}, {"id": 1, "amount": Decimal("2.50"), "day": date(2024, 1, 2)}),
        ({"id": 1}, None),
    ]
    # Documented: a table without a primary key gets null Kafka keys.
    assert read_independently(stack, setup.topic("nokey")) == [(None, {"v": "x"})]


def test_missing_table_is_a_config_error(setup: CaptureSetup) -> None:
    with pytest.raises(changestream.ConfigError, match=f"{setup.schema}.absent does not exist"):
        setup.capture(["absent"])


@pytest.mark.parametrize(
    ("argument", "value"), [("snapshot", "sometimes"), ("format", "xml"), ("until", "later")]
)
def test_a_wrong_argument_is_a_config_error(argument: str, value: str) -> None:
    wrong: dict[str, Any] = {argument: value}
    # Refused before anything is contacted (nothing listens on these addresses).
    with pytest.raises(changestream.ConfigError, match=f"{argument} must be"):
        changestream.capture(
            dsn="postgresql://postgres@127.0.0.1:1/postgres",
            bootstrap_servers="127.0.0.1:1",
            schema_registry_url="http://127.0.0.1:1",
            **wrong,
        )


def test_transaction_metadata_with_flat_rows_is_a_config_error() -> None:
    # Flat rows have no envelope to carry the block: refused before anything is contacted.
    with pytest.raises(
        changestream.ConfigError, match='transaction metadata needs format "debezium"'
    ):
        changestream.capture(
            dsn="postgresql://postgres@127.0.0.1:1/postgres",
            bootstrap_servers="127.0.0.1:1",
            schema_registry_url="http://127.0.0.1:1",
            format="rows",
            transaction_metadata=True,
        )


def test_unreachable_postgres_is_a_postgres_error_without_the_password(setup: CaptureSetup) -> None:
    with pytest.raises(changestream.PostgresError) as raised:
        setup.capture(
            ["x"], dsn=f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/postgres"
        )
    assert "s3cret-pw" not in str(raised.value)
    assert raised.value.retriable


def test_cli_capture(setup: CaptureSetup, stack: dict[str, str]) -> None:
    setup.sql(f"CREATE TABLE {setup.schema}.cli (id integer PRIMARY KEY)")
    setup.sql(f"INSERT INTO {setup.schema}.cli VALUES (7)")
    out = io.StringIO()
    handler_before = signal.getsignal(signal.SIGTERM)
    with contextlib.redirect_stdout(out):
        status = cli.main(
            [
                "capture",
                "--dsn",
                setup.dsn,
                "--bootstrap-servers",
                stack["KAFKA_BOOTSTRAP_SERVERS"],
                "--schema-registry-url",
                stack["SCHEMA_REGISTRY_URL"],
                "--tables",
                f"{setup.schema}.cli",
                "--topic-prefix",
                setup.name,
                "--slot",
                setup.name,
                "--publication",
                setup.name,
                "--until",
                "now",
                "--kafka",
                "linger.ms=1",
            ]
        )
    assert status == 0
    # The command's SIGTERM handler is gone with it: a pool forked later ends on terminate().
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert json.loads(out.getvalue())["snapshot_rows"] == 1
    assert [c.key["id"] for c in read_all(stack, [setup.topic("cli")])] == [7]


def test_network_xml_range_timetz_and_infinity(setup: CaptureSetup, stack: dict[str, str]) -> None:
    table = f"{setup.schema}.odd"
    setup.sql(
        f"CREATE TABLE {table} (id integer PRIMARY KEY, ip inet, net cidr, mac macaddr, doc xml,"
        " span int4range, at timetz, ts timestamp, tstz timestamptz)"
    )
    row = (
        "'192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '<a>b</a>', '[1,5)',"
        " '10:15:30.25+02', '{ts}', '{ts}'"
    )
    setup.sql(f"INSERT INTO {table} VALUES (1, {row.format(ts='infinity')})")
    setup.capture(["odd"])  # snapshot
    setup.sql(f"INSERT INTO {table} VALUES (2, {row.format(ts='-infinity')})")
    setup.capture(["odd"])  # stream
    texts = setup.sql(f"SELECT ip, net, mac, doc, span FROM {table} ORDER BY id")
    raw = [value["after"] for _, value in read_independently(stack, setup.topic("odd"))]
    assert [v["op"] for _, v in read_independently(stack, setup.topic("odd"))] == ["r", "c"]
    for after, text in zip(raw, texts, strict=True):
        assert [after[c] for c in ("ip", "net", "mac", "doc", "span")] == text
        assert after["at"] == "08:15:30.25Z"  # Debezium's ZonedTime: normalized to UTC
    # Debezium's sentinels for timestamp ±infinity; timestamptz keeps the word.
    assert (raw[0]["ts"], raw[0]["tstz"]) == (9223372036825200000, "infinity")
    assert (raw[1]["ts"], raw[1]["tstz"]) == (-9223372036832400000, "-infinity")
