"""Crash loop (issue 4): a consumer killed with SIGKILL at random moments skips nothing.

50 000 flat-row changes on 6 partitions; a consumer process in a group
(tests/crash_consumer.py) writes each change's position to a file before asking for the
next one, and is killed with SIGKILL 20 times at random moments while it reads, restarted
each time; a last run reads to the end (``until="end"``). Every produced change must be in
the file at least once. Repeats are allowed (at-least-once) and reported.

Run with ``pytest -s`` to see the figures; they are also in the assertion messages.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from cdc import CdcProducer, bottled_water_key_schema, bottled_water_row_schema
from confluent_kafka import Consumer, TopicPartition

CHANGES = 50_000
PARTITIONS = 6
CHUNK = 5_000
KILLS = 20
# Finished positions are committed this often; a kill repeats at most about this much
# reading per partition (plus what was fetched under the previous commit).
COMMIT_INTERVAL = 0.5
# Changes per second the consumer processes (the application's "work"): slow enough that
# the 20 kills land while it is still reading, fast enough to finish in time.
RATE = 1_500.0
KILL_DELAY = (0.2, 2.0)
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0

KEY = bottled_water_key_schema("events", [("id", "long")])
ROW = bottled_water_row_schema(
    "events", [("id", "long"), ("name", "string"), ("amount", "double"), ("flag", "boolean")]
)
HERE = Path(__file__).resolve().parent


def produce_all(cdc: CdcProducer, topic: str) -> set[tuple[int, int]]:
    produced: set[tuple[int, int]] = set()
    for start in range(0, CHANGES, CHUNK):
        records = [
            ({"id": i}, {"id": i, "name": f"event {i}", "amount": i / 4, "flag": i % 3 == 0})
            for i in range(start, start + CHUNK)
        ]
        sent = cdc.produce(topic, KEY, ROW, records, partition=lambda k: k["id"] % PARTITIONS)
        produced.update((d.partition, d.offset) for d in sent)
    assert len(produced) == CHANGES
    return produced


def watch(stream: IO[str], expected: str) -> tuple[threading.Event, threading.Thread]:
    """An event set when the process prints a line starting with ``expected``, and the
    thread reading its output to the end."""
    found = threading.Event()

    def read() -> None:
        for line in stream:
            if line.startswith(expected):
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return found, reader


@pytest.mark.timeout(600)
def test_sigkill_loop_skips_nothing(
    stack: dict[str, str],
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    topic = make_topic(PARTITIONS)
    produced = produce_all(cdc, topic)
    produced_in = time.monotonic() - began
    group = f"crash-{topic}"
    out = tmp_path / "delivered.txt"
    command = [
        sys.executable,
        str(HERE / "crash_consumer.py"),
        "--bootstrap-servers",
        stack["KAFKA_BOOTSTRAP_SERVERS"],
        "--schema-registry-url",
        stack["SCHEMA_REGISTRY_URL"],
        "--topic",
        topic,
        "--group",
        group,
        "--out",
        str(out),
        "--commit-interval",
        str(COMMIT_INTERVAL),
    ]
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    kills = 0
    never_started = 0
    lines_after_kill: list[int] = []
    startups: list[float] = []
    errors = tmp_path / "stderr.txt"
    for _ in range(KILLS):
        spawned = time.monotonic()
        with errors.open("a") as stderr:
            process = subprocess.Popen(
                [*command, "--rate", str(RATE)], stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert process.stdout is not None
        started, reader = watch(process.stdout, "started")
        try:
            if not started.wait(START_TIMEOUT):
                never_started += 1  # nothing left to read (or slow to join): kill anyway
            startups.append(time.monotonic() - spawned)
            time.sleep(rng.uniform(*KILL_DELAY))
        finally:
            process.kill()  # SIGKILL
            process.wait(30)
            reader.join(30)
            process.stdout.close()
        assert process.returncode == -9, (
            f"the consumer exited by itself ({process.returncode}): {errors.read_text()[-3000:]}"
        )
        kills += 1
        lines_after_kill.append(len(out.read_text().splitlines()) if out.exists() else 0)

    drain_began = time.monotonic()
    committed_before_drain, highs = committed_and_ends(stack, topic, group)
    try:
        final = subprocess.run(
            [*command, "--until-end"], capture_output=True, text=True, timeout=DRAIN_TIMEOUT
        )
        drain_outcome = f"exit {final.returncode}: {final.stdout.strip()} {final.stderr[-2000:]}"
        drain_ended = final.returncode == 0 and "done" in final.stdout
    except subprocess.TimeoutExpired:
        drain_outcome = f"did not end within {DRAIN_TIMEOUT}s"
        drain_ended = False
    drained_in = time.monotonic() - drain_began

    lines = out.read_text().splitlines()
    seen = Counter((int(p), int(o)) for p, o in (line.split() for line in lines))
    missing = produced - set(seen)
    unknown = set(seen) - produced
    repeats = {position: n for position, n in seen.items() if n > 1}
    max_repeats = max(seen.values()) - 1
    total_repeats = len(lines) - len(seen)
    wall = time.monotonic() - began
    figures = (
        f"crash loop: {kills} SIGKILLs (seed {seed}, {never_started} before any delivery), "
        f"{CHANGES} changes on {PARTITIONS} partitions, commit_interval={COMMIT_INTERVAL}s, "
        f"rate={RATE:.0f}/s, {len(lines)} deliveries, {len(seen)} distinct, "
        f"{total_repeats} repeated deliveries over {len(repeats)} changes, "
        f"most delivered change delivered {max_repeats + 1} times ({max_repeats} repeats); "
        f"file lines after each kill: {lines_after_kill}; "
        f"seconds from spawn to first delivery: {[round(t, 1) for t in startups]}; "
        f"produced in {produced_in:.1f}s, "
        f"committed before the final run {committed_before_drain} of {highs}, "
        f"final drain {drained_in:.1f}s, wall time {wall:.1f}s"
    )
    print("\n" + figures)
    assert kills == KILLS, figures
    assert not unknown, f"delivered positions never produced: {sorted(unknown)[:20]}; {figures}"
    assert not missing, f"{len(missing)} changes skipped, e.g. {sorted(missing)[:20]}; {figures}"
    assert drain_ended, (
        f"the final until='end' run: {drain_outcome}; committed before it "
        f"{committed_before_drain}, high watermarks {highs}; {figures}"
    )
    # The final run ended at the end and committed it: nothing left for the group.
    assert committed_and_ends(stack, topic, group) == (highs, highs), figures


def committed_and_ends(
    stack: dict[str, str], topic: str, group: str
) -> tuple[list[int], list[int]]:
    """The group's committed offsets and the high watermarks, by partition."""
    consumer = Consumer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"], "group.id": group})
    try:
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30
        )
        highs = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()
    return [tp.offset for tp in committed], highs
