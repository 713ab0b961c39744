"""``changestream follow TOPIC... --to TARGET``: keep a database copy of the source tables.

Rows and positions are written in one transaction per batch, so a new run resumes where the
target's positions say; prints what was applied when a bounded run (``--until end``) ends.
"""

from __future__ import annotations

import argparse
from typing import Any

from changestream.cli.options import connection_options, stream_settings


def register(subparsers: Any) -> None:
    """Add the ``follow`` subcommand."""
    parser = subparsers.add_parser(
        "follow",
        parents=[connection_options()],
        help="apply change topics to a SQLite, DuckDB or PostgreSQL copy, exactly once",
        description=(
            "Apply the change events of TOPIC... to one table per source table in TARGET "
            "(sqlite:///path.db, duckdb:///path.duckdb, postgresql://...). Rows and positions "
            "are written in one transaction per batch; a new run resumes where the target's "
            "positions say."
        ),
    )
    parser.add_argument("topics", metavar="TOPIC", nargs="+")
    parser.add_argument("--to", dest="target", metavar="TARGET", required=True)
    parser.add_argument("--until", choices=("end",), help="stop at the end of what is in Kafka now")
    parser.add_argument(
        "--group", metavar="ID", help="share the partitions with other followers of group ID"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Follow as ``args`` say; print the counters."""
    # The targets' extras (duckdb, psycopg) load with the subpackage.
    from changestream.follow import follow

    counters = follow(
        args.topics,
        args.target,
        group_id=args.group,
        until=args.until,
        progress=args.progress,
        **stream_settings(args),
    )
    print(
        f"{counters.changes} changes applied in {counters.transactions} transactions: "
        f"{counters.upserted} rows upserted, {counters.deleted} deleted, "
        f"{counters.truncated} truncates, {counters.tables_created} tables created, "
        f"{counters.columns_added} columns added"
    )
    return 0
