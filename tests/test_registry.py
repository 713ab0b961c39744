"""The schema registry client against the real registry: HTTPS with a custom CA,
mutual TLS, basic auth, bearer tokens, failures, outages and the schema cache.

The stack's registry is plain HTTP without authentication, so each test puts a
:class:`~registry_proxy.RegistryProxy` in front of it that terminates TLS and
checks credentials. Events are produced by confluent-kafka's AvroSerializer
against the registry directly (the ``cdc`` fixture); changestream reads them
through the proxy. Every test registers a schema of its own, so its schema ids
are new to the process-wide schema cache. Secrets are recognisable strings, and
the tests check they appear in no exception text and nothing written to the
process's stdout or stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cdc import BOTTLED_WATER_NAMESPACE, CdcProducer, Delivered, Row, Schema, with_field
from changestream import (
    Change,
    ChangeStream,
    ConfigError,
    SchemaNotFoundError,
    SchemaRegistryError,
)
from registry_proxy import Pki, RegistryProxy, make_pki, server_tls

pytestmark = [pytest.mark.timeout(120, func_only=True)]

USER = "reader"
PASSWORD = "s3cr3t-p4ss-XYZ"
WRONG_PASSWORD = "wr0ng-p4ss-QRS"
TOKEN = "b34r3r-t0k3n-UVW"
WRONG_TOKEN = "wr0ng-t0k3n-JKL"
SECRETS = (PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN)

# A registry outage must not fail before this long: far longer than any failure that
# should be immediate takes.
LONG_TIMEOUT = 30.0
IMMEDIATE = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def value_schema() -> Schema:
    """A flat-row schema no other test registered, so its id is new to the schema cache."""
    return {
        "type": "record",
        "name": f"reg_{uuid4().hex[:12]}",
        "namespace": BOTTLED_WATER_NAMESPACE,
        "fields": [
            {"name": "id", "type": ["null", "int"]},
            {"name": "note", "type": ["null", "string"]},
        ],
    }


def produce(cdc: CdcProducer, topic: str, schema: Schema, rows: list[Row]) -> list[Delivered]:
    """Unkeyed rows: every message's value names the schema's id."""
    return cdc.produce(topic, None, schema, [(None, row) for row in rows])


def schema_id(delivered: Delivered) -> int:
    assert delivered.value_bytes is not None
    return int.from_bytes(delivered.value_bytes[1:5], "big")


def open_at(
    stack: dict[str, str],
    topic: str,
    url: str,
    registry: dict[str, Any],
    registry_timeout: float = LONG_TIMEOUT,
) -> ChangeStream:
    """A bounded stream of ``topic`` that looks schemas up at ``url``."""
    return ChangeStream(
        topic,
        bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=url,
        until="end",
        registry=registry,
        registry_timeout=registry_timeout,
    )


def read_all(
    stack: dict[str, str],
    topic: str,
    url: str,
    registry: dict[str, Any],
    registry_timeout: float = LONG_TIMEOUT,
) -> list[Change]:
    with open_at(stack, topic, url, registry, registry_timeout) as stream:
        return list(stream)


def read_error(
    stack: dict[str, str],
    topic: str,
    url: str,
    registry: dict[str, Any],
    registry_timeout: float = LONG_TIMEOUT,
) -> tuple[SchemaRegistryError, float]:
    """The registry error reading ``topic`` raises, and how long the stream took to raise it."""
    started = time.monotonic()
    with (
        open_at(stack, topic, url, registry, registry_timeout) as stream,
        pytest.raises(SchemaRegistryError) as caught,
    ):
        list(stream)
    return caught.value, time.monotonic() - started


def assert_rows(changes: list[Change], sent: list[Delivered]) -> None:
    assert [c.offset for c in changes] == [d.offset for d in sent]
    assert [c.after for c in changes] == [d.value for d in sent]
    assert all(c.op == "upsert" for c in changes)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {text!r}"


@pytest.fixture
def emitted(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """After the test, check that nothing the process wrote to stdout or stderr has a secret."""
    yield
    out, err = capfd.readouterr()
    assert_no_secret(out, err)


ROWS: list[Row] = [{"id": 1, "note": "first"}, {"id": 2, "note": None}]


@pytest.mark.parametrize(
    ("guard", "settings"),
    [
        pytest.param(
            {"basic": (USER, PASSWORD)},
            {"basic.auth.user.info": f"{USER}:{PASSWORD}"},
            id="basic",
        ),
        pytest.param(
            {"basic": (USER, PASSWORD)},
            {
                "basic.auth.credentials.source": "USER_INFO",
                "basic.auth.user.info": f"{USER}:{PASSWORD}",
            },
            id="basic-user-info-source",
        ),
        pytest.param(
            {"bearer": TOKEN},
            {"bearer.auth.credentials.source": "STATIC_TOKEN", "bearer.auth.token": TOKEN},
            id="bearer",
        ),
        pytest.param(
            {"bearer": TOKEN},
            {"bearer.auth.token": TOKEN, "bearer.auth.logical.cluster": "lsrc-1"},
            id="bearer-token-only",
        ),
    ],
)
def test_https_with_custom_ca_and_credentials(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
    guard: dict[str, Any],
    settings: dict[str, str],
) -> None:
    topic = make_topic()
    sent = produce(cdc, topic, value_schema, ROWS)
    tls = server_tls(pki.server_cert, pki.server_key)
    with RegistryProxy(stack["SCHEMA_REGISTRY_URL"], tls=tls, **guard) as proxy:
        registry = {**settings, "ssl.ca.location": str(pki.ca)}
        changes = read_all(stack, topic, proxy.url, registry)
    assert proxy.url.startswith("https://")
    assert_rows(changes, sent)
    # The schema came through the proxy, once, with the right credentials.
    assert proxy.seen.forwarded == [f"{proxy.path}/schemas/ids/{schema_id(sent[0])}"]
    assert proxy.seen.unauthorized == 0


def test_credentials_in_the_url(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
) -> None:
    topic = make_topic()
    sent = produce(cdc, topic, value_schema, ROWS)
    tls = server_tls(pki.server_cert, pki.server_key)
    with RegistryProxy(stack["SCHEMA_REGISTRY_URL"], tls=tls, basic=(USER, PASSWORD)) as proxy:
        url = proxy.url.replace("https://", f"https://{USER}:{PASSWORD}@")
        changes = read_all(stack, topic, url, {"ssl.ca.location": str(pki.ca)})
    assert_rows(changes, sent)
    assert len(proxy.seen.forwarded) == 1


def test_mutual_tls(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
) -> None:
    topic = make_topic()
    sent = produce(cdc, topic, value_schema, ROWS)
    tls = server_tls(pki.server_cert, pki.server_key, client_ca=pki.ca)
    with RegistryProxy(stack["SCHEMA_REGISTRY_URL"], tls=tls, basic=(USER, PASSWORD)) as proxy:
        trust = {"ssl.ca.location": str(pki.ca), "basic.auth.user.info": f"{USER}:{PASSWORD}"}
        # Without a client certificate the registry refuses the handshake: no retrying that.
        error, elapsed = read_error(stack, topic, proxy.url, trust)
        assert not error.retriable, str(error)
        assert elapsed < IMMEDIATE, str(error)
        assert error.offset == sent[0].offset
        assert proxy.seen.forwarded == []
        assert proxy.seen.handshake_failures
        assert_no_secret(str(error), repr(error))

        with_certificate = {
            **trust,
            "ssl.certificate.location": str(pki.client_cert),
            "ssl.key.location": str(pki.client_key),
        }
        changes = read_all(stack, topic, proxy.url, with_certificate)
    assert_rows(changes, sent)
    assert len(proxy.seen.forwarded) == 1


@pytest.mark.parametrize(
    ("guard", "settings", "secret"),
    [
        pytest.param(
            {"basic": (USER, PASSWORD)},
            {"basic.auth.user.info": f"{USER}:{WRONG_PASSWORD}"},
            WRONG_PASSWORD,
            id="wrong-password",
        ),
        pytest.param(
            {"bearer": TOKEN}, {"bearer.auth.token": WRONG_TOKEN}, WRONG_TOKEN, id="wrong-token"
        ),
        pytest.param({"basic": (USER, PASSWORD)}, {}, None, id="no-credentials"),
    ],
)
def test_rejected_credentials(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
    guard: dict[str, Any],
    settings: dict[str, str],
    secret: str | None,
) -> None:
    topic = make_topic()
    sent = produce(cdc, topic, value_schema, ROWS)
    tls = server_tls(pki.server_cert, pki.server_key)
    with RegistryProxy(stack["SCHEMA_REGISTRY_URL"], tls=tls, **guard) as proxy:
        registry = {**settings, "ssl.ca.location": str(pki.ca)}
        error, elapsed = read_error(stack, topic, proxy.url, registry)
    assert type(error) is SchemaRegistryError
    assert error.retriable is False
    assert elapsed < IMMEDIATE, "a 401 must not be retried until registry_timeout"
    assert proxy.seen.unauthorized == 1
    assert proxy.seen.forwarded == []
    assert "authentication failed" in str(error)
    assert (error.topic, error.partition, error.offset) == (topic, 0, sent[0].offset)
    if secret is not None:
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in repr(error.args)
    assert_no_secret(str(error), repr(error))


@pytest.mark.parametrize(
    ("trust", "server"),
    [
        pytest.param(None, "server", id="system-roots-only"),
        pytest.param("other_ca", "server", id="another-ca"),
        pytest.param("ca", "wrong_host", id="wrong-host-name"),
    ],
)
def test_untrusted_certificate_fails_at_once(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
    trust: str | None,
    server: str,
) -> None:
    topic = make_topic()
    sent = produce(cdc, topic, value_schema, ROWS)
    cert: Path = getattr(pki, f"{server}_cert")
    key: Path = getattr(pki, f"{server}_key")
    registry: dict[str, Any] = {"basic.auth.user.info": f"{USER}:{PASSWORD}"}
    if trust is not None:
        registry["ssl.ca.location"] = str(getattr(pki, trust))
    guard = (USER, PASSWORD)
    with RegistryProxy(
        stack["SCHEMA_REGISTRY_URL"], tls=server_tls(cert, key), basic=guard
    ) as proxy:
        error, elapsed = read_error(stack, topic, proxy.url, registry)
    assert error.retriable is False
    assert elapsed < IMMEDIATE, "a certificate we do not trust will not become trusted by retrying"
    assert "certificate verification" in str(error)
    assert error.offset == sent[0].offset
    # The credentials never went out: no request reached the proxy.
    assert proxy.seen.forwarded == []
    assert proxy.seen.unauthorized == 0
    assert_no_secret(str(error), repr(error))


# Run in a child process: OpenSSL reads SSL_CERT_FILE (the system trust store) once per process.
TRUST_STORE_CHILD = """
import json, sys
from changestream import ChangeStream, SchemaRegistryError
args = json.loads(sys.argv[1])
results = []
for url, registry in args["streams"]:
    stream = ChangeStream(
        args["topic"],
        bootstrap_servers=args["bootstrap"],
        schema_registry_url=url,
        until="end",
        registry=registry,
    )
    with stream:
        try:
            results.append(len(list(stream)))
        except SchemaRegistryError as error:
            results.append(str(error))
print(json.dumps(results))
"""


def test_ssl_ca_location_replaces_the_system_roots(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
) -> None:
    topic = make_topic()
    produce(cdc, topic, value_schema, ROWS)
    tls = server_tls(pki.server_cert, pki.server_key)
    with RegistryProxy(stack["SCHEMA_REGISTRY_URL"], tls=tls) as proxy:
        arguments = {
            "topic": topic,
            "bootstrap": stack["KAFKA_BOOTSTRAP_SERVERS"],
            # The system trusts our CA; the first stream relies on that, the second names
            # another CA, which must then be the only one trusted. Two host names: the schema
            # cache is per registry URL, so the second stream cannot use what the first read.
            "streams": [
                (proxy.url.replace("127.0.0.1", "localhost"), {}),
                (proxy.url, {"ssl.ca.location": str(pki.other_ca)}),
            ],
        }
        child = subprocess.run(
            [sys.executable, "-c", TRUST_STORE_CHILD, json.dumps(arguments)],
            env={**os.environ, "SSL_CERT_FILE": str(pki.ca), "SSL_CERT_DIR": "/nonexistent"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    trusted, replaced = json.loads(child.stdout.strip().splitlines()[-1])
    assert trusted == len(ROWS)
    assert "certificate verification" in replaced


def test_registry_down_gives_up_at_registry_timeout(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
) -> None:
    topic = make_topic()
    sent = produce(cdc, topic, value_schema, ROWS)
    proxy = RegistryProxy(
        stack["SCHEMA_REGISTRY_URL"],
        tls=server_tls(pki.server_cert, pki.server_key),
        basic=(USER, PASSWORD),
    ).start()
    proxy.stop()
    registry = {"basic.auth.user.info": f"{USER}:{PASSWORD}", "ssl.ca.location": str(pki.ca)}
    error, elapsed = read_error(stack, topic, proxy.url, registry, registry_timeout=1.0)
    assert type(error) is SchemaRegistryError
    assert error.retriable is True
    assert 1.0 <= elapsed < 1.0 + IMMEDIATE, elapsed
    assert "gave up after" in str(error)
    assert error.offset == sent[0].offset
    assert_no_secret(str(error), repr(error))


def test_cached_schemas_outlive_the_registry(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    value_schema: Schema,
    emitted: None,
) -> None:
    topic = make_topic()
    registry = {"bearer.auth.token": TOKEN, "ssl.ca.location": str(pki.ca)}
    before = produce(cdc, topic, value_schema, ROWS)
    proxy = RegistryProxy(
        stack["SCHEMA_REGISTRY_URL"],
        tls=server_tls(pki.server_cert, pki.server_key),
        bearer=TOKEN,
    )
    with proxy:
        assert_rows(read_all(stack, topic, proxy.url, registry), before)
    # The registry is down. More messages arrive: two with the schema already seen, then one
    # with a schema registered while our registry was unreachable.
    during = produce(cdc, topic, value_schema, [{"id": 3, "note": "third"}, {"id": 4, "note": ""}])
    evolved = with_field(value_schema, {"name": "extra", "type": ["null", "long"], "default": None})
    (unknown,) = produce(cdc, topic, evolved, [{"id": 5, "note": None, "extra": 5}])
    assert schema_id(unknown) != schema_id(before[0])

    # A new stream (the cache is per process, not per stream) decodes everything cached...
    started = time.monotonic()
    with open_at(stack, topic, proxy.url, registry, registry_timeout=1.0) as stream:
        changes = [next(stream) for _ in range(len(before) + len(during))]
        assert_rows(changes, before + during)
        # ...and the new schema waits for the registry until registry_timeout (the fetch
        # thread may have started waiting before we asked), then fails at that message.
        with pytest.raises(SchemaRegistryError) as caught:
            next(stream)
    assert time.monotonic() - started >= 1.0
    assert caught.value.retriable is True
    assert caught.value.offset == unknown.offset
    assert len(proxy.seen.forwarded) == 1


def test_unknown_schema_id_through_the_proxy(
    stack: dict[str, str],
    make_topic: Any,
    cdc: CdcProducer,
    pki: Pki,
    emitted: None,
) -> None:
    topic = make_topic()
    missing = 2**31 - 7
    framed = b"\x00" + missing.to_bytes(4, "big") + b"\x02"
    (sent,) = cdc.produce_raw(topic, [(None, framed)])
    with RegistryProxy(
        stack["SCHEMA_REGISTRY_URL"],
        tls=server_tls(pki.server_cert, pki.server_key),
        bearer=TOKEN,
    ) as proxy:
        registry = {"bearer.auth.token": TOKEN, "ssl.ca.location": str(pki.ca)}
        with (
            open_at(stack, topic, proxy.url, registry) as stream,
            pytest.raises(SchemaNotFoundError) as caught,
        ):
            next(stream)
    assert caught.value.offset == sent.offset
    assert str(missing) in str(caught.value)
    assert caught.value.retriable is False


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({"basic.auth.userinfo": PASSWORD}, "basic.auth.userinfo", id="unknown-key"),
        pytest.param(
            {"basic.auth.user.info": f"{USER}:{PASSWORD}", "bearer.auth.token": TOKEN},
            "choose one",
            id="basic-and-bearer",
        ),
        pytest.param({"basic.auth.user.info": PASSWORD}, "user:password", id="no-colon"),
        pytest.param(
            {"ssl.ca.location": f"/nonexistent/{PASSWORD}.pem"}, "ssl.ca.location", id="missing-ca"
        ),
        pytest.param(
            {"ssl.endpoint.identification.algorithm": "none"}, "host name", id="no-verify"
        ),
        pytest.param({"ssl.key.password": PASSWORD}, "ssl.key.password", id="key-password"),
    ],
)
def test_bad_settings_are_config_errors(
    stack: dict[str, str], emitted: None, settings: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        ChangeStream(
            "unused",
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url="https://127.0.0.1:1/apis/ccompat/v7",
            registry=settings,
        )
    assert expected in str(caught.value)
    assert_no_secret(str(caught.value), repr(caught.value))


def test_client_key_must_be_pkcs8(
    stack: dict[str, str], pki: Pki, tmp_path: Path, emitted: None
) -> None:
    # The traditional "EC PRIVATE KEY" form of the client key.
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    traditional = tmp_path / "client-traditional.key"
    traditional.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="PKCS#8"):
        ChangeStream(
            "unused",
            bootstrap_servers=stack["KAFKA_BOOTSTRAP_SERVERS"],
            schema_registry_url="https://127.0.0.1:1/apis/ccompat/v7",
            registry={
                "ssl.certificate.location": str(pki.client_cert),
                "ssl.key.location": str(traditional),
            },
        )
