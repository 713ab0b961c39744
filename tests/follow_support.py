"""Debezium-shaped change streams for the follower tests, with their expected end state.

:class:`Workload` produces the change events of two PostgreSQL tables the way Debezium's
connector writes them (envelopes through confluent-kafka's ``AvroSerializer``, see
``cdc.py``; a tombstone after every delete; a primary-key change as delete, tombstone,
create; ``op: "t"`` for a truncate) and keeps, beside them, the tables' state as a plain
``{key: row}`` model updated from the events it produced, in Python values of the source
(``Decimal``, ``date``, aware ``datetime``, ``UUID``, months/days/µs for intervals). That
model never goes through changestream, so the follower's tables are compared with state
computed independently from the events.

``items`` (topic ``<prefix>.public.items``, 2 partitions by key) has a column of every
Debezium type in the README's table, a TOASTed column that updates leave unavailable,
a column added by a second schema version and one dropped by a third. ``people``
(1 partition) has primary-key changes and truncates. :func:`read_target` reads a target's
table back into the same canonical form.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from cdc import CdcProducer, debezium_envelope_schema, debezium_event, debezium_key_schema
from cdc import debezium_source as source_block

Row = dict[str, Any]
UNAVAILABLE_TEXT = "__debezium_unavailable_value"
EPOCH_DAY = date(1970, 1, 1)
EPOCH_NAIVE = datetime(1970, 1, 1)


def _optional(avro_type: Any) -> Any:
    return {"type": ["null", avro_type], "default": None}


def _connect(base: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": base, "connect.version": 1, "connect.name": name, **extra}


ITEM_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "int"},
    {"name": "small", **_optional({"type": "int", "connect.type": "int16"})},
    {"name": "big", **_optional("long")},
    {"name": "flag", **_optional("boolean")},
    {"name": "ratio", **_optional("float")},
    {"name": "amount", **_optional("double")},
    {
        "name": "price",
        **_optional(
            _connect(
                "bytes",
                "org.apache.kafka.connect.data.Decimal",
                logicalType="decimal",
                precision=12,
                scale=2,
                **{"connect.parameters": {"scale": "2", "connect.decimal.precision": "12"}},
            )
        ),
    },
    {
        "name": "exact",
        **_optional(
            {
                "type": "record",
                "name": "VariableScaleDecimal",
                "namespace": "io.debezium.data",
                "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
                "connect.version": 1,
                "connect.name": "io.debezium.data.VariableScaleDecimal",
            }
        ),
    },
    {"name": "label", **_optional("string")},
    {"name": "doc", **_optional(_connect("string", "io.debezium.data.Json"))},
    {"name": "ref", **_optional(_connect("string", "io.debezium.data.Uuid"))},
    {
        "name": "mood",
        **_optional(
            _connect(
                "string", "io.debezium.data.Enum", **{"connect.parameters": {"allowed": "a,b,c"}}
            )
        ),
    },
    {"name": "blob", **_optional("bytes")},
    {"name": "day", **_optional(_connect("int", "io.debezium.time.Date"))},
    {"name": "clock", **_optional(_connect("long", "io.debezium.time.MicroTime"))},
    {"name": "seen", **_optional(_connect("long", "io.debezium.time.MicroTimestamp"))},
    {"name": "logged", **_optional(_connect("long", "io.debezium.time.Timestamp"))},
    {"name": "zoned", **_optional(_connect("string", "io.debezium.time.ZonedTimestamp"))},
    {"name": "span", **_optional(_connect("string", "io.debezium.time.Interval"))},
    {"name": "markup", **_optional(_connect("string", "io.debezium.data.Xml"))},
    {
        "name": "bits",
        **_optional(
            _connect("bytes", "io.debezium.data.Bits", **{"connect.parameters": {"length": "8"}})
        ),
    },
    {"name": "wait", **_optional(_connect("long", "io.debezium.time.MicroDuration"))},
    {"name": "alarm", **_optional(_connect("int", "io.debezium.time.Time"))},
    {"name": "meeting", **_optional(_connect("string", "io.debezium.time.ZonedTime"))},
    {"name": "tags", **_optional({"type": "array", "items": "string"})},
    {"name": "body", **_optional("string")},
]
"""``items`` v1. ``body`` is the TOASTed text column updates may leave unavailable."""

ADDED = {"name": "coupon", **_optional("string")}
"""The column v2 adds."""
DROPPED = "label"
"""The column v3 drops."""

KINDS = {
    "id": "int",
    "small": "int",
    "big": "int",
    "flag": "bool",
    "ratio": "float",
    "amount": "float",
    "price": "decimal",
    "exact": "decimal",
    "label": "text",
    "doc": "json",
    "ref": "uuid",
    "mood": "text",
    "blob": "bytes",
    "day": "date",
    "clock": "time",
    "seen": "timestamp",
    "logged": "timestamp",
    "zoned": "timestamptz",
    "span": "interval",
    "body": "text",
    "coupon": "text",
    "markup": "text",
    "bits": "bytes",
    "wait": "interval",
    "alarm": "time",
    "meeting": "time",
    "tags": "json",
    "name": "text",
    "email": "text",
}
"""How to compare each column (of both tables)."""

PEOPLE_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "int"},
    {"name": "name", "type": "string"},
    {"name": "email", **_optional("string")},
]


@dataclass
class Interval:
    """An interval as PostgreSQL keeps it: months, days, microseconds."""

    months: int
    days: int
    micros: int


def _unscaled_bytes(value: int) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(length, "big", signed=True)


@dataclass
class Table:
    name: str
    topic: str
    key_schema: dict[str, Any]
    schemas: list[dict[str, Any]]
    partitions: int
    state: dict[int, Row] = field(default_factory=dict)


class Workload:
    """Produces the two tables' changes and keeps the expected state of each."""

    def __init__(self, cdc: CdcProducer, prefix: str, seed: int) -> None:
        self.cdc = cdc
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.ts_ms = 1_700_000_000_000
        self.lsn = 1000
        v1 = debezium_envelope_schema(prefix, "items", ITEM_FIELDS)
        v2 = debezium_envelope_schema(prefix, "items", [*ITEM_FIELDS, ADDED])
        v3_fields = [f for f in [*ITEM_FIELDS, ADDED] if f["name"] != DROPPED]
        v3 = debezium_envelope_schema(prefix, "items", v3_fields)
        self.items = Table(
            "items",
            f"{prefix}.public.items",
            debezium_key_schema(prefix, "items", [{"name": "id", "type": "int"}]),
            [v1, v2, v3],
            2,
        )
        self.people = Table(
            "people",
            f"{prefix}.public.people",
            debezium_key_schema(prefix, "people", [{"name": "id", "type": "int"}]),
            [debezium_envelope_schema(prefix, "people", PEOPLE_FIELDS)],
            1,
        )
        self.items_version = 0
        self.next_id = {"items": 1, "people": 1}
        self.produced = 0
        self.tombstones = 0

    @property
    def tables(self) -> list[Table]:
        return [self.items, self.people]

    # -- values --------------------------------------------------------------------------

    def _item_values(self, item_id: int) -> tuple[Row, Row]:
        """A random ``items`` row: (wire values for the serializer, expected values)."""
        rng = self.rng
        unscaled = rng.randrange(-(10**9), 10**9)
        exact_scale = rng.randrange(0, 6)
        exact_unscaled = rng.randrange(-(10**15), 10**15)
        days = rng.randrange(-40_000, 40_000)
        micro_time = rng.randrange(0, 86_400 * 10**6)
        seen_us = rng.randrange(-(10**15), 10**16)
        logged_ms = rng.randrange(0, 2 * 10**12)
        zoned = datetime(2000, 1, 1, tzinfo=timezone.utc) + timedelta(
            microseconds=rng.randrange(0, 10**15)
        )
        offset = timezone(timedelta(minutes=rng.choice([0, 60, -300, 330])))
        years, months, d, h, m, s, frac = (
            rng.randrange(0, 3),
            rng.randrange(0, 12),
            rng.randrange(0, 40),
            rng.randrange(0, 24),
            rng.randrange(0, 60),
            rng.randrange(0, 60),
            rng.randrange(0, 10**6),
        )
        ref = uuid.UUID(int=rng.getrandbits(128))
        wait_us = rng.randrange(0, 10**11)
        alarm_ms = rng.randrange(0, 86_400_000)
        # A time with a zone: Arrow keeps it normalised to UTC (within the day here).
        meeting_utc = time(rng.randrange(3, 20), rng.randrange(60), rng.randrange(60), 123000)
        meeting_offset = timezone(timedelta(hours=rng.choice([0, 2, -2])))
        meeting = (
            datetime.combine(date(2000, 1, 1), meeting_utc, timezone.utc)
            .astimezone(meeting_offset)
            .timetz()
        )
        tags = ["a", "b,c", 'q"'][: rng.randrange(4)]
        doc = {"n": rng.randrange(1000), "tags": ["x", "y"][: rng.randrange(3)]}
        label = rng.choice(["", "plain", 'quote " and, comma', "new\nline", "ünïcödé ✓"])
        body = "body " * rng.randrange(1, 5) + str(item_id)
        blob = rng.randbytes(rng.randrange(0, 12))
        wire: Row = {
            "id": item_id,
            "small": rng.randrange(-(2**15), 2**15),
            "big": rng.randrange(-(2**63), 2**63),
            "flag": rng.random() < 0.5,
            "ratio": rng.choice([0.5, -1.25, 3.0, 1024.125]),
            "amount": rng.uniform(-1e9, 1e9),
            "price": Decimal(unscaled).scaleb(-2),
            "exact": {"scale": exact_scale, "value": _unscaled_bytes(exact_unscaled)},
            "label": label,
            "doc": json.dumps(doc),
            "ref": str(ref),
            "mood": rng.choice(["a", "b", "c"]),
            "blob": blob,
            "day": days,
            "clock": micro_time,
            "seen": seen_us,
            "logged": logged_ms,
            "zoned": zoned.astimezone(offset).isoformat(),
            "span": f"P{years}Y{months}M{d}DT{h}H{m}M{s}.{frac:06d}S",
            "markup": f"<item n='{item_id}'/>",
            "bits": bytes([rng.randrange(256)]),
            "wait": wait_us,
            "alarm": alarm_ms,
            "meeting": meeting.isoformat(),
            "tags": tags,
            "body": body,
        }
        expected: Row = dict(wire)
        expected.update(
            price=Decimal(unscaled).scaleb(-2),
            exact=Decimal(exact_unscaled).scaleb(-exact_scale),
            doc=doc,
            ref=ref,
            day=EPOCH_DAY + timedelta(days=days),
            clock=(datetime(2000, 1, 1) + timedelta(microseconds=micro_time)).time(),
            seen=EPOCH_NAIVE + timedelta(microseconds=seen_us),
            logged=EPOCH_NAIVE + timedelta(milliseconds=logged_ms),
            zoned=zoned,
            span=Interval(12 * years + months, d, ((h * 60 + m) * 60 + s) * 10**6 + frac),
            wait=Interval(0, 0, wait_us),
            alarm=(datetime(2000, 1, 1) + timedelta(milliseconds=alarm_ms)).time(),
            meeting=meeting_utc,
        )
        for column in list(wire):
            if column != "id" and rng.random() < 0.1:
                wire[column] = expected[column] = None
        return wire, expected

    # -- events --------------------------------------------------------------------------

    def _event(self, table: Table, op: str, before: Row | None, after: Row | None) -> Row:
        self.ts_ms += 1
        self.lsn += 64
        source = source_block(self.prefix, table=table.name, ts_ms=self.ts_ms, lsn=self.lsn)
        return debezium_event(op, before=before, after=after, source=source, ts_ms=self.ts_ms)

    def _wire_row(self, table: Table, expected: Row) -> Row:
        return {k: v for k, v in expected.items() if k in self._fields(table)}

    def _fields(self, table: Table) -> set[str]:
        schema = self._schema(table)
        value = schema["fields"][0]["type"][1]
        return {f["name"] for f in value["fields"]}

    def _schema(self, table: Table) -> dict[str, Any]:
        return table.schemas[self.items_version if table is self.items else 0]

    def changes(self, count: int, *, allow_truncate: bool = True) -> None:
        """Produce ``count`` random changes over both tables and update the model."""
        items: list[tuple[Row | None, Row | None]] = []
        people: list[tuple[Row | None, Row | None]] = []
        for _ in range(count):
            if self.rng.random() < 0.6:
                items.extend(self._item_change())
            else:
                people.extend(self._people_change(allow_truncate))
        self._send(self.items, items)
        self._send(self.people, people)

    def _send(self, table: Table, records: list[tuple[Row | None, Row | None]]) -> None:
        if not records:
            return
        schema = self._schema(table)
        partitions = table.partitions
        self.cdc.produce(
            table.topic,
            table.key_schema,
            schema,
            records,
            partition=lambda key: 0 if key is None else key["id"] % partitions,
        )
        self.produced += len(records)
        self.tombstones += sum(1 for _, value in records if value is None)

    def evolve(self) -> None:
        """The next ``items`` schema version: v2 adds ``coupon``, v3 drops ``label``."""
        self.items_version += 1

    def _item_change(self) -> list[tuple[Row | None, Row | None]]:
        table = self.items
        state = table.state
        wire_fields = self._fields(table)
        roll = self.rng.random()
        if not state or roll < 0.4:
            item_id = self.next_id["items"]
            self.next_id["items"] += 1
            wire, expected = self._item_values(item_id)
            if "coupon" in wire_fields:
                wire["coupon"] = expected["coupon"] = self.rng.choice([None, "SAVE10"])
            wire = {k: v for k, v in wire.items() if k in wire_fields}
            expected = {k: v for k, v in expected.items() if k in wire_fields}
            state[item_id] = expected
            return [({"id": item_id}, self._event(table, "c", None, wire))]
        item_id = self.rng.choice(sorted(state))
        if roll < 0.8:
            wire, expected = self._item_values(item_id)
            if "coupon" in wire_fields:
                wire["coupon"] = expected["coupon"] = self.rng.choice([None, "SAVE20"])
            wire = {k: v for k, v in wire.items() if k in wire_fields}
            expected = {k: v for k, v in expected.items() if k in wire_fields}
            # A column the schema no longer has stays in the table, NULL from then on.
            for column in state[item_id]:
                expected.setdefault(column, None)
            if self.rng.random() < 0.3:
                # An unchanged TOASTed value: Debezium sends the placeholder, the target keeps
                # what it has.
                wire["body"] = UNAVAILABLE_TEXT
                expected["body"] = state[item_id].get("body")
            state[item_id] = expected
            return [({"id": item_id}, self._event(table, "u", None, wire))]
        del state[item_id]
        return [
            ({"id": item_id}, self._event(table, "d", {"id": item_id}, None)),
            ({"id": item_id}, None),
        ]

    def _people_change(self, allow_truncate: bool) -> list[tuple[Row | None, Row | None]]:
        table = self.people
        state = table.state
        roll = self.rng.random()
        if allow_truncate and roll < 0.01:
            state.clear()
            return [(None, self._event(table, "t", None, None))]
        if not state or roll < 0.45:
            person_id = self.next_id["people"]
            self.next_id["people"] += 1
            row = {"id": person_id, "name": f"person {person_id}", "email": None}
            state[person_id] = dict(row)
            op = "r" if self.rng.random() < 0.2 else "c"
            return [({"id": person_id}, self._event(table, op, None, row))]
        person_id = self.rng.choice(sorted(state))
        old = state[person_id]
        if roll < 0.75:
            row = {**old, "email": f"p{person_id}.{self.rng.randrange(100)}@example.org"}
            state[person_id] = row
            return [({"id": person_id}, self._event(table, "u", old, row))]
        if roll < 0.9:
            # A primary-key change: delete of the old key, its tombstone, create of the new.
            new_id = self.next_id["people"]
            self.next_id["people"] += 1
            row = {**old, "id": new_id}
            del state[person_id]
            state[new_id] = row
            return [
                ({"id": person_id}, self._event(table, "d", old, None)),
                ({"id": person_id}, None),
                ({"id": new_id}, self._event(table, "c", None, row)),
            ]
        del state[person_id]
        return [
            ({"id": person_id}, self._event(table, "d", old, None)),
            ({"id": person_id}, None),
        ]

    def finish(self) -> None:
        """End every partition with a change (not a tombstone): one insert per partition."""
        records: dict[str, list[tuple[Row | None, Row | None]]] = {"items": [], "people": []}
        for table in self.tables:
            covered: set[int] = set()
            while len(covered) < table.partitions:
                if table is self.items:
                    change = self._item_change_insert()
                else:
                    person_id = self.next_id["people"]
                    self.next_id["people"] += 1
                    row = {"id": person_id, "name": f"person {person_id}", "email": None}
                    table.state[person_id] = dict(row)
                    change = ({"id": person_id}, self._event(table, "c", None, row))
                key = change[0]
                assert key is not None
                covered.add(key["id"] % table.partitions)
                records[table.name].append(change)
        self._send(self.items, records["items"])
        self._send(self.people, records["people"])

    def _item_change_insert(self) -> tuple[Row | None, Row | None]:
        item_id = self.next_id["items"]
        self.next_id["items"] += 1
        wire_fields = self._fields(self.items)
        wire, expected = self._item_values(item_id)
        if "coupon" in wire_fields:
            wire["coupon"] = expected["coupon"] = None
        wire = {k: v for k, v in wire.items() if k in wire_fields}
        self.items.state[item_id] = {k: v for k, v in expected.items() if k in wire_fields}
        return ({"id": item_id}, self._event(self.items, "c", None, wire))

    def expected(self, table: Table) -> dict[int, Row]:
        """The expected rows with every column the table has had so far (None when unset)."""
        versions = table.schemas[: self.items_version + 1] if table is self.items else table.schemas
        columns = {f["name"] for schema in versions for f in _row_fields(schema)}
        return {k: {c: row.get(c) for c in columns} for k, row in table.state.items()}


def _row_fields(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = envelope["fields"][0]["type"][1]["fields"]
    return fields


# -- reading targets back -----------------------------------------------------------------

_ISO_INTERVAL = re.compile(
    r"^P(?:(-?\d+)Y)?(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?[\d.]+)S)?)?$"
)


def _parse_iso_interval(text: str) -> Interval:
    match = _ISO_INTERVAL.match(text)
    assert match, f"not an ISO 8601 interval: {text!r}"
    y, mo, d, h, mi, s = (g or "0" for g in match.groups())
    seconds = Decimal(s)
    micros = (int(h) * 60 + int(mi)) * 60 * 10**6 + int(seconds * 10**6)
    return Interval(int(y) * 12 + int(mo), int(d), micros)


def canonical(kind: str, value: Any) -> Any:
    """A value read from any target (or the model) in one comparable form."""
    if value is None:
        return None
    if kind == "decimal":
        return Decimal(str(value)).normalize()
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value)
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if kind == "uuid":
        return (
            str(uuid.UUID(str(value)))
            if not isinstance(value, bytes)
            else str(uuid.UUID(bytes=value))
        )
    if kind == "bytes":
        if isinstance(value, str):  # hex text
            return bytes.fromhex(value.removeprefix("\\x"))
        return bytes(value)
    if kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(value)
    if kind == "time":
        return value if isinstance(value, time) else time.fromisoformat(value)
    if kind in ("timestamp", "timestamptz"):
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if kind == "timestamptz":
            return value.astimezone(timezone.utc)
        return value
    if kind == "interval":
        if isinstance(value, Interval):
            return value
        if isinstance(value, str):
            return _parse_iso_interval(value)
        if isinstance(value, timedelta):  # an Arrow duration (MicroDuration)
            return Interval(0, 0, value // timedelta(microseconds=1))
        months, days, nanos = value  # pyarrow's MonthDayNano
        return Interval(months, days, nanos // 1000)
    return value


def canonical_rows(rows: dict[int, Row]) -> dict[int, Row]:
    return {k: {c: canonical(KINDS[c], v) for c, v in row.items()} for k, row in rows.items()}


def read_target(kind: str, location: str, table: str) -> dict[int, Row]:
    """``{id: row}`` of ``table`` in the target (``sqlite``: a path, ``duckdb``: a path,
    ``postgresql``: a DSN), values canonical."""
    rows: list[Row]
    if kind == "sqlite":
        lite = sqlite3.connect(location)
        lite.row_factory = sqlite3.Row
        rows = [dict(r) for r in lite.execute(f'SELECT * FROM "{table}"')]
        lite.close()
    elif kind == "duckdb":
        import duckdb

        with duckdb.connect(location, read_only=True) as ddb:
            found = ddb.sql(f'SELECT * FROM "{table}"').to_arrow_table()
            assert found is not None
            rows = found.to_pylist()
    else:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(location, row_factory=dict_row) as db:
            db.execute("SET intervalstyle = iso_8601")
            names = [
                r["attname"]
                for r in db.execute(
                    "SELECT attname, atttypid::regtype::text AS t FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    [f'"{table}"'],
                )
            ]
            selected = ", ".join(
                f'"{n}"::text AS "{n}"' if KINDS.get(n) == "interval" else f'"{n}"' for n in names
            )
            rows = list(db.execute(f'SELECT {selected} FROM "{table}"'))
    return {int(r["id"]): {c: canonical(KINDS[c], v) for c, v in r.items()} for r in rows}


def read_positions(kind: str, location: str) -> dict[tuple[str, int], int]:
    query = 'SELECT topic, "partition", next_offset FROM _changestream_positions'
    if kind == "sqlite":
        db = sqlite3.connect(location)
        try:
            found = db.execute(query).fetchall()
        except sqlite3.OperationalError:
            found = []
        db.close()
    elif kind == "duckdb":
        import duckdb

        with duckdb.connect(location, read_only=True) as ddb:
            try:
                found = ddb.execute(query).fetchall()
            except duckdb.CatalogException:
                found = []
    else:
        import psycopg

        with psycopg.connect(location) as pdb:
            exists = pdb.execute("SELECT to_regclass('_changestream_positions')").fetchone()
            found = list(pdb.execute(query)) if exists and exists[0] else []
    return {(t, int(p)): int(o) for t, p, o in found}


def target_url(kind: str, location: str) -> str:
    """The URL ``follow`` takes for a target location."""
    if kind == "sqlite":
        return f"sqlite:///{location}"
    if kind == "duckdb":
        return f"duckdb:///{location}"
    return location
