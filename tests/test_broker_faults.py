"""Broker faults (issue 6): the broker goes away mid-stream and comes back; a topic is deleted.

Everything here runs against a Kafka of its own: ``tests/stack/stack.sh`` started with
``CHANGESTREAM_STACK_ENV=<tmp>/faults.env CHANGESTREAM_STACK_SERVICES=kafka`` (see
``tests/stack/instance.py``), once for this module and stopped at its end. The shared
stack's broker is never touched; its schema registry holds the schemas (the registry is
not under test here).

An outage test keeps a producer thread writing while the broker is down (confluent-kafka
buffers locally, ``message.timeout.ms`` outlives the outage, idempotence keeps the log
order) and reads the topic with two streams at once, one in a consumer group and one
with explicit assignment. It checks that iteration pauses, that a blocking ``next()``
in another process still answers Ctrl-C during the outage, that every acknowledged
offset is delivered after the broker returns, and that ``stats()`` counted the
disconnects. Run with ``pytest -s`` to see the figures (pause, repeats, resume time).

The 120 s outage and topic deletion under librdkafka's default metadata settings are
slow: marked ``slow``, they run only with ``make soak``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cdc import CdcProducer, Schema, bottled_water_row_schema
from changestream import ChangeStream, ChangeStreamError, KafkaError
from confluent_kafka import KafkaError as ProducerError
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from stack.instance import StackInstance

slow = pytest.mark.slow

ROW: Schema = bottled_water_row_schema(
    "fault_events", [("id", "long"), ("note", "string"), ("amount", "double")]
)
PARTITIONS = 3
# One message every INTERVAL seconds, round robin over the partitions.
INTERVAL = 0.01
# Produce this long after the broker is back, so the stream reads old and new messages.
AFTER = 3.0
# How long the streams may take to deliver everything once the broker is back.
CATCH_UP = 90.0
# librdkafka setting that makes a deleted topic an error after 1 s instead of 30 s.
FAST_METADATA = {"topic.metadata.propagation.max.ms": 1000}

# librdkafka in the test's own clients logs every refused connection; keep it in logging.
QUIET = logging.getLogger("tests.broker_faults.librdkafka")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInstance]:
    """A Kafka for this module alone, which the tests stop and start."""
    instance = StackInstance(tmp_path_factory.mktemp("faults") / "faults.env", services=("kafka",))
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture
def running(broker: StackInstance) -> StackInstance:
    """The module's broker, started again if an earlier test left it stopped."""
    broker.start_kafka()
    return broker


@pytest.fixture
def admin(running: StackInstance) -> AdminClient:
    config: dict[str, Any] = {"bootstrap.servers": running.bootstrap_servers, "logger": QUIET}
    return AdminClient(config)


@pytest.fixture
def new_topic(admin: AdminClient) -> Callable[[int], str]:
    def create(partitions: int = PARTITIONS) -> str:
        name = f"faults.{uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
            name
        ].result(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = admin.list_topics(name, timeout=10).topics.get(name)
            if (
                meta is not None
                and meta.error is None
                and len(meta.partitions) == partitions
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                return name
            time.sleep(0.1)
        raise AssertionError(f"topic {name} has no leaders")

    return create


# ---------------------------------------------------------------------------- helpers


def event(i: int) -> dict[str, Any]:
    return {"id": i, "note": f"event {i}", "amount": i / 8}


def produce_events(running: StackInstance, cdc: CdcProducer, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": running.bootstrap_servers, "logger": QUIET})
    for i in range(count):
        producer.produce(topic, value=cdc.serialize(topic, ROW, event(i)))
    assert producer.flush(30) == 0


def run_while_the_broker_is_down(
    running: StackInstance, script: str, args: list[str], timeout: float
) -> tuple[str, float]:
    """Run ``script`` with ``args``; once it prints ``ready``, stop the broker and send ``go``.
    Returns what it printed after ``ready`` and how long it ran after ``go``; fails the test when
    it did not end within ``timeout`` or ended badly."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.communicate()
        running.stop_kafka()
        asked = time.monotonic()
        try:
            out, err = child.communicate("go\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the child did not end within {timeout:.0f} s of the broker stopping")
        lasted = time.monotonic() - asked
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, out + err
    return out, lasted


class Producing:
    """A thread that produces one event every INTERVAL, buffering while the broker is down."""

    def __init__(self, bootstrap: str, topic: str, cdc: CdcProducer) -> None:
        self.topic = topic
        self.cdc = cdc
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                # Longer than any outage here: messages wait in the local buffer, not fail.
                "message.timeout.ms": 600_000,
                "linger.ms": 5,
                "logger": QUIET,
            }
        )
        self.acked: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.produced = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="producing", daemon=True)

    def _report(self, error: ProducerError | None, message: Message) -> None:
        with self._lock:
            if error is not None:
                self.errors.append(str(error))
            else:
                partition, offset = message.partition(), message.offset()
                assert partition is not None
                assert offset is not None
                self.acked.append((partition, offset))

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            value = self.cdc.serialize(self.topic, ROW, event(i))
            self.producer.produce(
                self.topic, value=value, partition=i % PARTITIONS, on_delivery=self._report
            )
            self.producer.poll(0)
            self.produced += 1
            i += 1
            time.sleep(INTERVAL)

    def start(self) -> Producing:
        self.cdc.serialize(self.topic, ROW, event(-1))  # register the schema up front
        self._thread.start()
        return self

    def stop(self) -> set[tuple[int, int]]:
        """Stop producing, deliver the buffer, and return every acknowledged position."""
        self._stop.set()
        self._thread.join(timeout=30)
        left = self.producer.flush(120)
        assert left == 0, f"{left} messages still unacknowledged 120 s after the broker returned"
        assert not self.errors, self.errors[:5]
        assert len(self.acked) == self.produced
        return set(self.acked)


@dataclass
class Reading:
    """A thread that iterates a stream and notes when each position arrived."""

    name: str
    open_stream: Callable[[], ChangeStream]
    seen: list[tuple[float, int, int]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Reading:
        self.thread = threading.Thread(target=self._run, name=f"reading-{self.name}", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.open_stream() as stream:
                try:
                    while not self.stop.is_set():
                        change = stream.poll(timeout=0.2)
                        if change is not None:
                            self.seen.append((time.monotonic(), change.partition, change.offset))
                finally:
                    self.stats = dict(stream.stats())
        except BaseException as error:
            self.error = error

    def positions(self) -> set[tuple[int, int]]:
        return {(p, o) for _, p, o in self.seen}

    def wait_for(self, wanted: set[tuple[int, int]] | int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.error is None:
            have = self.positions()
            if (len(have) >= wanted) if isinstance(wanted, int) else wanted <= have:
                return
            time.sleep(0.1)

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), f"{self.name}: the stream did not close within 60 s"


# The start of every child script below: SIGINT raises KeyboardInterrupt, as in a terminal,
# whatever this test was started from (see test_batches); interrupt_in_a_second() sends one and
# notes when in ``sent``.
CHILD_PRELUDE = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import changestream
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sent = []
    def interrupt_in_a_second():
        def interrupt():
            time.sleep(1.0)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
    """
)

# A child that blocks in next() on an idle topic while the broker is down, and is
# interrupted there with SIGINT; it prints the latency and how long next() had blocked.
CTRL_C_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    topic, bootstrap, registry = sys.argv[1:4]
    stream = changestream.ChangeStream(
        topic, bootstrap_servers=bootstrap, schema_registry_url=registry, start="latest"
    )
    print("ready", flush=True)
    sys.stdin.readline()
    interrupt_in_a_second()
    started = time.monotonic()
    try:
        change = next(stream)
        print("change", change.offset, flush=True)
    except KeyboardInterrupt:
        now = time.monotonic()
        print("interrupted", round(now - sent[0], 3), round(now - started, 3), flush=True)
    closing = time.monotonic()
    stream.close()
    print("closed", round(time.monotonic() - closing, 3), flush=True)
    """
)


class CtrlCChild:
    """The CTRL_C_CHILD process: started while the broker is up, interrupted during the outage."""

    def __init__(self, topic: str, bootstrap: str, registry: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_CHILD, topic, bootstrap, registry],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            self.kill()
            assert self.process.stderr is not None
            raise RuntimeError(f"the Ctrl-C child did not start: {self.process.stderr.read()}")

    def interrupt_and_wait(self, timeout: float) -> tuple[float, float, float]:
        """Send ``go``; returns (SIGINT-to-KeyboardInterrupt latency, time blocked, close time)."""
        out, err = self.process.communicate("go\n", timeout=timeout)
        assert self.process.returncode == 0, out + err
        words = dict((line.split()[0], line.split()[1:]) for line in out.splitlines() if line)
        assert "interrupted" in words, out + err
        latency, blocked = (float(x) for x in words["interrupted"])
        return latency, blocked, float(words["closed"][0])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Figures:
    """What one stream did across one outage."""

    name: str
    delivered: int
    missing: int
    repeats: int
    longest_pause: float
    during_outage: int
    resumed_after: float | None
    disconnects: int

    def line(self) -> str:
        resumed = "never" if self.resumed_after is None else f"{self.resumed_after:.1f}s"
        return (
            f"{self.name:>8}: delivered {self.delivered}, missing {self.missing}, repeats "
            f"{self.repeats}, longest pause {self.longest_pause:.1f}s, delivered while down "
            f"{self.during_outage}, first change {resumed} after the broker answered, "
            f"broker_disconnects {self.disconnects}"
        )


def figures(
    reading: Reading, acked: set[tuple[int, int]], down: float, restarting: float, up: float
) -> Figures:
    times = [t for t, _, _ in reading.seen]
    counts = Counter((p, o) for _, p, o in reading.seen)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    after = [t for t in times if t >= up]
    return Figures(
        name=reading.name,
        delivered=len(reading.seen),
        missing=len(acked - set(counts)),
        repeats=sum(n - 1 for n in counts.values()),
        longest_pause=max(gaps, default=0.0),
        # Changes fetched before the stop may still be in the stream's buffer for a moment.
        # The window ends when the restart begins: the broker may serve a fetch before the
        # restart's own readiness check sees it up.
        during_outage=sum(1 for t in times if down + 1.0 < t < restarting),
        resumed_after=(min(after) - up) if after else None,
        disconnects=reading.stats.get("broker_disconnects", 0),
    )


# A group member whose session outlives every outage here keeps its partitions.
LONG_SESSION = {"session.timeout.ms": 240_000}
# The broker's smallest session: the outage always outlasts it, so librdkafka declares the
# assignment lost and the member rejoins when the broker is back.
SHORT_SESSION = {"session.timeout.ms": 6_000}


def broker_outage(
    broker: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    registry_url: str,
    outage: float,
    *,
    expiring: bool,
) -> list[Figures]:
    """Stop the broker mid-stream for ``outage`` seconds; return each stream's figures.

    Streams: ``assigned`` (no group), ``group`` (a session that outlives the outage) and,
    with ``expiring``, ``expiring`` (a group member whose session expires meanwhile).
    """
    topic = new_topic(PARTITIONS)
    idle = new_topic(1)
    bootstrap = broker.bootstrap_servers

    def opener(**options: Any) -> Callable[[], ChangeStream]:
        return lambda: ChangeStream(
            topic, bootstrap_servers=bootstrap, schema_registry_url=registry_url, **options
        )

    def group(kafka: dict[str, Any]) -> Callable[[], ChangeStream]:
        return opener(group_id=f"faults-{uuid4().hex[:8]}", commit_interval=1.0, kafka=kafka)

    child = CtrlCChild(idle, bootstrap, registry_url)
    producing = Producing(bootstrap, topic, cdc).start()
    readers = [Reading("assigned", opener(start="earliest")), Reading("group", group(LONG_SESSION))]
    if expiring:
        readers.append(Reading("expiring", group(SHORT_SESSION)))
    try:
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.wait_for(100, timeout=60)
            assert reader.error is None, reader.error
            assert len(reader.positions()) >= 100, f"{reader.name} did not start reading"

        stopping = time.monotonic()
        broker.stop_kafka()
        down = time.monotonic()
        # During the outage, a blocking next() in another process answers Ctrl-C.
        latency, blocked, closing = child.interrupt_and_wait(timeout=max(outage - 1.0, 5.0))
        time.sleep(max(0.0, down + outage - time.monotonic()))
        restarting = time.monotonic()
        broker.start_kafka()
        up = time.monotonic()

        time.sleep(AFTER)
        acked = producing.stop()
        for reader in readers:
            reader.wait_for(acked, timeout=CATCH_UP)
    finally:
        child.kill()
        with contextlib.suppress(AssertionError):
            producing.stop()
        for reader in readers:
            reader.finish()

    results = [figures(reader, acked, down, restarting, up) for reader in readers]
    print(
        f"\noutage {outage:.0f}s (stop took {down - stopping:.1f}s, broker down "
        f"{up - down:.1f}s until it answered): {len(acked)} messages acknowledged; Ctrl-C "
        f"answered in {latency * 1000:.0f} ms after next() had blocked {blocked:.1f}s, "
        f"close() took {closing:.2f}s"
    )
    for result in results:
        print(result.line())

    for reader in readers:
        if reader.error is not None:
            print(f"{reader.name:>8}: ended with {reader.error!r}")
    assert latency < 1.0, f"Ctrl-C took {latency:.2f}s during the outage"
    assert blocked >= 0.9, "next() returned early instead of waiting for the broker"
    for reader, result in zip(readers, results, strict=True):
        assert reader.error is None, f"{reader.name}: {reader.error!r}"
        assert result.missing == 0, result.line()
        assert result.during_outage == 0, result.line()
        assert result.longest_pause >= outage, result.line()
        assert result.resumed_after is not None, result.line()
        assert result.disconnects > 0, result.line()
    return results


# ------------------------------------------------------------------------------ tests


def test_broker_outage_10s(
    running: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
) -> None:
    broker_outage(running, new_topic, cdc, stack["SCHEMA_REGISTRY_URL"], 10, expiring=False)


def test_broker_outage_30s_and_a_group_session_that_expires(
    running: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
) -> None:
    broker_outage(running, new_topic, cdc, stack["SCHEMA_REGISTRY_URL"], 30, expiring=True)


@slow
def test_broker_outage_120s(
    running: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
) -> None:
    broker_outage(running, new_topic, cdc, stack["SCHEMA_REGISTRY_URL"], 120, expiring=True)


def poll_until_error(stream: ChangeStream, limit: float) -> None:
    """Poll until the stream raises; fail if it has not after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert stream.poll(timeout=0.5) is None
    pytest.fail(f"no error {limit:.0f}s after the topic was deleted: the stream hangs")


def read_until_deleted(
    broker: StackInstance,
    admin: AdminClient,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    registry_url: str,
    *,
    group: bool,
    kafka: dict[str, Any],
    limit: float,
) -> tuple[ChangeStreamError, float]:
    """Read a topic, delete it mid-stream, and return what the stream raised and when."""
    topic = new_topic(2)
    cdc_sent = [(None, event(i)) for i in range(20)]
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "logger": QUIET})
    for i, (_, row) in enumerate(cdc_sent):
        producer.produce(topic, value=cdc.serialize(topic, ROW, row), partition=i % 2)
    assert producer.flush(30) == 0
    options: dict[str, Any] = {"kafka": kafka}
    if group:
        options["group_id"] = f"faults-{uuid4().hex[:8]}"
    stream = ChangeStream(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        schema_registry_url=registry_url,
        **options,
    )
    try:
        assert len([next(stream) for _ in cdc_sent]) == len(cdc_sent)
        admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)
        deleted = time.monotonic()
        with pytest.raises(ChangeStreamError) as caught:
            poll_until_error(stream, limit)
        elapsed = time.monotonic() - deleted
    finally:
        # close() commits, and the commit fails for a deleted topic (see the xfail below).
        with contextlib.suppress(ChangeStreamError):
            stream.close()
    return caught.value, elapsed


@pytest.mark.parametrize("group", [False, True], ids=["assigned", "group"])
def test_deleted_topic_raises_a_fatal_kafka_error(
    running: StackInstance,
    admin: AdminClient,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
    group: bool,
) -> None:
    error, elapsed = read_until_deleted(
        running,
        admin,
        new_topic,
        cdc,
        stack["SCHEMA_REGISTRY_URL"],
        group=group,
        kafka=FAST_METADATA,
        limit=30,
    )
    print(f"\ntopic deleted ({'group' if group else 'assigned'}): {elapsed:.1f}s to {error!r}")
    assert type(error) is KafkaError, repr(error)
    assert error.retriable is False
    assert "Unknown topic or partition" in str(error)
    assert elapsed < 15


@slow
@pytest.mark.parametrize("group", [False, True], ids=["assigned", "group"])
def test_deleted_topic_with_default_metadata_settings(
    running: StackInstance,
    admin: AdminClient,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
    group: bool,
) -> None:
    # librdkafka waits topic.metadata.propagation.max.ms (30 s) before it believes a topic
    # is gone, then reports it at the next metadata refresh.
    error, elapsed = read_until_deleted(
        running,
        admin,
        new_topic,
        cdc,
        stack["SCHEMA_REGISTRY_URL"],
        group=group,
        kafka={},
        limit=150,
    )
    print(f"\ntopic deleted, default settings: {elapsed:.1f}s to {error!r}")
    assert type(error) is KafkaError
    assert error.retriable is False


def test_with_block_reports_the_deletion_not_a_failed_commit(
    running: StackInstance,
    admin: AdminClient,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
) -> None:
    topic = new_topic(1)
    produce_events(running, cdc, topic, 5)

    def follow() -> None:
        with ChangeStream(
            topic,
            bootstrap_servers=running.bootstrap_servers,
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            group_id=f"faults-{uuid4().hex[:8]}",
            kafka=FAST_METADATA,
        ) as stream:
            for _ in range(5):
                next(stream)
            admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)
            poll_until_error(stream, 30)

    with pytest.raises(KafkaError) as caught:
        follow()
    assert "commit" not in str(caught.value), str(caught.value)


# A group member that has read ten changes, then (broker down) commits or closes, which commits.
# librdkafka holds a synchronous commit until the group's coordinator answers, up to the
# session timeout (45 s): Ctrl-C must end the wait, and the process must still exit at once.
CTRL_C_COMMIT_CHILD = CHILD_PRELUDE + textwrap.dedent(
    """
    topic, bootstrap, registry, call = sys.argv[1:5]
    stream = changestream.ChangeStream(
        topic, bootstrap_servers=bootstrap, schema_registry_url=registry,
        group_id="ctrl-c-" + topic, commit="manual" if call == "commit" else "auto",
        commit_interval=3600)
    for _ in zip(range(10), stream):
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    interrupt_in_a_second()
    started = time.monotonic()
    try:
        stream.commit() if call == "commit" else stream.close()
        print("returned", round(time.monotonic() - started, 3), flush=True)
    except KeyboardInterrupt:
        now = time.monotonic()
        print("interrupted", round(now - sent[0], 3), round(now - started, 3), flush=True)
    """
)


@pytest.mark.parametrize("call", ["commit", "close"])
def test_ctrl_c_interrupts_a_commit_waiting_for_the_broker(
    running: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
    call: str,
) -> None:
    topic = new_topic(1)
    produce_events(running, cdc, topic, 10)
    args = [topic, running.bootstrap_servers, stack["SCHEMA_REGISTRY_URL"], call]
    out, lasted = run_while_the_broker_is_down(running, CTRL_C_COMMIT_CHILD, args, timeout=30)
    words = out.split()
    assert words[0] == "interrupted", out
    latency, blocked = float(words[1]), float(words[2])
    print(f"\n{call}: blocked {blocked:.1f}s, Ctrl-C answered in {latency * 1000:.0f} ms")
    assert blocked >= 0.9, f"{call}() returned before the Ctrl-C instead of waiting: {out}"
    assert latency < 1.0, f"Ctrl-C took {latency:.2f}s to interrupt {call}()"
    # The commit goes on in the background; leaving the interpreter does not wait for it.
    assert lasted < 15, f"the child took {lasted:.1f}s to exit"


def test_lag_waits_for_a_restarting_broker_and_counts_as_before(
    running: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
) -> None:
    topic = new_topic(2)
    produce_events(running, cdc, topic, 20)

    def restart_soon() -> None:
        time.sleep(6.0)
        running.start_kafka()

    restart = threading.Thread(target=restart_soon)
    with ChangeStream(
        topic,
        bootstrap_servers=running.bootstrap_servers,
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        until="end",
    ) as stream:
        for _ in range(5):
            next(stream)
        before = stream.lag()
        running.stop_kafka()
        restart.start()
        # Long enough for librdkafka to have lost the broker (and the partitions' leader).
        time.sleep(3.0)
        try:
            # librdkafka answers "unknown partition" at once while the leader is away: lag()
            # asks again until the broker is back (or its 30 s are up), not fail at once.
            started = time.monotonic()
            during = stream.lag()
            waited = time.monotonic() - started
        finally:
            restart.join()
    print(f"\nlag() waited {waited:.1f}s for the broker: {during}")
    assert sorted(before) == [(topic, 0), (topic, 1)]
    assert 15 <= sum(before.values()) <= 16, before
    assert during == before
    assert waited > 2.0, "lag() answered while the broker was down"


# A group member dropped open (garbage, a notebook cell run again) while the broker is down: it
# closes, committing what was finished, which waits for the coordinator up to the session
# timeout (6 s here). Another thread counts meanwhile: the wait must not hold the GIL.
DROPPED_OPEN_CHILD = textwrap.dedent(
    """
    import sys, threading, time, changestream
    topic, bootstrap, registry = sys.argv[1:4]
    stream = changestream.ChangeStream(
        topic, bootstrap_servers=bootstrap, schema_registry_url=registry,
        group_id="dropped-" + topic, commit_interval=3600,
        kafka={"session.timeout.ms": 6000})
    for _ in zip(range(10), stream):
        pass
    print("ready", flush=True)
    sys.stdin.readline()
    ticks = 0
    def count():
        global ticks
        while True:
            time.sleep(0.01)
            ticks += 1
    threading.Thread(target=count, daemon=True).start()
    time.sleep(0.2)
    started, before = time.monotonic(), ticks
    del stream
    print("closed", round(time.monotonic() - started, 3), ticks - before, flush=True)
    """
)


# The same member leaving `async with`: the block's exit closes the stream, which commits and
# waits for the coordinator (up to the 6 s session timeout here). A task ticks on the event
# loop meanwhile: the close must not stand the loop still.
ASYNC_EXIT_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time, changestream
    topic, bootstrap, registry = sys.argv[1:4]
    async def main():
        ticks = 0
        async def count():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        loop = asyncio.get_running_loop()
        outcome = "closed"
        try:
            async with changestream.ChangeStream(
                topic, bootstrap_servers=bootstrap, schema_registry_url=registry,
                group_id="aexit-" + topic, commit_interval=3600,
                kafka={"session.timeout.ms": 6000},
            ) as stream:
                read = 0
                async for _ in stream:
                    read += 1
                    if read == 10:
                        break
                print("ready", flush=True)
                await loop.run_in_executor(None, sys.stdin.readline)
                ticker = asyncio.create_task(count())
                await asyncio.sleep(0.2)
                started, before = time.monotonic(), ticks
        except changestream.KafkaError as error:
            outcome = type(error).__name__
        lasted = time.monotonic() - started
        ticker.cancel()
        print(outcome, round(lasted, 3), ticks - before, flush=True)
    asyncio.run(main())
    """
)


# How each child closes, and what counts meanwhile.
CLOSING_CHILDREN = {"dropped_open": DROPPED_OPEN_CHILD, "async_with": ASYNC_EXIT_CHILD}


@pytest.mark.parametrize("closing", sorted(CLOSING_CHILDREN))
def test_a_closing_commit_waiting_for_the_broker_stands_nothing_else_still(
    running: StackInstance,
    new_topic: Callable[[int], str],
    cdc: CdcProducer,
    stack: dict[str, str],
    closing: str,
) -> None:
    topic = new_topic(1)
    produce_events(running, cdc, topic, 10)
    args = [topic, running.bootstrap_servers, stack["SCHEMA_REGISTRY_URL"]]
    out, _ = run_while_the_broker_is_down(running, CLOSING_CHILDREN[closing], args, timeout=60)
    words = out.split()
    assert words[0] in ("closed", "KafkaError"), out
    lasted, ticks = float(words[1]), int(words[2])
    print(f"\n{closing}: closing ({words[0]}) took {lasted:.1f}s, {ticks} ticks meanwhile")
    assert lasted >= 1.0, f"closing did not wait for the commit ({lasted:.2f}s): {out}"
    # One tick per 10 ms sleep; the GIL held, or the event loop's thread blocked, throughout
    # would leave it near 0.
    assert ticks >= lasted * 20, f"{ticks} ticks in {lasted:.1f}s: closing stood them still"


def test_the_instance_is_not_the_shared_stack(broker: StackInstance, stack: dict[str, str]) -> None:
    assert broker.bootstrap_servers != stack["KAFKA_BOOTSTRAP_SERVERS"]
    assert broker.env["STACK_DIR"] != stack["STACK_DIR"]
    assert Path(broker.env_file).exists()
