"""``changestream tail TOPIC...``: print changes as they arrive.

One readable line per change, or with ``--json`` one JSON object per line (see
:mod:`changestream.cli.render` for how values are written). Without ``--group`` nothing is
committed; with it the group's position advances as changes are printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from changestream._core import ChangeStream
from changestream.cli.options import UsageError, connection_options, stream_settings
from changestream.cli.render import json_line, text_line

DESCRIPTION = """\
Print the changes on TOPIC... as they arrive, one line each.

--from says where to start: earliest, latest, or committed (the group's position). The
default is committed with --group, earliest with --until end, latest otherwise.
--until end stops at the end of what is in Kafka now.

--json prints one JSON object per line with op, table, key, before, after, topic,
partition, offset and timestamp. Values are exact: decimals as strings, dates, times and
timestamps ISO-8601, durations and intervals ISO-8601 (P1M2DT3.5S), bytes base64, UUIDs as
strings, UNAVAILABLE (a value Debezium did not have) as {"unavailable": true}."""


def register(subparsers: Any) -> None:
    """Add the ``tail`` subcommand."""
    parser = subparsers.add_parser(
        "tail",
        parents=[connection_options()],
        help="print changes as they arrive",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("topics", nargs="+", metavar="TOPIC")
    parser.add_argument(
        "--from",
        dest="start",
        choices=("earliest", "latest", "committed"),
        help="where to start (see above)",
    )
    parser.add_argument("--until", choices=("end",), help="stop at the end of what is in Kafka now")
    parser.add_argument("--group", metavar="ID", help="read as consumer group ID, committing")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the changes; 0 when a bounded read ends."""
    start = args.start
    if start is None:
        start = "committed" if args.group else ("earliest" if args.until else "latest")
    if start == "committed" and not args.group:
        raise UsageError("--from committed needs --group")
    render = json_line if args.json else text_line
    with ChangeStream(
        args.topics,
        **stream_settings(args),
        group_id=args.group,
        start=start,
        until=args.until,
    ) as stream:
        for change in stream:
            print(render(change), flush=True)
    return 0
