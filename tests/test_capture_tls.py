"""Capture over TLS: ``sslmode`` (and ``sslrootcert``) in the DSN, as libpq reads them.

A throwaway PostgreSQL (tests/pg_instance.py) with ``ssl=on``, a server certificate for
127.0.0.1 signed by a test CA (tests/registry_proxy.py's ``make_pki``) and an ``hba_file`` that
accepts only ``hostssl`` connections: a capture that succeeds there spoke TLS on every one of its
connections (catalog queries, the snapshot's COPY, the replication stream). Kafka and the
schema registry are the shared stack's.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import changestream
import pytest
from pg_capture import psql, read_independently
from pg_instance import throwaway_postgres
from registry_proxy import Pki, make_pki

pytestmark = [pytest.mark.timeout(180, func_only=True)]

HBA = b"""local all all trust
hostssl all all 127.0.0.1/32 trust
hostssl replication all 127.0.0.1/32 trust
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pg-tls"))


@pytest.fixture(scope="module")
def tls_dsn(pki: Pki) -> Iterator[str]:
    """The DSN of a PostgreSQL that accepts TLS connections only (no ``sslmode`` in it)."""
    files = {
        "server.crt": pki.server_cert.read_bytes(),
        "server.key": pki.server_key.read_bytes(),
        "pg_hba.conf": HBA,
    }
    settings = {
        "wal_level": "logical",
        "ssl": "on",
        "ssl_cert_file": "{root}/server.crt",
        "ssl_key_file": "{root}/server.key",
        "hba_file": "{root}/pg_hba.conf",
    }
    with throwaway_postgres(settings, files) as dsn:
        yield dsn


@pytest.mark.parametrize(
    "query",
    [
        "sslmode=require",
        "sslmode=verify-ca&sslrootcert={ca}",
        "sslmode=verify-full&sslrootcert={ca}",
    ],
)
def test_capture_over_tls(stack: dict[str, str], tls_dsn: str, pki: Pki, query: str) -> None:
    name = f"tls_{uuid4().hex[:8]}"
    psql(
        f"{tls_dsn}?sslmode=require",
        f"CREATE TABLE {name} (id integer PRIMARY KEY, v text); INSERT INTO {name} VALUES (1, 'a')",
    )
    dsn = f"{tls_dsn}?{query.format(ca=pki.ca)}"

    def capture_until_now() -> dict[str, int]:
        return changestream.capture(
            dsn=dsn,
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            tables=[f"public.{name}"],
            topic_prefix=name,
            slot=name,
            publication=name,
            until="now",
        )

    counters = capture_until_now()
    assert counters["snapshot_rows"] == 1
    psql(f"{tls_dsn}?sslmode=require", f"INSERT INTO {name} VALUES (2, 'b')")
    capture_until_now()
    events = read_independently(stack, f"{name}.public.{name}")
    assert [(v["op"], v["after"]) for _, v in events] == [
        ("r", {"id": 1, "v": "a"}),
        ("c", {"id": 2, "v": "b"}),
    ]


def test_a_plain_connection_is_refused_by_this_server(stack: dict[str, str], tls_dsn: str) -> None:
    """The server really refuses what is not TLS (so the test above proves TLS)."""
    with pytest.raises(changestream.PostgresError) as refused:
        changestream.capture(
            dsn=f"{tls_dsn}?sslmode=disable",
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            until="now",
        )
    assert "pg_hba.conf" in str(refused.value)


def test_a_certificate_from_another_ca_is_refused(
    stack: dict[str, str], tls_dsn: str, pki: Pki
) -> None:
    with pytest.raises(changestream.PostgresError) as refused:
        changestream.capture(
            dsn=f"{tls_dsn}?sslmode=verify-full&sslrootcert={pki.other_ca}",
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            until="now",
        )
    assert "certificate" in str(refused.value)


@pytest.mark.parametrize("dsn", ["sslmode=sometimes", "sslrootcert=/no/such/ca.pem"])
def test_bad_tls_settings_are_config_errors(stack: dict[str, str], tls_dsn: str, dsn: str) -> None:
    with pytest.raises(changestream.ConfigError):
        changestream.capture(
            dsn=f"{tls_dsn}?{dsn}",
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            until="now",
        )
