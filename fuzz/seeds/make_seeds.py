#!/usr/bin/env python3
"""Write the starting corpora of the fuzz targets into fuzz/corpus/<target>/ (gitignored).

Dependency-free: a small Avro binary writer of its own (independent of the Rust decoder) encodes
one or two realistic values per schema in fuzz/schemas/. Regression inputs (past findings) live
beside this script in fuzz/seeds/<target>/ and are committed; pass that directory to
`cargo fuzz run` as a second corpus directory.

    python3 fuzz/seeds/make_seeds.py
"""

import copy
import json
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent.parent
SCHEMAS = ["debezium", "bottledwater", "interop", "logical"]  # order of SCHEMAS in src/lib.rs


def long(n):
    raw = (n << 1) ^ (n >> 63)
    raw &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = raw & 0x7F
        raw >>= 7
        if raw == 0:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def blob(data):
    return long(len(data)) + data


class Writer:
    """Avro binary encoding of plain Python values; a union value is (branch index, value)."""

    PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))

    def __init__(self):
        self.named = {}

    def define(self, schema, namespace):
        name = schema["name"]
        ns = schema.get("namespace", namespace)
        full = name if "." in name or not ns else f"{ns}.{name}"
        self.named[full] = schema
        schema["_ns"] = full.rpartition(".")[0]
        return full

    def collect(self, schema, namespace=""):
        """Define every named type in schema order, as a parser does, before writing."""
        if isinstance(schema, list):
            for branch in schema:
                self.collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema["type"]
            if not isinstance(kind, str):
                self.collect(kind, namespace)
            elif kind in ("record", "error", "enum", "fixed"):
                self.define(schema, namespace)
                for field in schema.get("fields", []):
                    self.collect(field["type"], schema["_ns"])
            elif kind == "array":
                self.collect(schema["items"], namespace)
            elif kind == "map":
                self.collect(schema["values"], namespace)

    def lookup(self, name, namespace):
        if "." not in name and namespace and f"{namespace}.{name}" in self.named:
            return self.named[f"{namespace}.{name}"]
        return self.named[name]

    def write(self, schema, value, namespace=""):
        if isinstance(schema, str):
            if schema in self.PRIMITIVES:
                return self.primitive(schema, value)
            target = self.lookup(schema, namespace)
            return self.write(target, value, target["_ns"])
        if isinstance(schema, list):
            index, inner = value
            return long(index) + self.write(schema[index], inner, namespace)
        kind = schema["type"]
        if not isinstance(kind, str):
            return self.write(kind, value, namespace)
        if kind in ("record", "error"):
            out = b""
            for field in schema["fields"]:
                out += self.write(field["type"], value[field["name"]], schema["_ns"])
            return out
        if kind == "enum":
            return long(schema["symbols"].index(value))
        if kind == "fixed":
            assert len(value) == schema["size"]
            return value
        if kind == "array":
            if not value:
                return long(0)
            return (
                long(len(value))
                + b"".join(self.write(schema["items"], v, namespace) for v in value)
                + long(0)
            )
        if kind == "map":
            if not value:
                return long(0)
            body = b"".join(
                blob(k.encode()) + self.write(schema["values"], v, namespace)
                for k, v in value.items()
            )
            # A negative count with a byte size, as Java writers may do.
            return long(-len(value)) + long(len(body)) + body + long(0)
        if kind in self.PRIMITIVES:
            return self.primitive(kind, value)
        target = self.lookup(kind, namespace)
        return self.write(target, value, target["_ns"])

    @staticmethod
    def primitive(kind, value):
        return {
            "null": lambda v: b"",
            "boolean": lambda v: bytes([1 if v else 0]),
            "int": long,
            "long": long,
            "float": lambda v: struct.pack("<f", v),
            "double": lambda v: struct.pack("<d", v),
            "bytes": blob,
            "string": lambda v: blob(v.encode()),
        }[kind](value)


def encode(schema, value):
    writer = Writer()
    schema = copy.deepcopy(schema)
    writer.collect(schema)
    return writer.write(schema, value)


def minified(schema):
    return json.dumps(schema, separators=(",", ":")).encode()


NULL = (0, None)


def debezium_row(i):
    vsd = lambda scale, unscaled: {"scale": scale, "value": unscaled}  # noqa: E731
    return {
        "id": i,
        "customer": 42,
        "status": (0, "paid"),
        "note": (1, "first order"),
        "qty": (0, 3),
        "price": b"\x30\x39",  # 123.45
        "legacy_price": (1, b"\x01"),
        "amount": (1, vsd(3, b"\xff\x85")),
        "ratio": NULL,
        "created_at": 1_709_210_096_123_456,
        "updated_at": (1, "2024-02-29T12:34:56.123456+05:30"),
        "ms_at": (1, 9_223_372_036_825_200_000),
        "ns_at": (1, -1),
        "day": (0, 19_782),
        "t_ms": (1, 3_600_000),
        "t_us": (1, 86_400_000_000),
        "t_ns": (1, 1),
        "t_tz": (1, "12:00:00Z"),
        "span": (1, "P1Y2M3DT4H5M6.78S"),
        "span_us": (1, -90_000_000),
        "token": (1, "123e4567-e89b-12d3-a456-426614174000"),
        "doc": (1, '{"a": [1, 2]}'),
        "flags": (1, b"\x05"),
        "k_date": (1, -1),
        "k_time": (1, 1000),
        "k_ts": (1, -9_223_372_036_832_400_000),
        "location": (1, {"x": 1.5, "y": -2.25, "wkb": (1, b"\x01\x01"), "srid": (1, 4326)}),
        "tags": (1, [(1, "a"), (0, None), (1, "__debezium_unavailable_value")]),
        "payload": (1, b"__debezium_unavailable_value"),
    }


def debezium_value(op, before, after):
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.0.Final",
            "connector": "postgresql",
            "name": "pg",
            "ts_ms": 1_709_210_096_000,
            "snapshot": (0, "false"),
            "db": "shop",
            "sequence": (1, '["24023928","24023928"]'),
            "ts_us": NULL,
            "ts_ns": NULL,
            "schema": "public",
            "table": "orders",
            "txId": (1, 767),
            "lsn": (1, 24_023_928),
            "xmin": NULL,
        },
        "transaction": (1, {"id": "767:24023928", "total_order": 1, "data_collection_order": 1}),
        "op": op,
        "ts_ms": (1, 1_709_210_096_500),
        "ts_us": NULL,
        "ts_ns": NULL,
    }


def bottled_water_row():
    def date(year, month, day):
        return {"year": year, "month": month, "day": day}

    def moment(**fields):
        wall = {"year": 2024, "month": 2, "day": 29, "hour": 12, "minute": 34, "second": 56}
        return {**wall, "micro": 7, **fields}

    return {
        "id": (1, 7),
        "big": (1, -(2**63)),
        "flag": (1, True),
        "real": (1, 1.5),
        "price": (1, 9.99),
        "name": (1, "cr\u00eapes"),
        "blob": (1, b"\x00\xff"),
        "day": (1, date(2024, 2, 29)),
        "created": (1, moment()),
        "updated": (2, "NEG_INFINITY"),
        "seen": (1, moment(zoneOffset=-18_000)),
        "other_day": (2, "POS_INFINITY"),
        "clock": (1, 25_200_000_000),
        "clock_tz": (1, {"micro": 25_200_000_000, "zoneOffset": 19_800}),
        "span": (
            1,
            {
                "year": 1,
                "month": 2,
                "day": 3,
                "hour": 4,
                "minute": 5,
                "second": 6,
                "micro": 780_000,
            },
        ),
        "tags": NULL,
    }


def interop_value():
    return {
        "intField": 12,
        "longField": 15234324,
        "stringField": "hey",
        "boolField": True,
        "floatField": 1234.0,
        "doubleField": -1234.0,
        "bytesField": b"12312adf",
        "nullField": None,
        "arrayField": [5.0, 0.0, 12.0],
        "mapField": {"a": {"label": "a"}, "bee": {"label": "cee"}},
        "unionField": (2, [b"xyz", b""]),
        "enumField": "C",
        "fixedField": bytes(range(16)),
        "recordField": {"label": "root", "children": [{"label": "child", "children": []}]},
        "timeMillisField": 1,
        "timeMicrosField": 2,
        "timestampMillisField": 3,
        "timestampMicrosField": 4,
        "localTimestampMillisField": 5,
        "localTimestampMicrosField": 6,
    }


def logical_value():
    leaf = lambda label: {"label": label, "left": NULL, "right": NULL, "children": []}  # noqa: E731
    return {
        "nums": [1, -1, 2**40],
        "names": [(1, "x"), NULL],
        "attrs": {"k": (1, 2.5), "b": (2, False), "n": NULL},
        "nested": {"f": [1.0, -0.5]},
        "hash": b"\x11" * 16,
        "hashes": [b"\x22" * 16],
        "suit": "CLUBS",
        "tree": {"label": "r", "left": (1, leaf("l")), "right": NULL, "children": [leaf("c")]},
        "list": (1, {"head": 1, "tail": (1, {"head": 2, "tail": NULL})}),
        "dec_bytes": b"\xff\x85",
        "dec_huge": b"\x7f" + b"\xff" * 20,
        "dec_fixed": b"\x00" * 15 + b"\x64",
        "dec_small": (1, b"\x27\x0f"),
        "dec_invalid": b"\x01",
        "uuid_str": "123e4567-E89B-12d3-a456-426614174000",
        "uuid_fixed": bytes(range(16)),
        "date": -719_162,
        "t_ms": 86_399_999,
        "t_us": 0,
        "ts_ms": -1,
        "ts_us": 1_709_210_096_000_000,
        "ts_ns": 2**63 - 1,
        "lts_ms": -(2**63),
        "lts_us": 0,
        "lts_ns": 1,
        "dur": struct.pack("<III", 14, 3, 10_000),
        "durs": {"d": b"\xff" * 12},
        "field_logical": 5,
        "dbz_micro_ts": 9_223_372_036_825_200_000,
        "dbz_zoned": "+12345-01-01T00:00:00-23:59:59",
        "dbz_vsd": {"scale": 2, "value": b"\x01\x00"},
        "dbz_vsds": [(1, {"scale": -3, "value": b""}), NULL],
        "times": [(0, 1), (1, 2), (2, None)],
        "flagged": (
            1,
            {
                "text": (1, "__debezium_unavailable_value"),
                "bin": NULL,
                "arr": (1, ["__debezium_unavailable_value"]),
            },
        ),
        "last": (1, "end"),
    }


def frame(schema_id, body):
    return b"\x00" + struct.pack(">I", schema_id) + body


def main():
    schemas = {
        name: json.loads((FUZZ / "schemas" / f"{name}.avsc").read_text()) for name in SCHEMAS
    }
    values = {
        "debezium": [
            debezium_value("u", (1, debezium_row(1)), (1, debezium_row(2))),
            debezium_value("d", (1, debezium_row(3)), NULL),
        ],
        "bottledwater": [bottled_water_row()],
        "interop": [interop_value()],
        "logical": [logical_value()],
    }
    decode = FUZZ / "corpus" / "decode"
    schema_dir = FUZZ / "corpus" / "schema"
    decode.mkdir(parents=True, exist_ok=True)
    schema_dir.mkdir(parents=True, exist_ok=True)
    for selector, name in enumerate(SCHEMAS):
        for n, value in enumerate(values[name]):
            body = encode(schemas[name], value)
            (decode / f"{name}-{n}").write_bytes(bytes([selector]) + frame(100 + selector, body))
            # The same with the schema id in a header instead of the payload prefix.
            (decode / f"{name}-{n}-header").write_bytes(
                bytes([selector | 0x80]) + frame(7, b"") + body
            )
            text = minified(schemas[name])
            if len(text) + 1 + len(body) <= 4096:
                (schema_dir / f"{name}-{n}").write_bytes(text + b"\xff" + body)
    # The Debezium envelope is over 4 KiB of JSON: the schema target gets a narrower table.
    narrow = copy.deepcopy(schemas["debezium"])
    value_record = narrow["fields"][0]["type"][1]
    keep = {
        "id",
        "status",
        "note",
        "qty",
        "price",
        "amount",
        "ratio",
        "created_at",
        "updated_at",
        "day",
        "span",
        "tags",
    }
    value_record["fields"] = [f for f in value_record["fields"] if f["name"] in keep]
    row = {k: v for k, v in debezium_row(1).items() if k in keep}
    body = encode(narrow, debezium_value("c", NULL, (1, row)))
    (schema_dir / "debezium-narrow").write_bytes(minified(narrow) + b"\xff" + body)
    # Small schemas of every kind, each with a body.
    small = [
        ('"long"', long(-1)),
        ('"string"', blob(b"hi")),
        ('["null","bytes","double"]', long(1) + blob(b"\x00")),
        ('{"type":"array","items":"null"}', long(3) + long(0)),
        (
            '{"type":"map","values":{"type":"array","items":"int"}}',
            long(1) + blob(b"k") + long(1) + long(5) + long(0) + long(0),
        ),
        ('{"type":"record","name":"E","fields":[]}', b""),
        ('{"type":"fixed","name":"F","size":0}', b""),
        ('{"type":"enum","name":"S","symbols":["A","B"]}', long(1)),
        ('{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}', blob(b"\x30\x39")),
        (
            '{"type":"string","connect.name":"io.debezium.time.Interval"}',
            blob(b"-P1Y-2M3DT-4H5M-6.78S"),
        ),
        (
            '{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}',
            blob(b"2024-02-29T24:00:00+01"),
        ),
        (
            '{"type":"bytes","connect.name":"org.apache.kafka.connect.data.Decimal","connect.parameters":{"scale":"3"}}',
            blob(b"\x80"),
        ),
        (
            '{"type":"record","name":"VariableScaleDecimal","connect.name":"io.debezium.data.VariableScaleDecimal","fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}]}',
            long(5) + blob(b"\x01"),
        ),
        (
            '{"type":"record","name":"TimeTZ","namespace":"com.martinkl.bottledwater.datatypes","fields":[{"name":"micro","type":"long"},{"name":"zoneOffset","type":"long"}]}',
            long(0) + long(3600),
        ),
        (
            '{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}',
            long(1) + long(0),
        ),
    ]
    for n, (text, body) in enumerate(small):
        (schema_dir / f"small-{n:02}").write_bytes(text.encode() + b"\xff" + body)
    counts = f"{len(list(decode.iterdir()))} decode and {len(list(schema_dir.iterdir()))} schema"
    print(f"wrote {counts} seeds under {FUZZ / 'corpus'}")
    regressions(schemas)


def regressions(schemas):
    """Inputs that crashed the targets (see fuzz/README.md). They crash until their fix lands,
    so they are not in the fuzzing corpora: run them by name. The small ones are committed in
    fuzz/seeds/regressions/; the one over the targets' 4 KiB max_len goes to fuzz/corpus/."""
    small = FUZZ / "seeds" / "regressions"
    big = FUZZ / "corpus" / "regressions"
    for target in ("decode", "schema"):
        (small / target).mkdir(parents=True, exist_ok=True)
        (big / target).mkdir(parents=True, exist_ok=True)
    interval = '{"type":"string","connect.name":"io.debezium.time.Interval"}'
    vsd = (
        '{"type":"record","name":"VariableScaleDecimal","connect.name":"io.debezium.data.VariableScaleDecimal",'
        '"fields":[{"name":"scale","type":"int"},{"name":"value","type":"bytes"}]}'
    )
    time_tz = (
        '{"type":"record","name":"TimeTZ","namespace":"com.martinkl.bottledwater.datatypes",'
        '"fields":[{"name":"micro","type":"long"},{"name":"zoneOffset","type":"long"}]}'
    )
    found = {
        # -(months) overflows: months is exactly i64::MIN before the leading '-' negates it.
        "interval-negate-overflow-months": (interval, blob(b"-P-768614336404564650Y-8M")),
        # The same for micros: -9223372036854.775808 s is i64::MIN microseconds.
        "interval-negate-overflow-micros": (interval, blob(b"-PT-9223372036854.775808S")),
        # check_offset: i64::MIN.abs() overflows (a zoneOffset written as long).
        "timetz-offset-abs-overflow": (time_tz, long(0) + long(-(2**63))),
        # 3 inner arrays of 65,536 nulls each, from 13 body bytes: 11 MB of Values.
        "nested-zero-width-collections": (
            '{"type":"array","items":{"type":"array","items":"null"}}',
            long(3) + (long(65536) + long(0)) * 3 + long(0),
        ),
    }
    for name, (text, body) in found.items():
        (small / "schema" / name).write_bytes(text.encode() + b"\xff" + body)
    # The interval overflow through the embedded Debezium envelope (decode target, schema 0).
    row = debezium_row(1)
    row["span"] = (1, "-P-768614336404564650Y-8M")
    body = encode(schemas["debezium"], debezium_value("c", NULL, (1, row)))
    (small / "decode" / "debezium-interval-negate-overflow").write_bytes(b"\x00" + frame(100, body))
    # Decimal Display pads with a format width > 65535: "Formatting argument out of range".
    unscaled = b"\x7f" + b"\xff" * 27_299  # 65,745 digits
    (big / "schema" / "wide-decimal-format-width").write_bytes(
        vsd.encode() + b"\xff" + long(65_755) + blob(unscaled)
    )


if __name__ == "__main__":
    main()
