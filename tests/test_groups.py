"""Consumer groups (issue 4): members join and leave mid-stream, and no change is lost.

Two members of one group read a 6-partition topic while a producer keeps producing; a third
member joins, then one of the first two leaves (``close()``), each rebalance moving partitions
between members; the producer stops once the remaining two have read from every partition
since. Then the remaining members read on until every produced change has been delivered by
some member. Duplicates are allowed (at-least-once:
a change handed out but not finished when its partition moves is delivered again by the new
owner) and reported; a lost change is never delivered and fails the test.

Each member runs in its own thread with its own stream (waits release the GIL).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from cdc import CdcProducer, bottled_water_key_schema, bottled_water_row_schema
from changestream import ChangeStream

PARTITIONS = 6
BATCH = 60  # rows per produce call
PAUSE = 0.1  # between produce calls: some 400 rows a second
MIN_BEFORE_JOIN = 1_200  # rows produced before the third member joins
DEADLINE = 180.0  # for every single wait below; a run takes some 15-40 s

KEY = bottled_water_key_schema("items", [("id", "long")])
ROW = bottled_water_row_schema("items", [("id", "long"), ("name", "string")])

Pos = tuple[int, int]
OpenStream = Callable[..., ChangeStream]

PROTOCOLS = [
    # librdkafka's default: eager range/roundrobin, every member gives up everything.
    pytest.param({}, id="eager"),
    # Incremental: only the partitions that move are revoked.
    pytest.param({"partition.assignment.strategy": "cooperative-sticky"}, id="cooperative"),
    # KIP-848: the broker assigns, incrementally.
    pytest.param({"group.protocol": "consumer"}, id="kip848"),
]


class Member(threading.Thread):
    """One group member: polls its own stream until told to stop, then closes it."""

    def __init__(self, name: str, open_stream: Callable[..., ChangeStream], **options: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.open_stream = open_stream
        self.options = options
        self.delivered: list[Pos] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.stats: dict[str, int] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            with self.open_stream(**self.options) as stream:
                while not self.stop.is_set():
                    change = stream.poll(timeout=0.2)
                    if change is not None:
                        with self.lock:
                            self.delivered.append((change.partition, change.offset))
                self.stats = dict(stream.stats())
        except BaseException as error:  # reported by the test
            self.error = error

    def count(self) -> int:
        with self.lock:
            return len(self.delivered)

    def positions(self) -> set[Pos]:
        with self.lock:
            return set(self.delivered)

    def positions_since(self, index: int) -> set[Pos]:
        with self.lock:
            return set(self.delivered[index:])

    def leave(self) -> None:
        self.stop.set()
        self.join(DEADLINE)
        assert not self.is_alive(), f"{self.name} did not close within {DEADLINE}s"


def wait_until(condition: Callable[[], bool], what: str, members: Sequence[Member] = ()) -> None:
    """Wait for ``condition``; a member whose stream failed meanwhile fails the wait at once,
    with its error (not a timeout that hides it)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        for member in members:
            assert member.error is None, f"{member.name} failed before {what}: {member.error!r}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}; " + ", ".join(
            f"{m.name} alive={m.is_alive()} delivered={m.count()}" for m in members
        )
        time.sleep(0.05)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_members_join_and_leave_mid_stream_and_nothing_is_lost(
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    open_stream: OpenStream,
    protocol: dict[str, str],
) -> None:
    topic = make_topic(PARTITIONS)
    group = f"group-{topic}"
    produced: set[Pos] = set()
    produced_lock = threading.Lock()
    stop_producing = threading.Event()
    producer_error: list[BaseException] = []

    def produce() -> None:
        try:
            b = 0
            while not stop_producing.is_set():
                ids = range(b * BATCH, (b + 1) * BATCH)
                sent = cdc.produce(
                    topic,
                    KEY,
                    ROW,
                    [({"id": i}, {"id": i, "name": f"item {i}"}) for i in ids],
                    partition=lambda key: key["id"] % PARTITIONS,
                )
                with produced_lock:
                    produced.update((d.partition, d.offset) for d in sent)
                b += 1
                time.sleep(PAUSE)
        except BaseException as error:
            producer_error.append(error)

    def produced_count() -> int:
        with produced_lock:
            return len(produced)

    options: dict[str, Any] = {
        "topics": topic,
        "group_id": group,
        "commit_interval": 0.5,
        # Members that leave say so; this only bounds how long a dead one would hold on.
        "kafka": protocol
        if protocol.get("group.protocol")
        else {"session.timeout.ms": 6000, **protocol},
    }
    first, second, third = (Member(name, open_stream, **options) for name in ("m1", "m2", "m3"))
    producer = threading.Thread(target=produce, name="producer", daemon=True)
    members = [first, second, third]
    timeline: list[str] = []
    began = time.monotonic()

    def mark(event: str) -> None:
        timeline.append(
            f"{time.monotonic() - began:5.1f}s {event} ({produced_count()} produced, "
            f"{'/'.join(str(m.count()) for m in members)} delivered)"
        )

    try:
        first.start()
        second.start()
        producer.start()
        mark("m1, m2 and the producer started")
        # Both members own partitions and deliver.
        wait_until(
            lambda: first.count() > 0 and second.count() > 0, "m1 and m2 both deliver", members
        )
        wait_until(lambda: produced_count() >= MIN_BEFORE_JOIN, "enough is produced", members)
        mark("m3 joins")
        third.start()
        # m3 got partitions: the group rebalanced while changes kept coming.
        wait_until(lambda: third.count() > 0, "m3 delivers", members)
        mark("m3 delivers; m2 leaves")
        second.leave()
        at_leave = (first.count(), third.count())
        mark("m2 closed")

        def taken_over() -> bool:
            """m1 and m3 delivered from every partition since m2 left (m2's ones included)."""
            after = first.positions_since(at_leave[0]) | third.positions_since(at_leave[1])
            return {p for p, _ in after} == set(range(PARTITIONS))

        wait_until(taken_over, "m1 and m3 read every partition after m2 left", members)
        mark("m1 and m3 took over m2's partitions; the producer stops")
        stop_producing.set()
        producer.join(DEADLINE)
        assert not producer.is_alive()
        assert not producer_error, producer_error
        mark("producer done")

        def everything_delivered() -> bool:
            return produced <= first.positions() | second.positions() | third.positions()

        # Poll-with-stop-condition: the remaining members read until the union is complete.
        # A lost change is never delivered again, and this wait times out.
        deadline = time.monotonic() + DEADLINE
        while not everything_delivered() and time.monotonic() < deadline:
            assert first.is_alive(), first.error
            assert third.is_alive(), third.error
            time.sleep(0.1)
        mark("remaining members drained")
    finally:
        stop_producing.set()
        for member in members:
            if member.is_alive():
                member.leave()

    errors = {m.name: m.error for m in members if m.error is not None}
    assert not errors, errors
    counts = Counter(p for m in members for p in m.delivered)
    missing = produced - set(counts)
    duplicates = {p: n for p, n in counts.items() if n > 1}
    report = (
        f"{len(produced)} produced, {sum(counts.values())} delivered "
        f"(m1 {len(first.delivered)}, m2 {len(second.delivered)}, m3 {len(third.delivered)}), "
        f"{len(missing)} lost, {sum(n - 1 for n in duplicates.values())} duplicate deliveries "
        f"of {len(duplicates)} changes; stats m1 {first.stats}, m2 {second.stats}, "
        f"m3 {third.stats}; timeline: {'; '.join(timeline)}"
    )
    print("\n" + report)
    assert not missing, f"lost {sorted(missing)[:20]}: {report}"
    assert not set(counts) - produced, report
    # Each member's own counter agrees with what it handed to the application.
    for member in members:
        assert member.stats.get("delivered") == len(member.delivered), report
        assert member.stats.get("rebalances", 0) >= 1, report


@pytest.mark.timeout(600)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_bounded_group_read_ends_when_a_member_joins_mid_read(
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    open_stream: OpenStream,
    protocol: dict[str, str],
) -> None:
    """Two members read a topic to its end (``until="end"``); the second joins while the first
    is still working through the changes (all of them already fetched: its fetch thread has
    seen every partition's end). The group rebalances, the second member reads the partitions
    it takes over from their committed positions, both reads end, and together they deliver
    everything."""
    topic = make_topic(PARTITIONS)
    total = 3_000
    cdc.produce(
        topic,
        KEY,
        ROW,
        [({"id": i}, {"id": i, "name": f"item {i}"}) for i in range(total)],
        partition=lambda key: key["id"] % PARTITIONS,
    )
    options: dict[str, Any] = {
        "topics": topic,
        "group_id": f"group-{topic}",
        "until": "end",
        "commit_interval": 0.5,
        "kafka": protocol,
    }
    limit = 90.0  # for each read to end; m1 alone needs some 12 s
    ended: dict[str, float] = {}
    hung: dict[str, str] = {}
    delivered: dict[str, list[Pos]] = {"m1": [], "m2": []}
    errors: dict[str, BaseException] = {}
    began = time.monotonic()

    def read(name: str, pace: float) -> None:
        try:
            with open_stream(**options) as stream:
                deadline = time.monotonic() + limit
                while True:
                    change = stream.poll(timeout=max(0.0, deadline - time.monotonic()))
                    if change is None:
                        if time.monotonic() < deadline:
                            ended[name] = time.monotonic() - began
                        else:
                            hung[name] = f"positions {stream.positions()}, {stream.stats()}"
                        return
                    delivered[name].append((change.partition, change.offset))
                    time.sleep(pace)  # the application's work
        except BaseException as error:
            errors[name] = error

    first = threading.Thread(target=read, args=("m1", 0.004), daemon=True)
    second = threading.Thread(target=read, args=("m2", 0.0), daemon=True)
    first.start()
    wait_until(lambda: len(delivered["m1"]) >= 300, "m1 delivers")
    joined = time.monotonic() - began
    second.start()
    first.join(limit + 60)
    second.join(limit + 60)
    counts = Counter(delivered["m1"] + delivered["m2"])
    report = (
        f"m2 joined at {joined:.1f}s; ended at {ended}; did not end: {hung}; delivered m1 "
        f"{len(delivered['m1'])}, m2 {len(delivered['m2'])}, distinct {len(counts)} of {total}; "
        f"errors {errors}"
    )
    print("\n" + report)
    assert not errors, report
    assert not hung, report
    assert set(ended) == {"m1", "m2"}, report
    assert len(counts) == total, report
    # m2 took partitions over mid-read (it did not just end with an empty assignment).
    assert delivered["m2"], report
