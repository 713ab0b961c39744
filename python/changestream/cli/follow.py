"""``changestream follow TOPIC… --to TARGET``: keep a database copy of the source tables.

``register(subparsers)`` adds the ``follow`` subcommand to the ``changestream`` command's
parser; ``run(args)`` runs it and returns the exit status (0 done, 1 a changestream error,
130 interrupted). Addresses default to ``KAFKA_BOOTSTRAP_SERVERS`` and
``SCHEMA_REGISTRY_URL``; ``--kafka``/``--registry`` take ``key=value`` settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``follow`` subcommand to ``subparsers`` (from ``add_subparsers()``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "follow",
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
    parser.add_argument(
        "--until",
        choices=["end"],
        default=None,
        help="stop at the end of what is in Kafka now (default: follow forever)",
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--schema-registry-url",
        default=os.environ.get("SCHEMA_REGISTRY_URL"),
        help="schema registry URL (default: $SCHEMA_REGISTRY_URL)",
    )
    parser.add_argument("--group", default=None, help="consumer group id")
    parser.add_argument(
        "--kafka",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting (repeatable)",
    )
    parser.add_argument(
        "--registry",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a schema registry client setting (repeatable)",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Follow as ``args`` say; print the counters. Returns the exit status."""
    from changestream import ChangeStreamError
    from changestream.follow import follow

    if not args.bootstrap_servers or not args.schema_registry_url:
        print(
            "changestream follow: --bootstrap-servers and --schema-registry-url are needed "
            "(or KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL)",
            file=sys.stderr,
        )
        return 2
    try:
        counters = follow(
            args.topics,
            args.target,
            bootstrap_servers=args.bootstrap_servers,
            schema_registry_url=args.schema_registry_url,
            group_id=args.group,
            until=args.until,
            kafka=dict(args.kafka),
            registry=dict(args.registry),
            progress=args.progress,
        )
    except ChangeStreamError as error:
        print(f"changestream follow: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    except ImportError as error:  # the target's extra is not installed
        print(f"changestream follow: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(
        f"{counters.changes} changes applied in {counters.transactions} transactions: "
        f"{counters.upserted} rows upserted, {counters.deleted} deleted, "
        f"{counters.truncated} truncates, {counters.tables_created} tables created, "
        f"{counters.columns_added} columns added"
    )
    return 0
