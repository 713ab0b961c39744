"""Golden cases for every row of the type table (docs/types.md).

Each case is a column value written by an independent encoder -- confluent-kafka's
``AvroSerializer`` (through tests/cdc.py) or fastavro's ``schemaless_writer`` with a
Confluent frame added here -- produced to a fresh topic, read back with
``ChangeStream(..., until="end")``, and compared with the Python value written out in
this file. Wire values that are plain numbers (Debezium's epoch counts) are derived from
the expected value with the standard library, never with changestream.

The comparison is strict: same type, equal value, the same ``Decimal`` exponent, and the
same UTC offset (an aware datetime equals a differently-zoned one of the same instant,
which would hide a wrong offset).
"""

from __future__ import annotations

import copy
import io
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import fastavro
import pytest
from cdc import (
    CdcProducer,
    Row,
    Schema,
    debezium_envelope_schema,
    debezium_event,
    debezium_key_schema,
    debezium_source,
)
from changestream import UNAVAILABLE, Change, ChangeStream, DecodeError, Interval
from confluent_kafka.schema_registry import Schema as RegistrySchema

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]
ENCODERS = ["confluent", "fastavro"]

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)
MICROSECOND = timedelta(microseconds=1)
PLACEHOLDER = "__debezium_unavailable_value"


# ---------------------------------------------------------------------------
# Producing with either encoder, reading back, comparing
# ---------------------------------------------------------------------------


def frame_with_fastavro(schema_id: int, parsed: Any, obj: Any) -> bytes:
    """A Confluent-framed Avro body written by fastavro: magic 0, 4-byte id, body."""
    out = io.BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, parsed, obj)
    return out.getvalue()


def produce(
    encoder: str,
    cdc: CdcProducer,
    topic: str,
    value_schema: Schema,
    values: Sequence[Row],
    key_schema: Schema | None = None,
    keys: Sequence[Row | None] | None = None,
) -> None:
    """Produce ``values`` (and ``keys``) to ``topic`` with the chosen independent encoder."""
    keys = list(keys) if keys is not None else [None] * len(values)
    if encoder == "confluent":
        cdc.produce(
            topic, key_schema, value_schema, list(zip(keys, values, strict=True)), partition=0
        )
        return
    value_id = cdc.registry.register_schema(
        f"{topic}-value", RegistrySchema(json.dumps(value_schema), "AVRO")
    )
    parsed_value = fastavro.parse_schema(copy.deepcopy(value_schema))
    key_id, parsed_key = None, None
    if key_schema is not None:
        key_id = cdc.registry.register_schema(
            f"{topic}-key", RegistrySchema(json.dumps(key_schema), "AVRO")
        )
        parsed_key = fastavro.parse_schema(copy.deepcopy(key_schema))
    records: list[tuple[bytes | None, bytes | None]] = []
    for key, value in zip(keys, values, strict=True):
        key_bytes = None
        if key is not None:
            assert key_id is not None
            key_bytes = frame_with_fastavro(key_id, parsed_key, key)
        records.append((key_bytes, frame_with_fastavro(value_id, parsed_value, value)))
    cdc.produce_raw(topic, records, partition=0)


def read_all(open_stream: OpenStream, topic: str) -> list[Change]:
    with open_stream(topic, until="end") as stream:
        return list(stream)


def assert_rows(changes: Sequence[Change], expected: Sequence[Row]) -> None:
    """The changes' ``after`` rows are, column by column, the expected rows."""
    assert len(changes) == len(expected)
    for i, (change, row) in enumerate(zip(changes, expected, strict=True)):
        assert_same(change.after, row, f"row {i}")


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal, of the same type, with the same Decimal exponent and the same UTC offsets."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is not a {type(expected).__name__}"
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for name in expected:
            assert_same(actual[name], expected[name], f"{where}.{name}")
        return
    if isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
        return
    if isinstance(expected, Interval):
        parts = (actual.months, actual.days, actual.microseconds)
        wanted = (expected.months, expected.days, expected.microseconds)
        assert parts == wanted, f"{where}: {actual!r} != {expected!r}"
        return
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, Decimal):
        assert actual.as_tuple() == expected.as_tuple(), f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, (datetime, time)):
        assert (actual.tzinfo is None) == (expected.tzinfo is None), f"{where}: {actual!r}"
        assert actual.utcoffset() == expected.utcoffset(), f"{where}: {actual!r} != {expected!r}"


def millis(moment: datetime) -> int:
    """Milliseconds since the epoch (naive datetimes read as UTC wall clock)."""
    return micros(moment) // 1000


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (naive datetimes read as UTC wall clock)."""
    epoch = EPOCH if moment.tzinfo is not None else EPOCH_NAIVE
    return (moment - epoch) // MICROSECOND


def micros_of_day(clock: time) -> int:
    return ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000 + clock.microsecond


def days(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def twos_complement(unscaled: int) -> bytes:
    """Big-endian two's complement, the shortest form (as Java's BigInteger writes it)."""
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


# ---------------------------------------------------------------------------
# Golden cases: one field per row of the type table, several samples each
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Golden:
    """One row of the type table: a column type and (wire value, expected Python value) pairs."""

    column: str
    avro_type: Any
    samples: list[tuple[Any, Any]]


def same(*values: Any) -> list[tuple[Any, Any]]:
    """Samples the encoder takes as the very Python value we expect back."""
    return [(value, value) for value in values]


def record_of(name: str, goldens: Sequence[Golden], connect_name: str | None = None) -> Schema:
    schema: Schema = {
        "type": "record",
        "name": name,
        "namespace": "test.types",
        "fields": [{"name": g.column, "type": g.avro_type} for g in goldens],
    }
    if connect_name is not None:
        schema["connect.name"] = connect_name
    return schema


def rows_of(goldens: Sequence[Golden]) -> tuple[list[Row], list[Row]]:
    """Wire rows and expected rows: row i holds sample i of each column (the last one repeated)."""
    count = max(len(g.samples) for g in goldens)
    wire = [
        {g.column: g.samples[min(i, len(g.samples) - 1)][0] for g in goldens} for i in range(count)
    ]
    expected = [
        {g.column: g.samples[min(i, len(g.samples) - 1)][1] for g in goldens} for i in range(count)
    ]
    return wire, expected


TS_NANOS = 1_709_210_096_789_012_345  # 2024-02-29T12:34:56.789012345Z

AVRO_PRIMITIVES = [
    Golden("null", "null", same(None)),
    Golden("boolean", "boolean", same(True, False)),
    Golden("int", "int", same(-(2**31), 2**31 - 1)),
    Golden("long", "long", same(-(2**63), 2**63 - 1)),
    Golden("float", "float", same(-0.25, 3.5)),
    Golden("double", "double", same(0.1, -1e300)),
    Golden("bytes", "bytes", same(b"\x00\xff", b"")),
    Golden("string", "string", same("crêpe 🥞", "")),
    Golden("enum", {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}, same("GREEN")),
    Golden("fixed", {"type": "fixed", "name": "Four", "size": 4}, same(b"\x01\x02\x03\x04")),
    Golden("array", {"type": "array", "items": "int"}, same([1, -2, 3], [])),
    Golden("map", {"type": "map", "values": "long"}, same({"a": 1, "b": -2})),
    Golden(
        "record",
        {"type": "record", "name": "Pair", "fields": [{"name": "x", "type": "int"}]},
        same({"x": 7}),
    ),
    Golden("nullable", ["null", "string"], same(None, "x")),
    Golden("null_second", ["string", "null"], same("y", None)),
]

AVRO_LOGICAL = [
    Golden(
        "decimal_bytes",
        {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
        same(Decimal("-12345.6789"), Decimal("0.0000"), Decimal("9999999999999999.9999")),
    ),
    Golden(
        "decimal_38_digits",
        {"type": "bytes", "logicalType": "decimal", "precision": 38},
        same(Decimal("-99999999999999999999999999999999999999"), Decimal("0")),
    ),
    Golden(
        "decimal_45_digits",
        {"type": "bytes", "logicalType": "decimal", "precision": 45, "scale": 5},
        same(Decimal("1234567890123456789012345678901234567890.12345"), Decimal("-0.00001")),
    ),
    Golden(
        "decimal_fixed",
        {
            "type": "fixed",
            "name": "Money",
            "size": 8,
            "logicalType": "decimal",
            "precision": 18,
            "scale": 2,
        },
        same(Decimal("-0.01"), Decimal("1234567890123456.78")),
    ),
    Golden(
        "uuid",
        {"type": "string", "logicalType": "uuid"},
        same(UUID("123e4567-e89b-12d3-a456-426614174000")),
    ),
    Golden(
        "uuid_fixed",
        {"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"},
        [
            (
                bytes.fromhex("00112233445566778899aabbccddeeff"),
                UUID("00112233-4455-6677-8899-aabbccddeeff"),
            )
        ],
    ),
    Golden(
        "date",
        {"type": "int", "logicalType": "date"},
        same(date(2024, 2, 29), date(1969, 12, 31), date(1, 1, 1), date(9999, 12, 31)),
    ),
    Golden(
        "time_millis",
        {"type": "int", "logicalType": "time-millis"},
        same(time(12, 34, 56, 789000), time(0, 0)),
    ),
    Golden(
        "time_micros",
        {"type": "long", "logicalType": "time-micros"},
        same(time(23, 59, 59, 999999), time(0, 0, 0, 1)),
    ),
    Golden(
        "timestamp_millis",
        {"type": "long", "logicalType": "timestamp-millis"},
        same(
            datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
            datetime(1900, 3, 1, tzinfo=UTC),
        ),
    ),
    Golden(
        "timestamp_micros",
        {"type": "long", "logicalType": "timestamp-micros"},
        same(
            datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        ),
    ),
    Golden(
        "timestamp_nanos",
        {"type": "long", "logicalType": "timestamp-nanos"},
        [
            # Python keeps microseconds: the last three digits are dropped.
            (TS_NANOS, datetime(2024, 2, 29, 12, 34, 56, 789012, tzinfo=UTC)),
            # ... rounding toward the past, also before 1970.
            (-1, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ],
    ),
    Golden(
        "local_timestamp_millis",
        {"type": "long", "logicalType": "local-timestamp-millis"},
        same(datetime(2024, 2, 29, 12, 34, 56, 789000), datetime(1960, 1, 1)),
    ),
    Golden(
        "local_timestamp_micros",
        {"type": "long", "logicalType": "local-timestamp-micros"},
        same(datetime(1583, 10, 15, 1, 2, 3, 4), datetime(2038, 1, 19, 3, 14, 8)),
    ),
    Golden(
        "local_timestamp_nanos",
        {"type": "long", "logicalType": "local-timestamp-nanos"},
        [(TS_NANOS, datetime(2024, 2, 29, 12, 34, 56, 789012))],
    ),
    Golden(
        "duration",
        {"type": "fixed", "name": "Span", "size": 12, "logicalType": "duration"},
        [
            (
                struct.pack("<III", 14, 3, 4_005),
                Interval(months=14, days=3, microseconds=4_005_000),
            ),
            (struct.pack("<III", 0, 0, 0), Interval()),
        ],
    ),
]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_avro_primitive_types(
    encoder: str, cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    wire, expected = rows_of(AVRO_PRIMITIVES)
    produce(encoder, cdc, topic, record_of("Primitives", AVRO_PRIMITIVES), wire)
    assert_rows(read_all(open_stream, topic), expected)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_avro_logical_types(
    encoder: str, cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    wire, expected = rows_of(AVRO_LOGICAL)
    produce(encoder, cdc, topic, record_of("Logical", AVRO_LOGICAL), wire)
    assert_rows(read_all(open_stream, topic), expected)


# Logical types the Avro specification says to ignore: one written on a field rather than on
# its type (as Apache Avro's interop schema does), an invalid decimal (scale > precision) and
# an unknown name. The values decode as the underlying type.
IGNORED_LOGICAL = [
    Golden("on_field", "long", same(1_709_210_096_789)),
    Golden(
        "invalid_decimal",
        {"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 3},
        same(b"\x04\xd2"),
    ),
    Golden("unknown", {"type": "int", "logicalType": "no-such-type"}, same(-7)),
    Golden("date_on_string", {"type": "string", "logicalType": "date"}, same("2024-02-29")),
]


def test_ignored_logical_types(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """Both encoders refuse to *write* an invalid logical type, so the schema registered (and
    used to decode) has them while fastavro writes the same bytes from the plain types."""
    topic = make_topic()
    registered = record_of("Ignored", IGNORED_LOGICAL)
    registered["fields"][0]["logicalType"] = "timestamp-millis"
    plain = copy.deepcopy(registered)
    for field in plain["fields"]:
        field.pop("logicalType", None)
        if isinstance(field["type"], dict):
            field["type"] = field["type"]["type"]
    schema_id = cdc.registry.register_schema(
        f"{topic}-value", RegistrySchema(json.dumps(registered), "AVRO")
    )
    wire, expected = rows_of(IGNORED_LOGICAL)
    parsed = fastavro.parse_schema(plain)
    cdc.produce_raw(topic, [(None, frame_with_fastavro(schema_id, parsed, row)) for row in wire])
    assert_rows(read_all(open_stream, topic), expected)


# ---------------------------------------------------------------------------
# Debezium: one envelope whose `after` row has a column of every semantic type
# ---------------------------------------------------------------------------


def connect(avro_type: str, name: str, **extra: Any) -> Schema:
    """A Kafka Connect type object as AvroConverter writes it."""
    return {"type": avro_type, "connect.version": 1, **extra, "connect.name": name}


def optional(type_object: Any) -> Schema:
    return {"type": ["null", type_object], "default": None}


VARIABLE_SCALE_DECIMAL: Schema = {
    "type": "record",
    "name": "VariableScaleDecimal",
    "namespace": "io.debezium.data",
    "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
    "connect.doc": "Variable scaled decimal",
    "connect.version": 1,
    "connect.name": "io.debezium.data.VariableScaleDecimal",
}

POINT: Schema = {
    "type": "record",
    "name": "Point",
    "namespace": "io.debezium.data.geometry",
    "fields": [
        {"name": "x", "type": "double"},
        {"name": "y", "type": "double"},
        {"name": "wkb", "type": ["null", "bytes"], "default": None},
        {"name": "srid", "type": ["null", "int"], "default": None},
    ],
    "connect.doc": "Geometry (POINT)",
    "connect.version": 1,
    "connect.name": "io.debezium.data.geometry.Point",
}

# The columns of `public.everything` as Debezium's PostgreSQL connector describes them.
DEBEZIUM_COLUMNS: list[Schema] = [
    {"name": "id", "type": "int"},
    {"name": "d", "type": connect("int", "io.debezium.time.Date")},
    {"name": "t_ms", "type": connect("int", "io.debezium.time.Time")},
    {"name": "t_us", "type": connect("long", "io.debezium.time.MicroTime")},
    {"name": "t_ns", "type": connect("long", "io.debezium.time.NanoTime")},
    {"name": "ts_ms", "type": connect("long", "io.debezium.time.Timestamp")},
    # A column with a default: null is the second branch.
    {
        "name": "ts_us",
        "type": [
            connect("long", "io.debezium.time.MicroTimestamp", **{"connect.default": 0}),
            "null",
        ],
        "default": 0,
    },
    {"name": "ts_ns", "type": connect("long", "io.debezium.time.NanoTimestamp")},
    {"name": "tstz", "type": connect("string", "io.debezium.time.ZonedTimestamp")},
    {"name": "timetz", "type": connect("string", "io.debezium.time.ZonedTime")},
    {"name": "iv_us", "type": connect("long", "io.debezium.time.MicroDuration")},
    {"name": "iv_iso", "type": connect("string", "io.debezium.time.Interval")},
    {"name": "num", "type": ["null", VARIABLE_SCALE_DECIMAL], "default": None},
    {
        "name": "price",
        "type": connect(
            "bytes",
            "org.apache.kafka.connect.data.Decimal",
            scale=2,
            precision=10,
            logicalType="decimal",
            **{"connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}},
        ),
    },
    # AvroConverter's legacy form (no logicalType) when the scale exceeds the precision.
    {
        "name": "ratio",
        "type": connect(
            "bytes",
            "org.apache.kafka.connect.data.Decimal",
            **{"connect.parameters": {"scale": "6", "connect.decimal.precision": "3"}},
        ),
    },
    {
        "name": "c_date",
        "type": connect("int", "org.apache.kafka.connect.data.Date", logicalType="date"),
    },
    {
        "name": "c_time",
        "type": connect("int", "org.apache.kafka.connect.data.Time", logicalType="time-millis"),
    },
    {
        "name": "c_ts",
        "type": connect(
            "long", "org.apache.kafka.connect.data.Timestamp", logicalType="timestamp-millis"
        ),
    },
    {"name": "doc", **optional(connect("string", "io.debezium.data.Json"))},
    {"name": "xml", **optional(connect("string", "io.debezium.data.Xml"))},
    {"name": "uid", "type": connect("string", "io.debezium.data.Uuid")},
    {
        "name": "mood",
        "type": connect(
            "string", "io.debezium.data.Enum", **{"connect.parameters": {"allowed": "sad,ok,happy"}}
        ),
    },
    {
        "name": "flags",
        "type": connect(
            "bytes", "io.debezium.data.Bits", **{"connect.parameters": {"length": "12"}}
        ),
    },
    {"name": "location", **optional(POINT)},
    {"name": "body", **optional("string")},
    {"name": "blob", **optional("bytes")},
    {"name": "tags", **optional({"type": "array", "items": ["null", "string"]})},
]
# Row 1: ordinary values. Wire numbers are derived from the expected value by the stdlib.
DBZ_DATE = date(2024, 2, 29)
DBZ_TIME = time(12, 34, 56, 789000)
DBZ_MICRO_TIME = time(23, 59, 59, 999999)
DBZ_TIMESTAMP = datetime(2024, 2, 29, 12, 34, 56, 789000)
DBZ_MICRO_TIMESTAMP = datetime(1969, 12, 31, 23, 59, 59, 999999)
DBZ_UUID = UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
WKB_POINT = bytes.fromhex("0101000000000000000000f03f0000000000000040")

DEBEZIUM_ROW_1_WIRE: Row = {
    "id": 1,
    "d": days(DBZ_DATE),
    "t_ms": micros_of_day(DBZ_TIME) // 1000,
    "t_us": micros_of_day(DBZ_MICRO_TIME),
    "t_ns": micros_of_day(time(1, 2, 3, 456789)) * 1000 + 123,
    "ts_ms": millis(DBZ_TIMESTAMP),
    "ts_us": micros(DBZ_MICRO_TIMESTAMP),
    "ts_ns": micros(datetime(2200, 1, 1, 0, 0, 0, 1)) * 1000 + 999,
    "tstz": "2024-02-29T12:34:56.123456789Z",
    "timetz": "07:00:00.5Z",
    "iv_us": -(90 * 1_000_000 + 1),
    "iv_iso": "P1Y2M3DT4H5M6.78S",
    "num": {"scale": 3, "value": twos_complement(-1234)},
    "price": Decimal("-12345678.90"),
    "ratio": twos_complement(5),
    "c_date": date(1999, 12, 31),
    "c_time": time(8, 0, 0, 1000),
    "c_ts": datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
    "doc": '{"a": [1, 2]}',
    "xml": "<a>b</a>",
    "uid": str(DBZ_UUID),
    "mood": "happy",
    "flags": b"\x05\x0a",
    "location": {"x": 1.0, "y": 2.0, "wkb": WKB_POINT, "srid": None},
    "body": "text",
    "blob": b"\x00\x01",
    "tags": ["a", None],
}
DEBEZIUM_ROW_1: Row = {
    "id": 1,
    "d": date(2024, 2, 29),
    "t_ms": time(12, 34, 56, 789000),
    "t_us": time(23, 59, 59, 999999),
    "t_ns": time(1, 2, 3, 456789),
    "ts_ms": datetime(2024, 2, 29, 12, 34, 56, 789000),
    "ts_us": datetime(1969, 12, 31, 23, 59, 59, 999999),
    "ts_ns": datetime(2200, 1, 1, 0, 0, 0, 1),
    "tstz": datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=UTC),
    "timetz": time(7, 0, 0, 500000, tzinfo=UTC),
    "iv_us": -timedelta(seconds=90, microseconds=1),
    "iv_iso": Interval(months=14, days=3, microseconds=14_706_780_000),
    "num": Decimal("-1.234"),
    "price": Decimal("-12345678.90"),
    "ratio": Decimal("0.000005"),
    "c_date": date(1999, 12, 31),
    "c_time": time(8, 0, 0, 1000),
    "c_ts": datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
    "doc": '{"a": [1, 2]}',
    "xml": "<a>b</a>",
    "uid": UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    "mood": "happy",
    "flags": b"\x05\x0a",
    "location": {"x": 1.0, "y": 2.0, "wkb": WKB_POINT, "srid": None},
    "body": "text",
    "blob": b"\x00\x01",
    "tags": ["a", None],
}

# Row 2: an update whose unchanged TOASTed columns Debezium could not read.
DEBEZIUM_ROW_2_WIRE: Row = {
    **DEBEZIUM_ROW_1_WIRE,
    "id": 2,
    "doc": PLACEHOLDER,
    "xml": PLACEHOLDER,
    "body": PLACEHOLDER,
    "blob": PLACEHOLDER.encode(),
    "tags": [PLACEHOLDER],
}
DEBEZIUM_ROW_2: Row = {
    **DEBEZIUM_ROW_1,
    "id": 2,
    "doc": UNAVAILABLE,
    "xml": UNAVAILABLE,
    "body": UNAVAILABLE,
    "blob": UNAVAILABLE,
    "tags": UNAVAILABLE,
}

# pgjdbc's infinity sentinels (PGStatement.DATE_POSITIVE_INFINITY / DATE_NEGATIVE_INFINITY), as
# the real connector writes them: whole in microsecond columns, divided by 1000 in millisecond
# ones (io.debezium.time.Timestamp, Connect's Timestamp); see tests/test_debezium_connector.py.
PG_POSITIVE_INFINITY = 9223372036825200000
PG_NEGATIVE_INFINITY = -9223372036832400000

# Row 3: PostgreSQL `infinity` in every temporal column that has it, and `24:00:00`.
DEBEZIUM_ROW_3_WIRE: Row = {
    **DEBEZIUM_ROW_1_WIRE,
    "id": 3,
    "d": 2146033979,  # +5877611-06-21, Debezium's date for infinity
    "t_us": 86_400_000_000,  # 24:00:00
    "ts_ms": PG_POSITIVE_INFINITY // 1000,
    "ts_us": PG_POSITIVE_INFINITY,
    "ts_ns": 2**63 - 1,
    "tstz": "infinity",
    "c_ts": PG_POSITIVE_INFINITY // 1000,
}
DEBEZIUM_ROW_3: Row = {
    **DEBEZIUM_ROW_1,
    "id": 3,
    "d": date.max,
    "t_us": time.max,
    "ts_ms": datetime.max,
    "ts_us": datetime.max,
    "ts_ns": datetime.max,
    "tstz": datetime.max.replace(tzinfo=UTC),
    "c_ts": datetime.max.replace(tzinfo=UTC),
}

# Row 4: `-infinity`, and values before 1970 and in other zones.
DEBEZIUM_ROW_4_WIRE: Row = {
    **DEBEZIUM_ROW_1_WIRE,
    "id": 4,
    "d": -2147472691,  # -5877611-06-22, Debezium's date for -infinity
    "ts_ms": PG_NEGATIVE_INFINITY // 1000,
    "ts_us": PG_NEGATIVE_INFINITY,
    "ts_ns": -(2**63),
    "tstz": "-infinity",
    "timetz": "23:59:59+05:30",
    "c_ts": PG_NEGATIVE_INFINITY // 1000,
    "c_date": date(1, 1, 1),
    "num": {"scale": 0, "value": twos_complement(10**40)},
    "iv_iso": "P-1Y2M-3DT-4H5M-6.5S",
    "location": None,
}
DEBEZIUM_ROW_4: Row = {
    **DEBEZIUM_ROW_1,
    "id": 4,
    "d": date.min,
    "ts_ms": datetime.min,
    "ts_us": datetime.min,
    "ts_ns": datetime.min,
    "tstz": datetime.min.replace(tzinfo=UTC),
    "timetz": time(23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    "c_ts": datetime.min.replace(tzinfo=UTC),
    "c_date": date(1, 1, 1),
    "num": Decimal("10000000000000000000000000000000000000000"),
    "iv_iso": Interval(months=-10, days=-3, microseconds=-14_106_500_000),
    "location": None,
}

DEBEZIUM_ROWS = [
    (DEBEZIUM_ROW_1_WIRE, DEBEZIUM_ROW_1),
    (DEBEZIUM_ROW_2_WIRE, DEBEZIUM_ROW_2),
    (DEBEZIUM_ROW_3_WIRE, DEBEZIUM_ROW_3),
    (DEBEZIUM_ROW_4_WIRE, DEBEZIUM_ROW_4),
]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_debezium_semantic_types(
    encoder: str, cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    prefix = "shop"
    key_schema = debezium_key_schema(prefix, "everything", [{"name": "id", "type": "int"}])
    value_schema = debezium_envelope_schema(prefix, "everything", DEBEZIUM_COLUMNS)
    ts_ms = 1_709_210_096_000
    source = debezium_source(prefix, table="everything", ts_ms=ts_ms, lsn=1000, tx_id=7)
    ops = ["c", "u", "c", "c"]
    values = [
        debezium_event(op, before=None, after=wire, source=source, ts_ms=ts_ms)
        for op, (wire, _) in zip(ops, DEBEZIUM_ROWS, strict=True)
    ]
    keys: list[Row | None] = [{"id": wire["id"]} for wire, _ in DEBEZIUM_ROWS]
    produce(encoder, cdc, topic, value_schema, values, key_schema, keys)
    changes = read_all(open_stream, topic)
    assert [c.op for c in changes] == ["insert", "update", "insert", "insert"]
    for change, (_, expected) in zip(changes, DEBEZIUM_ROWS, strict=True):
        assert change.table == "everything"
        assert change.before is None
        assert_same(change.after, expected, f"row {expected['id']}")
    # The placeholder is one object, not text, and never equal to the text.
    after = changes[1].after
    assert after is not None
    assert after["body"] is UNAVAILABLE
    assert PLACEHOLDER not in after.values()
    assert PLACEHOLDER.encode() not in after.values()
    assert repr(UNAVAILABLE) == "changestream.UNAVAILABLE"


def test_values_out_of_python_range_are_decode_errors(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """A finite date after 9999-12-31 cannot be a Python date: a DecodeError says so."""
    topic = make_topic()
    schema = record_of(
        "Far", [Golden("d", connect("int", "io.debezium.time.Date"), [])], "x.y.z.Value"
    )
    # 3,000,000 days after 1970 is in the year 10183.
    produce("fastavro", cdc, topic, schema, [{"d": 3_000_000}])
    with pytest.raises(DecodeError, match=r"year 10183\) is outside years 1 to 9999"):
        read_all(open_stream, topic)


# ---------------------------------------------------------------------------
# Bottled Water: a row with every date/time record and SpecialTime infinity
# ---------------------------------------------------------------------------

BW_TYPES = "com.martinkl.bottledwater.datatypes"
BW_DATE_FIELDS = [{"name": n, "type": "int"} for n in ("year", "month", "day")]
BW_TIME_FIELDS = [{"name": n, "type": "int"} for n in ("hour", "minute", "second", "micro")]


def bw_record(name: str, fields: list[Schema]) -> Schema:
    return {"type": "record", "name": name, "namespace": BW_TYPES, "fields": fields}


# As Bottled Water generates it: every column nullable, the shared records defined at first
# use, and the SpecialTime enum (no namespace of its own) referred to by name afterwards.
BOTTLED_WATER_SCHEMA: Schema = {
    "type": "record",
    "name": "events",
    "namespace": "com.martinkl.bottledwater.dbschema.public",
    "fields": [
        {"name": "id", "type": ["null", "int"]},
        {
            "name": "day",
            "type": [
                "null",
                bw_record("Date", BW_DATE_FIELDS),
                {
                    "type": "enum",
                    "name": "SpecialTime",
                    "symbols": ["POS_INFINITY", "NEG_INFINITY"],
                },
            ],
        },
        {
            "name": "at",
            "type": ["null", bw_record("DateTime", BW_DATE_FIELDS + BW_TIME_FIELDS), "SpecialTime"],
        },
        {
            "name": "at_tz",
            "type": [
                "null",
                bw_record(
                    "DateTimeTZ",
                    [*BW_DATE_FIELDS, *BW_TIME_FIELDS, {"name": "zoneOffset", "type": "int"}],
                ),
                "SpecialTime",
            ],
        },
        {
            "name": "clock_tz",
            "type": [
                "null",
                bw_record(
                    "TimeTZ",
                    [{"name": "micro", "type": "long"}, {"name": "zoneOffset", "type": "int"}],
                ),
            ],
        },
        {"name": "span", "type": ["null", bw_record("Interval", BW_DATE_FIELDS + BW_TIME_FIELDS)]},
        {"name": "clock", "type": ["null", "long"]},
        {"name": "amount", "type": ["null", "double"]},
        {"name": "note", "type": ["null", "string"]},
    ],
}


def bw_date_time(moment: datetime, *, zoned: bool = False) -> Row:
    fields = {
        "year": moment.year,
        "month": moment.month,
        "day": moment.day,
        "hour": moment.hour,
        "minute": moment.minute,
        "second": moment.second,
        "micro": moment.microsecond,
    }
    if zoned:
        offset = moment.utcoffset()
        assert offset is not None
        fields["zoneOffset"] = int(offset.total_seconds())
    return fields


IST = timezone(timedelta(hours=5, minutes=30))
EST = timezone(timedelta(hours=-5))

BOTTLED_WATER_ROWS: list[tuple[Row, Row]] = [
    (
        {
            "id": 1,
            "day": {"year": 2024, "month": 2, "day": 29},
            "at": bw_date_time(datetime(1999, 12, 31, 23, 59, 59, 999999)),
            "at_tz": bw_date_time(datetime(2024, 2, 29, 18, 4, 56, 500000, tzinfo=IST), zoned=True),
            "clock_tz": {"micro": micros_of_day(time(7, 0)), "zoneOffset": -5 * 3600},
            "span": {
                "year": 1,
                "month": 2,
                "day": 3,
                "hour": 4,
                "minute": 5,
                "second": 6,
                "micro": 780000,
            },
            "clock": micros_of_day(time(13, 14, 15)),
            "amount": 12.5,
            # Bottled Water is not Kafka Connect: this text is just text.
            "note": PLACEHOLDER,
        },
        {
            "id": 1,
            "day": date(2024, 2, 29),
            "at": datetime(1999, 12, 31, 23, 59, 59, 999999),
            "at_tz": datetime(2024, 2, 29, 18, 4, 56, 500000, tzinfo=IST),
            "clock_tz": time(7, 0, tzinfo=EST),
            "span": Interval(months=14, days=3, microseconds=14_706_780_000),
            "clock": 47_655_000_000,
            "amount": 12.5,
            "note": PLACEHOLDER,
        },
    ),
    (
        {
            "id": 2,
            "day": "POS_INFINITY",
            "at": "POS_INFINITY",
            "at_tz": "POS_INFINITY",
            "clock_tz": {"micro": 86_400_000_000, "zoneOffset": 0},
            "span": {
                "year": -1,
                "month": -2,
                "day": -3,
                "hour": -4,
                "minute": -5,
                "second": -6,
                "micro": -7,
            },
            "clock": None,
            "amount": None,
            "note": None,
        },
        {
            "id": 2,
            "day": date.max,
            "at": datetime.max,
            "at_tz": datetime.max.replace(tzinfo=UTC),
            "clock_tz": time.max.replace(tzinfo=UTC),
            "span": Interval(months=-14, days=-3, microseconds=-14_706_000_007),
            "clock": None,
            "amount": None,
            "note": None,
        },
    ),
    (
        {
            "id": 3,
            "day": "NEG_INFINITY",
            "at": "NEG_INFINITY",
            "at_tz": "NEG_INFINITY",
            "clock_tz": None,
            "span": None,
            "clock": None,
            "amount": None,
            "note": None,
        },
        {
            "id": 3,
            "day": date.min,
            "at": datetime.min,
            "at_tz": datetime.min.replace(tzinfo=UTC),
            "clock_tz": None,
            "span": None,
            "clock": None,
            "amount": None,
            "note": None,
        },
    ),
    (
        {
            "id": 4,
            "day": {"year": 1, "month": 1, "day": 1},
            "at": bw_date_time(datetime(1900, 2, 28, 0, 0)),
            "at_tz": bw_date_time(datetime(1969, 12, 31, 19, 0, tzinfo=EST), zoned=True),
            "clock_tz": None,
            "span": None,
            "clock": 0,
            "amount": -0.0,
            "note": "",
        },
        {
            "id": 4,
            "day": date(1, 1, 1),
            "at": datetime(1900, 2, 28),
            "at_tz": datetime(1969, 12, 31, 19, 0, tzinfo=EST),
            "clock_tz": None,
            "span": None,
            "clock": 0,
            "amount": -0.0,
            "note": "",
        },
    ),
]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_bottled_water_types(
    encoder: str, cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic()
    produce(encoder, cdc, topic, BOTTLED_WATER_SCHEMA, [wire for wire, _ in BOTTLED_WATER_ROWS])
    changes = read_all(open_stream, topic)
    assert [c.op for c in changes] == ["upsert"] * len(BOTTLED_WATER_ROWS)
    for change, (_, expected) in zip(changes, BOTTLED_WATER_ROWS, strict=True):
        assert change.table == "events"
        assert_same(change.after, expected, f"row {expected['id']}")
