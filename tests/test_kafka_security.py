"""Kafka over TLS and SASL (issue 6): SCRAM-SHA-512 and PLAIN, a private CA, and failures.

The module starts a Kafka of its own with ``CHANGESTREAM_STACK_KAFKA_SECURITY=1``
(``tests/stack/instance.py``): besides PLAINTEXT (used here to produce) it listens with
SSL, SASL_SSL (SCRAM-SHA-512 and PLAIN) and SASL_PLAINTEXT (PLAIN), presents a
certificate for 127.0.0.1/localhost signed by a CA the stack script generated, and has a
SCRAM user (created when the storage was formatted) and a PLAIN user (JAAS config); the
instance's env file names the listeners, the CA, a second unrelated CA and the
credentials. Streams connect with the librdkafka settings confluent-kafka users write,
passed through ``kafka={...}``. Schemas live in the shared stack's registry.

A wrong password or a certificate the client does not trust cannot heal by waiting: the
stream must raise a non-retriable ``KafkaError`` within seconds, naming the cause. Run
with ``pytest -s`` to see the times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from cdc import CdcProducer, Row, Schema, bottled_water_row_schema
from changestream import ChangeStream, KafkaError
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from stack.instance import StackInstance

ROW: Schema = bottled_water_row_schema("secure_rows", [("id", "int"), ("name", "string")])
ROWS: list[Row] = [{"id": i, "name": f"row {i}"} for i in range(6)]
WRONG_PASSWORD = "wr0ng-kafka-pw-Q7Z"
# A failure that waiting cannot heal must surface within this many seconds.
IMMEDIATE = 5.0


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInstance]:
    instance = StackInstance(
        tmp_path_factory.mktemp("secure") / "secure.env", services=("kafka",), kafka_security=True
    )
    instance.up()
    try:
        yield instance
    finally:
        instance.down()


@pytest.fixture(scope="module")
def rows_topic(secure: StackInstance, cdc: CdcProducer) -> str:
    """A topic with ROWS in it, produced over the PLAINTEXT listener."""
    bootstrap = secure.bootstrap_servers
    name = f"secure.{uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(60)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for row in ROWS:
        producer.produce(name, value=cdc.serialize(name, ROW, row))
    assert producer.flush(60) == 0
    return name


def listener(secure: StackInstance, kind: str) -> tuple[str, dict[str, Any]]:
    """Bootstrap servers and librdkafka settings that connect correctly through ``kind``."""
    env = secure.env
    ca = {"ssl.ca.location": env["KAFKA_SSL_CA_LOCATION"]}
    scram = {
        "sasl.mechanism": env["KAFKA_SCRAM_MECHANISM"],
        "sasl.username": env["KAFKA_SCRAM_USERNAME"],
        "sasl.password": env["KAFKA_SCRAM_PASSWORD"],
    }
    plain = {
        "sasl.mechanism": "PLAIN",
        "sasl.username": env["KAFKA_PLAIN_USERNAME"],
        "sasl.password": env["KAFKA_PLAIN_PASSWORD"],
    }
    settings: dict[str, tuple[str, dict[str, Any]]] = {
        "ssl": ("KAFKA_SSL_BOOTSTRAP_SERVERS", {"security.protocol": "SSL", **ca}),
        "sasl_ssl-scram": (
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            {"security.protocol": "SASL_SSL", **scram, **ca},
        ),
        "sasl_ssl-plain": (
            "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS",
            {"security.protocol": "SASL_SSL", **plain, **ca},
        ),
        "sasl_plaintext-plain": (
            "KAFKA_SASL_PLAINTEXT_BOOTSTRAP_SERVERS",
            {"security.protocol": "SASL_PLAINTEXT", **plain},
        ),
    }
    key, kafka = settings[kind]
    return env[key], kafka


def open_stream(
    stack: dict[str, str], topic: str, bootstrap: str, kafka: dict[str, Any], group: bool
) -> ChangeStream:
    options: dict[str, Any] = {"kafka": kafka}
    if group:
        options["group_id"] = f"secure-{uuid4().hex[:8]}"
    return ChangeStream(
        topic,
        bootstrap_servers=bootstrap,
        schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
        until="end",
        **options,
    )


@pytest.mark.parametrize("group", [False, True], ids=["assigned", "group"])
@pytest.mark.parametrize(
    "kind", ["ssl", "sasl_ssl-scram", "sasl_ssl-plain", "sasl_plaintext-plain"]
)
def test_reads_through_tls_and_sasl(
    secure: StackInstance, rows_topic: str, stack: dict[str, str], kind: str, group: bool
) -> None:
    bootstrap, kafka = listener(secure, kind)
    assert bootstrap != secure.bootstrap_servers
    with open_stream(stack, rows_topic, bootstrap, kafka, group) as stream:
        changes = list(stream)
    assert [c.after for c in changes] == ROWS
    assert [c.offset for c in changes] == list(range(len(ROWS)))


def wrong(secure: StackInstance, case: str) -> tuple[str, dict[str, Any]]:
    """Settings that must fail: a wrong password, or a broker certificate not trusted."""
    env = secure.env
    if case == "scram-wrong-password":
        bootstrap, kafka = listener(secure, "sasl_ssl-scram")
        return bootstrap, {**kafka, "sasl.password": WRONG_PASSWORD}
    if case == "plain-wrong-password":
        bootstrap, kafka = listener(secure, "sasl_plaintext-plain")
        return bootstrap, {**kafka, "sasl.password": WRONG_PASSWORD}
    if case == "ssl-no-ca":
        bootstrap, kafka = listener(secure, "ssl")
        del kafka["ssl.ca.location"]  # the system roots, which do not know the stack's CA
        return bootstrap, kafka
    if case == "ssl-other-ca":
        bootstrap, kafka = listener(secure, "ssl")
        return bootstrap, {**kafka, "ssl.ca.location": env["KAFKA_SSL_OTHER_CA_LOCATION"]}
    if case == "sasl_ssl-no-ca":
        bootstrap, kafka = listener(secure, "sasl_ssl-scram")
        del kafka["ssl.ca.location"]
        return bootstrap, kafka
    raise AssertionError(case)


FAILURES = {
    "scram-wrong-password": "Authentication",
    "plain-wrong-password": "Authentication",
    "ssl-no-ca": "SSL",
    "ssl-other-ca": "SSL",
    "sasl_ssl-no-ca": "SSL",
}
# What librdkafka says about each failure (its error callback's reason string).
REASONS = {
    "scram-wrong-password": "invalid credentials with SASL mechanism SCRAM-SHA-512",
    "plain-wrong-password": "Invalid username or password",
    "ssl-no-ca": "certificate verify failed",
    "ssl-other-ca": "certificate verify failed",
    "sasl_ssl-no-ca": "certificate verify failed",
}


def read_error(
    stack: dict[str, str], topic: str, bootstrap: str, kafka: dict[str, Any], group: bool
) -> tuple[KafkaError, float]:
    def read() -> None:
        with open_stream(stack, topic, bootstrap, kafka, group) as stream:
            list(stream)

    started = time.monotonic()
    with pytest.raises(KafkaError) as caught:
        read()
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("case", list(FAILURES))
def test_in_a_group_bad_credentials_and_untrusted_certificates_fail_at_once(
    secure: StackInstance, rows_topic: str, stack: dict[str, str], case: str
) -> None:
    bootstrap, kafka = wrong(secure, case)
    error, elapsed = read_error(stack, rows_topic, bootstrap, kafka, group=True)
    print(f"\n{case} (group): {elapsed:.2f}s to {error}")
    assert error.retriable is False, str(error)
    assert elapsed < IMMEDIATE, f"{elapsed:.1f}s: {error}"
    assert FAILURES[case] in str(error)
    for secret in (WRONG_PASSWORD, secure.env["KAFKA_SCRAM_PASSWORD"]):
        assert secret not in str(error)
        assert secret not in repr(error)


@pytest.mark.parametrize("case", ["scram-wrong-password", "ssl-no-ca"])
def test_the_error_says_why(
    secure: StackInstance, rows_topic: str, stack: dict[str, str], case: str
) -> None:
    bootstrap, kafka = wrong(secure, case)
    error, _ = read_error(stack, rows_topic, bootstrap, kafka, group=True)
    assert REASONS[case] in str(error)


# Without a group the stream reads partition metadata before it returns; run it in a child
# process that can be killed, since that wait does not answer Ctrl-C.
NO_GROUP_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from changestream import ChangeStream, ChangeStreamError
    args = json.loads(sys.argv[1])
    started = time.monotonic()
    try:
        with ChangeStream(args["topic"], bootstrap_servers=args["bootstrap"],
                          schema_registry_url=args["registry"], until="end",
                          kafka=args["kafka"]) as stream:
            list(stream)
        result = {"error": None}
    except ChangeStreamError as error:
        result = {"error": type(error).__name__, "retriable": error.retriable, "text": str(error)}
    result["elapsed"] = time.monotonic() - started
    print(json.dumps(result), flush=True)
    """
)


def read_error_without_group(
    stack: dict[str, str], topic: str, bootstrap: str, kafka: dict[str, Any], limit: float
) -> dict[str, Any]:
    arguments = {
        "topic": topic,
        "bootstrap": bootstrap,
        "registry": stack["SCHEMA_REGISTRY_URL"],
        "kafka": kafka,
    }
    try:
        child = subprocess.run(
            [sys.executable, "-c", NO_GROUP_CHILD, json.dumps(arguments)],
            capture_output=True,
            text=True,
            timeout=limit,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return {"error": None, "elapsed": None}
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("case", ["scram-wrong-password", "ssl-no-ca"])
def test_without_a_group_failures_are_fast_too(
    secure: StackInstance, rows_topic: str, stack: dict[str, str], case: str
) -> None:
    bootstrap, kafka = wrong(secure, case)
    # The child's own clock times the failure; the limit only stops a hang (and allows for a
    # slow interpreter start on a loaded machine).
    result = read_error_without_group(stack, rows_topic, bootstrap, kafka, limit=IMMEDIATE + 30)
    print(f"\n{case} (assigned): {result}")
    assert result["elapsed"] is not None, f"no error within {IMMEDIATE + 30:.0f}s"
    assert result["error"] == "KafkaError"
    assert result["retriable"] is False
    assert result["elapsed"] < IMMEDIATE
