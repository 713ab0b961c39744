"""Fixtures for tests against the real services (Kafka, schema registry).

The ``stack`` fixture starts the services with ``tests/stack/stack.sh up`` (once
per session; set ``CHANGESTREAM_STACK_NO_START=1`` to use services that are
already running) and reads their addresses from ``.stack.env`` at the repo root.
It never stops them: they are reused by the next run, and ``make stack-down``
stops them.

Each test gets its own freshly created topics (``topic``, ``make_topic``), so
tests never see each other's messages.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # re-exported by confluent_kafka.admin, untyped there

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cdc import CdcProducer

if TYPE_CHECKING:
    from changestream import ChangeStream

REPO_ROOT = Path(__file__).resolve().parent.parent
STACK_SCRIPT = REPO_ROOT / "tests" / "stack" / "stack.sh"
STACK_ENV_FILE = REPO_ROOT / ".stack.env"
STACK_KEYS = ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the ``stack`` fixture, directly or through another, is a stack test;
    ``make test-fast`` runs the others."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


def parse_env_file(path: Path) -> dict[str, str]:
    """Read ``KEY=value`` lines (optionally ``export``-ed and shell-quoted)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        words = shlex.split(value, comments=True)
        env[key.strip()] = words[0] if words else ""
    return env


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """The services' addresses: KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, POSTGRES_DSN."""
    if not os.environ.get("CHANGESTREAM_STACK_NO_START"):
        if not STACK_SCRIPT.exists():
            pytest.fail(f"{STACK_SCRIPT} does not exist: cannot start the services")
        # The first start downloads jars and can take minutes; a started stack returns at once.
        subprocess.run(["bash", str(STACK_SCRIPT), "up"], cwd=REPO_ROOT, check=True, timeout=1800)
    if not STACK_ENV_FILE.exists():
        pytest.fail(f"{STACK_ENV_FILE} not found: is the stack up? (tests/stack/stack.sh up)")
    env = parse_env_file(STACK_ENV_FILE)
    missing = [key for key in STACK_KEYS if not env.get(key)]
    if missing:
        pytest.fail(f"{STACK_ENV_FILE} lacks {', '.join(missing)}")
    return env


@pytest.fixture(scope="session")
def admin(stack: dict[str, str]) -> AdminClient:
    return AdminClient({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"]})


@pytest.fixture(scope="session")
def cdc(stack: dict[str, str]) -> Iterator[CdcProducer]:
    """Produces Avro change events with confluent-kafka's AvroSerializer (see tests/cdc.py)."""
    producer = CdcProducer(stack["KAFKA_BOOTSTRAP_SERVERS"], stack["SCHEMA_REGISTRY_URL"])
    yield producer
    producer.close()


@pytest.fixture
def make_topic(request: pytest.FixtureRequest, admin: AdminClient) -> Iterator[Callable[..., str]]:
    """Create a fresh topic for this test: ``make_topic(partitions=1)`` returns its name."""
    created: list[str] = []
    test_name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name).strip("_")[:120]

    def make(partitions: int = 1) -> str:
        name = f"test.{test_name}.{uuid4().hex[:8]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        )
        futures[name].result(timeout=60)
        created.append(name)
        _wait_for_leaders(admin, name, partitions)
        return name

    yield make

    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # cleanup is best effort
                future.result(timeout=60)


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    """Wait until the broker's metadata shows every partition with a leader."""
    for _ in range(100):
        metadata = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in metadata.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} has no leader for all {partitions} partitions")


@pytest.fixture
def topic(request: pytest.FixtureRequest, make_topic: Callable[..., str]) -> str:
    """A fresh topic; parametrize indirectly with the partition count (default 1)."""
    return make_topic(getattr(request, "param", 1))


@pytest.fixture
def open_stream(stack: dict[str, str]) -> Callable[..., ChangeStream]:
    """``open_stream(topics, **kwargs)``: a ChangeStream on the stack's Kafka and registry."""
    from changestream import ChangeStream

    def open_(topics: str | Sequence[str], **kwargs: Any) -> ChangeStream:
        return ChangeStream(
            topics,
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            **kwargs,
        )

    return open_
