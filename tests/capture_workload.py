"""A write workload under a running capture, and the check that nothing committed was lost.

Two tables: ``accounts`` (20 rows whose ``version`` each transaction bumps: per-key order)
and ``ledger`` (one new row per transaction: completeness). ``capture_process`` runs
``changestream.capture`` in a child process until SIGINT (it prints ``stopped`` after its
final flush); ``start_writer`` commits ``transactions`` transactions through psql, ``pause``
seconds apart; ``assert_nothing_lost`` reads both topics back and returns the duplicates.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

from changestream import ChangeStream
from pg_capture import CaptureSetup

TABLES = ["accounts", "ledger"]
ACCOUNTS = 20


def create_tables(setup: CaptureSetup) -> None:
    s = setup.schema
    setup.sql(
        f"CREATE TABLE {s}.accounts (id integer PRIMARY KEY, version integer NOT NULL);"
        f"CREATE TABLE {s}.ledger (id integer PRIMARY KEY, account integer NOT NULL);"
        f"INSERT INTO {s}.accounts SELECT i, 0 FROM generate_series(1, {ACCOUNTS}) i"
    )


def capture_process(
    setup: CaptureSetup, bootstrap_servers: str, registry_url: str, log: Path
) -> subprocess.Popen[str]:
    """A capture of both tables, logging warnings to ``log``, running until SIGINT."""
    code = (
        "import logging, signal, changestream\n"
        # Ctrl-C raises KeyboardInterrupt even where this test's process ignores SIGINT (a
        # job a script started with &): children inherit that.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "try:\n"
        f"    changestream.capture(dsn={setup.dsn!r}, bootstrap_servers={bootstrap_servers!r}, "
        f"schema_registry_url={registry_url!r}, "
        f"tables={[f'{setup.schema}.{t}' for t in TABLES]!r}, "
        f"topic_prefix={setup.name!r}, slot={setup.name!r}, publication={setup.name!r})\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped')\n"
    )
    with log.open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-c", code], stderr=err, stdout=subprocess.PIPE, text=True
        )


def stop_capture(process: subprocess.Popen[str]) -> str:
    """Stop the capture as Ctrl-C does; its output."""
    try:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=90)
        return out
    finally:
        if process.poll() is None:
            process.kill()


def start_writer(
    setup: CaptureSetup, transactions: int, pause: float, first: int = 1
) -> subprocess.Popen[bytes]:
    """Transactions ``first``… each inserting a ledger row and bumping an account."""
    s = setup.schema
    last = first + transactions - 1
    loop = (
        f"DO $$ BEGIN FOR i IN {first}..{last} LOOP "
        f"INSERT INTO {s}.ledger VALUES (i, i % {ACCOUNTS} + 1); "
        f"UPDATE {s}.accounts SET version = version + 1 WHERE id = i % {ACCOUNTS} + 1; "
        f"COMMIT; PERFORM pg_sleep({pause}); END LOOP; END $$"
    )
    return subprocess.Popen(["psql", setup.dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", loop])


def wait_caught_up(setup: CaptureSetup, timeout: float) -> None:
    """Until the slot confirmed everything written so far."""
    target = int(setup.sql("SELECT pg_current_wal_flush_lsn() - '0/0'")[0][0] or 0)
    deadline = time.monotonic() + timeout
    while setup.confirmed_flush_lsn() < target:
        assert time.monotonic() < deadline, "the capture did not catch up"
        time.sleep(0.5)


def assert_nothing_lost(
    setup: CaptureSetup, bootstrap_servers: str, registry_url: str, transactions: int
) -> int:
    """Every ledger row is in Kafka and every account's versions arrive in commit order (a
    re-sent run climbs again from an earlier version); returns the duplicates."""
    with ChangeStream(
        [setup.topic(t) for t in TABLES],
        bootstrap_servers=bootstrap_servers,
        schema_registry_url=registry_url,
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
    assert sorted(ledger) == list(range(1, transactions + 1))
    duplicates = sum(n - 1 for n in ledger.values())
    for key, seen in versions.items():
        row = setup.sql(f"SELECT version FROM {setup.schema}.accounts WHERE id = {key}")
        final = int(row[0][0] or 0)
        assert seen[0] == 0, (key, seen)
        assert seen[-1] == final, (key, seen)
        assert set(range(final + 1)) <= set(seen), f"account {key} misses versions"
        duplicates += len(seen) - len(set(seen))
        for before, after in itertools.pairwise(seen):
            assert after == before + 1 or after <= before, f"account {key}: {before} -> {after}"
    assert sorted(versions) == list(range(1, ACCOUNTS + 1))
    return duplicates
