"""Random Avro schemas and values for the property tests, and their round trip through Kafka.

A schema is generated as a small tree of :class:`AvroType` objects. Each one renders itself
as Avro schema JSON (:meth:`AvroType.to_json`) and gives a Hypothesis strategy of *samples*
(:meth:`AvroType.samples`): pairs ``(written, expected)`` where ``written`` is what fastavro
is handed to encode and ``expected`` is what changestream must decode it to. They differ
only where the Python types differ: a union value is written in fastavro's tuple notation
``(branch name, value)`` so that fastavro writes exactly the branch the test chose; a
``float`` is expected as the float32 value; logical types fastavro cannot encode
(``timestamp-nanos``, ``duration``, ``uuid`` on ``fixed``) are written as their underlying
``long`` / bytes, with the expected Python value computed here.

:func:`round_trip` registers a schema in the stack's registry, encodes values with fastavro
(never with changestream), frames them as Confluent's serializers do, produces them and reads
them back with a bounded ``ChangeStream``. :func:`mismatches` compares decoded values with the
expected ones exactly: types, float bit patterns (NaN equals NaN), decimal exponents, time
zones.
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import fastavro
from cdc import CdcProducer, Delivered
from changestream import Change, ChangeStream, Interval
from confluent_kafka.schema_registry import Schema as RegistrySchema
from hypothesis import strategies as st

Json = Any
Sample = tuple[Any, Any]
"""``(written, expected)``: the value fastavro encodes and the value changestream must decode."""
OpenStream = Callable[..., ChangeStream]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]
FLOAT32_MIN_SUBNORMAL = struct.unpack("<f", b"\x01\x00\x00\x00")[0]

EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_NAIVE = datetime(1970, 1, 1)

UNAVAILABLE_TEXT = "__debezium_unavailable_value"
PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


def float32(x: float) -> float:
    """The float32 nearest ``x``, as the Python float a 32-bit Avro float decodes to."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


# ---------------------------------------------------------------------------
# Values of the primitive types, with their edges made likely
# ---------------------------------------------------------------------------

INTS = st.one_of(
    st.sampled_from([0, -1, 1, INT_MIN, INT_MAX, INT_MIN + 1, INT_MAX - 1, 63, -64, 64]),
    st.integers(INT_MIN, INT_MAX),
)
LONGS = st.one_of(
    st.sampled_from([0, -1, 1, LONG_MIN, LONG_MAX, INT_MIN - 1, INT_MAX + 1, 2**53 + 1]),
    st.integers(LONG_MIN, LONG_MAX),
)
FLOATS = st.one_of(
    st.sampled_from(
        [
            math.nan,
            math.inf,
            -math.inf,
            -0.0,
            0.0,
            FLOAT32_MAX,
            -FLOAT32_MAX,
            FLOAT32_MIN_SUBNORMAL,
            0.1,
        ]
    ),
    st.floats(width=32),
)
DOUBLES = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1, 2.0**53]
    ),
    st.floats(),
)
STRINGS = st.one_of(
    # Debezium's placeholder for an unavailable value is only that in Kafka Connect records.
    st.sampled_from(
        ["", "crêpe 🥞", "\x00", "日本語テキスト", "\U0010ffff", "a" * 200, UNAVAILABLE_TEXT]
    ),
    st.text(max_size=12),
)
BYTES = st.one_of(
    st.sampled_from([b"", b"\x00", b"\xff" * 40, UNAVAILABLE_TEXT.encode()]),
    st.binary(max_size=12),
)

PRIMITIVE_SAMPLES: dict[str, st.SearchStrategy[Sample]] = {
    "null": st.just((None, None)),
    "boolean": st.booleans().map(lambda b: (b, b)),
    "int": INTS.map(lambda i: (i, i)),
    "long": LONGS.map(lambda i: (i, i)),
    "float": FLOATS.map(lambda f: (f, float32(f))),
    "double": DOUBLES.map(lambda f: (f, f)),
    "bytes": BYTES.map(lambda b: (b, b)),
    "string": STRINGS.map(lambda s: (s, s)),
}


# ---------------------------------------------------------------------------
# The schema model
# ---------------------------------------------------------------------------


class AvroType:
    """One type in a generated schema."""

    def to_json(self, encoder: bool = False) -> Json:
        """The schema JSON; a named type renders its definition here (its first use).

        ``encoder=True`` renders the schema fastavro encodes with: the same, except that a
        logical type fastavro refuses (an invalid decimal, which the specification says to
        ignore) is left out, which does not change the encoding."""
        raise NotImplementedError

    def union_name(self) -> str:
        """The branch name in fastavro's tuple notation, and what makes branches distinct."""
        raise NotImplementedError

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        """Values of this type; ``depth`` bounds how often a recursive reference may recurse."""
        raise NotImplementedError

    def can_sample(self, depth: int) -> bool:
        """Whether a value exists without recursing deeper than ``depth``."""
        return True


class Primitive(AvroType):
    def __init__(self, name: str, *, object_form: bool = False) -> None:
        self.name = name
        self.object_form = object_form

    def to_json(self, encoder: bool = False) -> Json:
        return {"type": self.name} if self.object_form else self.name

    def union_name(self) -> str:
        return self.name

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        return PRIMITIVE_SAMPLES[self.name]


class Annotated(AvroType):
    """A primitive with a ``logicalType`` (valid, or one the decoder must ignore)."""

    def __init__(
        self,
        base: str,
        props: dict[str, Json],
        values: st.SearchStrategy[Sample],
        *,
        fastavro_parses: bool = True,
    ) -> None:
        self.base = base
        self.props = props
        self.values = values
        self.fastavro_parses = fastavro_parses

    def to_json(self, encoder: bool = False) -> Json:
        if encoder and not self.fastavro_parses:
            return self.base
        return {"type": self.base, **self.props}

    def union_name(self) -> str:
        return self.base

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        return self.values


class Array(AvroType):
    def __init__(self, items: AvroType, *, min_size: int = 0, max_size: int = 3) -> None:
        self.items = items
        self.min_size = min_size
        self.max_size = max_size

    def to_json(self, encoder: bool = False) -> Json:
        return {"type": "array", "items": self.items.to_json(encoder)}

    def union_name(self) -> str:
        return "array"

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        if not self.items.can_sample(depth):
            return st.just(([], []))
        items = st.lists(self.items.samples(depth), min_size=self.min_size, max_size=self.max_size)
        return items.map(lambda items: ([w for w, _ in items], [e for _, e in items]))


class Map(AvroType):
    def __init__(self, values: AvroType, *, min_size: int = 0, max_size: int = 3) -> None:
        self.values = values
        self.min_size = min_size
        self.max_size = max_size

    def to_json(self, encoder: bool = False) -> Json:
        return {"type": "map", "values": self.values.to_json(encoder)}

    def union_name(self) -> str:
        return "map"

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        if not self.values.can_sample(depth):
            return st.just(({}, {}))
        entries = st.lists(
            st.tuples(st.one_of(st.just(""), st.text(max_size=6)), self.values.samples(depth)),
            min_size=self.min_size,
            max_size=self.max_size,
            unique_by=lambda entry: entry[0],
        )
        return entries.map(lambda kvs: ({k: w for k, (w, _) in kvs}, {k: e for k, (_, e) in kvs}))


class ManyLongs(Array):
    """An array of 64 to 200 longs (a two-byte count), drawn from a seeded ``random.Random``
    so that Hypothesis does not have to draw each one."""

    def __init__(self) -> None:
        super().__init__(Primitive("long"))

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        def longs(rnd: random.Random) -> list[int]:
            count = rnd.randint(64, 200)
            return [
                rnd.choice([LONG_MIN, LONG_MAX, rnd.getrandbits(64) - 2**63]) for _ in range(count)
            ]

        return st.randoms(use_true_random=True).map(longs).map(_same)


class ManyKeys(Map):
    """A map of 64 to 200 null values (a two-byte count), keys from a seeded ``random.Random``."""

    def __init__(self) -> None:
        super().__init__(Primitive("null"))

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        def keys(rnd: random.Random) -> dict[str, None]:
            return {f"k{rnd.getrandbits(40)}é": None for _ in range(rnd.randint(64, 200))}

        return st.randoms(use_true_random=True).map(keys).map(_same)


class Union(AvroType):
    def __init__(self, branches: list[AvroType]) -> None:
        self.branches = branches

    def to_json(self, encoder: bool = False) -> Json:
        return [b.to_json(encoder) for b in self.branches]

    def union_name(self) -> str:
        raise AssertionError("a union cannot be a union branch")

    def can_sample(self, depth: int) -> bool:
        return any(b.can_sample(depth) for b in self.branches)

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        return st.one_of(
            [
                b.samples(depth).map(_in_branch(b.union_name()))
                for b in self.branches
                if b.can_sample(depth)
            ]
        )


def _in_branch(name: str) -> Callable[[Sample], Sample]:
    """A union sample: written in fastavro's tuple notation, so it takes the branch ``name``."""

    def tag(sample: Sample) -> Sample:
        return ((name, sample[0]), sample[1])

    return tag


class Named(AvroType):
    """A record, enum or fixed, defined where it is first used."""

    def __init__(self, short: str, namespace: str, style: str) -> None:
        self.short = short
        self.namespace = namespace
        # "inherit": {"name": short} (the enclosing namespace is its own);
        # "explicit": {"name": short, "namespace": ns}; "dotted": {"name": "ns.short"}.
        self.style = style

    @property
    def fullname(self) -> str:
        return f"{self.namespace}.{self.short}"

    def name_json(self) -> dict[str, Json]:
        if self.style == "inherit":
            return {"name": self.short}
        if self.style == "dotted":
            return {"name": self.fullname}
        return {"name": self.short, "namespace": self.namespace}

    def union_name(self) -> str:
        return self.fullname


@dataclass
class Field:
    name: str
    type: AvroType
    default_null: bool = False
    doc: str | None = None

    def to_json(self, encoder: bool = False) -> Json:
        out: dict[str, Json] = {"name": self.name, "type": self.type.to_json(encoder)}
        if self.default_null:
            out["default"] = None
        if self.doc is not None:
            out["doc"] = self.doc
        return out


class Record(Named):
    def __init__(self, short: str, namespace: str, style: str) -> None:
        super().__init__(short, namespace, style)
        self.fields: list[Field] = []
        self.doc: str | None = None

    def to_json(self, encoder: bool = False) -> Json:
        out: dict[str, Json] = {"type": "record", **self.name_json()}
        if self.doc is not None:
            out["doc"] = self.doc
        out["fields"] = [f.to_json(encoder) for f in self.fields]
        return out

    def can_sample(self, depth: int) -> bool:
        return all(f.type.can_sample(depth) for f in self.fields)

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        names = [f.name for f in self.fields]
        return st.tuples(*(f.type.samples(depth) for f in self.fields)).map(
            lambda values: (
                {n: w for n, (w, _) in zip(names, values, strict=True)},
                {n: e for n, (_, e) in zip(names, values, strict=True)},
            )
        )


class Enum(Named):
    def __init__(self, short: str, namespace: str, style: str, symbols: list[str]) -> None:
        super().__init__(short, namespace, style)
        self.symbols = symbols

    def to_json(self, encoder: bool = False) -> Json:
        return {"type": "enum", **self.name_json(), "symbols": self.symbols}

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        return st.sampled_from(self.symbols).map(lambda s: (s, s))


class Fixed(Named):
    def __init__(
        self,
        short: str,
        namespace: str,
        style: str,
        size: int,
        props: dict[str, Json] | None = None,
        values: st.SearchStrategy[Sample] | None = None,
        *,
        fastavro_parses: bool = True,
    ) -> None:
        super().__init__(short, namespace, style)
        self.size = size
        self.props = props or {}
        self.values = values
        self.fastavro_parses = fastavro_parses

    def to_json(self, encoder: bool = False) -> Json:
        props = self.props if self.fastavro_parses or not encoder else {}
        return {"type": "fixed", **self.name_json(), "size": self.size, **props}

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        if self.values is not None:
            return self.values
        return st.binary(min_size=self.size, max_size=self.size).map(lambda b: (b, b))


class Ref(AvroType):
    """A use of a named type after its definition: its name, short or full."""

    def __init__(self, target: Named, *, short: bool, recursive: bool) -> None:
        self.target = target
        self.short = short
        self.recursive = recursive

    def to_json(self, encoder: bool = False) -> Json:
        return self.target.short if self.short else self.target.fullname

    def union_name(self) -> str:
        return self.target.fullname

    def can_sample(self, depth: int) -> bool:
        if self.recursive:
            return depth > 0
        return self.target.can_sample(depth)

    def samples(self, depth: int) -> st.SearchStrategy[Sample]:
        return self.target.samples(depth - 1 if self.recursive else depth)


# ---------------------------------------------------------------------------
# Logical types
# ---------------------------------------------------------------------------


def _datetimes(*, millis: bool) -> st.SearchStrategy[datetime]:
    """Naive datetimes in Python's range (years 1 to 9999), to the millisecond if asked."""
    values = st.one_of(
        st.sampled_from(
            [
                datetime(1, 1, 1),
                datetime(9999, 12, 31, 23, 59, 59, 999999),
                datetime(1970, 1, 1),
                datetime(1969, 12, 31, 23, 59, 59, 999999),
                datetime(2000, 2, 29, 12, 0, 0, 1000),
            ]
        ),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    )
    if millis:
        values = values.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    return values


def _times(*, millis: bool) -> st.SearchStrategy[time]:
    values = st.one_of(st.sampled_from([time(0), time(23, 59, 59, 999999)]), st.times())
    if millis:
        values = values.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
    return values


def _same(value: Any) -> Sample:
    return (value, value)


def _decimal(unscaled: int, scale: int) -> Decimal:
    """``unscaled * 10**-scale`` with exactly that exponent (no context rounding)."""
    digits = tuple(int(c) for c in str(abs(unscaled)))
    return Decimal((1 if unscaled < 0 else 0, digits, -scale))


def _decimals(precision: int, scale: int) -> st.SearchStrategy[Sample]:
    bound = 10**precision - 1
    unscaled = st.one_of(st.sampled_from([0, 1, -1, bound, -bound]), st.integers(-bound, bound))
    return unscaled.map(lambda u: _same(_decimal(u, scale)))


def _nanos_timestamp(*, zoned: bool) -> st.SearchStrategy[Sample]:
    """A nanosecond timestamp: fastavro cannot encode these, so the long is written and the
    datetime expected, the nanoseconds beyond the microsecond dropped toward the past."""
    epoch = EPOCH_UTC if zoned else EPOCH_NAIVE
    return LONGS.map(lambda n: (n, epoch + timedelta(microseconds=n // 1000)))


def _u32_le(months: int, days: int, millis: int) -> bytes:
    return struct.pack("<III", months, days, millis)


U32 = st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
DURATIONS: st.SearchStrategy[Sample] = st.tuples(U32, U32, U32).map(
    lambda t: (
        _u32_le(*t),
        Interval(months=t[0], days=t[1], microseconds=t[2] * 1000),
    )
)


def max_fixed_precision(size: int) -> int:
    """The most decimal digits a signed ``size``-byte two's-complement integer always holds."""
    return len(str(2 ** (8 * size - 1) - 1)) - 1


def primitive_annotations(base: str, precision: int = 10, scale: int = 2) -> list[Annotated]:
    """Every way to annotate ``base`` with a logical type: the valid ones (decoded to their
    Python type) and invalid or unknown ones, which the specification says to ignore (decoded
    as ``base``). ``precision`` and ``scale`` are the valid decimal's."""
    plain = PRIMITIVE_SAMPLES[base]
    utc = timezone.utc

    def annotated(logical_type: str, values: st.SearchStrategy[Sample], **params: int) -> Annotated:
        return Annotated(base, {"logicalType": logical_type, **params}, values)

    options: list[Annotated] = []
    if base == "int":
        options += [
            annotated("date", st.dates().map(_same)),
            annotated("time-millis", _times(millis=True).map(_same)),
            annotated("time-micros", plain),  # time-micros annotates a long
            annotated("timestamp-millis", plain),  # ... and so do the timestamps
        ]
    elif base == "long":
        options += [
            annotated("time-micros", _times(millis=False).map(_same)),
            annotated(
                "timestamp-millis",
                _datetimes(millis=True).map(lambda d: _same(d.replace(tzinfo=utc))),
            ),
            annotated(
                "timestamp-micros",
                _datetimes(millis=False).map(lambda d: _same(d.replace(tzinfo=utc))),
            ),
            annotated("timestamp-nanos", _nanos_timestamp(zoned=True)),
            annotated("local-timestamp-millis", _datetimes(millis=True).map(_same)),
            annotated("local-timestamp-micros", _datetimes(millis=False).map(_same)),
            annotated("local-timestamp-nanos", _nanos_timestamp(zoned=False)),
            annotated("date", plain),  # date annotates an int
            annotated("time-millis", plain),  # time-millis annotates an int
        ]
    elif base == "bytes":
        options += [
            annotated("decimal", _decimals(precision, scale), precision=precision, scale=scale),
            annotated("decimal", _decimals(precision, 0), precision=precision),  # scale 0
            annotated("uuid", plain),  # uuid annotates a string or a fixed(16)
            # A scale above the precision makes the decimal invalid: plain bytes (fastavro
            # refuses the schema, so it encodes with the bare type, the same encoding).
            Annotated(
                base,
                {"logicalType": "decimal", "precision": 2, "scale": 3},
                plain,
                fastavro_parses=False,
            ),
        ]
    elif base == "string":
        options += [annotated("uuid", st.uuids().map(_same)), annotated("date", plain)]
    options.append(annotated("x-unknown-logical-type", plain))
    return options


@st.composite
def annotated_primitives(draw: st.DrawFn, base: str) -> AvroType:
    """``base`` with a logical type, valid or not (see :func:`primitive_annotations`)."""
    precision = draw(st.integers(1, 40))
    scale = draw(st.integers(0, precision))
    return draw(st.sampled_from(primitive_annotations(base, precision, scale)))


@dataclass
class FixedAnnotation:
    """A ``fixed`` type's size and logical type, and its values."""

    size: int
    props: dict[str, Json]
    values: st.SearchStrategy[Sample]
    fastavro_parses: bool = True


def fixed_annotations(
    decimal_size: int = 9, precision: int | None = None, scale: int = 2, bad_size: int = 8
) -> list[FixedAnnotation]:
    """Every way to annotate a ``fixed``: decimal (``precision`` digits, at most what
    ``decimal_size`` bytes hold), uuid and duration, then invalid ones (decoded as bytes)."""
    if precision is None:
        precision = max_fixed_precision(decimal_size)
    scale = min(scale, precision)

    def plain(size: int) -> st.SearchStrategy[Sample]:
        return st.binary(min_size=size, max_size=size).map(_same)

    too_precise = {"logicalType": "decimal", "precision": max_fixed_precision(bad_size) + 1}
    return [
        FixedAnnotation(
            decimal_size,
            {"logicalType": "decimal", "precision": precision, "scale": scale},
            _decimals(precision, scale),
        ),
        # fastavro encodes uuid only on strings: write the 16 bytes, expect the UUID.
        FixedAnnotation(16, {"logicalType": "uuid"}, st.uuids().map(lambda u: (u.bytes, u))),
        # fastavro has no duration: write the 12 bytes, expect the Interval.
        FixedAnnotation(12, {"logicalType": "duration"}, DURATIONS),
        # More digits than the size holds: invalid, so plain bytes (fastavro refuses it).
        FixedAnnotation(bad_size, too_precise, plain(bad_size), fastavro_parses=False),
        # uuid wants 16 bytes and duration 12: other sizes make them plain bytes.
        FixedAnnotation(bad_size, {"logicalType": "uuid"}, plain(bad_size)),
        FixedAnnotation(bad_size, {"logicalType": "duration"}, plain(bad_size)),
        FixedAnnotation(bad_size, {"logicalType": "x-unknown-logical-type"}, plain(bad_size)),
    ]


@st.composite
def fixed_annotation(draw: st.DrawFn) -> FixedAnnotation:
    """A ``fixed`` with a logical type, valid or not (see :func:`fixed_annotations`)."""
    size = draw(st.integers(1, 20))
    precision = draw(st.integers(1, max_fixed_precision(size)))
    scale = draw(st.integers(0, precision))
    bad_size = draw(st.sampled_from([1, 4, 8, 15]))
    return draw(st.sampled_from(fixed_annotations(size, precision, scale, bad_size)))


# ---------------------------------------------------------------------------
# Schema generation
# ---------------------------------------------------------------------------

NAMESPACES = ("cs.test", "cs.test.inner", "other", "a.b.c")
SHORT_NAMES = ("Item", "Row", "Kind", "Blob", "Node", "_Rec", "x")
FIELD_PREFIXES = ("f", "_f", "type", "name", "value", "F")
SYMBOLS = ("A", "B", "C", "_d", "e1", "SYM_F", "g")


@dataclass
class GenState:
    """What one schema being generated has defined so far."""

    defined: list[Named] = field(default_factory=list)
    in_progress: list[Record] = field(default_factory=list)
    fullnames: set[str] = field(default_factory=set)


def _new_name(draw: st.DrawFn, state: GenState, ns: str) -> tuple[str, str, str]:
    """A fresh (short name, namespace, style) for a named type defined inside ``ns``."""
    namespace = draw(st.sampled_from([ns, ns, *NAMESPACES])) or "cs.test"
    short = draw(st.sampled_from(SHORT_NAMES))
    if f"{namespace}.{short}" in state.fullnames:
        short = f"{short}{len(state.fullnames)}"
    state.fullnames.add(f"{namespace}.{short}")
    styles = ["explicit", "dotted"] + (["inherit"] if namespace == ns else [])
    return short, namespace, draw(st.sampled_from(styles))


def _ref(draw: st.DrawFn, target: Named, ns: str, *, recursive: bool) -> Ref:
    short = target.namespace == ns and draw(st.booleans())
    return Ref(target, short=short, recursive=recursive)


def draw_record(draw: st.DrawFn, state: GenState, ns: str, depth: int, *, top: bool) -> Record:
    if top:
        short, namespace, style = "Row", draw(st.sampled_from(NAMESPACES)), "explicit"
        state.fullnames.add(f"{namespace}.{short}")
    else:
        short, namespace, style = _new_name(draw, state, ns)
    record = Record(short, namespace, style)
    if draw(st.booleans()):
        record.doc = draw(st.sampled_from(["a record", "ünïcode doc"]))
    state.in_progress.append(record)
    count = draw(st.integers(2, 8) if top else st.integers(0, 4))
    prefix = draw(st.sampled_from(FIELD_PREFIXES))
    for i in range(count):
        name = f"{prefix}{i}"
        kind = draw_type(draw, state, namespace, depth - 1, field_level=True)
        nullable_first = (
            isinstance(kind, Union)
            and isinstance(kind.branches[0], Primitive)
            and kind.branches[0].name == "null"
        )
        default_null = nullable_first and draw(st.booleans())
        doc = draw(st.sampled_from([None, None, "field doc"]))
        record.fields.append(Field(name, kind, default_null, doc))
    state.in_progress.pop()
    state.defined.append(record)
    return record


CATEGORIES = (
    # Repeats weight the draw towards the interesting kinds: a run has only a few dozen schemas.
    "int",
    *PRIMITIVES,
    *["logical"] * 4,
    *["array", "map", "record", "union", "nullable"] * 2,
    "union",
    "enum",
    "fixed",
    *["fixed-logical"] * 2,
    *["ref"] * 3,
    *["recursive"] * 2,
)
COMPOUND = {"array", "map", "record", "union", "nullable", "recursive"}


def draw_type(
    draw: st.DrawFn,
    state: GenState,
    ns: str,
    depth: int,
    *,
    field_level: bool = False,
    in_union: set[str] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> AvroType:
    """A type used inside namespace ``ns``; ``in_union`` holds the branch names already taken
    when drawing a union branch (unions hold at most one of each unnamed type); ``exclude``
    names categories not to draw."""
    allowed = [c for c in CATEGORIES if (depth > 0 or c not in COMPOUND) and c not in exclude]
    if in_union is not None:
        allowed = [
            c
            for c in allowed
            if c not in {"union", "nullable", "recursive"} and c not in in_union
            if not (c == "logical" and in_union >= {"int", "long", "bytes", "string"})
        ]
    if not field_level or not state.in_progress:
        allowed = [c for c in allowed if c != "recursive"]
    refs = [n for n in state.defined if in_union is None or n.fullname not in in_union]
    if not refs:
        allowed = [c for c in allowed if c != "ref"]
    category = draw(st.sampled_from(allowed))

    if category in PRIMITIVES:
        return Primitive(category, object_form=draw(st.integers(0, 3)) == 0)
    if category == "logical":
        bases = [b for b in ("int", "long", "bytes", "string") if b not in (in_union or set())]
        return draw(annotated_primitives(draw(st.sampled_from(bases))))
    if category == "array":
        return Array(draw_type(draw, state, ns, depth - 1))
    if category == "map":
        return Map(draw_type(draw, state, ns, depth - 1))
    if category == "record":
        return draw_record(draw, state, ns, depth, top=False)
    if category == "enum":
        short, namespace, style = _new_name(draw, state, ns)
        symbols = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=5, unique=True))
        enum = Enum(short, namespace, style, symbols)
        state.defined.append(enum)
        return enum
    if category in ("fixed", "fixed-logical"):
        short, namespace, style = _new_name(draw, state, ns)
        if category == "fixed":
            fixed = Fixed(short, namespace, style, draw(st.integers(0, 8)))
        else:
            a = draw(fixed_annotation())
            fixed = Fixed(
                short,
                namespace,
                style,
                a.size,
                a.props,
                a.values,
                fastavro_parses=a.fastavro_parses,
            )
        state.defined.append(fixed)
        return fixed
    if category == "ref":
        return _ref(draw, draw(st.sampled_from(refs)), ns, recursive=False)
    if category == "recursive":
        target = draw(st.sampled_from(state.in_progress))
        ref = _ref(draw, target, ns, recursive=True)
        shape = draw(st.sampled_from(["null-first", "null-last", "array", "map"]))
        if shape == "array":
            return Array(ref)
        if shape == "map":
            return Map(ref)
        null = Primitive("null")
        return Union([null, ref] if shape == "null-first" else [ref, null])
    if category == "nullable":
        inner = draw_type(draw, state, ns, depth - 1, in_union={"null"})
        null = Primitive("null")
        return Union([null, inner] if draw(st.booleans()) else [inner, null])
    assert category == "union"
    taken: set[str] = set()
    branches: list[AvroType] = []
    for _ in range(draw(st.integers(2, 4))):
        branch = draw_type(draw, state, ns, depth - 1, in_union=taken)
        taken.add(branch.union_name())
        branches.append(branch)
    return Union(branches)


def every_type_record() -> Record:
    """A record with a field of every primitive type, of every logical annotation of every
    primitive and of ``fixed`` (valid or not), and each of those again in a union with null:
    what a run of random schemas might happen to miss."""
    record = Record("Every", "cs.every", "explicit")

    def add(name: str, kind: AvroType, *, nullable: bool = True) -> None:
        record.fields.append(Field(name, kind))
        if nullable:
            if isinstance(kind, Named):  # defined just above: named again
                kind = Ref(kind, short=False, recursive=False)
            null_first = len(record.fields) % 2 == 0
            branches = [Primitive("null"), kind] if null_first else [kind, Primitive("null")]
            record.fields.append(Field(f"{name}_or_null", Union(branches), null_first))

    for name in PRIMITIVES:
        add(name, Primitive(name), nullable=name != "null")
    for base in ("int", "long", "bytes", "string"):
        for i, annotated in enumerate(primitive_annotations(base, precision=38, scale=9)):
            logical_type = str(annotated.props["logicalType"]).replace("-", "_")
            add(f"{base}_{logical_type}_{i}", annotated)
    for i, a in enumerate(fixed_annotations(decimal_size=9, scale=4, bad_size=8)):
        fixed = Fixed(
            f"Fixed{i}",
            "cs.every",
            "inherit",
            a.size,
            a.props,
            a.values,
            fastavro_parses=a.fastavro_parses,
        )
        logical_type = str(a.props["logicalType"]).replace("-", "_")
        record.fields.append(Field(f"fixed_{logical_type}_{i}", fixed))
        ref = Ref(fixed, short=True, recursive=False)
        record.fields.append(
            Field(f"fixed_{logical_type}_{i}_or_null", Union([ref, Primitive("null")]))
        )
    # Counts, lengths and indexes of 64 and more take a second varint byte.
    add("many_longs", ManyLongs(), nullable=False)
    add("many_keys", ManyKeys(), nullable=False)
    symbols = [f"S{i}" for i in range(100)]
    add("wide_enum", Enum("WideEnum", "cs.every", "inherit", symbols))
    wide = [Fixed(f"Wide{i}", "cs.every", "explicit", i % 3) for i in range(70)]
    add("wide_union", Union([Primitive("null"), *wide]), nullable=False)
    add("empty_record", Record("Empty", "cs.every", "inherit"))
    return record


def model_from_json(schema: Json) -> AvroType:
    """The model of an existing schema, to generate values for it. Attributes the model does
    not know are left out of the model (a ``logicalType`` written on a field, which has no
    effect, among them); register and encode the original JSON, not ``to_json()`` of this."""
    named: dict[str, Named] = {}
    in_progress: set[str] = set()

    def model(node: Json, ns: str) -> AvroType:
        if isinstance(node, list):
            return Union([model(branch, ns) for branch in node])
        if isinstance(node, str):
            if node in PRIMITIVES:
                return Primitive(node)
            fullname = node if "." in node or not ns else f"{ns}.{node}"
            target = named[fullname]
            return Ref(target, short=node == target.short, recursive=fullname in in_progress)
        kind = node["type"]
        if not isinstance(kind, str):
            return model(kind, ns)
        if kind in PRIMITIVES:
            if "logicalType" in node:
                raise NotImplementedError(f"a logical type on a type: {node}")
            return Primitive(kind, object_form=True)
        if kind == "array":
            return Array(model(node["items"], ns))
        if kind == "map":
            return Map(model(node["values"], ns))
        name: str = node["name"]
        if "." in name:
            namespace, short = name.rsplit(".", 1)
            style = "dotted"
        else:
            namespace, short = node.get("namespace", ns), name
            style = "explicit" if "namespace" in node else "inherit"
        if not namespace:
            raise NotImplementedError(f"a named type in the null namespace: {name}")
        defined: Named
        if kind == "record":
            record = Record(short, namespace, style)
            named[record.fullname] = record
            in_progress.add(record.fullname)
            for f in node["fields"]:
                null_default = "default" in f and f["default"] is None
                record.fields.append(Field(f["name"], model(f["type"], namespace), null_default))
            in_progress.discard(record.fullname)
            return record
        if kind == "enum":
            defined = Enum(short, namespace, style, list(node["symbols"]))
        elif kind == "fixed":
            if "logicalType" in node:
                raise NotImplementedError(f"a logical type on a type: {node}")
            defined = Fixed(short, namespace, style, int(node["size"]))
        else:
            raise NotImplementedError(f"type {kind!r}")
        named[defined.fullname] = defined
        return defined

    return model(schema, "")


@dataclass
class Case:
    """A generated schema and values for it."""

    schema: Json
    """What is registered and decoded with."""
    encoder_schema: Json
    """What fastavro encodes with (the same but for logical types fastavro refuses)."""
    samples: list[Sample]
    table: str | None = None


# ---------------------------------------------------------------------------
# Through Kafka and back
# ---------------------------------------------------------------------------


def encode(parsed_schema: Json, value: Any) -> bytes:
    """The Avro binary body fastavro writes for ``value``."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema, value)
    return buf.getvalue()


def frame(schema_id: int, body: bytes) -> bytes:
    """Confluent's framing: magic byte 0, the 4-byte big-endian schema id, the body."""
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def register(cdc: CdcProducer, subject: str, schema: Json) -> int:
    registered: int = cdc.registry.register_schema(
        subject, RegistrySchema(json.dumps(schema), "AVRO")
    )
    return registered


@dataclass
class RoundTrip:
    schema_id: int
    bodies: list[bytes]
    sent: list[Delivered]
    changes: list[Change]


def round_trip(
    cdc: CdcProducer,
    open_stream: OpenStream,
    topic: str,
    schema: Json,
    written: Sequence[Any],
    encoder_schema: Json | None = None,
) -> RoundTrip:
    """Register ``schema`` under ``<topic>-value``, encode ``written`` with fastavro (with
    ``encoder_schema`` if given), produce the framed values (unkeyed) in one batch and read them
    back from the first one to the end."""
    schema_id = register(cdc, f"{topic}-value", schema)
    parsed = fastavro.parse_schema(schema if encoder_schema is None else encoder_schema)
    bodies = [encode(parsed, value) for value in written]
    sent = cdc.produce_raw(topic, [(None, frame(schema_id, body)) for body in bodies])
    start = {(s.topic, s.partition): s.offset for s in reversed(sent)}
    with open_stream(topic, until="end", start=start) as stream:
        changes = list(stream)
    assert [(c.partition, c.offset) for c in changes] == [(s.partition, s.offset) for s in sent]
    return RoundTrip(schema_id, bodies, sent, changes)


# ---------------------------------------------------------------------------
# Exact comparison
# ---------------------------------------------------------------------------


def mismatches(actual: Any, expected: Any, path: str = "") -> Iterator[str]:
    """Where ``actual`` differs from ``expected``, exactly (types included)."""

    def differ(why: str = "") -> str:
        note = f" ({why})" if why else ""
        return f"at {path or '<value>'}: expected {expected!r}, got {actual!r}{note}"

    if expected is None:
        if actual is not None:
            yield differ()
    elif type(expected) in (bool, int, str, bytes, uuid.UUID, Interval):
        if type(actual) is not type(expected) or actual != expected:
            yield differ(f"{type(actual).__name__}")
    elif isinstance(expected, float):
        if type(actual) is not float:
            yield differ(type(actual).__name__)
        elif math.isnan(expected):
            if not math.isnan(actual):
                yield differ()
        elif struct.pack("<d", actual) != struct.pack("<d", expected):
            yield differ()
    elif isinstance(expected, Decimal):
        if type(actual) is not Decimal or actual.as_tuple() != expected.as_tuple():
            yield differ()
    elif isinstance(expected, datetime):
        if (
            type(actual) is not datetime
            or actual.replace(tzinfo=None) != expected.replace(tzinfo=None)
            or (actual.tzinfo is None) != (expected.tzinfo is None)
            or actual.utcoffset() != expected.utcoffset()
        ):
            yield differ(f"tzinfo {getattr(actual, 'tzinfo', None)!r}")
    elif isinstance(expected, date):
        if type(actual) is not date or actual != expected:
            yield differ()
    elif isinstance(expected, time):
        if type(actual) is not time or actual != expected or actual.tzinfo is not None:
            yield differ()
    elif isinstance(expected, list):
        if type(actual) is not list or len(actual) != len(expected):
            yield differ()
        else:
            for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
                yield from mismatches(a, e, f"{path}[{i}]")
    elif isinstance(expected, dict):
        # Keys in order: a record's fields as its schema lists them, a map's as written.
        if type(actual) is not dict or list(actual) != list(expected):
            yield differ("keys or their order")
        else:
            for k, e in expected.items():
                yield from mismatches(actual[k], e, f"{path}[{k!r}]")
    else:
        raise AssertionError(f"no comparison for {type(expected)}")


def describe_failures(
    schema: Json, trip: RoundTrip, problems: list[tuple[int, list[str]]], limit: int = 5
) -> str:
    """A failure message: the schema, and for the first few bad values the body and what differs."""
    lines = [
        f"{len(problems)} of {len(trip.changes)} values decoded wrong "
        f"(schema id {trip.schema_id}): {json.dumps(schema)}"
    ]
    for index, found in problems[:limit]:
        lines.append(f"value #{index}, body {trip.bodies[index].hex()}:")
        lines.extend(f"  {line}" for line in found[:5])
    return "\n".join(lines)
