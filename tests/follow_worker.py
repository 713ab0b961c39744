"""A follower process for tests/test_follow_crash.py: killed with SIGKILL and restarted.

Runs ``changestream.follow(topics, --to)`` with small batches (so a kill often lands
inside a transaction). Prints ``started`` once the stream is open and the target's
positions are read, and ``done <changes>`` when a bounded run (``--until-end``) ended.
"""

from __future__ import annotations

import argparse
import sys

import changestream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topics", nargs="+")
    parser.add_argument("--to", required=True)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--schema-registry-url", required=True)
    parser.add_argument("--until-end", action="store_true")
    parser.add_argument("--batch-rows", type=int, default=500)
    args = parser.parse_args(argv)
    print("started", flush=True)
    counters = changestream.follow(
        args.topics,
        args.to,
        bootstrap_servers=args.bootstrap_servers,
        schema_registry_url=args.schema_registry_url,
        until="end" if args.until_end else None,
        batch_rows=args.batch_rows,
        batch_wait=0.05,
    )
    print(f"done {counters.changes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
