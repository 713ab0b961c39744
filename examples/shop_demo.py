"""Capture a small shop database into Kafka and follow its change stream.

The script creates ``customers`` and ``orders`` tables in PostgreSQL and fills them, captures
them into Kafka with ``changestream.capture`` (an initial snapshot, as Debezium's PostgreSQL
connector would write it), changes some rows, captures again (the streamed changes), and then
follows both topics with ``changestream.ChangeStream``, printing each change as it arrives.

Start the services and run it from the repository root (``make demo`` does both):

    tests/stack/stack.sh up
    python examples/shop_demo.py

Connection settings come from ``POSTGRES_DSN``, ``KAFKA_BOOTSTRAP_SERVERS`` and
``SCHEMA_REGISTRY_URL``, or from ``.stack.env`` (written by the stack script).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import changestream
from changestream import Change, ChangeStream

SCHEMA = """
CREATE SCHEMA {shop};
CREATE TABLE {shop}.customers (id integer PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE {shop}.orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL,
    status text NOT NULL,
    total numeric(10, 2) NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT now()
);
-- Whole old rows in `before` of updates and deletes.
ALTER TABLE {shop}.customers REPLICA IDENTITY FULL;
ALTER TABLE {shop}.orders REPLICA IDENTITY FULL;
INSERT INTO {shop}.customers VALUES (1, 'Ada', 'ada@example.com'), (2, 'Zoë', NULL),
    (3, 'Linus', 'linus@example.com');
INSERT INTO {shop}.orders (id, customer_id, status, total) VALUES (1001, 1, 'pending', 25.00);
"""

ACTIVITY = """
INSERT INTO {shop}.orders (id, customer_id, status, total) VALUES
    (1002, 2, 'pending', 9.50), (1003, 1, 'pending', 42.00);
UPDATE {shop}.orders SET status = 'shipped' WHERE id = 1001;
UPDATE {shop}.customers SET email = 'zoe@example.org' WHERE id = 2;
BEGIN;
UPDATE {shop}.orders SET status = 'cancelled' WHERE id = 1002;
DELETE FROM {shop}.orders WHERE id = 1002;
COMMIT;
UPDATE {shop}.orders SET status = 'delivered' WHERE id = 1001;
DELETE FROM {shop}.customers WHERE id = 3;
"""

CLEANUP = """
SELECT pg_drop_replication_slot('{shop}');
DROP PUBLICATION {shop};
DROP SCHEMA {shop} CASCADE;
"""


def connection_settings() -> dict[str, str]:
    """PostgreSQL DSN, Kafka and registry addresses, from the environment or .stack.env."""
    env = dict(os.environ)
    stack_env = Path(__file__).resolve().parent.parent / ".stack.env"
    if stack_env.exists():
        for line in stack_env.read_text().splitlines():
            key, sep, value = line.removeprefix("export ").partition("=")
            if sep and not key.startswith("#"):
                env.setdefault(key.strip(), (shlex.split(value) or [""])[0])
    return {k: env[k] for k in ("POSTGRES_DSN", "KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")}


def psql(dsn: str, sql: str) -> None:
    """Run a SQL script, each statement in its own transaction (as typed into psql)."""
    subprocess.run(
        ["psql", dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input="SET client_min_messages = warning;\n" + sql,
        text=True,
        stdout=subprocess.DEVNULL,
        check=True,
    )


def describe(change: Change) -> str:
    """One readable line per change."""
    line = f"{change.op:<7} {change.table or '?':<10} key={change.key}"
    if change.op == "update" and change.before is not None and change.after is not None:
        before, after = change.before, change.after
        diff = [
            f"{col}: {before.get(col)!r} -> {new!r}"
            for col, new in after.items()
            if before.get(col) != new
        ]
        return f"{line}  {', '.join(diff)}"
    if change.op == "delete":
        return f"{line}  before={change.before}"
    return f"{line}  after={change.after}"


def main() -> int:
    settings = connection_settings()
    dsn = settings["POSTGRES_DSN"]
    # A fresh schema, slot and topic prefix per run, so reruns start from empty topics.
    shop = f"shop{uuid4().hex[:6]}"
    psql(dsn, SCHEMA.format(shop=shop))

    def capture() -> dict[str, int]:
        return changestream.capture(
            dsn=dsn,
            bootstrap_servers=settings["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=settings["SCHEMA_REGISTRY_URL"],
            tables=[f"{shop}.customers", f"{shop}.orders"],
            topic_prefix=shop,
            slot=shop,
            publication=shop,
            until="now",  # return once everything committed so far is in Kafka
        )

    try:
        snapshot = capture()
        print(f"snapshot: {snapshot['snapshot_rows']} rows captured")
        psql(dsn, ACTIVITY.format(shop=shop))
        streamed = capture()
        print(
            f"stream: {streamed['transactions']} transactions, {streamed['inserts']} inserts, "
            f"{streamed['updates']} updates, {streamed['deletes']} deletes captured\n"
        )
        topics = [f"{shop}.{shop}.customers", f"{shop}.{shop}.orders"]
        seen = 0
        with ChangeStream(
            topics,
            bootstrap_servers=settings["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=settings["SCHEMA_REGISTRY_URL"],
            start="earliest",
            until="end",
        ) as stream:
            for change in stream:
                print(describe(change))
                seen += 1
    finally:
        # The slot would keep WAL forever: drop it, the publication and the tables.
        psql(dsn, CLEANUP.format(shop=shop))
    # Debezium's tombstones are not changes: changestream does not deliver them.
    expected = snapshot["snapshot_rows"] + sum(
        streamed[k] for k in ("inserts", "updates", "deletes")
    )
    print(f"\n{seen} changes")
    if seen != expected:
        print(f"expected {expected} changes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
