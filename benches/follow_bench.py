"""make bench-follow: Debezium events from Kafka into each follower target, events/s.

Reads the benchmark's ``debezium`` dataset (``datagen.py``: N Debezium envelopes of a
10-column ``orders`` table, ops c/u/d 60/30/10, 6 partitions) once per variant, each in a
fresh process, in the same run: the plain row iterator (``for change in stream``), the batches
every follower reads (``stream.batches()`` as pyarrow, 20,000 rows as ``follow`` asks),
then ``changestream.follow`` into a new SQLite file, a new DuckDB file and a fresh PostgreSQL
database of the stack, then ``read_table``. Reports events/s end to end (from the call to
the return, connection and table creation included) and the peak RSS of the process, and
checks that every target's table equals ``read_table``'s (the row count and a checksum of
every column as text). Writes ``benches/follow_results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datagen  # noqa: E402
from bench import stack_addresses  # noqa: E402

VARIANTS = ("iterator", "batches", "sqlite", "duckdb", "postgresql", "read_table")
TARGETS = {"sqlite": 150_000, "duckdb": 150_000, "postgresql": 100_000}


def _postgres_dsn() -> str:
    env = {}
    for line in (HERE.parent / ".stack.env").read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            env[key.strip()] = value.strip().strip("'\"")
    return os.environ.get("POSTGRES_DSN", env.get("POSTGRES_DSN", ""))


def run_variant(
    variant: str, topic: str, bootstrap: str, registry: str, work: Path
) -> dict[str, Any]:
    """Measure one variant in this process (called in a child)."""
    import changestream

    began = time.perf_counter()
    result: dict[str, Any] = {"variant": variant}
    if variant == "iterator":
        count = 0
        with changestream.ChangeStream(
            topic, bootstrap_servers=bootstrap, schema_registry_url=registry, until="end"
        ) as stream:
            for _ in stream:
                count += 1
        result["events"] = count
    elif variant == "batches":
        # What every follower reads through: the ceiling of its speed.
        count = 0
        with changestream.ChangeStream(
            topic, bootstrap_servers=bootstrap, schema_registry_url=registry, until="end"
        ) as stream:
            for batch in stream.batches(max_rows=20_000, max_wait=0.5):
                count += batch.to_pyarrow().num_rows
        result["events"] = count
    elif variant == "read_table":
        table = changestream.read_table(
            topic, bootstrap_servers=bootstrap, schema_registry_url=registry
        )
        result["seconds"] = time.perf_counter() - began
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["rows"] = table.num_rows
        result["state"] = _arrow_digest(table)
    else:
        if variant == "sqlite":
            target = f"sqlite:///{work / 'orders.db'}"
        elif variant == "duckdb":
            target = f"duckdb:///{work / 'orders.duckdb'}"
        else:
            target = (work / "dsn").read_text()
        counters = changestream.follow(
            topic, target, bootstrap_servers=bootstrap, schema_registry_url=registry, until="end"
        )
        result["seconds"] = time.perf_counter() - began
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["events"] = counters.changes
        result["transactions"] = counters.transactions
        result["rows"], result["state"] = _target_digest(variant, target)
    result.setdefault("seconds", time.perf_counter() - began)
    result.setdefault("rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def _arrow_digest(table: Any) -> str:
    import hashlib

    rows = sorted(
        "|".join("" if v is None else _text(v) for v in row.values()) for row in table.to_pylist()
    )
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def _text(value: Any) -> str:
    import datetime
    import decimal

    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"{value:f}"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _target_digest(variant: str, target: str) -> tuple[int, str]:
    """The target table's rows as the same digest ``read_table``'s gets (not timed)."""
    import pyarrow as pa

    if variant == "sqlite":
        import sqlite3

        db = sqlite3.connect(target.removeprefix("sqlite:///"))
        cursor = db.execute("SELECT * FROM orders")
        names = [d[0] for d in cursor.description]
        table = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cursor])
        db.close()
        rows = table.to_pylist()
        # SQLite stores exact values as text: bring them back to the Arrow values.
        import datetime
        import decimal

        for row in rows:
            row["unit_price"] = (
                None if row["unit_price"] is None else decimal.Decimal(row["unit_price"])
            )
            for column in ("created_at", "updated_at"):
                if row[column] is not None:
                    row[column] = datetime.datetime.fromisoformat(
                        row[column].replace("Z", "+00:00")
                    )
        table = pa.Table.from_pylist(rows)
    elif variant == "duckdb":
        import duckdb

        with duckdb.connect(target.removeprefix("duckdb:///")) as db:
            table = db.sql("SELECT * FROM orders").to_arrow_table()
    else:
        import psycopg

        with psycopg.connect(target) as db:
            cursor = db.execute("SELECT * FROM orders")
            assert cursor.description is not None
            names = [d.name for d in cursor.description]
            table = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cursor])
    return table.num_rows, _arrow_digest(table)


def child(args: argparse.Namespace) -> int:
    result = run_variant(args.variant, args.topic, args.bootstrap, args.registry, Path(args.work))
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", dest="variant", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--registry", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return child(args)

    bootstrap, registry = stack_addresses()
    topic = datagen.ensure("debezium", args.events, bootstrap, registry)
    results = []
    with tempfile.TemporaryDirectory(prefix="follow-bench-") as work:
        dsn = _postgres_dsn()
        database = f"follow_bench_{uuid.uuid4().hex[:8]}"
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{database}"')
        parts = urllib.parse.urlsplit(dsn)
        (Path(work) / "dsn").write_text(
            urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))
        )
        try:
            for variant in args.variants.split(","):
                completed = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        variant,
                        "--topic",
                        topic,
                        "--bootstrap",
                        bootstrap,
                        "--registry",
                        registry,
                        "--work",
                        work,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if completed.returncode != 0:
                    print(completed.stderr[-3000:], file=sys.stderr)
                    return 1
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                result["events_per_s"] = args.events / result["seconds"]
                # The machine may be shared: how busy it was while this variant ran.
                result["load"] = os.getloadavg()[0]
                results.append(result)
                print(
                    f"{variant:>10}: {result['events_per_s']:>10,.0f} events/s "
                    f"({result['seconds']:.1f} s, peak RSS {result['rss_mb']:.0f} MB"
                    + (
                        f", {result['rows']} rows, state {result['state']}"
                        if "rows" in result
                        else ""
                    )
                    + ")",
                    flush=True,
                )
        finally:
            with psycopg.connect(dsn, autocommit=True) as db:
                db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    states = {r["variant"]: r["state"] for r in results if "state" in r}
    agree = len(set(states.values())) <= 1
    lines = [
        "# Followers: 1M Debezium events into each target",
        "",
        f"`make bench-follow`: {args.events:,} Debezium envelopes of a 10-column `orders` table "
        "(ops c/u/d 60/30/10, 6 partitions; benches/datagen.py), each variant a fresh process "
        "in the same run; events/s from the call to its return (connection, table creation "
        "and the last commit included); of batches: the share of `stream.batches()` alone, what "
        "every follower reads through; load: the 1-minute load average when the variant "
        "ended (2-core machine shared with other work).",
        "",
        "| variant | events/s | of batches | seconds | peak RSS (MB) | load (1 min) | rows "
        "| target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ceiling = next((r["events_per_s"] for r in results if r["variant"] == "batches"), None)
    for r in results:
        goal = TARGETS.get(r["variant"])
        ratio = "" if ceiling is None else f"{r['events_per_s'] / ceiling:.2f}"
        lines.append(
            f"| {r['variant']} | {r['events_per_s']:,.0f} | {ratio} | {r['seconds']:.1f} | "
            f"{r['rss_mb']:.0f} | {r['load']:.1f} | {r.get('rows', '')} | "
            f"{'' if goal is None else f'≥ {goal:,}'} |"
        )
    lines += [
        "",
        "Every target's `orders` table "
        + ("equals" if agree else "**differs from**")
        + " `read_table`'s (same rows, same values; digests "
        + ", ".join(f"{k}: `{v}`" for k, v in states.items())
        + ").",
    ]
    (HERE / "follow_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
