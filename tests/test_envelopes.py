"""Envelope details: primary-key changes, tombstones on request, transaction blocks, truncate,
the unwrap SMT's rewrite mode and added fields, and the format override."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import changestream
import pytest
from cdc import (
    CdcProducer,
    debezium_envelope_schema,
    debezium_event,
    debezium_key_schema,
    debezium_source,
)

Open = Callable[..., changestream.ChangeStream]
PREFIX = "dbz"
COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "int"},
    {"name": "name", "type": "string"},
]
KEY = debezium_key_schema(PREFIX, "items", [{"name": "id", "type": "int"}])
ENVELOPE = debezium_envelope_schema(PREFIX, "items", COLUMNS)


def source(lsn: int, tx_id: int | None = 700) -> dict[str, Any]:
    return debezium_source(PREFIX, table="items", ts_ms=1_700_000_000_000, lsn=lsn, tx_id=tx_id)


def event(op: str, before: Any, after: Any, lsn: int, **extra: Any) -> dict[str, Any]:
    return debezium_event(
        op, before=before, after=after, source=source(lsn), ts_ms=1_700_000_000_100, **extra
    )


def read_all(open_stream: Open, topic: str, **options: Any) -> list[changestream.Change]:
    with open_stream(topic, until="end", **options) as stream:
        return list(stream)


def test_primary_key_change_is_a_delete_then_an_insert(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    old, new = {"id": 1, "name": "a"}, {"id": 2, "name": "a"}
    cdc.produce(
        topic,
        KEY,
        ENVELOPE,
        [
            ({"id": 1}, event("c", None, old, 100)),
            # Debezium's PK change: delete of the old key, its tombstone, create of the new key.
            ({"id": 1}, event("d", old, None, 200)),
            ({"id": 1}, None),
            ({"id": 2}, event("c", None, new, 200)),
        ],
    )
    changes = read_all(open_stream, topic)
    assert [(c.op, c.key) for c in changes] == [
        ("insert", {"id": 1}),
        ("delete", {"id": 1}),
        ("insert", {"id": 2}),
    ]
    assert changes[1].before == old
    assert changes[1].after is None
    assert changes[2].after == new
    assert not any(c.tombstone for c in changes)


def test_emit_tombstones_delivers_debezium_tombstones(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    row = {"id": 5, "name": "x"}
    delivered = cdc.produce(
        topic,
        KEY,
        ENVELOPE,
        [
            ({"id": 5}, event("c", None, row, 10)),
            ({"id": 5}, event("d", row, None, 20)),
            ({"id": 5}, None),
        ],
    )
    changes = read_all(open_stream, topic, emit_tombstones=True)
    assert [(c.op, c.tombstone) for c in changes] == [
        ("insert", False),
        ("delete", False),
        ("delete", True),
    ]
    tombstone = changes[2]
    assert tombstone.key == {"id": 5}
    assert tombstone.before is None
    assert tombstone.after is None
    assert tombstone.offset == delivered[2].offset
    assert tombstone.table == "items"


def test_transaction_block_and_truncate(open_stream: Open, cdc: CdcProducer, topic: str) -> None:
    block = {"id": "700:4242", "total_order": 3, "data_collection_order": 2}
    cdc.produce(
        topic,
        KEY,
        ENVELOPE,
        [
            ({"id": 1}, event("c", None, {"id": 1, "name": "a"}, 4242, transaction=block)),
            # A truncate event has a null key and neither before nor after.
            (None, event("t", None, None, 5000)),
        ],
    )
    insert, truncate = read_all(open_stream, topic)
    assert insert.transaction == block
    assert insert.source is not None
    assert insert.source["lsn"] == 4242
    assert insert.source["txId"] == 700
    assert truncate.op == "truncate"
    assert truncate.key is None
    assert truncate.before is None
    assert truncate.after is None
    assert truncate.table == "items"
    assert truncate.transaction is None


UNWRAPPED = {
    "type": "record",
    "name": "Value",
    "namespace": f"{PREFIX}.public.parcels",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "state", "type": ["null", "string"], "default": None},
        {"name": "__op", "type": ["null", "string"], "default": None},
        {"name": "__deleted", "type": ["null", "string"], "default": None},
    ],
    "connect.name": f"{PREFIX}.public.parcels.Value",
}
UNWRAPPED_KEY = debezium_key_schema(PREFIX, "parcels", [{"name": "id", "type": "int"}])


def test_unwrapped_rows_with_rewrite_mode_and_added_op(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    rows = [
        {"id": 1, "state": "new", "__op": "r", "__deleted": "false"},
        {"id": 2, "state": "new", "__op": "c", "__deleted": "false"},
        {"id": 1, "state": "sent", "__op": "u", "__deleted": "false"},
        # Rewrite mode: the delete carries the old row and __deleted = "true".
        {"id": 2, "state": "new", "__op": "d", "__deleted": "true"},
    ]
    cdc.produce(topic, UNWRAPPED_KEY, UNWRAPPED, [({"id": r["id"]}, r) for r in rows])
    changes = read_all(open_stream, topic)
    assert [c.op for c in changes] == ["read", "insert", "update", "delete"]
    assert all(c.table == "parcels" for c in changes)
    assert changes[2].after == rows[2]
    assert changes[3].before == rows[3]
    assert changes[3].after is None


def test_format_override(open_stream: Open, cdc: CdcProducer, topic: str) -> None:
    row = {"id": 9, "name": "z"}
    value = event("c", None, row, 1)
    cdc.produce(topic, KEY, ENVELOPE, [({"id": 9}, value)])
    (as_row,) = read_all(open_stream, topic, format="row")
    assert as_row.op == "upsert"
    assert as_row.after is not None
    assert as_row.after["after"] == row
    assert as_row.after["op"] == "c"

    # Forced, keyed envelopes read as they do detected: the key is never taken for an envelope.
    (forced,) = read_all(open_stream, topic, format="debezium")
    assert (forced.op, forced.key, forced.after) == ("insert", {"id": 9}, row)

    with pytest.raises(changestream.ConfigError, match="format must be"):
        open_stream(topic, format="json")


def test_forcing_debezium_on_flat_rows_is_a_decode_error(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    cdc.produce(
        topic,
        UNWRAPPED_KEY,
        UNWRAPPED,
        [({"id": 1}, {"id": 1, "state": None, "__op": None, "__deleted": None})],
    )
    with (
        open_stream(topic, until="end", format="debezium") as stream,
        pytest.raises(changestream.DecodeError, match=r"value: .*no before/after/op") as raised,
    ):
        next(stream)
    assert raised.value.offset == 0
