"""The real Debezium PostgreSQL connector, for tests: start it, register connectors, wait.

``start_debezium()`` adds the ``debezium`` service (Kafka Connect 4.3 standalone with Debezium's
PostgreSQL connector and Apicurio's Avro converter, see tests/stack/README.md) to the shared
stack, leaving its Kafka, registry and PostgreSQL running, and returns the stack's settings
with ``DEBEZIUM_CONNECT_URL``. ``Connect`` registers connectors through Connect's REST API
(``postgres_connector`` writes the settings that work with changestream) and waits, with a
timeout, until their topics hold the expected number of messages: a task can report RUNNING
while it is stuck, so RUNNING alone proves nothing.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from confluent_kafka import Consumer, KafkaException, TopicPartition

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = REPO_ROOT / "tests" / "stack" / "stack.sh"
STACK_ENV_FILE = REPO_ROOT / ".stack.env"
STACK_SERVICES = "kafka,registry,postgres,debezium"

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
APICURIO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, as stack.sh writes them."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key] = value
    return env


def start_debezium(timeout: float = 900.0) -> dict[str, str]:
    """Start the shared stack with Kafka Connect added (or reuse it); returns its settings."""
    if not os.environ.get("CHANGESTREAM_STACK_NO_START"):
        subprocess.run(
            ["bash", str(STACK_SCRIPT), "up"],
            cwd=REPO_ROOT,
            env={**os.environ, "CHANGESTREAM_STACK_SERVICES": STACK_SERVICES},
            check=True,
            timeout=timeout,
        )
    env = parse_env_file(STACK_ENV_FILE)
    missing = [
        key for key in ("DEBEZIUM_CONNECT_URL", "POSTGRES_DSN", "KAFKA_PORT") if not env.get(key)
    ]
    if missing:
        raise RuntimeError(f"{STACK_ENV_FILE} lacks {', '.join(missing)}: is debezium up?")
    return env


def apicurio_converter(stack: Mapping[str, str]) -> dict[str, str]:
    """Apicurio's 2.6 Avro converter writing Confluent's framing (magic byte 0, 4-byte id).

    Its ids are content ids, which are what the registry's ccompat API serves as schema ids.
    """
    registry_v2 = f"http://127.0.0.1:{stack['APICURIO_PORT']}/apis/registry/v2"
    settings = {
        "apicurio.registry.url": registry_v2,
        "apicurio.registry.auto-register": "true",
        "apicurio.registry.find-latest": "true",
        "apicurio.registry.as-confluent": "true",
        "apicurio.registry.use-id": "contentId",
        "apicurio.registry.headers.enabled": "false",
    }
    config = {"key.converter": APICURIO_CONVERTER, "value.converter": APICURIO_CONVERTER}
    for side in ("key", "value"):
        config.update({f"{side}.converter.{k}": v for k, v in settings.items()})
    return config


def postgres_connector(
    stack: Mapping[str, str],
    *,
    name: str,
    topic_prefix: str,
    tables: list[str],
    **settings: str,
) -> dict[str, str]:
    """A Debezium PostgreSQL connector's settings: pgoutput, a slot and a publication of its
    own (the slot dropped when the connector stops), truncates and logical messages of prefix
    ``<name>`` included, Avro through Apicurio's converter; ``settings`` add or override
    (dots spelled as ``__``: ``decimal__handling__mode="string"``)."""
    dsn = urlsplit(stack["POSTGRES_DSN"])
    config = {
        "connector.class": POSTGRES_CONNECTOR,
        "tasks.max": "1",
        "database.hostname": dsn.hostname or "127.0.0.1",
        "database.port": str(dsn.port),
        "database.user": dsn.username or "postgres",
        "database.password": "unused-under-trust-auth",
        "database.dbname": dsn.path.lstrip("/"),
        "topic.prefix": topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": name,
        "slot.drop.on.stop": "true",
        "publication.name": name,
        "publication.autocreate.mode": "filtered",
        "table.include.list": ",".join(tables),
        "skipped.operations": "none",
        "message.prefix.include.list": name,
        "schema.name.adjustment.mode": "avro",
        "field.name.adjustment.mode": "avro",
        **apicurio_converter(stack),
    }
    config.update({key.replace("__", "."): value for key, value in settings.items()})
    return config


class Connect:
    """Kafka Connect's REST API, and waiting for what connectors write."""

    def __init__(self, stack: Mapping[str, str]) -> None:
        self.url = stack["DEBEZIUM_CONNECT_URL"]
        self.bootstrap_servers = f"127.0.0.1:{stack['KAFKA_PORT']}"
        self.http = httpx.Client(base_url=self.url, timeout=30.0)
        self.names: list[str] = []

    def close(self) -> None:
        self.http.close()

    def register(self, name: str, config: Mapping[str, str]) -> None:
        """Create (or reconfigure) connector ``name``."""
        response = self.http.put(f"/connectors/{name}/config", json=dict(config))
        if response.status_code not in (200, 201):
            raise RuntimeError(f"registering {name}: {response.status_code} {response.text}")
        self.names.append(name)

    def delete(self, name: str) -> None:
        """Delete connector ``name`` (its task stops and drops its slot)."""
        response = self.http.delete(f"/connectors/{name}")
        if response.status_code not in (204, 404):
            raise RuntimeError(f"deleting {name}: {response.status_code} {response.text}")

    def status(self, name: str) -> Any:
        return self.http.get(f"/connectors/{name}/status").json()

    def failures(self) -> list[str]:
        """The registered connectors or tasks that FAILED, with their traces."""
        failed = []
        for name in self.names:
            status = self.status(name)
            states = [status.get("connector", {}), *status.get("tasks", [])]
            failed += [
                f"{name}: {state.get('trace', state)}"
                for state in states
                if state.get("state") == "FAILED"
            ]
        return failed

    def wait_for_messages(self, expected: Mapping[str, int], timeout: float = 180.0) -> None:
        """Wait until each topic holds at least ``expected[topic]`` messages; fail early if a
        connector fails, and at the timeout with the counts and every connector's status."""
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap_servers, "group.id": "debezium-test-watermarks"}
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                counts = {topic: _message_count(consumer, topic) for topic in expected}
                if all(counts[topic] >= n for topic, n in expected.items()):
                    return
                failures = self.failures()
                if failures:
                    raise RuntimeError("connector failed:\n" + "\n".join(failures))
                if time.monotonic() > deadline:
                    statuses = {name: self.status(name) for name in self.names}
                    short = {t: f"{counts[t]}/{n}" for t, n in expected.items() if counts[t] < n}
                    raise TimeoutError(
                        f"after {timeout:.0f}s the topics hold {short} messages; "
                        f"connectors: {statuses}"
                    )
                time.sleep(0.5)
        finally:
            consumer.close()


def _message_count(consumer: Consumer, topic: str) -> int:
    """The topic's high watermark (its one partition), 0 if it does not exist yet."""
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return 0
    total = 0
    for partition in metadata.partitions:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
        except KafkaException:
            return 0  # a topic just created may have no leader yet: ask again
        total += high
    return total


@contextmanager
def connectors(connect: Connect, configs: Mapping[str, Mapping[str, str]]) -> Iterator[Connect]:
    """Register every connector at once (they snapshot in parallel); delete them at the end."""
    try:
        for name, config in configs.items():
            connect.register(name, config)
        yield connect
    finally:
        for name in configs:
            connect.delete(name)
