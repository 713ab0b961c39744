"""No secrets leak (issue 6): passwords and tokens never appear in anything the library emits.

Recognisable secrets are configured: the SASL passwords of a Kafka of this module's own
(SCRAM-SHA-512 and PLAIN users, ``CHANGESTREAM_STACK_KAFKA_SECURITY=1``, see
``tests/stack/instance.py``), a wrong SASL password, and a registry basic-auth password and
bearer token checked by :class:`~registry_proxy.RegistryProxy` in front of the shared
stack's registry (plus wrong ones, and a password inside the registry URL). Streams read
successfully and fail in every way these settings allow, and the test greps everything
the library emitted for each secret (also base64-encoded, as in a Basic header):
exception ``str``/``repr``/``args``/traceback, ``repr(stream)``, ``stats()``,
``positions()``, ``lag()``, the changes' ``repr``, Python ``logging`` records at DEBUG,
and the process's stdout/stderr; and, in a child process run with ``RUST_LOG=trace``,
librdkafka ``debug=all`` and logging at DEBUG to stderr, the child's whole output.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from cdc import CdcProducer, Row, Schema, bottled_water_row_schema
from changestream import (
    ChangeStream,
    ChangeStreamError,
    ConfigError,
    KafkaError,
    SchemaRegistryError,
)
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from registry_proxy import Pki, RegistryProxy, make_pki, server_tls
from stack.instance import StackInstance

TAG = uuid4().hex[:10]
REGISTRY_USER = "reader"
WRONG_SASL_PASSWORD = f"wr0ng-sasl-pw-{TAG}"
REGISTRY_PASSWORD = f"reg-basic-pw-{TAG}"
WRONG_REGISTRY_PASSWORD = f"wr0ng-reg-pw-{TAG}"
TOKEN = f"reg-bearer-tok-{TAG}"
WRONG_TOKEN = f"wr0ng-bearer-tok-{TAG}"

ROW: Schema = bottled_water_row_schema("secret_rows", [("id", "int"), ("name", "string")])
ROWS: list[Row] = [{"id": i, "name": f"row {i}"} for i in range(3)]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInstance]:
    instance = StackInstance(
        tmp_path_factory.mktemp("secrets") / "secrets.env", services=("kafka",), kafka_security=True
    )
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("secrets-pki"))


@pytest.fixture(scope="module")
def secrets(secure: StackInstance) -> list[str]:
    """Every secret, as configured and as a Basic header would carry it."""
    plain = [
        secure.env["KAFKA_SCRAM_PASSWORD"],
        secure.env["KAFKA_PLAIN_PASSWORD"],
        WRONG_SASL_PASSWORD,
        REGISTRY_PASSWORD,
        WRONG_REGISTRY_PASSWORD,
        TOKEN,
        WRONG_TOKEN,
    ]
    encoded = [
        base64.b64encode(f"{REGISTRY_USER}:{p}".encode()).decode()
        for p in (REGISTRY_PASSWORD, WRONG_REGISTRY_PASSWORD)
    ]
    return plain + encoded


@pytest.fixture(scope="module")
def rows_topic(secure: StackInstance, cdc: CdcProducer) -> str:
    bootstrap = secure.bootstrap_servers
    name = f"secrets.{uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for row in ROWS:
        producer.produce(name, value=cdc.serialize(name, ROW, row))
    assert producer.flush(60) == 0
    return name


@dataclass
class Setup:
    """What a scenario needs: the secure broker, the CA of the registry proxy, the topic."""

    env: dict[str, str]
    pki: Pki
    topic: str
    registry_upstream: str


def scram(setup: Setup, password: str | None = None, *, ca: bool = True) -> dict[str, Any]:
    settings = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": setup.env["KAFKA_SCRAM_USERNAME"],
        "sasl.password": password or setup.env["KAFKA_SCRAM_PASSWORD"],
    }
    if ca:
        settings["ssl.ca.location"] = setup.env["KAFKA_SSL_CA_LOCATION"]
    return settings


def plain(setup: Setup) -> dict[str, Any]:
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": setup.env["KAFKA_PLAIN_USERNAME"],
        "sasl.password": setup.env["KAFKA_PLAIN_PASSWORD"],
    }


def basic(setup: Setup, password: str) -> dict[str, str]:
    return {
        "basic.auth.user.info": f"{REGISTRY_USER}:{password}",
        "ssl.ca.location": str(setup.pki.ca),
    }


def bearer(setup: Setup, token: str) -> dict[str, str]:
    return {"bearer.auth.token": token, "ssl.ca.location": str(setup.pki.ca)}


def proxy(setup: Setup, **guard: Any) -> RegistryProxy:
    """A fresh TLS registry proxy: a new URL, so the process's schema cache has nothing."""
    tls = server_tls(setup.pki.server_cert, setup.pki.server_key)
    return RegistryProxy(setup.registry_upstream, tls=tls, **guard)


def error_texts(error: BaseException) -> list[str]:
    """Everything an application could print or log about an exception."""
    texts = [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    texts += [repr(getattr(error, name, None)) for name in ("topic", "partition", "offset")]
    texts += [repr(vars(error))] if hasattr(error, "__dict__") else []
    for linked in (error.__cause__, error.__context__):
        if linked is not None:
            texts += [str(linked), repr(linked)]
    return texts


def stream_texts(stream: ChangeStream) -> list[str]:
    texts = [repr(stream), str(stream), repr(stream.stats()), repr(stream.positions())]
    try:
        texts.append(repr(stream.lag()))
    except ChangeStreamError as error:
        texts += error_texts(error)
    return texts


def read(
    setup: Setup,
    bootstrap_key: str,
    kafka: dict[str, Any],
    registry_url: str,
    registry: dict[str, str],
    **options: Any,
) -> list[str]:
    """Read the topic to its end (in a group); the texts of the stream, changes and any error."""
    texts: list[str] = []
    try:
        stream = ChangeStream(
            setup.topic,
            bootstrap_servers=setup.env[bootstrap_key],
            schema_registry_url=registry_url,
            group_id=f"secrets-{uuid4().hex[:8]}",
            until="end",
            kafka=kafka,
            registry=registry,
            **options,
        )
    except ChangeStreamError as error:
        return ["raised " + type(error).__name__, *error_texts(error)]
    try:
        with stream:
            try:
                for change in stream:
                    texts += [repr(change), repr(change.after), repr(change.key)]
                texts.append("read")
            except ChangeStreamError as error:
                texts += ["raised " + type(error).__name__, *error_texts(error)]
            texts += stream_texts(stream)
    except ChangeStreamError as error:  # close() failing
        texts += ["close raised " + type(error).__name__, *error_texts(error)]
    return texts


def good_scram_basic(setup: Setup) -> list[str]:
    with proxy(setup, basic=(REGISTRY_USER, REGISTRY_PASSWORD)) as guard:
        texts = read(
            setup,
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            scram(setup),
            guard.url,
            basic(setup, REGISTRY_PASSWORD),
        )
    assert guard.seen.forwarded, "the registry password was never used"
    return texts


def good_plain_bearer(setup: Setup) -> list[str]:
    with proxy(setup, bearer=TOKEN) as guard:
        texts = read(
            setup,
            "KAFKA_SASL_PLAINTEXT_BOOTSTRAP_SERVERS",
            plain(setup),
            guard.url,
            bearer(setup, TOKEN),
        )
    assert guard.seen.forwarded, "the token was never used"
    return texts


def wrong_sasl_password(setup: Setup) -> list[str]:
    with proxy(setup, basic=(REGISTRY_USER, REGISTRY_PASSWORD)) as guard:
        return read(
            setup,
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            scram(setup, WRONG_SASL_PASSWORD),
            guard.url,
            basic(setup, REGISTRY_PASSWORD),
        )


def untrusted_broker_certificate(setup: Setup) -> list[str]:
    with proxy(setup, bearer=TOKEN) as guard:
        return read(
            setup,
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            scram(setup, ca=False),
            guard.url,
            bearer(setup, TOKEN),
        )


def wrong_registry_password(setup: Setup) -> list[str]:
    with proxy(setup, basic=(REGISTRY_USER, REGISTRY_PASSWORD)) as guard:
        return read(
            setup,
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            scram(setup),
            guard.url,
            basic(setup, WRONG_REGISTRY_PASSWORD),
        )


def wrong_token(setup: Setup) -> list[str]:
    with proxy(setup, bearer=TOKEN) as guard:
        return read(
            setup,
            "KAFKA_SASL_PLAINTEXT_BOOTSTRAP_SERVERS",
            plain(setup),
            guard.url,
            bearer(setup, WRONG_TOKEN),
        )


def registry_down_password_in_url(setup: Setup) -> list[str]:
    guard = proxy(setup, basic=(REGISTRY_USER, REGISTRY_PASSWORD)).start()
    guard.stop()
    url = guard.url.replace("https://", f"https://{REGISTRY_USER}:{REGISTRY_PASSWORD}@")
    return read(
        setup,
        "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
        scram(setup),
        url,
        {"ssl.ca.location": str(setup.pki.ca)},
        registry_timeout=1.0,
    )


def bad_registry_url_with_password(setup: Setup) -> list[str]:
    url = f"htps://{REGISTRY_USER}:{REGISTRY_PASSWORD}@127.0.0.1:1/apis/ccompat/v7"
    return read(setup, "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", scram(setup), url, {})


def misspelt_secret_setting(setup: Setup) -> list[str]:
    settings = {**scram(setup), "sasl.passwrd": setup.env["KAFKA_SCRAM_PASSWORD"]}
    return read(setup, "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", settings, "http://127.0.0.1:1", {})


def secret_in_the_wrong_setting(setup: Setup) -> list[str]:
    # A registry setting the client refuses, holding the password: the error names the key.
    registry = {"basic.auth.userinfo": f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"}
    return read(
        setup, "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS", scram(setup), "http://127.0.0.1:1", registry
    )


KAFKA, REGISTRY, CONFIG = (
    f"raised {e.__name__}" for e in (KafkaError, SchemaRegistryError, ConfigError)
)
SCENARIOS: dict[str, tuple[Callable[[Setup], list[str]], str]] = {
    # name: (scenario, what it must end with: "read" or the exception raised)
    "good-scram-basic": (good_scram_basic, "read"),
    "good-plain-bearer": (good_plain_bearer, "read"),
    "wrong-sasl-password": (wrong_sasl_password, KAFKA),
    "untrusted-broker-certificate": (untrusted_broker_certificate, KAFKA),
    "wrong-registry-password": (wrong_registry_password, REGISTRY),
    "wrong-token": (wrong_token, REGISTRY),
    "registry-down-password-in-url": (registry_down_password_in_url, REGISTRY),
    "bad-registry-url-with-password": (bad_registry_url_with_password, CONFIG),
    "misspelt-secret-setting": (misspelt_secret_setting, "raised"),
    "secret-in-the-wrong-setting": (secret_in_the_wrong_setting, CONFIG),
}


@pytest.fixture
def setup(secure: StackInstance, pki: Pki, rows_topic: str, stack: dict[str, str]) -> Setup:
    return Setup(secure.env, pki, rows_topic, stack["SCHEMA_REGISTRY_URL"])


def leaks(secrets: list[str], texts: list[str]) -> list[tuple[str, str]]:
    return [(secret, text) for text in texts for secret in secrets if secret in text]


@pytest.mark.parametrize("name", SCENARIOS)
def test_nothing_emitted_holds_a_secret(
    setup: Setup,
    secrets: list[str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    name: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    scenario, outcome = SCENARIOS[name]
    texts = scenario(setup)
    out, err = capfd.readouterr()
    logged = [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records]
    assert any(t.startswith(outcome) for t in texts), texts[:3]
    assert not leaks(secrets, texts), leaks(secrets, texts)
    assert not leaks(secrets, logged), leaks(secrets, logged)
    assert not leaks(secrets, [out, err]), leaks(secrets, [out, err])


# The child runs scenarios with every log switch on and prints what it got back.
CHILD = textwrap.dedent(
    """
    import json, logging, sys, traceback
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="LOG %(name)s %(levelname)s %(message)s")
    from changestream import ChangeStream, ChangeStreamError
    for run in json.loads(sys.argv[1]):
        try:
            with ChangeStream(run["topic"], bootstrap_servers=run["bootstrap"],
                              schema_registry_url=run["registry_url"], group_id=run["group"],
                              until="end", kafka=run["kafka"], registry=run["registry"],
                              registry_timeout=run["registry_timeout"]) as stream:
                try:
                    print(run["name"], "read", [repr(c) for c in stream], flush=True)
                finally:
                    print(run["name"], repr(stream), stream.stats(), stream.positions())
        except ChangeStreamError as error:
            print(run["name"], "raised", type(error).__name__, str(error), repr(error), flush=True)
            traceback.print_exception(error)
    """
)


def test_a_child_at_trace_level_prints_no_secret(setup: Setup, secrets: list[str]) -> None:
    env = setup.env
    debug = {"debug": "all"}
    with (
        proxy(setup, basic=(REGISTRY_USER, REGISTRY_PASSWORD)) as good,
        proxy(setup, basic=(REGISTRY_USER, REGISTRY_PASSWORD)) as refusing,
    ):
        down = proxy(setup, bearer=TOKEN).start()
        down.stop()
        runs = [
            ("good", scram(setup), good.url, basic(setup, REGISTRY_PASSWORD)),
            ("wrong-sasl", scram(setup, WRONG_SASL_PASSWORD), good.url, {}),
            ("untrusted", scram(setup, ca=False), good.url, {}),
            ("wrong-registry", scram(setup), refusing.url, basic(setup, WRONG_REGISTRY_PASSWORD)),
            ("registry-down", scram(setup), down.url, bearer(setup, TOKEN)),
        ]
        arguments = [
            {
                "name": name,
                "topic": setup.topic,
                "bootstrap": env["KAFKA_SASL_SSL_BOOTSTRAP_SERVERS"],
                "registry_url": url,
                "group": f"secrets-{uuid4().hex[:8]}",
                "kafka": {**kafka, **debug},
                "registry": registry,
                "registry_timeout": 1.0,
            }
            for name, kafka, url, registry in runs
        ]
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(arguments)],
            env={**os.environ, "RUST_LOG": "trace", "RUST_BACKTRACE": "1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    outcomes = {
        words[0]: words[1]
        for words in (line.split() for line in child.stdout.splitlines())
        if len(words) > 1 and words[1] in {"read", "raised"}
    }
    assert outcomes == {
        "good": "read",
        "wrong-sasl": "raised",
        "untrusted": "raised",
        "wrong-registry": "raised",
        "registry-down": "raised",
    }, child.stdout
    assert not leaks(secrets, [child.stdout, child.stderr])
    library_lines = [
        line
        for line in child.stderr.splitlines()
        if line.startswith("LOG ") and not line.startswith("LOG confluent_kafka")
    ]
    print(
        f"\nchild: {len(child.stdout.splitlines())} stdout lines, "
        f"{len(child.stderr.splitlines())} stderr lines, {len(library_lines)} logging records "
        "from the library (RUST_LOG=trace, debug=all, logging at DEBUG)"
    )


def test_library_warnings_reach_python_logging(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = wrong_sasl_password(setup)
    assert any(t.startswith("raised KafkaError") for t in texts)
    names = {r.name for r in caplog.records}
    assert any(n.split(".")[0] in {"changestream", "librdkafka", "rdkafka"} for n in names), names
