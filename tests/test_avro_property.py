"""Property test: random Avro schemas and values, encoded by fastavro, decode exactly.

Hypothesis generates writer schemas (see ``avro_gen``): records nesting records, arrays,
maps, enums, fixed, unions of two to four branches in any order (with or without null),
named types defined once and referenced again by short or full name across namespaces,
recursive records, every primitive with its edge values (NaN, infinities and -0.0 in floats
and doubles, the extreme ints and longs, empty and non-ASCII strings, empty arrays and maps),
and logical types: valid ones, which decode to Python types, and invalid or unknown ones,
which the Avro specification says to ignore. Each schema is registered in the stack's
registry and a batch of values for it is encoded by fastavro, produced in one go and read
back with a bounded ``ChangeStream``, then compared exactly with what was encoded.

The run is reproducible: the Hypothesis seed is fixed (printed with the test's output; set
``CHANGESTREAM_HYPOTHESIS_SEED`` to explore others, ``CHANGESTREAM_AVRO_SCHEMAS`` for more
schemas per run). A failure names the schema, the value and the path where they differ; set
``CHANGESTREAM_HYPOTHESIS_SHRINK=1`` to have Hypothesis shrink it to a minimal example first
(slow: every attempt is a Kafka round trip).
"""

from __future__ import annotations

import os

import pytest
from avro_gen import (
    Case,
    GenState,
    OpenStream,
    Sample,
    describe_failures,
    draw_record,
    draw_type,
    every_type_record,
    mismatches,
    round_trip,
)
from cdc import CdcProducer
from hypothesis import HealthCheck, Phase, given, note, seed, settings
from hypothesis import strategies as st

pytestmark = [
    pytest.mark.timeout(600, func_only=True),
    # A failing batch is large: let Hypothesis print it rather than fail on its size.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

SEED = int(os.environ.get("CHANGESTREAM_HYPOTHESIS_SEED", "3"))
RECORD_SCHEMAS = int(os.environ.get("CHANGESTREAM_AVRO_SCHEMAS", "40"))
VALUES_PER_RECORD_SCHEMA = 25
TOP_LEVEL_SCHEMAS = max(1, RECORD_SCHEMAS // 3)
VALUES_PER_TOP_LEVEL_SCHEMA = 10
EVERY_TYPE_BATCHES = 10
"""Batches of 10 values of :func:`avro_gen.every_type_record`."""
SCHEMA_DEPTH = 3
"""How deeply complex types nest in a generated schema."""
RECURSION = 2
"""How deeply a value of a recursive record recurses."""

SHRINK = os.environ.get("CHANGESTREAM_HYPOTHESIS_SHRINK", "") not in ("", "0")
"""Shrinking replays examples through Kafka (up to Hypothesis's five minutes): off by default,
since a failure already names the schema, the value and where they differ."""

SETTINGS = settings(
    deadline=None,
    database=None,
    print_blob=True,
    phases=[p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)],
    suppress_health_check=[
        # The topic and stream fixtures are shared by the examples on purpose.
        HealthCheck.function_scoped_fixture,
        # Each example is a schema and a batch of values for it: large by design.
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
        HealthCheck.too_slow,
    ],
)


@pytest.fixture(scope="module", autouse=True)
def _print_seed() -> None:
    print(f"hypothesis seed {SEED} (set CHANGESTREAM_HYPOTHESIS_SEED to change it)")


@st.composite
def record_cases(draw: st.DrawFn) -> Case:
    """A top-level record schema, as CDC rows have, and values for it."""
    record = draw_record(draw, GenState(), "", SCHEMA_DEPTH, top=True)
    values = st.lists(
        record.samples(RECURSION),
        min_size=VALUES_PER_RECORD_SCHEMA,
        max_size=VALUES_PER_RECORD_SCHEMA,
    )
    return Case(record.to_json(), record.to_json(encoder=True), draw(values), table=record.short)


@st.composite
def top_level_cases(draw: st.DrawFn) -> Case:
    """A schema whose top level is not a record (a primitive, a union, an array, ...)."""
    # The top level is in the null namespace: named types there get an explicit one.
    kind = draw_type(draw, GenState(), "", SCHEMA_DEPTH - 1, exclude=frozenset({"record"}))
    values = st.lists(
        kind.samples(RECURSION),
        min_size=VALUES_PER_TOP_LEVEL_SCHEMA,
        max_size=VALUES_PER_TOP_LEVEL_SCHEMA,
    )
    return Case(kind.to_json(), kind.to_json(encoder=True), draw(values))


def check(
    case: Case, cdc: CdcProducer, open_stream: OpenStream, topic: str, *, record: bool
) -> None:
    note(f"schema: {case.schema}")
    written = [w for w, _ in case.samples]
    trip = round_trip(cdc, open_stream, topic, case.schema, written, case.encoder_schema)
    problems: list[tuple[int, list[str]]] = []
    for index, (change, (_, expected)) in enumerate(zip(trip.changes, case.samples, strict=True)):
        found = list(mismatches(change.after, expected, "after"))
        if change.op != "upsert":
            found.append(f"op is {change.op!r}, not 'upsert'")
        if change.key is not None or change.before is not None or change.source is not None:
            found.append(f"key/before/source {change.key!r}/{change.before!r}/{change.source!r}")
        if record and change.table != case.table:
            found.append(f"table is {change.table!r}, not the record's name {case.table!r}")
        if found:
            problems.append((index, found))
    assert not problems, describe_failures(case.schema, trip, problems)


@settings(SETTINGS, max_examples=RECORD_SCHEMAS)
@seed(SEED)
@given(case=record_cases())
def test_random_records_round_trip(
    case: Case, cdc: CdcProducer, open_stream: OpenStream, topic: str
) -> None:
    """A flat row of a random record schema is an upsert whose ``after`` is the record."""
    check(case, cdc, open_stream, topic, record=True)


@settings(SETTINGS, max_examples=TOP_LEVEL_SCHEMAS)
@seed(SEED)
@given(case=top_level_cases())
def test_random_non_record_values_round_trip(
    case: Case, cdc: CdcProducer, open_stream: OpenStream, topic: str
) -> None:
    """A value that is not a record is still an upsert, with the value itself as ``after``."""
    check(case, cdc, open_stream, topic, record=False)


EVERY_TYPE = every_type_record()


@settings(SETTINGS, max_examples=EVERY_TYPE_BATCHES)
@seed(SEED)
@given(samples=st.lists(EVERY_TYPE.samples(0), min_size=10, max_size=10))
def test_every_type_and_logical_type_round_trips(
    samples: list[Sample],
    cdc: CdcProducer,
    open_stream: OpenStream,
    topic: str,
) -> None:
    """One record with every primitive, every logical annotation (valid ones decode to Python
    types, invalid and unknown ones to the underlying type) and each in a union with null,
    whatever the random schemas above happened to draw."""
    case = Case(EVERY_TYPE.to_json(), EVERY_TYPE.to_json(encoder=True), samples, table="Every")
    check(case, cdc, open_stream, topic, record=True)
