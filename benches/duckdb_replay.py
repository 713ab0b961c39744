"""DuckDB alone: replay a follower's statements with a given checkpoint threshold.

``capture DIR`` follows the benchmark's ``debezium`` dataset (``datagen.py``, N events) into
a new DuckDB file, as ``make bench-follow`` does, and saves every collapsed batch the target
was handed (the keys it deleted, the rows it upserted) as Arrow IPC files in DIR.

``replay DIR`` applies those batches, in their order and one transaction per batch as the
follower commits them, to a fresh DuckDB file through the follower's own target code, without
Kafka or the stream, ``--repeat`` times over (so 4 replays of 1M events' batches are the
statements of 4M events on the same keys), and prints the seconds and the process's peak
RSS. This is how the ``duckdb:///`` default ``checkpoint_threshold`` was chosen.

    python benches/duckdb_replay.py capture /tmp/batches          # needs make stack-up
    python benches/duckdb_replay.py replay /tmp/batches --threshold 32MB --repeat 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def capture(directory: Path, events: int) -> None:
    import changestream
    import datagen
    import duckdb
    import pyarrow as pa  # type: ignore[import-untyped]
    from changestream.follow.duckdb import DuckdbTarget

    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    registry = os.environ["SCHEMA_REGISTRY_URL"]
    topic = datagen.ensure("debezium", events, bootstrap, registry)
    directory.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []

    def save(rows: pa.Table) -> str:
        name = f"{len(steps)}.arrow"
        with (
            pa.OSFile(str(directory / name), "wb") as sink,
            pa.ipc.new_file(sink, rows.schema) as w,
        ):
            w.write_table(rows)
        return name

    delete, upsert, commit = DuckdbTarget.delete, DuckdbTarget.upsert, DuckdbTarget.commit

    def saving_delete(self: Any, table: str, keys: Any, kinds: Any) -> None:
        steps.append({"do": "delete", "table": table, "file": save(keys), "kinds": dict(kinds)})
        delete(self, table, keys, kinds)

    def saving_upsert(self: Any, table: str, rows: Any, key: Any, keep: Any, kinds: Any) -> None:
        step = {"do": "upsert", "table": table, "file": save(rows), "kinds": dict(kinds)}
        steps.append({**step, "key": list(key), "keep": sorted(keep)})
        upsert(self, table, rows, key, keep, kinds)

    def noting_commit(self: Any) -> None:
        commit(self)
        steps.append({"do": "commit"})

    DuckdbTarget.delete = saving_delete  # type: ignore[method-assign]
    DuckdbTarget.upsert = saving_upsert  # type: ignore[method-assign]
    DuckdbTarget.commit = noting_commit  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as work:
        target = f"duckdb:///{work}/orders.duckdb"
        changestream.follow(
            topic, target, bootstrap_servers=bootstrap, schema_registry_url=registry, until="end"
        )
        with duckdb.connect(f"{work}/orders.duckdb") as db:
            tables = db.execute(
                "SELECT sql FROM duckdb_tables() WHERE table_name NOT LIKE '\\_changestream%' "
                "ESCAPE '\\'"
            ).fetchall()
    (directory / "steps.json").write_text(
        json.dumps({"events": events, "tables": [t for (t,) in tables], "steps": steps})
    )
    print(f"{sum(s['do'] == 'commit' for s in steps)} batches of {events:,} events in {directory}")


def replay(directory: Path, threshold: str, repeat: int) -> None:
    import duckdb
    import pyarrow as pa
    from changestream.follow.duckdb import DuckdbTarget

    saved = json.loads((directory / "steps.json").read_text())
    with tempfile.TemporaryDirectory() as work:
        db = duckdb.connect(
            f"{work}/orders.duckdb", config={"threads": 1, "checkpoint_threshold": threshold}
        )
        for create in saved["tables"]:
            db.execute(create)
        target = DuckdbTarget(db, owned=True)
        began = time.perf_counter()
        for _ in range(repeat):
            target.begin()
            for step in saved["steps"]:
                if step["do"] == "commit":
                    target.commit()
                    target.begin()
                    continue
                with pa.memory_map(str(directory / step["file"])) as source:
                    rows = pa.ipc.open_file(source).read_all()
                if step["do"] == "delete":
                    target.delete(step["table"], rows, step["kinds"])
                else:
                    keep = frozenset(step["keep"])
                    target.upsert(step["table"], rows, step["key"], keep, step["kinds"])
            target.commit()
        seconds = time.perf_counter() - began
        target.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    events = saved["events"] * repeat
    print(
        f"checkpoint_threshold {threshold}: {events:,} events' batches in {seconds:.2f} s, "
        f"peak RSS {peak_mb:.0f} MB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    capturing = commands.add_parser("capture", help="follow the dataset, save its batches")
    capturing.add_argument("directory", type=Path)
    capturing.add_argument("--events", type=int, default=1_000_000)
    replaying = commands.add_parser("replay", help="apply saved batches to a fresh DuckDB")
    replaying.add_argument("directory", type=Path)
    replaying.add_argument("--threshold", default="32MB", help="checkpoint_threshold")
    replaying.add_argument("--repeat", type=int, default=1, help="replays, one after another")
    args = parser.parse_args()
    if args.command == "capture":
        capture(args.directory, args.events)
    else:
        replay(args.directory, args.threshold, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
