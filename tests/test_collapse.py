"""Collapsing a batch of changes to what a follower target applies, and ``read_table``'s
folding of changes into a table (no stack needed).

The expected effect is computed by replaying every change, one by one, on a dict; the
collapsed batch (deletes, then upserts) applied to the same starting state must give the
same table, with each key once and the rows sorted by key; the table folded from the same
changes, in any number of folds, must be that table too.
"""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from changestream.follow._changes import collapse
from changestream.follow._read_table import TableState

Row = dict[str, Any]


def batch(changes: list[tuple[str, Row]]) -> pa.Table:
    """A batch as the stream hands it over: the row columns, then ``_op`` and metadata."""
    return pa.table(
        {
            "region": pa.array([row.get("region") for _, row in changes], pa.string()),
            "id": pa.array([row.get("id") for _, row in changes], pa.int64()),
            "name": pa.array([row.get("name") for _, row in changes], pa.string()),
            "_op": pa.array([op for op, _ in changes], pa.string()).dictionary_encode(),
            "_offset": pa.array(range(len(changes)), pa.int64()),
        }
    )


def replay(
    state: dict[tuple[Any, ...], Row], changes: list[tuple[str, Row]], key: list[str]
) -> dict[tuple[Any, ...], Row]:
    """Every change in order, the slow and obvious way."""
    state = dict(state)
    for op, row in changes:
        if op == "truncate":
            state.clear()
        elif op == "delete":
            state.pop(tuple(row[k] for k in key), None)
        elif op != "message":
            state[tuple(row[k] for k in key)] = row
    return state


def apply_collapsed(
    state: dict[tuple[Any, ...], Row], changes: list[tuple[str, Row]], key: list[str]
) -> dict[tuple[Any, ...], Row]:
    collapsed = collapse(batch(changes), key)
    assert collapsed.changes == len(changes)
    state = {} if collapsed.truncate else dict(state)
    deleted = [tuple(r[k] for k in key) for r in collapsed.deletes.to_pylist()]
    upserted = [r for u in collapsed.upserts for r in u.rows.to_pylist()]
    upserted_keys = [tuple(r[k] for k in key) for r in upserted]
    # Each key once, in one of the two lists, and sorted: the order within a batch is free.
    assert len(set(deleted + upserted_keys)) == len(deleted) + len(upserted_keys)
    assert deleted == sorted(deleted)
    assert upserted_keys == sorted(upserted_keys)
    for deleted_key in deleted:
        state.pop(deleted_key, None)
    for row in upserted:
        state[tuple(row[k] for k in key)] = row
    return state


def random_changes(rng: random.Random, count: int, keys: int) -> list[tuple[str, Row]]:
    ops = ["insert", "update", "update", "read", "delete", "message"]
    changes = []
    for i in range(count):
        op = rng.choice(ops)
        region = rng.choice(["eu", "us"])
        row = {"region": region, "id": rng.randrange(keys), "name": f"v{i}"}
        changes.append((op, row if op != "message" else {}))
    return changes


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("key", [["id"], ["region", "id"]])
def test_a_collapsed_batch_has_the_effect_of_its_changes_in_order(
    seed: int, key: list[str]
) -> None:
    rng = random.Random(seed)
    state: dict[tuple[Any, ...], Row] = {}
    for _ in range(5):
        changes = random_changes(rng, rng.randrange(1, 300), keys=40)
        expected = replay(state, changes, key)
        state = apply_collapsed(state, changes, key)
        assert state == expected


def test_null_and_dictionary_encoded_key_columns_collapse_as_plain_ones() -> None:
    # Two nulls are one key (as in a group by), a null and a value two; a dictionary-encoded
    # key column (an enum) is sorted and compared by its values.
    rng = random.Random(7)
    changes = random_changes(rng, 300, keys=8)
    for _, row in changes:
        if row and rng.random() < 0.3:
            row["region"] = None
    expected = replay({}, changes, ["region", "id"])
    plain = batch(changes)
    encoded = plain.set_column(0, "region", plain.column("region").dictionary_encode())
    for table in (plain, encoded):
        collapsed = collapse(table, ["region", "id"])
        state: dict[tuple[Any, ...], Row] = {}
        for row in (r for u in collapsed.upserts for r in u.rows.to_pylist()):
            assert (row["region"], row["id"]) not in state
            state[(row["region"], row["id"])] = row
        assert state == expected
        deleted = {(r["region"], r["id"]) for r in collapsed.deletes.to_pylist()}
        assert not deleted & state.keys()
        assert len(deleted) + len(state) == len({k for k in expected} | deleted)
        # read_table's fold looks the stored rows' keys up among the changes': same result.
        folded = TableState(["region", "id"])
        folded.add(table.slice(0, 150))
        folded.fold()
        folded.add(table.slice(150))
        rows = folded.fold().to_pylist()
        assert {(r["region"], r["id"]): r for r in rows} == expected
        assert len(rows) == len(expected)


def test_a_truncate_empties_the_table_and_only_what_follows_it_is_applied() -> None:
    key = ["id"]
    stored = {(1,): {"region": "eu", "id": 1, "name": "old"}}
    changes = [
        ("insert", {"region": "eu", "id": 2, "name": "before"}),
        ("truncate", {}),
        ("insert", {"region": "eu", "id": 3, "name": "c"}),
        ("delete", {"region": "eu", "id": 3, "name": "c"}),
        ("insert", {"region": "eu", "id": 4, "name": "d"}),
    ]
    collapsed = collapse(batch(changes), key)
    assert collapsed.truncate
    assert collapsed.deletes.column("id").to_pylist() == [3]
    assert apply_collapsed(stored, changes, key) == {(4,): {"region": "eu", "id": 4, "name": "d"}}


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("key", [["id"], ["region", "id"]])
@pytest.mark.parametrize("fold_rows", [1, 50, 10_000])
def test_a_folded_table_is_its_changes_replayed(
    seed: int, key: list[str], fold_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Folds after every batch, every few batches, or once at the end: the stored rows the
    # changes touch are replaced, the others kept.
    monkeypatch.setattr(TableState, "FOLD_ROWS", fold_rows)
    rng = random.Random(seed)
    expected: dict[tuple[Any, ...], Row] = {}
    state = TableState(key)
    for _ in range(8):
        changes = random_changes(rng, rng.randrange(1, 120), keys=60)
        if rng.random() < 0.1:
            changes.insert(rng.randrange(len(changes)), ("truncate", {}))
        expected = replay(expected, changes, key)
        state.add(batch(changes))
    rows = state.fold().to_pylist()
    assert {tuple(r[k] for k in key): r for r in rows} == expected
    assert len(rows) == len(expected)


def test_a_folded_table_takes_a_column_a_later_schema_added() -> None:
    state = TableState(["id"])
    state.add(batch([("insert", {"region": "eu", "id": 1, "name": "a"})]))
    state.fold()
    later = batch([("update", {"region": "eu", "id": 1, "name": "b"})])
    later = later.add_column(3, "size", pa.array([7], pa.int32()))
    state.add(later)
    state.add(batch([("insert", {"region": "us", "id": 2, "name": "c"})]))
    assert sorted(state.fold().to_pylist(), key=lambda r: r["id"]) == [
        {"region": "eu", "id": 1, "name": "b", "size": 7},
        {"region": "us", "id": 2, "name": "c", "size": None},
    ]


@pytest.mark.parametrize("key", [["id"], ["region", "id"]])
def test_a_folded_table_follows_a_key_column_widened_by_a_later_schema(key: list[str]) -> None:
    # The lookup of the stored rows by key needs one type: the whole table is folded then.
    state = TableState(key)
    first = batch([("insert", {"region": "eu", "id": 1, "name": "a"})])
    state.add(first.set_column(1, "id", first.column("id").cast(pa.int32())))
    state.fold()
    state.add(batch([("update", {"region": "eu", "id": 1, "name": "b"})]))
    folded = state.fold()
    assert folded.schema.field("id").type == pa.int64()
    assert folded.to_pylist() == [{"region": "eu", "id": 1, "name": "b"}]
