"""Capture refusing what it cannot work with: wal_level below logical, a role without REPLICATION.

The first runs against a throwaway PostgreSQL cluster started with ``wal_level=replica``
(tests/pg_instance.py); the second against the stack's, with a role of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import changestream
import pytest
from pg_capture import CaptureSetup, psql
from pg_instance import throwaway_postgres

pytestmark = [pytest.mark.timeout(180, func_only=True)]


@pytest.fixture
def setup(stack: dict[str, str]) -> Iterator[CaptureSetup]:
    capture = CaptureSetup(stack)
    capture.sql(f"CREATE SCHEMA {capture.schema}")
    capture.sql(f"CREATE TABLE {capture.schema}.t (id integer PRIMARY KEY)")
    yield capture
    capture.cleanup()


def _capture(stack: dict[str, str], dsn: str, name: str, table: str) -> Any:
    return changestream.capture(
        dsn=dsn,
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        tables=[table],
        topic_prefix=name,
        slot=name,
        publication=name,
        until="now",
    )


def test_wal_level_replica_is_refused_naming_wal_level(stack: dict[str, str]) -> None:
    with throwaway_postgres({"wal_level": "replica"}) as dsn:
        psql(dsn, "CREATE TABLE t (id integer PRIMARY KEY); INSERT INTO t VALUES (1)")
        with pytest.raises(changestream.ConfigError) as refused:
            _capture(stack, dsn, f"wal_{uuid4().hex[:8]}", "public.t")
        assert "wal_level=replica" in str(refused.value)
        assert "wal_level=logical" in str(refused.value)
        # Nothing was left behind: no slot, no publication.
        assert psql(dsn, "SELECT count(*) FROM pg_publication")[0][0] == "0"
        assert psql(dsn, "SELECT count(*) FROM pg_replication_slots")[0][0] == "0"


def test_a_role_without_replication_is_refused_naming_the_attribute(
    setup: CaptureSetup, stack: dict[str, str]
) -> None:
    role = f"norepl_{uuid4().hex[:8]}"
    password = f"pw-{uuid4().hex}"
    setup.sql(
        f"CREATE ROLE {role} LOGIN NOREPLICATION PASSWORD '{password}'; "
        f"ALTER TABLE {setup.schema}.t OWNER TO {role}; "
        f"GRANT USAGE ON SCHEMA {setup.schema} TO {role}; "
        f"GRANT CREATE ON DATABASE {setup.dsn.rsplit('/', 1)[1]} TO {role}"
    )
    try:
        host = setup.dsn.split("@", 1)[1]
        dsn = f"postgresql://{role}:{password}@{host}"
        with pytest.raises(changestream.ConfigError) as refused:
            _capture(stack, dsn, setup.name, f"{setup.schema}.t")
        message = str(refused.value)
        assert "REPLICATION" in message
        assert role in message
        assert password not in message
        assert setup.sql(
            f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{setup.name}'"
        ) == [["0"]]
    finally:
        setup.sql(f"DROP PUBLICATION IF EXISTS {setup.name}")
        setup.sql(f"ALTER TABLE {setup.schema}.t OWNER TO CURRENT_USER")
        database = setup.dsn.rsplit("/", 1)[1]
        setup.sql(f"REVOKE ALL ON DATABASE {database} FROM {role}; DROP OWNED BY {role}")
        setup.sql(f"DROP ROLE {role}")
