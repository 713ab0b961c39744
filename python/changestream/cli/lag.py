"""``changestream lag --group ID TOPIC...``: how far behind a consumer group is.

Per partition the group's committed position, the end of the partition and the lag, then
the total, like ``kafka-consumer-groups --describe``. Reads the positions without joining
the group, so its members are not disturbed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from changestream._core import group_lag
from changestream.cli.options import connection_options, kafka_settings

HEADER = ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG")


def register(subparsers: Any) -> None:
    """Add the ``lag`` subcommand."""
    parser = subparsers.add_parser(
        "lag",
        parents=[connection_options(registry=False)],
        help="a consumer group's committed positions and lag",
        description="Print consumer group ID's committed position, the end and the lag of "
        "every partition of TOPIC..., then the total lag. A partition where the group has "
        "committed nothing shows '-' and counts from its oldest message.",
    )
    parser.add_argument("topics", nargs="+", metavar="TOPIC")
    parser.add_argument("--group", required=True, metavar="ID", help="the consumer group")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per partition, then the total"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="give up after this long"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON lines); 0 when it could be read."""
    settings = kafka_settings(args)
    partitions = group_lag(args.topics, group_id=args.group, timeout=args.timeout, **settings)
    total = sum(row["lag"] for row in partitions)
    if args.json:
        for row in partitions:
            print(json.dumps({"group": args.group, **row}))
        print(json.dumps({"group": args.group, "total_lag": total}))
        return 0
    rows = [
        (
            row["topic"],
            str(row["partition"]),
            "-" if row["committed"] is None else str(row["committed"]),
            str(row["end"]),
            str(row["lag"]),
        )
        for row in partitions
    ]
    widths = [max(len(cells[i]) for cells in [HEADER, *rows]) for i in range(len(HEADER))]
    for cells in [HEADER, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        )
    print(f"TOTAL LAG {total} (group {args.group})")
    return 0
