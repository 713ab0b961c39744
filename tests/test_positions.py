"""Positions (issue 4): where a stream starts, where a bounded read ends, what is committed.

Every test reads topics of its own on the real Kafka of the stack. Rows are keyed by ``id``
and sent to partition ``id % partitions``, so each test knows which offsets each partition
holds; the assertions compare exact sets of ``(partition, offset)``, so a read that ends one
message early or late, or resumes one message off, fails.

A change is *finished* when the application asks for the next one (or calls ``commit``); the
change handed out last is not finished yet. ``positions()`` and commits cover finished
changes only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from cdc import (
    CdcProducer,
    Delivered,
)
from changestream import Change, ChangeStream
from confluent_kafka import Consumer, Producer, TopicPartition
from group_offsets import committed
from items_rows import KEY, ROW, produce, row

pytestmark = [pytest.mark.timeout(120, func_only=True)]

OpenStream = Callable[..., ChangeStream]
# (partition, offset) of one message in the test's topic.
Pos = tuple[int, int]


def pos(items: Iterable[Change | Delivered]) -> list[Pos]:
    return [(item.partition, item.offset) for item in items]


def next_offsets(topic: str, finished: Iterable[Pos]) -> dict[tuple[str, int], int]:
    """``positions()`` after finishing ``finished``: the next offset of each partition."""
    out: dict[tuple[str, int], int] = {}
    for partition, offset in finished:
        out[(topic, partition)] = max(out.get((topic, partition), 0), offset + 1)
    return out


def assert_positions(
    stream: ChangeStream, topic: str, finished: Sequence[Pos], partitions: int
) -> None:
    """``positions()`` names the next offset after what was finished on each partition, and
    every other owned partition at its start (0 here)."""
    expected = next_offsets(topic, finished)
    got = stream.positions()
    untouched = {key: got[key] for key in got if key not in expected}
    assert {key: got[key] for key in got if key in expected} == expected, (got, expected)
    assert all(value == 0 for value in untouched.values()), (got, expected)
    assert set(got) == {(topic, p) for p in range(partitions)}, got


def drain(stream: ChangeStream, within: float = 30.0) -> list[Change]:
    """Read a bounded stream to its end, failing (not hanging) if it has not ended in time."""
    deadline = time.monotonic() + within
    changes: list[Change] = []
    while True:
        change = stream.poll(timeout=max(0.0, deadline - time.monotonic()))
        if change is None:
            assert time.monotonic() < deadline, (
                f"the bounded read did not end within {within}s; read {pos(changes)}, "
                f"positions {stream.positions()}"
            )
            return changes
        changes.append(change)


# ---------------------------------------------------------------------------
# positions() -> start=
# ---------------------------------------------------------------------------


def test_positions_resume_with_no_gap_and_no_repeat(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(3)
    sent = pos(produce(cdc, topic, range(30), 3))
    assert sorted(sent) == [(p, o) for p in range(3) for o in range(10)]

    with open_stream(topic, start="earliest") as stream:
        # Nothing finished yet: every partition stands where reading starts.
        assert stream.positions() == {(topic, p): 0 for p in range(3)}
        first = [next(stream) for _ in range(12)]
        # The 12th change was handed out but not finished: positions() stops before it.
        assert_positions(stream, topic, pos(first[:11]), 3)
        unfinished = stream.positions()
        # Asking again finishes nothing.
        assert stream.positions() == unfinished
        # commit() finishes the change handed out last (no group: nothing goes to Kafka).
        stream.commit()
        assert_positions(stream, topic, pos(first), 3)
        finished = stream.positions()

    # Resuming from before the commit re-delivers exactly the unfinished change.
    with open_stream(topic, start=unfinished, until="end") as stream:
        again = drain(stream)
    assert sorted(pos(again)) == sorted(set(sent) - set(pos(first[:11])))

    # Resuming from after it: the union is everything, the intersection empty.
    with open_stream(topic, start=finished, until="end") as stream:
        rest = drain(stream)
        # (Whether partitions with nothing new are reported is checked below.)
        assert set(stream.positions().values()) == {10}
    assert not set(pos(first)) & set(pos(rest))
    assert len(pos(rest)) == len(set(pos(rest))), "a change was delivered twice"
    assert sorted(pos(first) + pos(rest)) == sorted(sent)
    assert [c.after for c in rest] == [row(c.key["id"]) for c in rest]


def test_asking_for_the_next_change_finishes_the_previous_one(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(1)
    produce(cdc, topic, range(5), 1)
    with open_stream(topic, start="earliest") as stream:
        first = next(stream)
        assert first.offset == 0
        # Handed out, not finished: the partition still stands at its start.
        assert stream.positions() == {(topic, 0): 0}
        second = next(stream)
        assert second.offset == 1
        assert stream.positions() == {(topic, 0): 1}
        assert stream.poll(timeout=10) is not None
        assert stream.positions() == {(topic, 0): 2}


def test_positions_of_a_resumed_read_cover_partitions_with_nothing_new(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """The Airflow pattern: each run starts at the positions the previous run saved.

    Run 2 gets new rows on partition 0 only; the positions it saves must still hold
    partition 1's position, or run 3 re-reads partition 1 from the beginning.
    """
    topic = make_topic(2)
    produce(cdc, topic, range(10), 2)  # 5 rows on each partition
    with open_stream(topic, start="earliest", until="end") as stream:
        run1 = drain(stream)
        saved1 = stream.positions()
    assert len(run1) == 10
    assert saved1 == {(topic, 0): 5, (topic, 1): 5}

    new = pos(produce(cdc, topic, [10, 12, 14], 2))  # partition 0 only
    with open_stream(topic, start=saved1, until="end") as stream:
        run2 = drain(stream)
        saved2 = stream.positions()
    assert sorted(pos(run2)) == sorted(new) == [(0, 5), (0, 6), (0, 7)]
    assert saved2.get((topic, 0)) == 8

    with open_stream(topic, start=saved2, until="end") as stream:
        run3 = drain(stream)
    assert pos(run3) == [], f"run 3 re-delivered {pos(run3)} (run 2 saved {saved2})"
    assert saved2 == {(topic, 0): 8, (topic, 1): 5}


# ---------------------------------------------------------------------------
# Bounded reads: until="end"
# ---------------------------------------------------------------------------


def produce_transactions(
    cdc: CdcProducer, stack: dict[str, str], topic: str
) -> tuple[set[int], set[int]]:
    """Transactions that commit and abort on two partitions; returns (committed, aborted) ids.

    Partition 0's log ends with an aborted transaction (its rows, then the abort marker);
    partition 1's ends with a commit marker after committed rows. Each partition's high
    watermark is therefore one past a control record, never one past a data message.
    """
    producer = Producer(
        {
            "bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"],
            "transactional.id": f"tx-{topic}",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(30)
    committed_ids: set[int] = set()
    aborted_ids: set[int] = set()

    def transaction(ids: Sequence[int], partition: int, commit: bool) -> None:
        producer.begin_transaction()
        for i in ids:
            producer.produce(
                topic,
                key=cdc.serialize(topic, KEY, {"id": i}, is_key=True),
                value=cdc.serialize(topic, ROW, row(i)),
                partition=partition,
            )
        # Abort purges messages still queued in the producer: flush first, so the aborted
        # rows really are in the log (and the partition gets an abort marker).
        assert producer.flush(30) == 0
        if commit:
            producer.commit_transaction(30)
            committed_ids.update(ids)
        else:
            producer.abort_transaction(30)
            aborted_ids.update(ids)

    transaction([0, 1, 2], 0, commit=True)
    transaction([3, 4], 1, commit=True)
    transaction([5, 6, 7], 0, commit=False)  # aborted in the middle of partition 0
    transaction([8, 9], 0, commit=True)
    transaction([10, 11], 1, commit=False)  # aborted in the middle of partition 1
    transaction([12], 1, commit=True)  # partition 1 ends with a commit marker
    transaction([13, 14, 15], 0, commit=False)  # partition 0 ends with an abort marker
    assert producer.flush(30) == 0
    return committed_ids, aborted_ids


@pytest.mark.timeout(90, func_only=True)
def test_until_end_with_committed_and_aborted_transactions(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(2)
    committed_ids, aborted_ids = produce_transactions(cdc, stack, topic)

    # The log: 7 transactions of 16 rows, each closed by a control record.
    probe = Consumer(
        {"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"], "group.id": f"probe-{topic}"}
    )
    try:
        highs = [
            probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in (0, 1)
        ]
    finally:
        probe.close()
    # partition 0: 3+1, 3+1, 2+1, 3+1 = 15; partition 1: 2+1, 2+1, 1+1 = 8
    assert highs == [15, 8]

    for kafka in ({"isolation.level": "read_committed"}, {}):
        # librdkafka's default isolation level is read_committed: same result without setting it.
        with open_stream(topic, start="earliest", until="end", kafka=kafka) as stream:
            changes = drain(stream)
        ids = [c.key["id"] for c in changes]
        assert sorted(ids) == sorted(committed_ids), kafka
        assert len(ids) == len(set(ids)), kafka
        assert not set(ids) & aborted_ids

    # read_uncommitted sees the aborted rows too, and still ends past the last marker.
    with open_stream(
        topic, start="earliest", until="end", kafka={"isolation.level": "read_uncommitted"}
    ) as stream:
        changes = drain(stream)
    assert sorted(c.key["id"] for c in changes) == sorted(committed_ids | aborted_ids)


@pytest.mark.timeout(90, func_only=True)
def test_until_end_stops_before_a_transaction_still_open(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    """read_committed: the end is what a read_committed consumer can see (the last stable
    offset), so a transaction left open does not hold the bounded read up."""
    topic = make_topic(1)
    before = pos(produce(cdc, topic, range(3), 1))
    producer = Producer(
        {"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"], "transactional.id": f"tx-{topic}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    try:
        for i in range(3, 6):
            producer.produce(
                topic,
                key=cdc.serialize(topic, KEY, {"id": i}, is_key=True),
                value=cdc.serialize(topic, ROW, row(i)),
                partition=0,
            )
        assert producer.flush(30) == 0
        started = time.monotonic()
        with open_stream(topic, until="end") as stream:
            assert pos(drain(stream)) == before
        assert time.monotonic() - started < 20
    finally:
        producer.abort_transaction(30)


@pytest.mark.timeout(90, func_only=True)
def test_until_end_with_a_group_ends_after_transaction_markers(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(2)
    committed_ids, _ = produce_transactions(cdc, stack, topic)
    group = f"group-{topic}"
    with open_stream(topic, group_id=group, until="end") as stream:
        ids = [c.key["id"] for c in drain(stream)]
    assert sorted(ids) == sorted(committed_ids)
    # Partition 0: ids 0-2 at 0-2, marker 3, aborted 4-6, marker 7, ids 8-9 at 8-9, marker 10,
    # aborted 11-13, marker 14. Partition 1: ids 3-4 at 0-1, marker 2, aborted 3-4, marker 5,
    # id 12 at 6, marker 7. What close() commits is past the last committed row (or past the
    # markers after it), never before it.
    offsets = committed(stack, group, topic, 2)
    assert 10 <= offsets[0] <= 15, offsets
    assert 7 <= offsets[1] <= 8, offsets
    # A second bounded read of the group finds nothing and ends.
    with open_stream(topic, group_id=group, until="end") as stream:
        assert drain(stream) == []


@pytest.mark.parametrize("grouped", [False, True], ids=["no-group", "group"])
def test_until_end_with_an_empty_partition(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream, grouped: bool
) -> None:
    topic = make_topic(3)
    # Partitions 0 and 2 get 7 and 4 rows; partition 1 stays empty.
    ids = [i for i in range(21) if i % 3 == 0] + [i for i in range(12) if i % 3 == 2]
    sent = pos(produce(cdc, topic, ids, 3))
    assert sorted(sent) == [(0, o) for o in range(7)] + [(2, o) for o in range(4)]
    options: dict[str, Any] = {"group_id": f"group-{topic}"} if grouped else {}
    with open_stream(topic, until="end", **options) as stream:
        changes = drain(stream)
        assert_positions(stream, topic, sent, 3)
    assert sorted(pos(changes)) == sorted(sent)


def test_until_end_ignores_messages_produced_after_the_start(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(3)
    before = pos(produce(cdc, topic, range(9), 3))
    with open_stream(topic, until="end") as stream:
        # Without a group the ends are fixed when the stream opens.
        after = pos(produce(cdc, topic, range(9, 18), 3))
        first = next(stream)
        pos(produce(cdc, topic, range(18, 24), 3))
        changes = [first, *drain(stream)]
    assert sorted(pos(changes)) == sorted(before)
    assert not set(pos(changes)) & set(after)


def test_until_end_with_a_group_fixes_the_end_when_assigned(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(2)
    before = pos(produce(cdc, topic, range(6), 2))
    with open_stream(topic, group_id=f"group-{topic}", until="end") as stream:
        first = next(stream)  # the group assigned the partitions: their ends are fixed
        later = pos(produce(cdc, topic, range(6, 12), 2))
        changes = [first, *drain(stream)]
    assert sorted(pos(changes)) == sorted(before)
    assert not set(pos(changes)) & set(later)


def test_a_group_bounded_read_ends_on_a_partition_with_nothing_new(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    """Partition 0 is fully committed when the second read starts: it is at its end at once."""
    topic = make_topic(2)
    group = f"group-{topic}"
    first = pos(produce(cdc, topic, range(8), 2))
    with open_stream(topic, group_id=group, until="end") as stream:
        assert sorted(pos(drain(stream))) == sorted(first)
    new = pos(produce(cdc, topic, [1, 3, 5], 2))  # partition 1 only
    with open_stream(topic, group_id=group, until="end") as stream:
        assert sorted(pos(drain(stream))) == sorted(new) == [(1, 4), (1, 5), (1, 6)]


# ---------------------------------------------------------------------------
# Bounded reads and starts by time
# ---------------------------------------------------------------------------


def test_until_and_start_at_a_time(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(3)
    batch_a = pos(produce(cdc, topic, range(12), 3))
    time.sleep(0.3)
    t = datetime.now(timezone.utc)
    time.sleep(0.3)
    batch_b = pos(produce(cdc, topic, range(12, 21), 3))

    with open_stream(topic, until=t) as stream:
        assert sorted(pos(drain(stream))) == sorted(batch_a)
    with open_stream(topic, start=t, until="end") as stream:
        assert sorted(pos(drain(stream))) == sorted(batch_b)
    # A group reading until t ends there too.
    with open_stream(topic, group_id=f"group-{topic}", until=t) as stream:
        assert sorted(pos(drain(stream))) == sorted(batch_a)


def test_time_bounds_at_exact_message_timestamps(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    """Messages with chosen timestamps: ``until=t`` stops *at* the first message at or after t,
    ``start=t`` starts there; a partition with nothing before or after t ends or starts at once.
    """
    topic = make_topic(3)
    base = 1_700_000_000_000
    t = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=base + 5)
    # Partition 0: base+0 .. base+9 (offset 5 is exactly t); partition 1: all before t;
    # partition 2: all at or after t.
    stamps = {
        0: [base + i for i in range(10)],
        1: [base - 10, base - 5, base + 4],
        2: [base + 5, base + 6],
    }
    producer = Producer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"]})
    before: list[Pos] = []
    after: list[Pos] = []
    for partition, times in stamps.items():
        for offset, ms in enumerate(times):
            i = 100 * partition + offset
            producer.produce(
                topic,
                key=cdc.serialize(topic, KEY, {"id": i}, is_key=True),
                value=cdc.serialize(topic, ROW, row(i)),
                partition=partition,
                timestamp=ms,
            )
            (before if ms < base + 5 else after).append((partition, offset))
        assert producer.flush(30) == 0
    assert len(before) == 8
    assert len(after) == 7

    with open_stream(topic, until=t) as stream:
        got = drain(stream)
        assert sorted(pos(got)) == sorted(before)
        assert all(c.timestamp is not None and c.timestamp < t for c in got)
    with open_stream(topic, start=t, until="end") as stream:
        got = drain(stream)
        assert sorted(pos(got)) == sorted(after)
        assert all(c.timestamp is not None and c.timestamp >= t for c in got)
    # A start after every message: nothing; an until before every message: nothing.
    late = t + timedelta(days=1)
    with open_stream(topic, start=late, until="end") as stream:
        assert drain(stream) == []
    with open_stream(topic, until=t - timedelta(days=1)) as stream:
        assert drain(stream) == []


# ---------------------------------------------------------------------------
# Commits
# ---------------------------------------------------------------------------


def test_manual_commit_commits_only_through_the_given_change(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    group = f"group-{topic}"
    produce(cdc, topic, range(10), 1)
    with open_stream(topic, group_id=group, commit="manual", commit_interval=0.2) as stream:
        changes = [next(stream) for _ in range(7)]
        assert pos(changes) == [(0, o) for o in range(7)]
        # Several commit intervals pass while the application asks for more: nothing is
        # committed, nothing finished.
        assert stream.poll(timeout=1.0) is not None
        assert stream.positions() == {(topic, 0): 0}
        assert stream.stats()["committed"] == 0
        assert committed(stack, group, topic, 1)[0] < 0
        stream.commit(changes[3])
        assert stream.positions() == {(topic, 0): 4}
        assert committed(stack, group, topic, 1) == {0: 4}
        assert stream.stats()["committed"] == 4, stream.stats()
    # close() committed nothing more.
    assert committed(stack, group, topic, 1) == {0: 4}
    with open_stream(topic, group_id=group) as stream:
        assert next(stream).offset == 4


def test_manual_commit_without_a_change_commits_through_the_last_one(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    group = f"group-{topic}"
    produce(cdc, topic, range(6), 1)
    with open_stream(topic, group_id=group, commit="manual") as stream:
        for _ in range(3):
            next(stream)
        stream.commit()
        assert committed(stack, group, topic, 1) == {0: 3}
        next(stream)
    assert committed(stack, group, topic, 1) == {0: 3}


def test_auto_commit_commits_finished_changes_every_interval_and_on_close(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    topic = make_topic(1)
    group = f"group-{topic}"
    produce(cdc, topic, range(10), 1)
    with open_stream(topic, group_id=group, commit_interval=0.2) as stream:
        for _ in range(5):
            next(stream)
        # The 5th change (offset 4) is handed out, not finished: the periodic commit stops at 4.
        deadline = time.monotonic() + 10
        while committed(stack, group, topic, 1)[0] != 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert committed(stack, group, topic, 1) == {0: 4}
        assert stream.stats()["committed"] == 4
        next(stream)
    # close() commits what the last next() finished (offset 4), not the change handed out last.
    assert committed(stack, group, topic, 1) == {0: 5}


def test_a_bounded_read_commits_every_interval_after_everything_is_fetched(
    cdc: CdcProducer,
    stack: dict[str, str],
    make_topic: Callable[..., str],
    open_stream: OpenStream,
) -> None:
    """A bounded read fetches a small topic at once; the application then works through it.
    What it finishes is still committed every interval, not only on close (a crash before
    close would otherwise repeat everything)."""
    topic = make_topic(1)
    group = f"group-{topic}"
    produce(cdc, topic, range(200), 1)
    with open_stream(topic, group_id=group, until="end", commit_interval=0.2) as stream:
        for _ in range(50):
            next(stream)
        time.sleep(1.0)  # the fetch thread has long seen the end
        deadline = time.monotonic() + 10
        while committed(stack, group, topic, 1)[0] != 49 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert committed(stack, group, topic, 1) == {0: 49}, stream.stats()
        assert len(drain(stream)) == 150
    assert committed(stack, group, topic, 1) == {0: 200}


# ---------------------------------------------------------------------------
# Visibility
# ---------------------------------------------------------------------------


def test_lag_is_the_high_watermark_minus_the_finished_position(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(2)
    produce(cdc, topic, range(20), 2)  # 10 rows on each partition
    with open_stream(topic, start="earliest", until="end") as stream:
        first = next(stream)
        # Nothing finished yet (the fetch thread may well have fetched everything).
        assert stream.lag() == {(topic, 0): 10, (topic, 1): 10}
        taken = [first] + [next(stream) for _ in range(6)]
        finished = next_offsets(topic, pos(taken[:-1]))
        assert stream.lag() == {(topic, p): 10 - finished.get((topic, p), 0) for p in range(2)}, (
            pos(taken)
        )
        rest = drain(stream)
        assert len(taken) + len(rest) == 20
        assert stream.lag() == {(topic, 0): 0, (topic, 1): 0}


def test_lag_of_a_resumed_read_counts_from_its_start(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(1)
    produce(cdc, topic, range(10), 1)
    with open_stream(topic, start={(topic, 0): 6}) as stream:
        assert next(stream).offset == 6
        assert stream.lag() == {(topic, 0): 4}
        next(stream)
        assert stream.lag() == {(topic, 0): 3}


def test_stats_count_delivered_and_committed(
    cdc: CdcProducer, make_topic: Callable[..., str], open_stream: OpenStream
) -> None:
    topic = make_topic(2)
    produce(cdc, topic, range(20), 2)
    with open_stream(topic, group_id=f"group-{topic}", commit_interval=60) as stream:
        for _ in range(7):
            next(stream)
        stats = stream.stats()
        assert stats["delivered"] == 7
        assert stats["committed"] == 0  # the interval has not passed
        assert stats["skipped"] == 0
        assert stats["dead_lettered"] == 0
        assert stats["commit_failures"] == 0
        stream.commit()
        assert stream.stats()["committed"] == 7
        changes = [next(stream) for _ in range(13)]
        assert stream.poll(timeout=0.5) is None
        stats = stream.stats()
        assert stats["delivered"] == 20
        assert stats["rebalances"] >= 1
        assert stats["dropped_on_revoke"] == 0
        # The poll that timed out finished the 20th change; commit() sends it.
        stream.commit()
        assert stream.stats()["committed"] == 20
    assert len(changes) == 13
