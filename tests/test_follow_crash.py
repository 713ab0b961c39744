"""Followers survive SIGKILL (issue 11): exactly-once effect in each target.

For each target, a follower process (tests/follow_worker.py) applies two Debezium-shaped
tables' changes (tests/follow_support.py) while they are being produced, and is killed with
SIGKILL 10 times at random moments, restarted each time; a last run reads to the end. The
target must then equal the state computed from the produced events, row by row, and its
positions table must equal the topics' ends: a change applied twice (a repeated insert
after a delete, an update of a truncated table) or skipped shows as a wrong row.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from cdc import CdcProducer
from confluent_kafka import Consumer, TopicPartition
from follow_support import Workload, canonical_rows, read_positions, read_target, target_url

KILLS = 10
ROUNDS = 40
CHANGES_PER_ROUND = 150
# After the process is up: it needs about 1.5 s (imports, registry, first fetch) before
# its first commit on this machine, so most kills land while batches are being applied.
KILL_DELAY = (1.5, 4.0)
HERE = Path(__file__).resolve().parent


@pytest.fixture
def location(
    request: pytest.FixtureRequest, tmp_path: Path, stack: dict[str, str]
) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield str(tmp_path / "copy.db")
    elif kind == "duckdb":
        yield str(tmp_path / "copy.duckdb")
    else:
        import psycopg

        database = f"follow_crash_{uuid.uuid4().hex[:8]}"
        dsn = stack["POSTGRES_DSN"]
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{database}"')
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        info["dbname"] = database
        yield _url(info)
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def _url(info: Mapping[str, object]) -> str:
    import urllib.parse

    user = urllib.parse.quote(str(info.get("user", "")))
    password = info.get("password")
    auth = f"{user}:{urllib.parse.quote(str(password))}@" if password else f"{user}@"
    host = info.get("host", "127.0.0.1")
    return f"postgresql://{auth}{host}:{info.get('port', 5432)}/{info['dbname']}"


def _kind(location: str) -> str:
    if location.endswith(".db"):
        return "sqlite"
    return "duckdb" if location.endswith(".duckdb") else "postgresql"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("location", ["sqlite", "duckdb", "postgresql"], indirect=True)
def test_sigkill_loop_ends_equal_to_the_source(
    stack: dict[str, str],
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    location: str,
    tmp_path: Path,
) -> None:
    kind = _kind(location)
    began = time.monotonic()
    workload = Workload(cdc, f"crash{uuid.uuid4().hex[:8]}", seed=random.randrange(2**32))
    for table in workload.tables:
        table.topic = make_topic(table.partitions)
    topics = [t.topic for t in workload.tables]
    command = [
        sys.executable,
        str(HERE / "follow_worker.py"),
        *topics,
        "--to",
        target_url(kind, location),
        "--bootstrap-servers",
        stack["KAFKA_BOOTSTRAP_SERVERS"],
        "--schema-registry-url",
        stack["SCHEMA_REGISTRY_URL"],
    ]

    # Changes keep coming while the follower is killed; the schema evolves midway.
    producing_error: list[BaseException] = []

    def produce() -> None:
        try:
            for round_ in range(ROUNDS):
                if round_ in (ROUNDS // 3, 2 * ROUNDS // 3):
                    workload.evolve()
                workload.changes(CHANGES_PER_ROUND)
                time.sleep(0.6)
        except BaseException as e:  # reported by the test thread
            producing_error.append(e)

    producer = threading.Thread(target=produce)
    workload.changes(CHANGES_PER_ROUND)
    producer.start()
    rng = random.Random()
    errors = tmp_path / "stderr.txt"
    kills = 0
    positions_after_kill = []
    try:
        for _ in range(KILLS):
            with errors.open("a") as stderr:
                process = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=stderr, text=True
                )
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("started"), errors.read_text()[-3000:]
            # Past the imports and the start: the kill lands while batches are applied.
            time.sleep(rng.uniform(*KILL_DELAY))
            process.kill()
            process.wait(30)
            process.stdout.close()
            assert process.returncode == -9, (
                f"the follower exited by itself ({process.returncode}): "
                f"{errors.read_text()[-3000:]}"
            )
            kills += 1
            positions_after_kill.append(sum(read_positions(kind, location).values()))
    finally:
        producer.join(120)
    assert not producing_error, producing_error
    workload.finish()

    final = subprocess.run([*command, "--until-end"], capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-3000:]
    assert final.stdout.strip().splitlines()[-1].startswith("done")

    figures = (
        f"{kind}: {kills} SIGKILLs, {workload.produced} messages produced, "
        f"positions (sum) after each kill {positions_after_kill}, "
        f"wall time {time.monotonic() - began:.1f}s"
    )
    print("\n" + figures)
    assert kills == KILLS
    # The kills landed at different points of the stream, not all before the first commit.
    assert len(set(positions_after_kill)) >= 3, figures
    for table in workload.tables:
        expected = canonical_rows(workload.expected(table))
        found = read_target(kind, location, table.name)
        assert found.keys() == expected.keys(), f"{table.name}: {figures}"
        for key, row in expected.items():
            assert found[key] == row, f"{table.name} row {key}: {found[key]} != {row}; {figures}"
    consumer = Consumer({"bootstrap.servers": stack["KAFKA_BOOTSTRAP_SERVERS"], "group.id": "x"})
    try:
        ends = {
            (t.topic, p): consumer.get_watermark_offsets(TopicPartition(t.topic, p), timeout=30)[1]
            for t in workload.tables
            for p in range(t.partitions)
        }
    finally:
        consumer.close()
    assert read_positions(kind, location) == ends, figures
