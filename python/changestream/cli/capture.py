"""``changestream capture``: PostgreSQL → Kafka, as Debezium's PostgreSQL connector writes it.

``register(subparsers)`` adds the subcommand to the ``changestream`` command's parser;
``run(args)`` runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from types import FrameType

import changestream


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text.split('=')[0]!r}…")
    return key, value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``capture`` subcommand."""
    parser = subparsers.add_parser(
        "capture",
        help="capture PostgreSQL changes into Kafka (Debezium-compatible)",
        description="Stream a PostgreSQL database's committed changes into Kafka over logical "
        "replication (pgoutput), as Debezium's PostgreSQL connector writes them. An LSN is "
        "confirmed to PostgreSQL only after Kafka acknowledged it.",
    )
    parser.add_argument("--dsn", required=True, help="PostgreSQL DSN (postgresql://user@host/db)")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        required="KAFKA_BOOTSTRAP_SERVERS" not in os.environ,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--schema-registry-url",
        default=os.environ.get("SCHEMA_REGISTRY_URL"),
        required="SCHEMA_REGISTRY_URL" not in os.environ,
        help="Confluent-compatible schema registry URL (default: $SCHEMA_REGISTRY_URL)",
    )
    parser.add_argument(
        "--tables",
        help="comma-separated schema.table names (default: every table of the publication)",
    )
    parser.add_argument("--topic-prefix", default="changestream", help="topic prefix")
    parser.add_argument("--slot", default="changestream", help="replication slot")
    parser.add_argument("--publication", default="changestream", help="publication")
    parser.add_argument("--snapshot", choices=["initial", "never"], default="initial")
    parser.add_argument("--format", choices=["debezium", "rows"], default="debezium")
    parser.add_argument("--until", choices=["now"], help="stop once caught up with the start")
    parser.add_argument(
        "--kafka",
        action="append",
        type=_pair,
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka setting (repeatable)",
    )
    parser.add_argument(
        "--registry",
        action="append",
        type=_pair,
        default=[],
        metavar="KEY=VALUE",
        help="schema registry client setting (repeatable)",
    )
    parser.set_defaults(func=run)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the capture; 0 when done, 130 after Ctrl-C / SIGTERM, 1 on an error."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # SIGTERM stops the capture the way Ctrl-C does: after a flush.
    signal.signal(signal.SIGTERM, _terminate)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    try:
        counters = changestream.capture(
            dsn=args.dsn,
            bootstrap_servers=args.bootstrap_servers,
            schema_registry_url=args.schema_registry_url,
            tables=tables,
            topic_prefix=args.topic_prefix,
            slot=args.slot,
            publication=args.publication,
            snapshot=args.snapshot,
            format=args.format,
            until=args.until,
            kafka=dict(args.kafka),
            registry=dict(args.registry),
        )
    except KeyboardInterrupt:
        print("capture stopped", file=sys.stderr)
        return 130
    except changestream.ChangeStreamError as error:
        print(f"capture failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(counters))
    return 0
