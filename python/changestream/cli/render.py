"""How ``changestream tail`` prints a change: one readable line, or one JSON object.

JSON values are exact: decimals as strings (``"1.50"``), dates, times and timestamps as
ISO-8601 strings (with their offset when they have one), ``timedelta`` and
``changestream.Interval`` as ISO-8601 durations (``P14M3DT4.5S``: months, days and seconds
kept apart), bytes as base64, UUIDs as strings, non-finite floats as ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, and ``changestream.UNAVAILABLE`` (a value Debezium did not
have) as ``{"unavailable": true}``.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from typing import Any

from changestream._core import Change, Interval, UnavailableType

FIELDS = ("op", "table", "key", "before", "after", "topic", "partition", "offset", "timestamp")


def json_line(change: Change) -> str:
    """The change as one line of JSON with the keys of ``FIELDS``."""
    return json.dumps(
        {name: json_value(getattr(change, name)) for name in FIELDS},
        ensure_ascii=False,
        allow_nan=False,
    )


def json_value(value: Any) -> Any:
    """``value`` as what ``json.dumps`` writes exactly."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return iso_duration(0, value.days, value.seconds * 1_000_000 + value.microseconds)
    if isinstance(value, Interval):
        return iso_duration(value.months, value.days, value.microseconds)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, UnavailableType):
        return {"unavailable": True}
    return str(value)


def iso_duration(months: int, days: int, microseconds: int) -> str:
    """An ISO-8601 duration with months, days and (fractional) seconds kept apart."""
    seconds = decimal.Decimal(microseconds).scaleb(-6).normalize()
    text = "P"
    if months:
        text += f"{months}M"
    if days or not (months or microseconds):
        text += f"{days}D"
    if microseconds:
        text += f"T{seconds:f}S"
    return text


def text_line(change: Change) -> str:
    """One readable line: when, where, what, and the row (for updates, what changed)."""
    when = change.timestamp.isoformat(timespec="milliseconds") if change.timestamp else "-"
    where = f"{change.topic}[{change.partition}]@{change.offset}"
    head = f"{when} {where} {change.op} {change.table} key={change.key!r}"
    before, after = change.before, change.after
    if change.op == "update" and isinstance(before, dict) and isinstance(after, dict):
        changed = [
            f"{name}: {before.get(name)!r} -> {value!r}"
            for name, value in after.items()
            if name not in before or before[name] != value
        ]
        return f"{head} {{{', '.join(changed)}}}"
    row = after if after is not None else before
    return f"{head} {row!r}" if row is not None else head
