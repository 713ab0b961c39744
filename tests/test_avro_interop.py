"""Apache Avro's interoperability schema, with random values encoded by fastavro.

``avro-interop.avsc`` (from the apache/avro repository, ``share/test/schemas/interop.avsc``;
kept in ``../shared/reference/test-vectors/``) is the schema every Avro implementation checks
itself against: every primitive, an array, a map of records, a three-branch union without
null, an enum, a fixed, and a recursive record (``Node``, whose ``children`` are ``Node``s).
Random values for it (recursion bounded) are encoded by fastavro, produced, read back with a
bounded ``ChangeStream`` and compared exactly with what was encoded.

Its last six fields carry a trap: ``logicalType`` is written on the *field*, not on the type,
and the specification gives it no effect there; those fields decode as plain ``int`` /
``long``, never as times (:func:`test_field_level_logical_type_has_no_effect`).
"""

from __future__ import annotations

import json
import os
from datetime import time
from pathlib import Path
from typing import Any

import fastavro
import pytest
from avro_gen import (
    Case,
    OpenStream,
    Record,
    Sample,
    describe_failures,
    encode,
    frame,
    mismatches,
    model_from_json,
    register,
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

INTEROP_SCHEMA_PATH = (
    Path(__file__).parents[1] / ".." / "shared" / "reference" / "test-vectors" / "avro-interop.avsc"
)
SEED = int(os.environ.get("CHANGESTREAM_HYPOTHESIS_SEED", "3"))
BATCHES = 8
VALUES_PER_BATCH = 25  # 200 values in all
RECURSION = 3
"""How many levels of ``Node`` children a value may have."""
SHRINK = os.environ.get("CHANGESTREAM_HYPOTHESIS_SHRINK", "") not in ("", "0")

TIME_MILLIS = {"type": "int", "logicalType": "time-millis"}
FIELD_LOGICAL_TYPES = (
    "timeMillisField",
    "timeMicrosField",
    "timestampMillisField",
    "timestampMicrosField",
    "localTimestampMillisField",
    "localTimestampMicrosField",
)


def load_interop_schema() -> Any:
    if not INTEROP_SCHEMA_PATH.is_file():
        pytest.fail(
            f"Apache Avro's interop schema is missing: {INTEROP_SCHEMA_PATH.resolve()} "
            "(the shared reference directory must sit beside the repository)"
        )
    return json.loads(INTEROP_SCHEMA_PATH.read_text())


def interop_record() -> Record:
    model = model_from_json(load_interop_schema())
    assert isinstance(model, Record)
    return model


@pytest.fixture(scope="module", autouse=True)
def _print_seed() -> None:
    print(f"hypothesis seed {SEED} (set CHANGESTREAM_HYPOTHESIS_SEED to change it)")


def test_interop_schema_is_the_expected_one() -> None:
    """The file is Apache Avro's interop schema with the field-level logicalType trap."""
    schema = load_interop_schema()
    assert schema["name"] == "Interop"
    assert schema["namespace"] == "org.apache.avro"
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["unionField"]["type"][:2] == ["boolean", "double"]
    assert fields["recordField"]["type"]["fields"][1]["type"] == {"type": "array", "items": "Node"}
    for name in FIELD_LOGICAL_TYPES:
        assert "logicalType" in fields[name], name
        assert isinstance(fields[name]["type"], str), f"{name}: the logicalType is on the field"


@st.composite
def interop_batches(draw: st.DrawFn) -> list[Sample]:
    values = interop_record().samples(RECURSION)
    return draw(st.lists(values, min_size=VALUES_PER_BATCH, max_size=VALUES_PER_BATCH))


@settings(
    max_examples=BATCHES,
    deadline=None,
    database=None,
    print_blob=True,
    phases=[p for p in Phase if SHRINK or p not in (Phase.shrink, Phase.explain)],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
        HealthCheck.too_slow,
    ],
)
@seed(SEED)
@given(samples=interop_batches())
def test_interop_values_round_trip(
    samples: list[Sample],
    cdc: CdcProducer,
    open_stream: OpenStream,
    topic: str,
) -> None:
    """Random values of the interop schema decode to exactly what fastavro encoded."""
    schema = load_interop_schema()
    case = Case(schema, schema, samples, table="Interop")
    note(f"values: {[w for w, _ in samples]}")
    trip = round_trip(cdc, open_stream, topic, schema, [w for w, _ in samples])
    problems: list[tuple[int, list[str]]] = []
    for index, (change, (_, expected)) in enumerate(zip(trip.changes, samples, strict=True)):
        found = list(mismatches(change.after, expected, "after"))
        if change.op != "upsert" or change.table != case.table:
            found.append(f"op {change.op!r}, table {change.table!r}")
        if found:
            problems.append((index, found))
    assert not problems, describe_failures(schema, trip, problems)


def test_field_level_logical_type_has_no_effect(
    cdc: CdcProducer, open_stream: OpenStream, topic: str
) -> None:
    """``logicalType`` on a field is ignored: the interop schema's time fields stay numbers.

    The values would be times (01:00:00) or out of any time's range if the annotation were
    applied. As a control, the same ``time-millis`` written on the type does make a time, so
    the numbers are not numbers merely because the decoder lacks ``time-millis``.
    """
    schema = load_interop_schema()
    interop_id = register(cdc, f"{topic}-value", schema)
    # The registry must hand the annotation back where it was written, or this proves nothing.
    stored_text = cdc.registry.get_schema(interop_id).schema_str
    assert stored_text is not None
    stored = json.loads(stored_text)
    stored_fields = {f["name"]: f for f in stored["fields"]}
    for name in FIELD_LOGICAL_TYPES:
        assert stored_fields[name].get("logicalType") == "time-millis", stored_fields[name]
        assert stored_fields[name]["type"] in ("int", "long"), stored_fields[name]

    numbers = {
        "timeMillisField": 3_600_000,  # 01:00:00 as time-millis
        "timeMicrosField": -1,  # before midnight: not a time of day
        "timestampMillisField": 2**62,  # far beyond any datetime
        "timestampMicrosField": 0,
        "localTimestampMillisField": -(2**63),
        "localTimestampMicrosField": 86_400_000,  # 24:00 as time-millis
    }
    value: dict[str, Any] = {
        "intField": 1,
        "longField": 2,
        "stringField": "s",
        "boolField": True,
        "floatField": 0.5,
        "doubleField": 0.25,
        "bytesField": b"b",
        "nullField": None,
        "arrayField": [],
        "mapField": {},
        "unionField": True,
        "enumField": "B",
        "fixedField": bytes(16),
        "recordField": {"label": "root", "children": []},
        **numbers,
    }
    control_schema = {
        "type": "record",
        "name": "Control",
        "namespace": "org.apache.avro",
        "fields": [{"name": "timeMillisField", "type": TIME_MILLIS}],
    }
    control_id = register(cdc, f"{topic}-value", control_schema)
    control_value = {"timeMillisField": time(1, 0)}
    bodies = [
        frame(interop_id, encode(fastavro.parse_schema(schema), value)),
        frame(control_id, encode(fastavro.parse_schema(control_schema), control_value)),
    ]
    cdc.produce_raw(topic, [(None, body) for body in bodies])
    with open_stream(topic, until="end") as stream:
        interop, control = list(stream)

    assert interop.after is not None
    for name, number in numbers.items():
        got = interop.after[name]
        assert type(got) is int, f"{name}: expected the number {number}, got {got!r}"
        assert got == number, name
    assert not list(mismatches(interop.after, value, "after"))
    assert control.after == control_value
