"""Capture SIGKILLed again and again during a concurrent multi-table write workload: afterwards
every committed row is in Kafka, each key's changes in commit order; duplicates (at least once
after a crash) are counted and reported.
"""

from __future__ import annotations

import itertools
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
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


def capture_process(setup: CaptureSetup) -> subprocess.Popen[bytes]:
    """A capture of both tables running until killed."""
    code = (
        "import changestream\n"
        f"changestream.capture(dsn={setup.dsn!r}, "
        f"bootstrap_servers={setup.stack['KAFKA_BOOTSTRAP_SERVERS']!r}, "
        f"schema_registry_url={setup.stack['SCHEMA_REGISTRY_URL']!r}, "
        f"tables=[{setup.schema + '.accounts'!r}, {setup.schema + '.ledger'!r}], "
        f"topic_prefix={setup.name!r}, slot={setup.name!r}, publication={setup.name!r})\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)


def test_sigkill_loop_loses_nothing_and_keeps_key_order(
    setup: CaptureSetup, stack: dict[str, str]
) -> None:
    s = setup.schema
    setup.sql(
        f"CREATE TABLE {s}.accounts (id integer PRIMARY KEY, version integer NOT NULL);"
        f"CREATE TABLE {s}.ledger (id integer PRIMARY KEY, account integer NOT NULL);"
        f"INSERT INTO {s}.accounts SELECT i, 0 FROM generate_series(1, 20) i"
    )
    setup.capture(["accounts", "ledger"])  # the snapshot, then crashes only while streaming
    # Each transaction writes a ledger row and bumps its account's version.
    writer = subprocess.Popen(
        [
            "psql",
            setup.dsn,
            "-X",
            "-q",
            "-c",
            f"DO $$ BEGIN FOR i IN 1..{TRANSACTIONS} LOOP "
            f"INSERT INTO {s}.ledger VALUES (i, i % 20 + 1); "
            f"UPDATE {s}.accounts SET version = version + 1 WHERE id = i % 20 + 1; "
            "COMMIT; PERFORM pg_sleep(0.004); END LOOP; END $$",
        ]
    )
    rng = random.Random(7)
    kills = 0
    try:
        while kills < KILLS:
            process = capture_process(setup)
            time.sleep(rng.uniform(0.8, 2.0))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            kills += 1
    finally:
        assert writer.wait(timeout=180) == 0
    setup.capture(["accounts", "ledger"])

    with ChangeStream(
        [setup.topic("accounts"), setup.topic("ledger")],
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        start="earliest",
        until="end",
    ) as stream:
        changes = list(stream)

    versions: dict[int, list[int]] = {}
    ledger: dict[int, int] = {}
    for change in changes:
        if change.table == "accounts":
            versions.setdefault(change.key["id"], []).append(change.after["version"])
        else:
            ledger[change.key["id"]] = ledger.get(change.key["id"], 0) + 1
    # Every committed ledger row is there.
    assert sorted(ledger) == list(range(1, TRANSACTIONS + 1))
    # Per key, versions never go backwards except where a restart re-sent a run of them.
    duplicates = sum(n - 1 for n in ledger.values())
    for key, seen in versions.items():
        final = int(setup.sql(f"SELECT version FROM {s}.accounts WHERE id = {key}")[0][0] or 0)
        assert seen[-1] == final, key
        assert set(range(seen[0], final + 1)) <= set(seen), f"account {key} misses versions"
        distinct = sorted(set(seen))
        duplicates += len(seen) - len(distinct)
        # Re-sent runs restart from an earlier version and climb again: each climb is ordered.
        for before, after in itertools.pairwise(seen):
            assert after == before + 1 or after <= before, f"account {key}: {before} -> {after}"
    print(f"\n{kills} SIGKILLs, {len(changes)} changes, {duplicates} duplicates re-sent")


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
    setup.sql(f"CREATE TABLE {s}.accounts (id integer PRIMARY KEY, version integer NOT NULL)")
    setup.sql(f"CREATE TABLE {s}.ledger (id integer PRIMARY KEY, account integer NOT NULL)")
    setup.capture(["accounts", "ledger"])
    log = tmp_path / "capture.log"
    code = (
        "import logging, changestream\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "try:\n"
        f"    changestream.capture(dsn={setup.dsn!r}, "
        f"bootstrap_servers={stack['KAFKA_BOOTSTRAP_SERVERS']!r}, "
        f"schema_registry_url={stack['SCHEMA_REGISTRY_URL']!r}, "
        f"tables=[{s + '.accounts'!r}, {s + '.ledger'!r}], "
        f"topic_prefix={setup.name!r}, slot={setup.name!r}, publication={setup.name!r})\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped')\n"
    )
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", code], stderr=err, stdout=subprocess.PIPE, text=True
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
            # Let the capture catch up, then stop it the way Ctrl-C does.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and setup.confirmed_flush_lsn() < int(
                setup.sql("SELECT pg_current_wal_flush_lsn() - '0/0'")[0][0] or 0
            ):
                time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            out, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
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
