"""Options every subcommand shares: how to reach Kafka and the schema registry."""

from __future__ import annotations

import argparse
import os
from typing import Any


class UsageError(Exception):
    """A mistake in the command line found after parsing (exit status 2)."""


def connection_options(*, registry: bool = True) -> argparse.ArgumentParser:
    """A parent parser (``add_parser(..., parents=[...])``) with the connection flags.

    ``registry=False`` leaves out the schema registry flags, for subcommands that decode nothing.
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--bootstrap-servers",
        "-b",
        metavar="HOST:PORT,...",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
        help="Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    group.add_argument(
        "--kafka",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a librdkafka setting, e.g. security.protocol=SASL_SSL (repeatable)",
    )
    if registry:
        group.add_argument(
            "--schema-registry-url",
            "-r",
            metavar="URL",
            default=os.environ.get("SCHEMA_REGISTRY_URL"),
            help="the Confluent-compatible schema registry (default: $SCHEMA_REGISTRY_URL)",
        )
        group.add_argument(
            "--registry",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            help="a schema registry client setting, e.g. basic.auth.user.info=USER:PASS "
            "(repeatable)",
        )
    # Also accepted after the subcommand; SUPPRESS keeps the main parser's value otherwise.
    parent.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return parent


def key_values(pairs: list[str], flag: str) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a pair without ``=`` is a usage error."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} takes KEY=VALUE, not {pair!r}")
        settings[key.strip()] = value
    return settings


def kafka_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``bootstrap_servers=`` and ``kafka=`` keyword arguments from the flags."""
    if not args.bootstrap_servers:
        raise UsageError(
            "no Kafka brokers: give --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS"
        )
    return {
        "bootstrap_servers": args.bootstrap_servers,
        "kafka": key_values(args.kafka, "--kafka"),
    }


def stream_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The connection keyword arguments of ``ChangeStream`` from the flags."""
    kafka = kafka_settings(args)
    if not args.schema_registry_url:
        raise UsageError(
            "no schema registry: give --schema-registry-url or set SCHEMA_REGISTRY_URL"
        )
    return {
        **kafka,
        "schema_registry_url": args.schema_registry_url,
        "registry": key_values(args.registry, "--registry"),
    }
