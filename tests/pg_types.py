"""PostgreSQL types for the real-Debezium tests, and what changestream must give for each.

``TYPE_COLUMNS`` is one table with a column per PostgreSQL type the README's type table
covers, and ``TYPE_ROWS`` its rows: limits, special values (±infinity, NaN, 24:00) and NULLs.
``expected(column, pg_value, settings)`` turns what PostgreSQL itself returns for a cell
(``column.select``, mostly the text form, as psql prints it) into the Python value changestream
must give for what Debezium wrote under the connector ``settings``; where Debezium loses
information (see the README) the expectation says so.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from changestream import Interval

UTC = timezone.utc
# Debezium's MicroDuration: a month is 30.4375 days.
MICROS_PER_MONTH = 2_629_800_000_000
MICROS_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    kind: str
    """How to read PostgreSQL's value and what Debezium makes of it (see ``expected``)."""
    select: str = "{}::text"
    """The SQL expression that gives PostgreSQL's value of the cell."""


TYPE_COLUMNS = [
    Column("i2", "smallint", "int"),
    Column("i4", "integer", "int"),
    Column("i8", "bigint", "int"),
    Column("n_scaled", "numeric(12,3)", "numeric"),
    Column("n_free", "numeric", "numeric_free"),
    Column("f4", "real", "real"),
    Column("f8", "double precision", "double"),
    Column("flag", "boolean", "bool"),
    Column("txt", "text", "text"),
    Column("vc", "varchar(10)", "text"),
    Column("ch", "char(5)", "text", "{}"),
    Column("bin", "bytea", "bytes", "{}"),
    Column("d", "date", "date"),
    Column("d2", "date", "date"),
    Column("tm", "time", "time"),
    Column("tm3", "time(3)", "time"),
    Column("ttz", "timetz", "timetz"),
    Column("ts3", "timestamp(3)", "timestamp"),
    Column("ts6", "timestamp", "timestamp"),
    Column("tstz", "timestamptz", "timestamptz"),
    Column("iv", "interval", "interval"),
    Column("uid", "uuid", "uuid"),
    Column("js", "json", "text"),
    Column("jsb", "jsonb", "text"),
    Column("doc", "xml", "text"),
    # inet's output function, as psql prints it (a ::text cast would add /32 or /128)
    Column("ip", "inet", "text", "nullif(format('%s', {}), '')"),
    Column("net", "cidr", "text"),
    Column("mac", "macaddr", "text"),
    Column("rng", "int4range", "text"),
    Column("cash", "money", "numeric", "{}::numeric::text"),
    Column("mood", "mood", "text"),
    Column("ints", "integer[]", "array", "{}"),
    Column("texts", "text[]", "array", "{}"),
    Column("grid", "integer[][]", "array_2d", "{}"),
    Column("kv", "hstore", "hstore", "hstore_to_json({})::text"),
    Column("pt", "point", "point"),
    Column("bit1", "bit(1)", "bool_bit"),
    Column("bits", "bit(8)", "bits"),
    Column("vbits", "varbit(20)", "bits"),
]

TYPES_DDL = """
create type {schema}.mood as enum ('sad', 'ok', 'happy');
create table {schema}.types (id integer primary key, {columns});
"""

# Rows by id: the largest values, the smallest, all NULL, +infinity and NaN, -infinity.
TYPE_ROWS: dict[int, dict[str, Any]] = {
    1: {
        "i2": 32767,
        "i4": 2147483647,
        "i8": 9223372036854775807,
        "n_scaled": "123456789.123",
        "n_free": "1.500",
        "f4": "3.4028235e38",
        "f8": "1e308",
        "flag": True,
        "txt": "crêpe 🥞 naïve",
        "vc": "abcdefghij",
        "ch": "ab",
        "bin": b"\x00\xff",
        "d": "9999-12-31",
        "d2": "2024-02-29",
        "tm": "24:00:00",
        "tm3": "23:59:59.999",
        "ttz": "12:34:56.5+05:30",
        "ts3": "9999-12-31 23:59:59.999",
        "ts6": "2024-02-29 12:34:56.789012",
        "tstz": "2024-02-29 12:34:56.789012+05:30",
        "iv": "1 year 2 mons 3 days 04:05:06.78",
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "js": '{"b": 1, "a": [1, 2]}',
        "jsb": '{"b": 1, "a": [1, 2]}',
        "doc": "<a>1</a>",
        "ip": "192.168.0.1/24",
        "net": "10.0.0.0/8",
        "mac": "08:00:2b:01:02:03",
        "rng": "[1,10)",
        "cash": "92233720368547758.07",
        "mood": "happy",
        "ints": [1, 2, 3],
        "texts": ["a", None, "b c"],
        "grid": [[1, 2], [3, 4]],
        "kv": "a=>1, b=>NULL",
        "pt": "(1.5,-2)",
        "bit1": "1",
        "bits": "00000101",
        "vbits": "0000000000101",
    },
    2: {
        "i2": -32768,
        "i4": -2147483648,
        "i8": -9223372036854775808,
        "n_scaled": "-0.001",
        "n_free": "-12345678901234567890.123456789",
        "f4": "-1.5",
        "f8": "-2.5e-300",
        "flag": False,
        "txt": "",
        "vc": "",
        "ch": "",
        "bin": b"",
        "d": "0001-01-01",
        "d2": "1970-01-01",
        "tm": "00:00:00",
        "tm3": "00:00:00",
        "ttz": "00:00:00-03",
        "ts3": "0001-01-01 00:00:00",
        "ts6": "0001-01-01 00:00:00",
        "tstz": "0001-01-01 00:00:00+00",
        "iv": "-1 year -2 mons +3 days -04:05:06",
        "uid": "00000000-0000-0000-0000-000000000000",
        "js": "[]",
        "jsb": "{}",
        "doc": "<a/>",
        "ip": "::1",
        "net": "::/0",
        "mac": "00:00:00:00:00:00",
        "rng": "empty",
        "cash": "-92233720368547758.08",
        "mood": "sad",
        "ints": [],
        "texts": [],
        "kv": "",
        "pt": "(0,0)",
        "bit1": "0",
        "bits": "10000000",
        "vbits": "1",
    },
    3: {},
    4: {
        "n_scaled": "0.000",
        "n_free": "NaN",
        "f4": "NaN",
        "f8": "Infinity",
        "d": "infinity",
        "ts3": "infinity",
        "ts6": "infinity",
        "tstz": "infinity",
        "tm": "12:34:56.789012",
        "ttz": "23:59:59+00",
        "iv": "0",
        "ints": [None],
    },
    5: {
        "n_free": "Infinity",
        "f4": "-Infinity",
        "f8": "-Infinity",
        "d": "-infinity",
        "ts3": "-infinity",
        "ts6": "-infinity",
        "tstz": "-infinity",
        "ttz": "24:00:00+00",
    },
}


def types_ddl(schema: str) -> str:
    columns = ", ".join(
        f"{c.name} {c.sql_type.replace('mood', schema + '.mood')}" for c in TYPE_COLUMNS
    )
    return TYPES_DDL.format(schema=schema, columns=columns)


def type_row_values(row_id: int) -> tuple[str, list[Any]]:
    """``INSERT`` column list and parameters for row ``row_id`` (any id: rows repeat by id % 10)."""
    row = TYPE_ROWS[row_id % 10]
    names = ["id", *row]
    return ", ".join(names), [row_id, *row.values()]


def select_sql(schema: str) -> str:
    """The query giving PostgreSQL's value of every cell, by id."""
    cells = ", ".join(c.select.format(c.name) for c in TYPE_COLUMNS)
    return f"select id, {cells} from {schema}.types order by id"


def _infinite(text: str, finite: Any, largest: Any, smallest: Any) -> Any:
    return {"infinity": largest, "-infinity": smallest}.get(text, finite)


def _parse_time(text: str) -> time:
    return time.max if text.startswith("24:00:00") else time.fromisoformat(text)


def _millis(moment: Any) -> Any:
    """Truncated to milliseconds, as Kafka Connect's Time and Timestamp are."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


_ISO_INTERVAL = re.compile(
    r"P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?"
)


def _interval_parts(text: str) -> tuple[int, int, int]:
    """Months, days, microseconds of an interval PostgreSQL printed as ISO 8601."""
    match = _ISO_INTERVAL.fullmatch(text)
    assert match is not None, text
    years, months, days, hours, minutes, seconds = match.groups()
    micros = round(Decimal(seconds or 0) * 1_000_000)
    micros += (int(hours or 0) * 60 + int(minutes or 0)) * 60_000_000
    return int(years or 0) * 12 + int(months or 0), int(days or 0), micros


def expected(column: Column, value: Any, settings: dict[str, str]) -> Any:
    """What changestream must give for PostgreSQL's ``value`` under the connector settings."""
    if value is None:
        return None
    decimals = settings.get("decimal.handling.mode", "precise")
    time_mode = settings.get("time.precision.mode", "adaptive")
    kind = column.kind
    if kind == "int":
        return int(value)
    if kind in ("numeric", "numeric_free"):
        if value in ("NaN", "Infinity"):
            # Debezium writes these as null in precise mode, as Java enum names in string mode.
            spelled = {"NaN": "NAN", "Infinity": "POSITIVE_INFINITY"}[value]
            return {"precise": None, "string": spelled, "double": float(value)}[decimals]
        if decimals == "string":
            return value  # BigDecimal.toPlainString(): PostgreSQL's digits, trailing zeros kept
        if decimals == "double":
            return float(value)
        return Decimal(value)
    if kind == "real":
        return struct.unpack("<f", struct.pack("<f", float(value)))[0]
    if kind == "double":
        return float(value)
    if kind == "bool":
        return value == "true"
    if kind in ("text", "bytes"):
        return value
    if kind == "date":
        return _infinite(value, None, date.max, date.min) or date.fromisoformat(value)
    if kind == "time":
        moment = _parse_time(value)
        return _millis(moment) if time_mode == "connect" and moment != time.max else moment
    if kind == "timetz":
        # Debezium writes the time in UTC ("...Z"), and 24:00 as 00:00 (its loss).
        local = time.fromisoformat(value.replace("24:00:00", "00:00:00"))
        offset = local.utcoffset() or timedelta()
        in_utc = datetime.combine(date(2000, 1, 1), local.replace(tzinfo=None)) - offset
        return in_utc.time().replace(tzinfo=UTC)
    if kind == "timestamp":
        # Under `connect`, a timestamp is Kafka Connect's Timestamp: an instant, in ms.
        zone = UTC if time_mode == "connect" else None
        largest, smallest = datetime.max.replace(tzinfo=zone), datetime.min.replace(tzinfo=zone)
        infinite = _infinite(value, None, largest, smallest)
        if infinite is not None:
            return infinite
        stamp = datetime.fromisoformat(value).replace(tzinfo=zone)
        return _millis(stamp) if time_mode == "connect" else stamp
    if kind == "timestamptz":
        largest, smallest = datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)
        moment = _infinite(value, None, largest, smallest)
        return moment or datetime.fromisoformat(value).astimezone(UTC)
    if kind == "interval":
        months, days, micros = _interval_parts(value)
        if settings.get("interval.handling.mode") == "string":
            return Interval(months, days, micros)
        return timedelta(microseconds=months * MICROS_PER_MONTH + days * MICROS_PER_DAY + micros)
    if kind == "uuid":
        return UUID(value)
    if kind == "array":
        return list(value)
    if kind == "array_2d":
        return [None for _ in value]  # Debezium cannot write a 2-D array: one null per row
    if kind == "hstore":
        pairs = json.loads(value)
        return pairs if settings.get("hstore.handling.mode") == "map" else ("json", pairs)
    if kind == "point":
        x, y = (float(part) for part in value.strip("()").split(","))
        return {"x": x, "y": y, "wkb": struct.pack("<BIdd", 1, 1, x, y), "srid": None}
    if kind == "bool_bit":
        return value == "1"
    if kind == "bits":
        # The bits as a little-endian number: leading zero bits (the padding) are lost.
        number = int(value, 2)
        return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "little")
    raise AssertionError(f"unknown kind {kind}")


def assert_cell(column: Column, actual: Any, wanted: Any, where: str) -> None:
    """``actual`` (what changestream gave) is ``wanted`` (from ``expected``)."""
    if isinstance(wanted, tuple) and wanted[0] == "json":
        assert isinstance(actual, str), f"{where}: {actual!r}"
        assert json.loads(actual) == wanted[1], f"{where}: {actual!r} != {wanted[1]!r}"
        return
    if isinstance(wanted, float) and wanted != wanted:
        assert isinstance(actual, float), f"{where}: {actual!r} is not NaN"
        assert actual != actual, f"{where}: {actual!r} is not NaN"
        return
    assert type(actual) is type(wanted), f"{where}: {actual!r} is not a {type(wanted).__name__}"
    assert actual == wanted, f"{where}: {actual!r} != {wanted!r}"
    if isinstance(wanted, Decimal) and column.kind == "numeric":
        # A constrained numeric keeps its scale; an unconstrained one's trailing zeros are lost.
        assert actual.as_tuple() == wanted.as_tuple(), f"{where}: {actual!r} != {wanted!r}"
    if isinstance(wanted, (datetime, time)):
        assert actual.utcoffset() == wanted.utcoffset(), f"{where}: {actual!r} != {wanted!r}"
