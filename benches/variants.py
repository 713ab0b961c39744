"""One benchmark variant, run in a process of its own so its peak RSS is its own.

    python benches/variants.py VARIANT TOPIC EVENTS BOOTSTRAP REGISTRY_URL

reads the EVENTS messages of TOPIC from the beginning (a fresh, group-less assignment of
every partition, or a fresh group id where the client needs one), decodes them as the
variant does, stops once it has read them all, and prints one JSON line:
``{"variant", "events", "connect_s", "first_to_last_s", "total_s", "rss_kib"}``.

Only the variant's own library is imported, so the RSS is that library's. Timing starts
after the imports: ``total_s`` includes connecting, ``first_to_last_s`` runs from the
first message (or batch) received to the last one processed.

Every variant except (a) and (g) decodes the key and the value of every message to Python
objects; (g) turns each batch into a ``pyarrow.RecordBatch``.
"""

from __future__ import annotations

import asyncio
import io
import json
import resource
import struct
import sys
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable
from typing import Any

BATCH = 10_000  # messages per consume()/getmany() call, rows per Arrow batch
STALL_S = 120.0  # give up when nothing arrives for this long

VARIANTS: dict[str, str] = {
    "a": "confluent-kafka consume(), no decoding (fetch limit)",
    "a+": "as (a), with fetch.queue.backoff.ms=10",
    "b": "confluent-kafka + AvroDeserializer",
    "c": "confluent-kafka + fastavro (cached schemas)",
    "d": "aiokafka + fastavro (cached schemas)",
    "e": "changestream iterator",
    "f": "changestream async for",
    "g": "changestream batches() -> pyarrow",
}


class Clock:
    """When the variant started, received its first message, and finished its last."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last = self.start
        self.count = 0
        self.progress_at = self.start

    def received(self) -> None:
        """Call when a message or batch arrives (before processing it)."""
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.progress_at = now

    def idle(self) -> None:
        """Call when a poll returned nothing."""
        if time.perf_counter() - self.progress_at > STALL_S:
            raise RuntimeError(f"stalled: nothing for {STALL_S:.0f} s after {self.count} events")

    def done(self) -> bool:
        return self.count >= self.expected


# ---------------------------------------------------------------------------
# Schema lookup for the fastavro variants: once per schema id, then cached
# ---------------------------------------------------------------------------


class FastavroDecoder:
    """Confluent-framed Avro -> Python objects with fastavro, parsed schemas cached by id."""

    def __init__(self, registry_url: str) -> None:
        from fastavro import parse_schema, schemaless_reader

        self._url = registry_url.rstrip("/")
        self._parse = parse_schema
        self._read = schemaless_reader
        self._schemas: dict[int, Any] = {}

    def _schema(self, schema_id: int) -> Any:
        with urllib.request.urlopen(f"{self._url}/schemas/ids/{schema_id}", timeout=30) as r:
            text = json.load(r)["schema"]
        parsed = self._parse(json.loads(text))
        self._schemas[schema_id] = parsed
        return parsed

    def __call__(self, payload: bytes | None) -> Any:
        if payload is None:
            return None
        magic, schema_id = struct.unpack_from(">bI", payload)
        if magic != 0:
            raise ValueError(f"not a Confluent frame (magic byte {magic})")
        schema = self._schemas.get(schema_id) or self._schema(schema_id)
        buffer = io.BytesIO(payload)
        buffer.seek(5)
        return self._read(buffer, schema, None)


# ---------------------------------------------------------------------------
# confluent-kafka: (a), (b), (c)
# ---------------------------------------------------------------------------


def _confluent(
    topic: str,
    expected: int,
    bootstrap: str,
    make_decode: Callable[[], tuple[Callable[[Any], Any], Callable[[Any], Any]] | None],
    **settings: Any,
) -> Clock:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    clock = Clock(expected)
    decoders = make_decode()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",  # never joined: assign() only
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **settings,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
    )
    count = 0
    if decoders is None:  # (a)
        while count < expected:
            messages = consumer.consume(num_messages=BATCH, timeout=1.0)
            if not messages:
                clock.idle()
                continue
            clock.received()
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(str(message.error()))
            count += len(messages)
    else:
        decode_key, decode_value = decoders
        while count < expected:
            messages = consumer.consume(num_messages=BATCH, timeout=1.0)
            if not messages:
                clock.idle()
                continue
            clock.received()
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(str(message.error()))
                decode_key(message.key())
                decode_value(message.value())
            count += len(messages)
    clock.count = count
    clock.last = time.perf_counter()
    consumer.close()
    return clock


def run_a(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    return _confluent(topic, expected, bootstrap, lambda: None)


def run_a_plus(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    # librdkafka waits fetch.queue.backoff.ms (default 1000) before fetching a partition
    # again once its prefetch queue passed queued.min.messages / queued.max.messages.kbytes.
    # A consumer that drains the queue faster than that idles; (a+) shows the fetch limit
    # without that wait.
    return _confluent(topic, expected, bootstrap, lambda: None, **{"fetch.queue.backoff.ms": 10})


def run_b(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    def make() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        with warnings.catch_warnings(record=True):  # authlib's deprecated httpx integration
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            from confluent_kafka.serialization import MessageField, SerializationContext

        # A timeout, so that a response lost on the way fails the run instead of hanging it
        # (the client's default is none; one run of `make bench` hung 17 minutes so).
        client = SchemaRegistryClient({"url": registry, "timeout": 30})
        key_deserializer = AvroDeserializer(client)
        value_deserializer = AvroDeserializer(client)
        key_ctx = SerializationContext(topic, MessageField.KEY)
        value_ctx = SerializationContext(topic, MessageField.VALUE)
        return (
            lambda data: key_deserializer(data, key_ctx),
            lambda data: value_deserializer(data, value_ctx),
        )

    return _confluent(topic, expected, bootstrap, make)


def run_c(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    def make() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        decode = FastavroDecoder(registry)
        return decode, decode

    return _confluent(topic, expected, bootstrap, make)


# ---------------------------------------------------------------------------
# aiokafka: (d)
# ---------------------------------------------------------------------------


def run_d(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    from aiokafka import AIOKafkaConsumer

    async def main() -> Clock:
        clock = Clock(expected)
        decode = FastavroDecoder(registry)
        # Without a group, aiokafka assigns every partition of the topic itself; with no
        # committed offsets, auto_offset_reset puts them at the beginning.
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            count = 0
            while count < expected:
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                if not batches:
                    clock.idle()
                    continue
                clock.received()
                for records in batches.values():
                    for record in records:
                        decode(record.key)
                        decode(record.value)
                    count += len(records)
            clock.count = count
            clock.last = time.perf_counter()
        finally:
            await consumer.stop()
        return clock

    return asyncio.run(main())


# ---------------------------------------------------------------------------
# changestream: (e), (f), (g) -- default settings, bounded by until="end"
# ---------------------------------------------------------------------------


def _open(topic: str, bootstrap: str, registry: str) -> Any:
    from changestream import ChangeStream

    return ChangeStream(
        topic, bootstrap_servers=bootstrap, schema_registry_url=registry, until="end"
    )


def run_e(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    clock = Clock(expected)
    count = 0
    with _open(topic, bootstrap, registry) as stream:
        for change in stream:
            if count == 0:
                clock.received()
            change.key  # noqa: B018 -- touch the values, as an application does
            change.after  # noqa: B018
            count += 1
        clock.last = time.perf_counter()
    clock.count = count
    return clock


def run_f(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    async def main() -> Clock:
        clock = Clock(expected)
        count = 0
        async with _open(topic, bootstrap, registry) as stream:
            async for change in stream:
                if count == 0:
                    clock.received()
                change.key  # noqa: B018
                change.after  # noqa: B018
                count += 1
            clock.last = time.perf_counter()
        clock.count = count
        return clock

    return asyncio.run(main())


def run_g(topic: str, expected: int, bootstrap: str, registry: str) -> Clock:
    import pyarrow

    clock = Clock(expected)
    count = 0
    with _open(topic, bootstrap, registry) as stream:
        for batch in stream.batches():
            if count == 0:
                clock.received()
            count += pyarrow.record_batch(batch).num_rows
        clock.last = time.perf_counter()
    clock.count = count
    return clock


RUNNERS: dict[str, Callable[[str, int, str, str], Clock]] = {
    "a": run_a,
    "a+": run_a_plus,
    "b": run_b,
    "c": run_c,
    "d": run_d,
    "e": run_e,
    "f": run_f,
    "g": run_g,
}


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM, the high-water mark of its own address space.

    ``getrusage(RUSAGE_SELF).ru_maxrss`` would be the same number, except that Linux carries
    it over ``execve`` from the process that forked: a child of a 60 MB parent reports at
    least 60 MB. VmHWM starts afresh with the new program. Both are in the JSON.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> int:
    variant, topic, events, bootstrap, registry = argv
    expected = int(events)
    clock = RUNNERS[variant](topic, expected, bootstrap, registry)
    if clock.count != expected:
        raise RuntimeError(f"read {clock.count} events, expected {expected}")
    result = {
        "variant": variant,
        "events": clock.count,
        "connect_s": (clock.first or clock.start) - clock.start,
        "first_to_last_s": clock.last - (clock.first or clock.start),
        "total_s": clock.last - clock.start,
        "rss_kib": peak_rss_kib(),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
