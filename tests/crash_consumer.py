"""A consumer process for tests/test_crash_loop.py: killed with SIGKILL and restarted.

It follows a topic in a consumer group and, for every change, appends one line
``"<partition> <offset>\\n"`` to ``--out`` with a single ``write`` to a file opened with
``O_APPEND`` *before* asking for the next change. Asking for the next change is what
finishes the previous one, and only finished changes are committed, so every committed
change is in the file whatever moment the process is killed at: the file then holds every
change the group will not deliver again.

It prints ``started`` once the first change is written (the test kills it at a random
moment after that) and ``done <count>`` when a bounded read (``--until-end``) ended.
``--rate`` paces it at that many changes per second (the work an application would do),
so the kills land while it is still reading.

The group uses static membership (``group.instance.id``): a restarted process takes over
the killed member's place at once instead of waiting for its session to time out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from changestream import ChangeStream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--schema-registry-url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--commit-interval", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.0, help="changes per second; 0: unpaced")
    parser.add_argument("--until-end", action="store_true")
    parser.add_argument("--instance-id", default="crash-consumer")
    args = parser.parse_args(argv)

    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stream = ChangeStream(
        args.topic,
        bootstrap_servers=args.bootstrap_servers,
        schema_registry_url=args.schema_registry_url,
        group_id=args.group,
        until="end" if args.until_end else None,
        commit_interval=args.commit_interval,
        kafka={"group.instance.id": args.instance_id, "session.timeout.ms": 6000},
    )
    count = 0
    started = 0.0
    for change in stream:
        # One write() per line: a kill cannot tear it, and it is in the file (the page cache
        # outlives the process) before the next change is asked for.
        os.write(fd, f"{change.partition} {change.offset}\n".encode())
        count += 1
        if count == 1:
            started = time.monotonic()
            print("started", flush=True)
        if args.rate > 0 and count % 50 == 0:
            ahead = started + count / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    stream.close()
    os.close(fd)
    print(f"done {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
