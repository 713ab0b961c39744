"""Positions and lifecycle in the ETL patterns (issue 15): manual commits of every partition,
messages not delivered, exceptions leaving ``with``, progress, ``lag()`` and ``positions()``
around a stream's life, and ``fork()``.

Every test reads topics of its own on the stack's Kafka, written by confluent-kafka's
AvroSerializer (tests/cdc.py); committed offsets are read back with confluent-kafka.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import pytest
from cdc import (
    CUSTOMER_COLUMNS,
    CdcProducer,
    Delivered,
    debezium_envelope_schema,
    debezium_event,
    debezium_key_schema,
    debezium_source,
)
from changestream import Change, ChangeStream
from confluent_kafka import Producer
from group_offsets import committed
from items_rows import KEY, ROW, produce

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]


def ends(delivered: Iterable[Delivered]) -> dict[int, int]:
    """Each partition's next offset after the messages given."""
    out: dict[int, int] = {}
    for d in delivered:
        out[d.partition] = max(out.get(d.partition, 0), d.offset + 1)
    return out


def keyed(topic: str, by_partition: dict[int, int]) -> dict[tuple[str, int], int]:
    return {(topic, p): o for p, o in by_partition.items()}


# ---------------------------------------------------------------------------
# commit="manual" on several partitions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("until", ["end", None])
def test_manual_commit_without_a_change_commits_every_partition(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
    until: str | None,
) -> None:
    topic = make_topic(3)
    group = f"group-{topic}"
    delivered = produce(cdc, topic, range(30), 3)
    with open_stream(topic, group_id=group, commit="manual", until=until) as stream:
        changes = [next(stream) for _ in range(30)]
        assert {(c.partition, c.offset) for c in changes} == {
            (d.partition, d.offset) for d in delivered
        }
        stream.commit()
        assert committed(stack, group, topic, 3) == {0: 10, 1: 10, 2: 10}
        assert stream.positions() == keyed(topic, {0: 10, 1: 10, 2: 10})
    with open_stream(topic, group_id=group, until="end") as stream:
        assert list(stream) == [], "a later run re-read what was committed"


def test_manual_commit_of_a_change_finishes_what_was_handed_out_before_it(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(3)
    group = f"group-{topic}"
    produce(cdc, topic, range(60), 3)
    with open_stream(topic, group_id=group, commit="manual", until="end") as stream:
        changes = list(stream)
        assert len(changes) == 60
        # A change in the middle of what was handed out, on a partition that was not the
        # last one read: everything before it (in hand-out order) is finished with it.
        chosen_at = 30
        chosen = changes[chosen_at]
        expected: dict[int, int] = {}
        for change in changes[: chosen_at + 1]:
            expected[change.partition] = max(expected.get(change.partition, 0), change.offset + 1)
        stream.commit(chosen)
        got = committed(stack, group, topic, 3)
        assert {p: o for p, o in got.items() if o >= 0} == expected, (got, expected)
        assert stream.positions() == keyed(topic, {p: expected.get(p, 0) for p in range(3)})
        # Then everything: every partition at its end.
        stream.commit()
        assert committed(stack, group, topic, 3) == {0: 20, 1: 20, 2: 20}


def test_commit_in_auto_mode_finishes_the_change_handed_out_last_on_every_partition(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(3)
    group = f"group-{topic}"
    produce(cdc, topic, range(12), 3)
    with open_stream(topic, group_id=group, until="end", commit_interval=60) as stream:
        changes = list(stream)
        assert len(changes) == 12
        stream.commit()
        assert committed(stack, group, topic, 3) == {0: 4, 1: 4, 2: 4}


def test_manual_commit_of_batches_commits_every_partition(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(3)
    group = f"group-{topic}"
    produce(cdc, topic, range(300), 3)
    with open_stream(topic, group_id=group, commit="manual", until="end") as stream:
        rows = sum(batch.num_rows for batch in stream.batches(max_rows=50))
        assert rows == 300
        assert all(o < 0 for o in committed(stack, group, topic, 3).values())
        stream.commit()
        assert committed(stack, group, topic, 3) == {0: 100, 1: 100, 2: 100}


# ---------------------------------------------------------------------------
# Positions move past what is not delivered
# ---------------------------------------------------------------------------

CUSTOMER_KEY = debezium_key_schema("etl", "customers", [{"name": "id", "type": "int"}])
CUSTOMER_ENVELOPE = debezium_envelope_schema("etl", "customers", CUSTOMER_COLUMNS)


def customer(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"customer {i}", "email": None}


def produce_insert_then_delete(cdc: CdcProducer, topic: str) -> list[Delivered]:
    """Debezium's insert of id 1, its delete, and the tombstone after the delete."""
    source = debezium_source("etl", table="customers", ts_ms=1_700_000_000_000)
    return cdc.produce(
        topic,
        CUSTOMER_KEY,
        CUSTOMER_ENVELOPE,
        [
            (
                {"id": 1},
                debezium_event("c", before=None, after=customer(1), source=source, ts_ms=1),
            ),
            (
                {"id": 1},
                debezium_event("d", before=customer(1), after=None, source=source, ts_ms=2),
            ),
            ({"id": 1}, None),
        ],
        partition=0,
    )


def test_a_suppressed_tombstone_is_passed(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    group = f"group-{topic}"
    produce_insert_then_delete(cdc, topic)
    with open_stream(topic, group_id=group, until="end") as stream:
        assert [c.op for c in stream] == ["insert", "delete"]
        assert stream.positions() == {(topic, 0): 3}
        assert stream.lag() == {(topic, 0): 0}
    assert committed(stack, group, topic, 1) == {0: 3}
    # Resumed from the group, and from positions(): nothing is delivered again.
    with open_stream(topic, group_id=group, until="end") as stream:
        assert list(stream) == []
    with open_stream(topic, start={(topic, 0): 3}, until="end") as stream:
        assert list(stream) == []
    # The same in batches.
    with open_stream(topic, until="end") as stream:
        ops = [op for batch in stream.batches() for op in batch.to_pyarrow()["_op"].to_pylist()]
        assert ops == ["insert", "delete"]
    assert stream.positions() == {(topic, 0): 3}


def test_a_delivered_tombstone_row_in_batches_carries_the_key(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(1)
    produce_insert_then_delete(cdc, topic)
    with open_stream(topic, until="end", emit_tombstones=True) as stream:
        table = [batch.to_pyarrow().to_pylist() for batch in stream.batches()]
    rows = [row for batch in table for row in batch]
    assert [(r["_op"], r["id"]) for r in rows] == [("insert", 1), ("delete", 1), ("delete", 1)]


def test_skipped_messages_and_transaction_markers_are_passed(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    produce(cdc, topic, range(3), 1)
    cdc.produce_raw(topic, [(b"not avro", b"not avro either")], partition=0)
    # A transaction: its rows, then a commit marker, which is the partition's last record.
    producer = Producer(
        {
            "bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"],
            "transactional.id": f"tx-{topic}",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in (3, 4):
        producer.produce(
            topic,
            key=cdc.serialize(topic, KEY, {"id": i}, is_key=True),
            value=cdc.serialize(topic, ROW, {"id": i, "name": f"item {i}"}),
            partition=0,
        )
    producer.commit_transaction(30)
    # 3 rows, 1 bad message, 2 rows, 1 commit marker.
    with open_stream(topic, until="end", on_decode_error="skip") as stream:
        assert [c.key["id"] for c in stream] == [0, 1, 2, 3, 4]
        assert stream.stats()["skipped"] == 1
        assert stream.positions() == {(topic, 0): 7}
        assert stream.lag() == {(topic, 0): 0}
    # Unbounded too: once idle, the position is past the marker.
    with open_stream(topic, on_decode_error="skip") as stream:
        for _ in range(5):
            next(stream)
        assert stream.poll(timeout=1.5) is None
        assert stream.positions() == {(topic, 0): 7}
        assert stream.lag() == {(topic, 0): 0}


# ---------------------------------------------------------------------------
# Exceptions leaving `with`
# ---------------------------------------------------------------------------


class LoadFailedError(Exception):
    pass


def test_an_exception_leaving_with_commits_nothing_more(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    group = f"group-{topic}"
    produce(cdc, topic, range(10), 1)
    buffered: list[Change] = []
    stream = open_stream(topic, group_id=group, commit_interval=60)

    def load() -> None:
        with stream:
            for change in stream:
                buffered.append(change)
                if len(buffered) == 6:
                    raise LoadFailedError("the warehouse refused the load")

    with pytest.raises(LoadFailedError):
        load()
    assert committed(stack, group, topic, 1)[0] < 0, "buffered changes were committed"
    assert stream.positions() == {(topic, 0): 0}
    # The next run starts where the group stood: at the first change.
    with open_stream(topic, group_id=group, until="end") as stream:
        assert [c.offset for c in stream] == list(range(10))
    assert committed(stack, group, topic, 1) == {0: 10}


def test_an_exception_leaving_async_with_commits_nothing_more(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    group = f"group-{topic}"
    produce(cdc, topic, range(10), 1)

    async def run() -> None:
        async with open_stream(topic, group_id=group, commit_interval=60) as stream:
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == 6:
                    raise LoadFailedError

    with pytest.raises(LoadFailedError):
        asyncio.run(run())
    assert committed(stack, group, topic, 1)[0] < 0


# ---------------------------------------------------------------------------
# lag() and positions() around a stream's life
# ---------------------------------------------------------------------------


def test_lag_right_after_opening_a_group_stream_and_both_after_close(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(3)
    produce(cdc, topic, range(9), 3)
    stream = open_stream(topic, group_id=f"group-{topic}")
    assert stream.lag() == keyed(topic, {0: 3, 1: 3, 2: 3})
    for _ in range(4):
        next(stream)
    positions, lag = stream.positions(), stream.lag()
    assert sum(lag.values()) == 9 - 3  # the 4th change is handed out, not finished
    stream.close()
    assert stream.positions() == positions
    assert stream.lag() == lag
    assert stream.stats()["delivered"] == 4


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------


class RecordingBar:
    """Stands in for ``tqdm.auto.tqdm``: records totals and counts."""

    made: ClassVar[list[RecordingBar]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.total = kwargs.get("total")
        self.totals: list[int] = []
        self.n = 0
        self.closed = False
        RecordingBar.made.append(self)

    def reset(self, total: int) -> None:
        self.total = total
        self.totals.append(total)
        self.n = 0

    def refresh(self) -> None:
        assert self.total is not None
        assert self.n <= self.total, (self.n, self.total)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("reader", ["rows", "batches"])
def test_progress_counts_against_each_partitions_end(
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    open_stream: OpenStream,
    monkeypatch: pytest.MonkeyPatch,
    reader: str,
) -> None:
    import tqdm.auto

    topic = make_topic(3)
    produce(cdc, topic, range(3000), 3)
    RecordingBar.made.clear()
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    with open_stream(topic, until="end", progress=True) as stream:
        if reader == "rows":
            count = sum(1 for _ in stream)
        else:
            count = sum(batch.num_rows for batch in stream.batches(max_rows=100))
        assert count == 3000
        [bar] = RecordingBar.made
        assert bar.closed
        assert bar.total == 3000, bar.totals
        assert bar.n == 3000


def test_progress_without_tqdm_logs_at_info_and_the_final_count(
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    open_stream: OpenStream,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = make_topic(2)
    produce(cdc, topic, range(200), 2)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    with (
        caplog.at_level(logging.INFO, logger="changestream.progress"),
        open_stream(topic, until="end", progress=True) as stream,
    ):
        assert sum(1 for _ in stream) == 200
    lines = [r for r in caplog.records if r.name == "changestream.progress"]
    assert lines, "nothing logged"
    assert all(r.levelno == logging.INFO for r in lines)
    assert lines[-1].getMessage() == "changestream: 200 of 200 messages read, done"


# ---------------------------------------------------------------------------
# fork()
# ---------------------------------------------------------------------------


def read_in_child(read: Callable[[], int], timeout: float = 60.0) -> tuple[int, str]:
    """Fork; the child runs ``read`` and exits with its result (or 100 + an error code).
    Returns the child's exit status and what it wrote. Never waits longer than ``timeout``."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        status = 99
        try:
            result = read()
            os.write(writer, f"ok {result}".encode())
            status = 0
        except BaseException as error:
            os.write(writer, f"{type(error).__name__}: {error}".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung")
        time.sleep(0.05)
    with os.fdopen(reader, "rb") as pipe:
        said = pipe.read().decode()
    return os.waitstatus_to_exitcode(status), said


def fork_after_reading_is_enough(open_stream: OpenStream, topic: str) -> None:
    """Make the parent's runtime and registry client busy before forking."""
    with open_stream(topic, until="end") as stream:
        assert sum(1 for _ in stream) == 10


def test_a_stream_opened_in_a_forked_child_works(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(1)
    produce(cdc, topic, range(10), 1)
    fork_after_reading_is_enough(open_stream, topic)

    def read_sync() -> int:
        with open_stream(topic, until="end", registry_timeout=10) as stream:
            return sum(1 for _ in stream)

    def read_async() -> int:
        async def run() -> int:
            async with open_stream(topic, until="end", registry_timeout=10) as stream:
                return len([c async for c in stream])

        return asyncio.run(run())

    def read_batches_async() -> int:
        async def run() -> int:
            async with open_stream(topic, until="end", registry_timeout=10) as stream:
                return sum([b.num_rows async for b in stream.batches()])

        return asyncio.run(run())

    for read in (read_sync, read_async, read_batches_async):
        assert read_in_child(read) == (0, "ok 10"), read.__name__


def test_a_stream_opened_before_a_fork_fails_clearly_in_the_child(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(1)
    produce(cdc, topic, range(10), 1)
    with open_stream(topic) as stream:
        assert next(stream).offset == 0

        def use_inherited() -> int:
            try:
                next(stream)
            finally:
                stream.__exit__(None, None, None)  # closing must not hang either
            return 0

        status, said = read_in_child(use_inherited, timeout=20)
        assert status == 1
        assert said.startswith("ChangeStreamError: this stream was opened in process"), said
        assert "fork" in said, said
        # The parent's stream is unharmed.
        assert next(stream).offset == 1


def count_in_pool(args: tuple[str, str, str]) -> int:
    topic, bootstrap, registry = args
    with ChangeStream(
        topic, bootstrap_servers=bootstrap, schema_registry_url=registry, until="end"
    ) as stream:
        return sum(1 for _ in stream)


def test_multiprocessing_with_fork(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topics = [make_topic(1) for _ in range(3)]
    for n, topic in enumerate(topics):
        produce(cdc, topic, range(n + 1), 1)
    # The parent has used its runtime and the registry before the pool forks.
    with open_stream(topics[2], until="end") as stream:
        assert sum(1 for _ in stream) == 3
    with multiprocessing.get_context("fork").Pool(2) as pool:
        counts = pool.map_async(
            count_in_pool,
            [(t, stack["KAFKA_BOOTSTRAP_SERVERS"], stack["SCHEMA_REGISTRY_URL"]) for t in topics],
        ).get(timeout=60)
    assert counts == [1, 2, 3]
