"""Column kinds: what a batch column holds, independent of any target.

A :class:`ChangeBatch` column's Arrow type (see docs/types.md) plus, where the registry
knows it, the Kafka Connect ``connect.name`` of the field (Debezium's ``Json`` is text in
Arrow, ``VariableScaleDecimal`` exact decimal text) give one *kind*; each target maps a
kind to its own SQL type (``TYPES`` in each target module) and converts the Arrow column
into what its driver or loader takes (:func:`to_text_column` for the text forms).
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from changestream._core import Interval

KINDS = (
    "boolean",
    "int32",
    "int64",
    "float32",
    "float64",
    "decimal",
    "numeric",
    "text",
    "json",
    "binary",
    "uuid",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "duration",
    "nested",
)
"""Every kind; ``decimal`` has a fixed scale, ``numeric`` (VariableScaleDecimal) has none."""

DEBEZIUM_JSON = "io.debezium.data.Json"
DEBEZIUM_VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"


def kind_of(field: pa.Field, connect_name: str | None = None) -> str:
    """The kind of one batch column."""
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if getattr(t, "extension_name", None) == "arrow.uuid" or (
        (field.metadata or {}).get(b"ARROW:extension:name") == b"arrow.uuid"
    ):
        return "uuid"
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t):
        return "int32"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return "float32"
    if pa.types.is_float64(t):
        return "float64"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if connect_name == DEBEZIUM_JSON:
            return "json"
        if connect_name == DEBEZIUM_VARIABLE_SCALE_DECIMAL:
            return "numeric"
        return "text"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz is None else "timestamptz"
    if t == pa.month_day_nano_interval():
        return "interval"
    if pa.types.is_duration(t):
        return "duration"
    if pa.types.is_null(t):
        # A column no row has a value in (a union of null only): text stores its NULLs.
        return "text"
    return "nested"


def interval_text(value: Any) -> str:
    """An ISO 8601 duration (``P1M2DT3.000004S``) for an interval or MicroDuration value,
    exact: the months, days and microseconds kept apart, as PostgreSQL reads it."""
    if isinstance(value, Interval):
        months, days, micros = value.months, value.days, value.microseconds
    elif isinstance(value, tuple):  # pyarrow's MonthDayNano
        months, days, micros = value[0], value[1], value[2] // 1000
    else:  # datetime.timedelta
        months, days, micros = 0, 0, (value.days * 86_400 + value.seconds) * 10**6
        micros += value.microseconds
    seconds = Decimal(micros).scaleb(-6)
    return f"P{months}M{days}DT{seconds:f}S"


def _as_uuid(value: uuid.UUID | bytes) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(bytes=value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, tuple):
        return interval_text(value)
    return str(value)


def nested_text(value: Any) -> str:
    """A struct, list or map value as JSON text (maps arrive as lists of pairs)."""
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def to_text_column(column: pa.ChunkedArray | pa.Array, kind: str) -> pa.Array:
    """``column`` as a string column a text loader can take: exact decimals, ISO dates and
    times (``Z`` marks UTC), ISO 8601 intervals, UUIDs in their canonical form, JSON for
    nested values. Kinds that are already numbers or text are returned as they are."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if kind == "timestamptz" and column.type.tz == "UTC":
        # Arrow keeps instants in UTC: formatted as zone-less timestamps they are the UTC
        # wall time, an order of magnitude faster than pyarrow's cast with a zone (which
        # looks the zone up per value); "Z" marks UTC, as that cast writes it for "UTC".
        wall = column.view(pa.int64()).view(pa.timestamp(column.type.unit))
        text = pc.cast(wall, pa.string())
        return pc.replace_substring_regex(text, r"^(\S+) (.*)$", r"\1T\2Z")
    if kind in ("decimal", "date", "time", "timestamp", "timestamptz"):
        text = pc.cast(column, pa.string())
        if kind in ("timestamp", "timestamptz"):
            # pyarrow writes "2024-01-02 03:04:05.000000[+0100]": ISO 8601 has a "T".
            text = pc.replace_substring(text, " ", "T", max_replacements=1)
        return text
    if kind == "uuid":
        return pa.array(
            [None if v is None else str(_as_uuid(v)) for v in column.to_pylist()], pa.string()
        )
    if kind in ("interval", "duration"):
        return pa.array(
            [None if v is None else interval_text(v) for v in column.to_pylist()], pa.string()
        )
    if kind == "nested":
        return pa.array(
            [None if v is None else nested_text(v) for v in column.to_pylist()], pa.string()
        )
    return column
