"""Produce -> Python latency at a steady rate: changestream beside confluent-kafka.

    .venv/bin/python benches/latency.py [--rate 1000] [--seconds 20] [--warmup 2]
                                        [--only e,f,g,b] [--repeat K]

(``benches/bench.py --latency-only`` runs the same and writes it into results.md.)

For each variant in turn, a producer (confluent-kafka, values encoded with fastavro's
``schemaless_writer``, never by changestream) sends Debezium envelopes of the benchmark's
``orders`` table (ops c/u/d as in datagen.py) at RATE events/s for SECONDS to a topic of 3
partitions made for this run (one topic for every variant; each reads only what is sent for it).
Each event carries its send time: the row's ``created_at`` (a Debezium ``MicroTimestamp``) is
set to the wall clock, in microseconds, just before the event is encoded and produced. The
variant runs in a process of its own, reads from the topic's end offsets taken before the
producer starts, with its library's default settings, and for each event takes the wall
clock again once the decoded event is in Python. Producer and consumer run on the same
machine, so both readings come from the same clock. Events sent in the first WARMUP seconds
are left out; p50, p99 and max of the rest are reported, in milliseconds. The topic's
message timestamps are the broker's append times (``LogAppendTime``): the p99 from there to
Python is the consumer's part. A probe process sleeping 1 ms at a time runs alongside and
reports how late it woke up, the wait for a CPU on a shared machine.

The producer sends each event at once (``linger.ms=0``; librdkafka's default waits 5 ms to
batch), so the figures are the broker-to-Python path plus one produce request, not the
producer's batching.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import subprocess
import sys
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datagen  # noqa: E402

RATE = 1_000  # events/s
SECONDS = 20.0
WARMUP_S = 2.0
PARTITIONS = 3
READY_TIMEOUT_S = 60.0

LATENCY_VARIANTS: dict[str, str] = {
    "e": "changestream iterator",
    "f": "changestream async for",
    "g": "changestream batches(), default max_wait (1 s)",
    "b": "confluent-kafka poll() + AvroDeserializer",
}

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)

# Per event: when it was in Python (ns since the epoch), its send time (created_at) and the
# broker's append time (the message timestamp), each as the client gives them.
Seen = tuple[int, Any, Any]


# ---------------------------------------------------------------------------
# The consumer side: one variant per process
# ---------------------------------------------------------------------------


def _micros(value: Any) -> int:
    """A time as microseconds since the epoch, from an int of them or a datetime (naive: UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - EPOCH) // MICROSECOND
    return int(value)


def _column_micros(column: Any) -> list[int]:
    """An Arrow timestamp column as microseconds since the epoch."""
    import pyarrow

    micros = column.cast(pyarrow.timestamp("us", column.type.tz)).cast(pyarrow.int64())
    return list(micros.to_pylist())


def _ready() -> None:
    print("ready", flush=True)


def consume_changestream(
    variant: str,
    topic: str,
    count: int,
    start: dict[tuple[str, int], int],
    bootstrap: str,
    registry: str,
) -> list[Seen]:
    """What the changestream ``variant`` saw of each event."""
    from changestream import ChangeStream

    def open_stream() -> Any:
        return ChangeStream(
            topic, bootstrap_servers=bootstrap, schema_registry_url=registry, start=start
        )

    seen: list[Seen] = []
    if variant == "e":
        with open_stream() as stream:
            _ready()
            for change in stream:
                row = change.after or change.before
                seen.append((time.time_ns(), row["created_at"], change.timestamp))
                if len(seen) == count:
                    break
    elif variant == "f":

        async def main() -> None:
            async with open_stream() as stream:
                _ready()
                async for change in stream:
                    row = change.after or change.before
                    seen.append((time.time_ns(), row["created_at"], change.timestamp))
                    if len(seen) == count:
                        break

        asyncio.run(main())
    elif variant == "g":
        import pyarrow

        with open_stream() as stream:
            _ready()
            for batch in stream.batches():
                arrived = time.time_ns()
                record_batch = pyarrow.record_batch(batch)
                created, appended = (
                    _column_micros(record_batch.column(name))
                    for name in ("created_at", "_timestamp")
                )
                seen += [(arrived, c, a) for c, a in zip(created, appended, strict=True)]
                if len(seen) >= count:
                    break
    else:
        raise ValueError(f"no changestream variant {variant!r}")
    return seen


def consume_confluent(
    topic: str, count: int, start: dict[tuple[str, int], int], bootstrap: str, registry: str
) -> list[Seen]:
    """What confluent-kafka, with its defaults and one poll() per message, saw of each event."""
    from confluent_kafka import Consumer, TopicPartition

    with warnings.catch_warnings(record=True):  # authlib's deprecated httpx integration
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient({"url": registry})
    deserialize = AvroDeserializer(client)
    context = SerializationContext(topic, MessageField.VALUE)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"latency-{uuid.uuid4()}"})
    consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in start.items()])
    _ready()
    seen: list[Seen] = []
    try:
        while len(seen) < count:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error() is not None:
                raise RuntimeError(str(message.error()))
            value = deserialize(message.value(), context)
            row = value["after"] or value["before"]
            seen.append((time.time_ns(), row["created_at"], message.timestamp()[1] * 1000))
    finally:
        consumer.close()
    return seen


def consume(argv: list[str]) -> int:
    """``latency.py --consume VARIANT TOPIC COUNT START_JSON BOOTSTRAP REGISTRY WARMUP_S``."""
    variant, topic, count_text, start_json, bootstrap, registry, warmup_text = argv
    count = int(count_text)
    start = {(topic, int(p)): offset for p, offset in json.loads(start_json).items()}
    if variant == "b":
        seen = consume_confluent(topic, count, start, bootstrap, registry)
    else:
        seen = consume_changestream(variant, topic, count, start, bootstrap, registry)
    if len(seen) != count:
        raise RuntimeError(f"read {len(seen)} events, expected {count}")
    warmup_us = float(warmup_text) * 1e6
    # (arrival, sent, appended), microseconds since the epoch
    events = [
        (arrived / 1000, _micros(sent), _micros(appended)) for arrived, sent, appended in seen
    ]
    first_sent = min(sent for _, sent, _ in events)
    measured = [e for e in events if e[1] >= first_sent + warmup_us]
    result = {
        "variant": variant,
        "events": count,
        **summary(sorted((arrived - sent) / 1000 for arrived, sent, _ in measured)),
        "from_append": summary(
            sorted((arrived - appended) / 1000 for arrived, _, appended in measured)
        ),
    }
    print(json.dumps(result), flush=True)
    return 0


def probe(seconds: float) -> int:
    """``latency.py --probe SECONDS``: sleep 1 ms at a time and print how late the wake-ups
    were: the wait for a CPU that every process of the pipeline pays on a busy machine."""
    late: list[float] = []
    end = time.perf_counter() + seconds
    while (before := time.perf_counter()) < end:
        time.sleep(0.001)
        late.append((time.perf_counter() - before) * 1000 - 1)
    print(json.dumps(summary(sorted(late))), flush=True)
    return 0


def summary(latencies_ms: list[float]) -> dict[str, Any]:
    """p50, p99, max and the count of sorted latencies in ms (nearest-rank percentiles)."""
    if not latencies_ms:
        raise RuntimeError("no events after the warm-up")

    def percentile(p: float) -> float:
        rank = max(1, -(-len(latencies_ms) * p // 100))
        return latencies_ms[int(rank) - 1]

    return {
        "measured": len(latencies_ms),
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": latencies_ms[-1],
    }


# ---------------------------------------------------------------------------
# The producer side and the runs
# ---------------------------------------------------------------------------


class Source:
    """A topic made for one latency run, with its schemas registered, and a producer for it."""

    def __init__(self, bootstrap: str, registry_url: str) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic  # re-exported by confluent_kafka.admin, untyped

        with warnings.catch_warnings(record=True):  # authlib's deprecated httpx integration
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

        self.bootstrap = bootstrap
        self.topic = f"bench.latency.{uuid.uuid4().hex[:12]}"
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in self._admin.create_topics(
            [
                NewTopic(
                    self.topic,
                    num_partitions=PARTITIONS,
                    replication_factor=1,
                    # The message timestamp is the broker's append time: the latency splits
                    # into producer + broker and broker -> Python.
                    config={"message.timestamp.type": "LogAppendTime"},
                )
            ]
        ).values():
            future.result(timeout=120)
        key_schema, value_schema = datagen.SCHEMAS["debezium"]
        registry = SchemaRegistryClient({"url": registry_url})
        key_id = registry.register_schema(
            f"{self.topic}-key", Schema(json.dumps(key_schema), "AVRO")
        )
        value_id = registry.register_schema(
            f"{self.topic}-value", Schema(json.dumps(value_schema), "AVRO")
        )
        registry.close()
        self.encode_key = datagen.encoder(key_schema, key_id)
        self.encode_value = datagen.encoder(value_schema, value_id)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.sent = 0

    def end_offsets(self) -> dict[int, int]:
        """Each partition's high watermark: where a consumer starts to read only what comes."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-probe"})
        try:
            return {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1]
                for p in range(PARTITIONS)
            }
        finally:
            consumer.close()

    def send(self, rate: float, count: int) -> float:
        """Send ``count`` events at ``rate`` per second, each stamped with its send time; the
        rate reached."""
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        # A different seed per call: keys (and so partitions) vary from one variant to the next
        # as little as their order does.
        events = datagen.events("debezium", count, seed=self.sent)
        started = time.perf_counter()
        for i, (key, value) in enumerate(events):
            pause = started + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            row = value["after"] or value["before"]
            row["created_at"] = time.time_ns() // 1000
            self.producer.produce(
                self.topic,
                key=self.encode_key(key),
                value=self.encode_value(value),
                on_delivery=delivered,
            )
            self.producer.poll(0)
        reached = count / (time.perf_counter() - started)
        remaining = self.producer.flush(30)
        self.sent += count
        if remaining or failures:
            raise RuntimeError(f"producing: {remaining} undelivered, errors {failures[:3]}")
        return reached

    def delete(self) -> None:
        for future in self._admin.delete_topics([self.topic], operation_timeout=60).values():
            future.result(timeout=120)


def run_variant(
    variant: str,
    source: Source,
    registry: str,
    *,
    rate: float,
    seconds: float,
    warmup: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One variant against ``source``: its figures, or {"error": ...}."""
    count = int(rate * seconds)
    start = source.end_offsets()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--consume",
        variant,
        source.topic,
        str(count),
        json.dumps(start),
        source.bootstrap,
        registry,
        str(warmup),
    ]
    load = os.getloadavg()[0]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    prober: subprocess.Popen[str] | None = None
    try:
        readable, _, _ = select.select([child.stdout], [], [], READY_TIMEOUT_S)
        line = child.stdout.readline() if readable and child.stdout else ""
        if line.strip() != "ready":
            child.kill()
            _, err = child.communicate()
            tail = (err.strip().splitlines() or ["not ready"])[-1]
            return {"error": tail[:200], "load_1m": load}
        # Let the consumer send its first fetch requests before the first event goes out.
        time.sleep(1.0)
        prober = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--probe", str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        reached = source.send(rate, count)
        out, err = child.communicate(timeout=seconds + 120)
        probed, _ = prober.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        return {"error": "timed out", "load_1m": load}
    finally:
        for process in (child, prober):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    if child.returncode != 0:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200], "load_1m": load}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(load_1m=load, load_1m_end=os.getloadavg()[0], rate_sent=reached)
    if prober.returncode == 0:
        result["scheduler_delay"] = json.loads(probed.strip().splitlines()[-1])
    return result


def measure(
    variants: list[str],
    bootstrap: str,
    registry: str,
    *,
    rate: float = RATE,
    seconds: float = SECONDS,
    warmup: float = WARMUP_S,
    repeat: int = 1,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every variant ``repeat`` times, one after the other, on one new topic (deleted after).

    The record: the settings and, per variant, every run's figures.
    """
    source = Source(bootstrap, registry)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        # Nobody reads these: the first variant then meets partitions already written to.
        source.send(rate, int(rate * warmup))
        for index in range(repeat):
            for variant in variants:
                result = run_variant(
                    variant, source, registry, rate=rate, seconds=seconds, warmup=warmup, env=env
                )
                runs[variant].append(result)
                if "error" in result:
                    shown = f"FAILED: {result['error']}"
                else:
                    shown = (
                        f"p50 {result['p50_ms']:7.2f}  p99 {result['p99_ms']:7.2f}  "
                        f"max {result['max_ms']:8.2f} ms  "
                        f"({result['rate_sent']:,.0f} events/s sent)"
                    )
                print(
                    f"  latency [{index + 1}/{repeat}] ({variant}) {shown}  "
                    f"(load {result['load_1m']:.2f})",
                    file=sys.stderr,
                )
    finally:
        source.producer.flush(30)
        source.delete()
    return {
        "rate": rate,
        "seconds": seconds,
        "warmup_s": warmup,
        "partitions": PARTITIONS,
        "repeat": repeat,
        "runs": runs,
    }


def main() -> int:
    if sys.argv[1:2] == ["--consume"]:
        return consume(sys.argv[2:])
    if sys.argv[1:2] == ["--probe"]:
        return probe(float(sys.argv[2]))
    import bench  # the stack's addresses
    import report

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=RATE, help="events per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long to send")
    parser.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds left out")
    parser.add_argument("--only", default=",".join(LATENCY_VARIANTS), help="e.g. e,b")
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    args = parser.parse_args()
    variants = [v.strip() for v in args.only.split(",") if v.strip()]
    if any(v not in LATENCY_VARIANTS for v in variants):
        parser.error(f"unknown variant in {variants}; known: {','.join(LATENCY_VARIANTS)}")
    bootstrap, registry = bench.stack_addresses()
    record = measure(
        variants,
        bootstrap,
        registry,
        rate=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        repeat=args.repeat,
    )
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
    print()
    print(report.latency_terminal_table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
