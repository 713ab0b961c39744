"""The example Airflow DAG (examples/airflow_dag.py) under ``airflow dags test``, against the
stack: a second run loads exactly the changes produced since the first, and a run that fails
half way through its write loses nothing (the next one loads the rest).

Airflow runs from a virtual environment of its own (tests/airflow_env.py, cached), with the
changestream build under test on PYTHONPATH.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import changestream
import pytest
from airflow_env import AIRFLOW_VERSION, airflow_venv
from cdc import CdcProducer, Delivered
from items_cdc import inserts

pytestmark = [pytest.mark.timeout(900, func_only=True)]

REPO = Path(__file__).resolve().parent.parent
DAG_FILE = REPO / "examples" / "airflow_dag.py"
DAG_ID = "changestream_to_sqlite"


def positions(delivered: list[Delivered]) -> set[tuple[str, int, int]]:
    return {(d.topic, d.partition, d.offset) for d in delivered}


def loaded(database: Path) -> tuple[set[tuple[str, int, int]], list[int]]:
    """What the DAG wrote: the changes' positions and each successful run's row count."""
    with sqlite3.connect(database) as db:
        rows = db.execute('select topic, partition, "offset" from changes').fetchall()
        loads = [n for (n,) in db.execute("select rows from loads order by rowid")]
    assert len(rows) == len(set(rows))
    return set(rows), loads


def test_dag_loads_new_changes_once_and_recovers_from_a_failure_half_way(
    stack: dict[str, str],
    cdc: CdcProducer,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    home = airflow_venv()
    database = tmp_path / "changes.sqlite"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
        # The build under test; the extension is abi3, so any CPython 3.10+ imports it.
        "PYTHONPATH": str(Path(changestream.__file__).parent.parent),
        "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
        "SCHEMA_REGISTRY_URL": stack["SCHEMA_REGISTRY_URL"],
        "CHANGESTREAM_GROUP": f"airflow-{uuid4().hex[:8]}",
        "CHANGESTREAM_DB": str(database),
        "CHANGESTREAM_CHUNK": "10",
    }
    env.pop("VIRTUAL_ENV", None)
    airflow = str(home / "bin" / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)

    def dags_test(day: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [airflow, "dags", "test", "-f", str(DAG_FILE), DAG_ID, f"2026-01-{day:02d}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    orders, customers = make_topic(2), make_topic(1)
    env["CHANGESTREAM_TOPICS"] = f"{orders},{customers}"
    first = inserts(cdc, orders, range(0, 20)) + inserts(cdc, customers, range(100, 110))

    run = dags_test(1)
    assert run.returncode == 0, run.stdout + run.stderr
    rows, loads = loaded(database)
    assert rows == positions(first)
    assert loads == [30]

    # Run 2 loads exactly what was produced since run 1.
    second = inserts(cdc, orders, range(20, 27)) + inserts(cdc, customers, range(110, 115))
    run = dags_test(2)
    assert run.returncode == 0, run.stdout + run.stderr
    rows, loads = loaded(database)
    assert rows == positions(first + second)
    assert loads == [30, 12]

    # Run 3 fails after writing two of its four chunks of 10 ...
    third = inserts(cdc, orders, range(27, 57)) + inserts(cdc, customers, range(115, 125))
    with sqlite3.connect(database) as db:
        db.execute(
            "create trigger fail_half_way before insert on changes "
            "when (select count(*) from changes) >= 62 "
            "begin select raise(abort, 'injected failure half way'); end"
        )
    run = dags_test(3)
    assert run.returncode != 0 or "failed" in run.stdout + run.stderr
    assert "injected failure half way" in run.stdout + run.stderr
    rows, loads = loaded(database)
    assert len(rows) == 62, run.stdout[-3000:] + run.stderr[-3000:]
    assert loads == [30, 12]

    # ... and run 4 loads the rest: every change once, nothing lost.
    with sqlite3.connect(database) as db:
        db.execute("drop trigger fail_half_way")
    run = dags_test(4)
    assert run.returncode == 0, run.stdout + run.stderr
    rows, loads = loaded(database)
    assert rows == positions(first + second + third)
    assert loads == [30, 12, 20]
    assert (
        AIRFLOW_VERSION
        in subprocess.run(
            [airflow, "version"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
