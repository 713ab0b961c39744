"""Capture through a Kafka broker restart and a schema registry outage: it pauses, then resumes,
and nothing committed is lost (tests/capture_workload.py checks every ledger row and each
account's versions in commit order).

The broker is one of this module's own (``tests/stack/stack.sh`` instance with Kafka only,
stopped and started by the tests); the schema registry and PostgreSQL are the shared stack's,
the registry reached through a ``TcpGate`` the registry test closes. The 60 s broker outage is
marked ``slow`` (``make soak``). Run with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from capture_workload import (
    TABLES,
    assert_nothing_lost,
    capture_process,
    create_tables,
    start_writer,
    stop_capture,
    wait_caught_up,
)
from pg_capture import CaptureSetup
from stack.instance import StackInstance
from tcp_gate import TcpGate

pytestmark = [pytest.mark.timeout(420, func_only=True)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInstance]:
    """A Kafka for this module alone, which the tests stop and start."""
    instance = StackInstance(
        tmp_path_factory.mktemp("capture-outages") / "kafka.env", services=("kafka",)
    )
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture
def setup(stack: dict[str, str]) -> Iterator[CaptureSetup]:
    capture = CaptureSetup(stack)
    capture.sql(f"CREATE SCHEMA {capture.schema}")
    create_tables(capture)
    yield capture
    capture.cleanup()


def _broker_restart(
    setup: CaptureSetup, broker: StackInstance, tmp_path: Path, outage: float
) -> None:
    registry = setup.stack["SCHEMA_REGISTRY_URL"]
    setup.capture(TABLES, bootstrap_servers=broker.bootstrap_servers)  # the snapshot
    transactions = 400 + int(outage * 25)
    log = tmp_path / "capture.log"
    process = capture_process(setup, broker.bootstrap_servers, registry, log)
    writer = start_writer(setup, transactions, pause=0.02)
    try:
        time.sleep(3)
        stopped_in = broker.stop_kafka()
        confirmed_at_stop = setup.confirmed_flush_lsn()
        time.sleep(outage)
        confirmed_before_start = setup.confirmed_flush_lsn()
        assert process.poll() is None, log.read_text()[-2000:]
        started_in = broker.start_kafka()
        assert writer.wait(timeout=300) == 0
        resumed = time.monotonic()
        wait_caught_up(setup, timeout=180)
        caught_up_in = time.monotonic() - resumed
    finally:
        if writer.poll() is None:
            writer.kill()
        out = stop_capture(process)
    assert "stopped" in out, log.read_text()[-2000:]
    # Paused: nothing was confirmed while the broker was down.
    assert confirmed_before_start == confirmed_at_stop
    duplicates = assert_nothing_lost(setup, broker.bootstrap_servers, registry, transactions)
    print(
        f"\nbroker down {outage:.0f}s (stop {stopped_in:.1f}s, start {started_in:.1f}s): "
        f"{transactions} transactions, caught up {caught_up_in:.1f}s after the writer ended, "
        f"{duplicates} duplicates"
    )


def test_broker_restart_10s_pauses_then_loses_nothing(
    setup: CaptureSetup, broker: StackInstance, tmp_path: Path
) -> None:
    _broker_restart(setup, broker, tmp_path, outage=10)


@pytest.mark.slow
def test_broker_restart_60s_pauses_then_loses_nothing(
    setup: CaptureSetup, broker: StackInstance, tmp_path: Path
) -> None:
    _broker_restart(setup, broker, tmp_path, outage=60)


def test_registry_outage_pauses_then_loses_nothing(
    setup: CaptureSetup, broker: StackInstance, tmp_path: Path
) -> None:
    """A column added while the registry is unreachable needs a new schema version: the
    capture waits for the registry, then writes the rows with it."""
    registry = setup.stack["SCHEMA_REGISTRY_URL"]
    parts = urlsplit(registry)
    with TcpGate(parts.hostname or "127.0.0.1", parts.port or 80) as gate:
        gated = registry.replace(parts.netloc, f"127.0.0.1:{gate.port}")
        setup.capture(TABLES, bootstrap_servers=broker.bootstrap_servers)  # the snapshot
        log = tmp_path / "capture.log"
        process = capture_process(setup, broker.bootstrap_servers, gated, log)
        try:
            first = start_writer(setup, 100, pause=0.01)
            assert first.wait(timeout=120) == 0
            wait_caught_up(setup, timeout=60)
            gate.close()
            setup.sql(f"ALTER TABLE {setup.schema}.ledger ADD COLUMN note text")
            second = start_writer(setup, 100, pause=0.01, first=101)
            assert second.wait(timeout=120) == 0
            confirmed_at_close = setup.confirmed_flush_lsn()
            time.sleep(10)
            assert setup.confirmed_flush_lsn() == confirmed_at_close  # paused
            assert process.poll() is None, log.read_text()[-2000:]
            refused = gate.refused
            gate.open()
            wait_caught_up(setup, timeout=90)
        finally:
            out = stop_capture(process)
    assert "stopped" in out, log.read_text()[-2000:]
    assert refused > 0, "the capture never tried the registry during the outage"
    duplicates = assert_nothing_lost(setup, broker.bootstrap_servers, registry, 200)
    print(f"\nregistry down 10s: {refused} connections refused, {duplicates} duplicates")
