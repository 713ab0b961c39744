"""``changestream capture``: PostgreSQL → Kafka, as Debezium's PostgreSQL connector writes it.

Runs until Ctrl-C or SIGTERM (both stop it after a flush, exit status 130), or with
``--until now`` until everything written before it started is in Kafka; then prints the
counters as one JSON object. Progress (snapshot tables, rows, rate) is logged at INFO.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from types import FrameType
from typing import Any

from changestream._core import capture
from changestream.cli.options import connection_options, stream_settings


def register(subparsers: Any) -> None:
    """Add the ``capture`` subcommand."""
    parser = subparsers.add_parser(
        "capture",
        parents=[connection_options()],
        help="capture PostgreSQL changes into Kafka (Debezium-compatible)",
        description="Stream a PostgreSQL database's committed changes into Kafka over logical "
        "replication (pgoutput), as Debezium's PostgreSQL connector writes them. An LSN is "
        "confirmed to PostgreSQL only after Kafka acknowledged it.",
    )
    parser.add_argument(
        "--dsn", required=True, help="the database, postgresql://user@host:port/dbname"
    )
    parser.add_argument(
        "--tables",
        metavar="SCHEMA.TABLE,...",
        help="the tables to capture (default: every table of the publication)",
    )
    parser.add_argument(
        "--topic-prefix", default="changestream", help="topics are PREFIX.schema.table"
    )
    parser.add_argument("--slot", default="changestream", help="the replication slot")
    parser.add_argument("--publication", default="changestream", help="the publication")
    parser.add_argument(
        "--snapshot",
        choices=("initial", "never"),
        default="initial",
        help="read the tables' rows first when the slot is new (initial) or not (never)",
    )
    parser.add_argument(
        "--format",
        choices=("debezium", "rows"),
        default="debezium",
        help="Debezium's envelopes (default) or flat rows",
    )
    parser.add_argument(
        "--until",
        choices=("now",),
        help="stop once everything written before the start is in Kafka",
    )
    parser.add_argument(
        "--transaction-metadata",
        action="store_true",
        help="Debezium's provide.transaction.metadata: a transaction block in every streamed "
        "event and BEGIN/END events on PREFIX.transaction",
    )
    parser.set_defaults(func=run)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the capture and print its counters; 0 when done."""
    # Progress lines are INFO; the command's default level is WARNING.
    if not args.debug:
        logging.getLogger("changestream").setLevel(logging.INFO)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    # SIGTERM stops the capture the way Ctrl-C does: after a flush. The handler before is
    # restored after, for a caller of `cli.main` whose process goes on (its forked workers
    # would otherwise inherit ours).
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        counters = capture(
            dsn=args.dsn,
            tables=tables,
            topic_prefix=args.topic_prefix,
            slot=args.slot,
            publication=args.publication,
            snapshot=args.snapshot,
            format=args.format,
            until=args.until,
            transaction_metadata=args.transaction_metadata,
            **stream_settings(args),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(counters))
    return 0
