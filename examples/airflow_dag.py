"""An Airflow DAG that loads a database's changes from Kafka into a local SQLite table.

The everyday ETL task: each run reads the change topics up to their end, writes the changes
to a table, and commits the group's positions only after the rows are safely written, in
chunks. A run that fails half way has committed exactly the chunks it wrote; the next run
starts right after them, so nothing is lost, and nothing is loaded twice.

Settings (environment variables of the Airflow worker):

- ``KAFKA_BOOTSTRAP_SERVERS``, ``SCHEMA_REGISTRY_URL``: where Kafka and the registry are;
- ``CHANGESTREAM_TOPICS``: comma-separated change topics;
- ``CHANGESTREAM_GROUP``: the consumer group that keeps the positions (default
  ``airflow-changes``);
- ``CHANGESTREAM_DB``: the SQLite file to load into (default ``changes.sqlite``);
- ``CHANGESTREAM_CHUNK``: changes written (and then committed) at a time (default 1000).

Try it with ``airflow dags test changestream_to_sqlite``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import dag, task
from changestream import Change, ChangeStream
from changestream.cli.render import json_value

SCHEMA = """
create table if not exists changes (
    topic text, partition integer, "offset" integer, op text, tbl text,
    key text, before text, after text, ts text,
    primary key (topic, partition, "offset"));
create table if not exists loads (run text, rows integer, finished text);
"""


def load_changes(
    topics: Sequence[str],
    *,
    bootstrap_servers: str,
    schema_registry_url: str,
    group_id: str,
    database: str,
    chunk: int,
    run: str,
) -> int:
    """Load every change up to the end of ``topics`` into ``database``; returns how many."""
    db = sqlite3.connect(database)
    db.executescript(SCHEMA)
    loaded = 0
    with ChangeStream(
        topics,
        bootstrap_servers=bootstrap_servers,
        schema_registry_url=schema_registry_url,
        group_id=group_id,
        start="committed",  # where the last successful write stopped
        until="end",
        commit="manual",  # nothing is committed before the write it belongs to
    ) as stream:
        pending: list[Change] = []
        for change in stream:
            pending.append(change)
            if len(pending) == chunk:
                loaded += write(db, pending)
                commit_written(stream, pending)
                pending = []
        loaded += write(db, pending)
        commit_written(stream, pending)
    with db:
        db.execute(
            "insert into loads values (?, ?, ?)",
            (run, loaded, datetime.now(timezone.utc).isoformat()),
        )
    db.close()
    return loaded


def commit_written(stream: ChangeStream, written: list[Change]) -> None:
    """Commit the group's positions through what was written: through the last written
    change of each partition (``commit(change)`` finishes its partition up to it)."""
    last = {(change.topic, change.partition): change for change in written}
    for change in last.values():
        stream.commit(change)


def encode(value: Any) -> str:
    """A value as exact JSON text (see ``changestream tail --json``)."""
    return json.dumps(json_value(value))


def write(db: sqlite3.Connection, changes: list[Change]) -> int:
    """Write ``changes`` in one transaction (all or none). Replacing by position makes a
    change delivered again after a crash between this write and the commit harmless."""
    with db:
        db.executemany(
            "insert or replace into changes values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c.topic,
                    c.partition,
                    c.offset,
                    c.op,
                    c.table,
                    encode(c.key),
                    encode(c.before),
                    encode(c.after),
                    json_value(c.timestamp),
                )
                for c in changes
            ],
        )
    return len(changes)


@dag(
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one run at a time owns the group's positions
    tags=["changestream"],
)
def changestream_to_sqlite() -> None:
    @task
    def load(run_id: str | None = None) -> int:
        # The stream is made inside the task, in the worker process that runs it.
        return load_changes(
            os.environ["CHANGESTREAM_TOPICS"].split(","),
            bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=os.environ["SCHEMA_REGISTRY_URL"],
            group_id=os.environ.get("CHANGESTREAM_GROUP", "airflow-changes"),
            database=os.environ.get("CHANGESTREAM_DB", "changes.sqlite"),
            chunk=int(os.environ.get("CHANGESTREAM_CHUNK", "1000")),
            run=run_id or "manual",
        )

    load()


changestream_to_sqlite()
