"""Capture SIGKILLed again and again during a concurrent multi-table write workload: afterwards
every committed row is in Kafka, each key's changes in commit order; duplicates (at least once
after a crash) are counted and reported.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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
from changestream import ChangeStream
from pg_capture import CaptureSetup

pytestmark = [pytest.mark.timeout(240, func_only=True)]

KILLS = 10
TRANSACTIONS = 1500


@pytest.fixture
def setup(stack: dict[str, str]) -> Iterator[CaptureSetup]:
    capture = CaptureSetup(stack)
    capture.sql(f"CREATE SCHEMA {capture.schema}")
    yield capture
    capture.cleanup()


def test_sigkill_loop_loses_nothing_and_keeps_key_order(
    setup: CaptureSetup, stack: dict[str, str], tmp_path: Path
) -> None:
    bootstrap, registry = stack["KAFKA_BOOTSTRAP_SERVERS"], stack["SCHEMA_REGISTRY_URL"]
    create_tables(setup)
    setup.capture(TABLES)  # the snapshot, then crashes only while streaming
    writer = start_writer(setup, TRANSACTIONS, pause=0.004)
    rng = random.Random(7)
    kills = 0
    try:
        while kills < KILLS:
            process = capture_process(setup, bootstrap, registry, tmp_path / f"capture{kills}.log")
            time.sleep(rng.uniform(0.8, 2.0))
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)  # also closes its output pipe
            kills += 1
    finally:
        assert writer.wait(timeout=180) == 0
    setup.capture(TABLES)
    duplicates = assert_nothing_lost(setup, bootstrap, registry, TRANSACTIONS)
    print(f"\n{kills} SIGKILLs, {duplicates} duplicates re-sent")


def restart_postgres(stack: dict[str, str]) -> None:
    """Restart the stack's PostgreSQL (fast shutdown: connections are cut, as in a crash)."""
    data = Path(stack["STACK_DIR"]) / "pg" / "data"
    binary = Path(data.joinpath("postmaster.opts").read_text().split('"')[1]).parent
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(binary / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data.parent / "postgres.log"),
            "-w",
            "-m",
            "fast",
            "restart",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )


def test_postgres_restart_mid_stream_loses_nothing(
    setup: CaptureSetup, stack: dict[str, str], tmp_path: Path
) -> None:
    s = setup.schema
    create_tables(setup)
    setup.capture(TABLES)
    log = tmp_path / "capture.log"
    process = capture_process(
        setup, stack["KAFKA_BOOTSTRAP_SERVERS"], stack["SCHEMA_REGISTRY_URL"], log
    )
    try:
        written = 0
        for batch in range(6):
            if batch == 3:
                restart_postgres(stack)
            for _ in range(20):  # the server may still be starting: retry each batch
                try:
                    setup.sql(
                        f"INSERT INTO {s}.ledger SELECT i, i % 20 "
                        f"FROM generate_series({written + 1}, {written + 100}) i"
                    )
                    break
                except AssertionError:
                    time.sleep(0.5)
            written += 100
            time.sleep(0.5)
        wait_caught_up(setup, timeout=60)
    finally:
        out = stop_capture(process)
    assert "stopped" in out
    assert "resuming from the slot" in log.read_text(), log.read_text()[-2000:]
    with ChangeStream(
        [setup.topic("ledger")],
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        start="earliest",
        until="end",
    ) as stream:
        ids = sorted({change.key["id"] for change in stream})
    assert ids == list(range(1, written + 1))
