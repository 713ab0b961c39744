#!/usr/bin/env python3
"""Soak (issue 6): continuous produce and consume with a broker restart in the middle.

    .venv/bin/python tests/soak.py [--minutes 30] [--rate 500] [--outage 5] [--partitions 3]

Not part of ``make test`` (``make soak`` runs it). It starts a dedicated stack instance
(``tests/stack/instance.py``: Kafka and a registry of its own, never the shared stack),
produces Avro rows at ``--rate`` per second with confluent-kafka (idempotent, buffering
through the outage), and consumes them in a separate process, so the RSS measured
(``/proc/<pid>/status`` VmRSS and VmHWM) is the consumer's alone: one ChangeStream in a
group, which notes every (partition, offset) it was handed in a bitmap. Halfway through,
the broker is stopped, kept down ``--outage`` seconds and started again. At the end the
producer flushes, the consumer reads up to the last acknowledged offset of every
partition, and the script prints a table of samples and a summary: duration, RSS at
start, middle and end, produced, consumed, lost (must be 0) and repeated changes. It
exits 1 if anything was lost.

The minutes and rate can also come from ``CHANGESTREAM_SOAK_MINUTES`` and
``CHANGESTREAM_SOAK_RATE``. A stream that ends with a retriable error is reopened (as an
application would) and counted; a fatal error ends the soak.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from uuid import uuid4

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SAMPLE_EVERY = 5.0  # seconds between the consumer's samples
WARM_UP = 30.0  # the "start" RSS is the first sample after this long
DRAIN_TIMEOUT = 600.0  # how long the consumer may take to read the rest at the end

# --------------------------------------------------------------------------- consumer


def rss_kb(pid: int | str = "self") -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB, from /proc."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


class Seen:
    """Which offsets of each partition were handed out, one bit each; counts repeats."""

    def __init__(self) -> None:
        self.bits: dict[int, bytearray] = {}
        self.delivered = 0
        self.repeats = 0

    def add(self, partition: int, offset: int) -> None:
        bits = self.bits.setdefault(partition, bytearray())
        index, mask = offset >> 3, 1 << (offset & 7)
        if index >= len(bits):
            bits.extend(bytes(index + 1 - len(bits) + 4096))
        self.delivered += 1
        if bits[index] & mask:
            self.repeats += 1
        else:
            bits[index] |= mask

    @property
    def unique(self) -> int:
        return self.delivered - self.repeats

    def missing(self, ends: dict[int, int]) -> list[tuple[int, int]]:
        """Positions below each partition's end that were never handed out."""
        missing = []
        for partition, end in ends.items():
            bits = self.bits.get(partition, bytearray())
            for offset in range(end):
                index = offset >> 3
                if index >= len(bits) or not bits[index] & (1 << (offset & 7)):
                    missing.append((partition, offset))
        return missing


def consume(settings: dict[str, Any]) -> int:
    """The consumer process: read until told the end, then report. Prints JSON lines."""
    from changestream import ChangeStream, ChangeStreamError

    seen = Seen()
    ends: dict[int, int] = {}
    told = threading.Event()

    def listen() -> None:
        line = sys.stdin.readline()
        if line:
            ends.update({int(p): e for p, e in json.loads(line)["end"].items()})
        told.set()

    threading.Thread(target=listen, daemon=True).start()
    started = time.monotonic()
    next_sample = started
    disconnects = 0
    reopened: list[str] = []
    error: str | None = None
    drain_deadline: float | None = None

    def emit(**fields: Any) -> None:
        rss, hwm = rss_kb()
        record = {
            "t": round(time.monotonic() - started, 1),
            "delivered": seen.delivered,
            "unique": seen.unique,
            "repeats": seen.repeats,
            "rss_kb": rss,
            "hwm_kb": hwm,
            **fields,
        }
        print(json.dumps(record), flush=True)

    while error is None:
        stream = ChangeStream(
            settings["topic"],
            bootstrap_servers=settings["bootstrap"],
            schema_registry_url=settings["registry"],
            group_id=settings["group"],
        )
        try:
            with stream:
                while True:
                    change = stream.poll(timeout=0.5)
                    if change is not None:
                        seen.add(change.partition, change.offset)
                    now = time.monotonic()
                    if now >= next_sample:
                        next_sample = now + SAMPLE_EVERY
                        stats = stream.stats()
                        emit(disconnects=disconnects + stats["broker_disconnects"])
                    if told.is_set():
                        drain_deadline = drain_deadline or now + DRAIN_TIMEOUT
                        # Offsets are dense and none lies past an end: counting suffices.
                        if seen.unique >= sum(ends.values()) or now > drain_deadline:
                            disconnects += stream.stats()["broker_disconnects"]
                            break
            break
        except ChangeStreamError as failure:
            if not failure.retriable:
                error = repr(failure)
            else:
                reopened.append(repr(failure))
                time.sleep(1.0)
    missing = seen.missing(ends) if ends else []
    emit(
        final=True,
        missing=len(missing),
        missing_sample=missing[:20],
        reopened=reopened,
        error=error,
        disconnects=disconnects,
    )
    return 0 if error is None else 1


# ----------------------------------------------------------------------------- driver


@dataclass
class Produced:
    acked: int = 0
    errors: list[str] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def produce(
    bootstrap: str,
    registry: str,
    topic: str,
    partitions: int,
    rate: float,
    stop: threading.Event,
    produced: Produced,
) -> None:
    """Produce ``rate`` rows a second, round robin, until ``stop``; then deliver the buffer."""
    from cdc import CdcProducer, bottled_water_row_schema
    from confluent_kafka import Producer

    row = bottled_water_row_schema(
        "soak_events",
        [("id", "long"), ("name", "string"), ("amount", "double"), ("note", "string")],
    )
    encoder = CdcProducer(bootstrap, registry)  # for its AvroSerializer and registry client
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "message.timeout.ms": 1_800_000,
            "linger.ms": 20,
            "log_level": 0,
        }
    )

    def report(error: Any, message: Any) -> None:
        with produced.lock:
            if error is not None:
                produced.errors.append(str(error))
                return
            produced.acked += 1
            partition, offset = message.partition(), message.offset()
            produced.ends[partition] = max(produced.ends.get(partition, 0), offset + 1)

    note = "x" * 200
    started = time.monotonic()
    i = 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while i < due:
            value = encoder.serialize(
                topic, row, {"id": i, "name": f"event {i}", "amount": i / 8, "note": note}
            )
            producer.produce(topic, value=value, partition=i % partitions, on_delivery=report)
            i += 1
        producer.poll(0.005)
    left = producer.flush(600)
    encoder.close()
    if left:
        produced.errors.append(f"{left} messages never acknowledged")


def read_samples(pipe: IO[str], samples: list[dict[str, Any]]) -> None:
    for line in pipe:
        if line.startswith("{"):
            samples.append(json.loads(line))
        else:
            sys.stderr.write("consumer: " + line)


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic
    from stack.instance import StackInstance

    duration = args.minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="changestream-soak."))
    instance = StackInstance(workdir / "soak.env", services=("kafka", "registry"))
    print(f"soak: starting a dedicated Kafka and registry ({instance.env_file})", flush=True)
    env = instance.up()
    consumer: subprocess.Popen[str] | None = None
    try:
        bootstrap, registry = env["KAFKA_BOOTSTRAP_SERVERS"], env["SCHEMA_REGISTRY_URL"]
        topic = f"soak.{uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=args.partitions)])[topic].result(60)
        settings = {
            "topic": topic,
            "bootstrap": bootstrap,
            "registry": registry,
            "group": f"soak-{uuid4().hex[:8]}",
        }
        consumer = subprocess.Popen(
            [sys.executable, __file__, "consume", json.dumps(settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        samples: list[dict[str, Any]] = []
        assert consumer.stdout is not None
        reader = threading.Thread(target=read_samples, args=(consumer.stdout, samples))
        reader.start()

        stop = threading.Event()
        produced = Produced()
        producer = threading.Thread(
            target=produce,
            args=(bootstrap, registry, topic, args.partitions, args.rate, stop, produced),
        )
        started = time.monotonic()
        producer.start()
        print(
            f"soak: {args.minutes:g} min at {args.rate:g}/s into {topic} "
            f"({args.partitions} partitions); broker restart at {duration / 2 / 60:.1f} min, "
            f"down {args.outage:g}s; consumer PID {consumer.pid}",
            flush=True,
        )

        def progress(label: str) -> None:
            last = samples[-1] if samples else {}
            print(
                f"soak: {time.monotonic() - started:7.0f}s {label:<10} produced "
                f"{produced.acked:>9} consumed {last.get('delivered', 0):>9} RSS "
                f"{mib(last.get('rss_kb', 0))}",
                flush=True,
            )

        restart: dict[str, float] = {}
        last_progress = started
        while time.monotonic() - started < duration:
            now = time.monotonic()
            if not restart and now - started >= duration / 2:
                progress("restart")
                restart["middle_sample"] = len(samples)
                restart["stop"] = now - started
                instance.stop_kafka()
                time.sleep(args.outage)
                instance.start_kafka()
                restart["up"] = time.monotonic() - started
                progress("back")
            if now - last_progress >= 60:
                last_progress = now
                progress("")
            if consumer.poll() is not None:
                print("soak: the consumer exited early", flush=True)
                break
            time.sleep(0.5)
        end_sample = len(samples)
        stop.set()
        producer.join()
        produced_for = time.monotonic() - started
        with produced.lock:
            ends = dict(produced.ends)
        assert consumer.stdin is not None
        consumer.stdin.write(json.dumps({"end": ends}) + "\n")
        consumer.stdin.flush()
        consumer.wait(timeout=DRAIN_TIMEOUT + 60)
        reader.join(timeout=10)
    finally:
        if consumer is not None and consumer.poll() is None:
            consumer.kill()
        if args.keep:
            print(f"soak: kept the instance: CHANGESTREAM_STACK_ENV={instance.env_file}")
        else:
            instance.down()
            shutil.rmtree(workdir, ignore_errors=True)

    final = next((s for s in reversed(samples) if s.get("final")), None)
    if final is None:
        print("soak: FAILED: the consumer did not report", file=sys.stderr)
        return 1
    running = [s for s in samples if not s.get("final")]
    first = next((s for s in running if s["t"] >= WARM_UP), running[0])
    middle = running[max(0, int(restart.get("middle_sample", len(running) // 2)) - 1)]
    end = running[max(0, min(end_sample, len(running)) - 1)]
    lost = final["missing"]

    print("\n  t (s)   delivered      unique  repeats        RSS   peak RSS")
    step = max(1, int(60 / SAMPLE_EVERY))
    for sample in [*running[::step], final]:
        print(
            f"{sample['t']:7.0f} {sample['delivered']:>11} {sample['unique']:>11} "
            f"{sample['repeats']:>8} {mib(sample['rss_kb']):>10} {mib(sample['hwm_kb']):>10}"
        )
    rows = [
        ("duration", f"{produced_for / 60:.1f} min producing (+ drain)"),
        (
            "broker restart",
            f"stopped at {restart.get('stop', 0):.0f}s, answering again at "
            f"{restart.get('up', 0):.0f}s",
        ),
        ("RSS start", f"{mib(first['rss_kb'])} (t={first['t']:.0f}s)"),
        ("RSS middle", f"{mib(middle['rss_kb'])} (t={middle['t']:.0f}s, before the restart)"),
        ("RSS end", f"{mib(end['rss_kb'])} (t={end['t']:.0f}s)"),
        ("RSS peak", mib(max(s["hwm_kb"] for s in samples))),
        ("produced", f"{produced.acked} acknowledged, {len(produced.errors)} errors"),
        ("consumed", f"{final['delivered']} handed out, {final['unique']} distinct"),
        ("lost", str(lost) + ("" if not lost else f" e.g. {final['missing_sample']}")),
        ("repeated", str(final["repeats"])),
        ("broker_disconnects", str(final["disconnects"])),
        ("streams reopened", f"{len(final['reopened'])} {final['reopened'][:3]}"),
        ("fatal error", str(final["error"])),
    ]
    print()
    for name, value in rows:
        print(f"  {name:<19} {value}")
    ok = not lost and not produced.errors and final["error"] is None
    ok = ok and final["unique"] == produced.acked
    print(f"\nsoak: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "consume":
        return consume(json.loads(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("CHANGESTREAM_SOAK_MINUTES", 30))
    )
    parser.add_argument(
        "--rate", type=float, default=float(os.environ.get("CHANGESTREAM_SOAK_RATE", 500))
    )
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the broker stays down")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the stack instance running")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
