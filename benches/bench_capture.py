"""``make bench-capture``: capture's snapshot and streaming speed, beside ``pg_recvlogical``.

One run against the stack's PostgreSQL and Kafka:

1. a 10-column table with ``--rows`` rows (default 1M) is snapshotted by ``changestream.capture``
   into Kafka (rows/s);
2. the same number of rows is inserted again, with the capture's slot and a second slot for
   ``pg_recvlogical`` both behind; each then reads the same changes through ``pgoutput``: capture
   all the way into Kafka (events/s), ``pg_recvlogical`` into /dev/null (how fast PostgreSQL itself
   decodes the WAL here: the limit);
3. the capture's peak RSS is read from the kernel (the capture runs in a child process).

Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

REPO = Path(__file__).resolve().parent.parent

TABLE = """
CREATE SCHEMA {name};
CREATE TABLE {name}.events (
    id bigint PRIMARY KEY, account integer NOT NULL, kind text NOT NULL, amount numeric(12, 2),
    price double precision, ok boolean, note text, day date, at timestamptz, ref uuid
);
"""
FILL = """
INSERT INTO {name}.events SELECT i, i % 1000, 'kind-' || (i % 7), i * 0.01, i / 3.0, i % 2 = 0,
    'note ' || i, date '2024-01-01' + (i % 365), timestamptz '2024-01-01' + i * interval '1 s',
    md5(i::text)::uuid FROM generate_series({start}, {end}) i
"""


def settings() -> dict[str, str]:
    env = dict(os.environ)
    stack_env = REPO / ".stack.env"
    if stack_env.exists():
        for line in stack_env.read_text().splitlines():
            key, sep, value = line.removeprefix("export ").partition("=")
            if sep and not key.startswith("#"):
                env.setdefault(key.strip(), (shlex.split(value) or [""])[0])
    return env


def psql(dsn: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", dsn, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def timed_capture(env: dict[str, str], name: str, snapshot: str) -> tuple[float, dict[str, object]]:
    """Run one capture until now in a child process: (seconds, counters incl. peak RSS)."""
    code = (
        "import changestream, json, resource, sys\n"
        f"c = changestream.capture(dsn={env['POSTGRES_DSN']!r}, "
        f"bootstrap_servers={env['KAFKA_BOOTSTRAP_SERVERS']!r}, "
        f"schema_registry_url={env['SCHEMA_REGISTRY_URL']!r}, tables=[{name + '.events'!r}], "
        f"topic_prefix={name!r}, slot={name!r}, publication={name!r}, snapshot={snapshot!r}, "
        "until='now')\n"
        "c['rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(c))\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return seconds, json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    env = settings()
    dsn = env["POSTGRES_DSN"]
    name = f"bench{uuid4().hex[:6]}"
    recv_slot = f"{name}_recv"
    psql(dsn, TABLE.format(name=name))
    try:
        psql(dsn, FILL.format(name=name, start=1, end=rows))
        snapshot_s, snapshot = timed_capture(env, name, "initial")
        psql(dsn, f"SELECT pg_create_logical_replication_slot('{recv_slot}', 'pgoutput')")
        psql(dsn, FILL.format(name=name, start=rows + 1, end=2 * rows))
        end = psql(dsn, "SELECT pg_current_wal_flush_lsn()")

        started = time.perf_counter()
        subprocess.run(
            [
                "pg_recvlogical",
                "-d",
                dsn,
                "--slot",
                recv_slot,
                "--start",
                "-o",
                "proto_version=1",
                "-o",
                f"publication_names={name}",
                "--endpos",
                end,
                "-f",
                "/dev/null",
                "--no-loop",
            ],
            check=True,
        )
        recv_s = time.perf_counter() - started
        stream_s, stream = timed_capture(env, name, "never")
    finally:
        psql(
            dsn,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name IN ('{name}', '{recv_slot}')",
        )
        psql(dsn, f"DROP PUBLICATION IF EXISTS {name}")
        psql(dsn, f"DROP SCHEMA {name} CASCADE")

    inserts = int(stream["inserts"])  # type: ignore[call-overload]
    snapshot_rows = int(snapshot["snapshot_rows"])  # type: ignore[call-overload]
    print(f"| {rows} rows, 10 columns | seconds | rate | peak RSS |")
    print("|---|---:|---:|---:|")
    print(
        f"| capture snapshot → Kafka | {snapshot_s:.1f} | {snapshot_rows / snapshot_s:,.0f} rows/s "
        f"| {snapshot['rss_mb']:.0f} MB |"
    )
    print(
        f"| capture stream → Kafka | {stream_s:.1f} | {inserts / stream_s:,.0f} events/s "
        f"| {stream['rss_mb']:.0f} MB |"
    )
    print(f"| pg_recvlogical → /dev/null | {recv_s:.1f} | {rows / recv_s:,.0f} events/s | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
