"""SASL/OAUTHBEARER with ``oauth_cb`` (issue 13) against the stack's OAUTHBEARER listener.

The broker validates tokens with Kafka's unsecured JWT validator when a connection
authenticates (expired or malformed tokens are refused). librdkafka asks for a new token
at 80 % of each token's life; ``oauth_cb`` must then be called again. The callback
must run on the application's thread (the one reading the stream), never on a Rust or
librdkafka thread; a callback that raises, or a token the broker refuses, must end the
stream at once with a typed error that never contains the token.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cdc import CdcProducer, Row, Schema, bottled_water_row_schema
from changestream import ChangeStream, ConfigError, KafkaError, follow, read_table
from oauth_support import TokenIssuer, oauthbearer_settings

ROW: Schema = bottled_water_row_schema("oauth_rows", [("id", "int"), ("name", "string")])
# A failure that waiting cannot heal must surface within this many seconds.
IMMEDIATE = 5.0


def rows(start: int, count: int) -> list[Row]:
    return [{"id": i, "name": f"row {i}"} for i in range(start, start + count)]


def produce(cdc: CdcProducer, topic: str, batch: list[Row]) -> None:
    cdc.produce(topic, None, ROW, [(None, row) for row in batch])


def poll_for(stream: ChangeStream, seconds: float) -> None:
    """Poll (dropping what arrives) for ``seconds``."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        stream.poll(timeout=0.5)


@pytest.fixture
def oauth_stream(stack: dict[str, str]) -> Callable[..., ChangeStream]:
    """``oauth_stream(topic, issuer, **kwargs)``: a stream through the OAUTHBEARER listener."""
    bootstrap = stack.get("KAFKA_OAUTHBEARER_BOOTSTRAP_SERVERS")
    if not bootstrap:
        pytest.fail("the stack has no OAUTHBEARER listener: restart it (make stack-down stack-up)")

    def open_(topic: str, issuer: Any, config: str = "", **kwargs: Any) -> ChangeStream:
        return ChangeStream(
            topic,
            bootstrap_servers=bootstrap,
            schema_registry_url=stack["SCHEMA_REGISTRY_URL"],
            kafka={**oauthbearer_settings(config), **kwargs.pop("kafka", {})},
            oauth_cb=issuer,
            **kwargs,
        )

    return open_


def test_follow_and_read_table_take_oauth_cb(
    stack: dict[str, str], cdc: CdcProducer, topic: str, tmp_path: Path
) -> None:
    produce(cdc, topic, rows(0, 5))
    issuer = TokenIssuer()
    options: dict[str, Any] = {
        "bootstrap_servers": stack["KAFKA_OAUTHBEARER_BOOTSTRAP_SERVERS"],
        "schema_registry_url": stack["SCHEMA_REGISTRY_URL"],
        "kafka": oauthbearer_settings(),
        "oauth_cb": issuer,
    }
    database = tmp_path / "copy.db"
    follow(
        topic, f"sqlite:///{database}", until="end", primary_keys={"oauth_rows": ["id"]}, **options
    )
    with sqlite3.connect(database) as copy:
        assert copy.execute("SELECT id, name FROM oauth_rows ORDER BY id").fetchall() == [
            (row["id"], row["name"]) for row in rows(0, 5)
        ]
    table = read_table(topic, primary_key=["id"], **options)
    assert table.select(["id", "name"]).to_pylist() == rows(0, 5)
    assert issuer.calls >= 2  # each opened its own stream through the OAUTHBEARER listener


def test_a_stream_whose_oauth_cb_refers_back_to_it_is_collected(
    oauth_stream: Callable[..., ChangeStream], cdc: CdcProducer, topic: str
) -> None:
    produce(cdc, topic, rows(0, 2))

    class Pipeline:
        """The stream's callback is a method of the object holding the stream: a cycle."""

        def __init__(self) -> None:
            self.issuer = TokenIssuer()
            self.stream = oauth_stream(topic, self.token, until="end")

        def token(self, config: str) -> Any:
            return self.issuer(config)

    pipeline = Pipeline()
    assert [c.after for c in pipeline.stream] == rows(0, 2)
    gone = weakref.ref(pipeline)
    del pipeline
    gc.collect()
    # Collected, and with it the stream, which closes (its group membership, its threads):
    # not kept until the process exits.
    assert gone() is None


@pytest.mark.parametrize("group", [False, True], ids=["assigned", "group"])
def test_reads_with_a_token_from_oauth_cb(
    oauth_stream: Callable[..., ChangeStream], cdc: CdcProducer, topic: str, group: bool
) -> None:
    produce(cdc, topic, rows(0, 5))
    issuer = TokenIssuer()
    options: dict[str, Any] = {"group_id": f"oauth-{topic}"} if group else {}
    with oauth_stream(
        topic, issuer, config="scope=changes audience=kafka", until="end", **options
    ) as stream:
        changes = list(stream)
    assert [c.after for c in changes] == rows(0, 5)
    # confluent-kafka's contract: the callback gets `sasl.oauthbearer.config`.
    assert issuer.configs[0] == "scope=changes audience=kafka"
    # Once, when the stream opened, on this thread; a 300 s token needs no refresh.
    assert issuer.calls == 1
    assert issuer.threads == [threading.current_thread().name]


def test_the_listener_refuses_a_stream_without_a_valid_token(
    oauth_stream: Callable[..., ChangeStream],
    cdc: CdcProducer,
    topic: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The JWT says it expired a minute ago while the callback says it is valid: librdkafka
    sends it, the broker refuses it, and the stream fails at once naming the cause."""
    produce(cdc, topic, rows(0, 1))
    issuer = TokenIssuer(token_lifetime=-60.0)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(KafkaError) as raised, oauth_stream(topic, issuer, until="end") as stream:
        list(stream)
    elapsed = time.monotonic() - started
    assert elapsed < IMMEDIATE, f"took {elapsed:.1f} s"
    assert raised.value.retriable is False
    assert "authentication" in str(raised.value).lower(), str(raised.value)
    token = issuer.tokens[0]
    assert token not in str(raised.value)
    assert all(token not in record.getMessage() for record in caplog.records)


def test_a_raising_callback_fails_the_stream_when_it_opens(
    oauth_stream: Callable[..., ChangeStream], topic: str
) -> None:
    issuer = TokenIssuer(fail_from=0)
    started = time.monotonic()
    with pytest.raises(KafkaError, match="oauth_cb raised RuntimeError") as raised:
        oauth_stream(topic, issuer, until="end")
    assert time.monotonic() - started < IMMEDIATE
    assert raised.value.retriable is False
    # The application's own exception is kept as the cause.
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_an_expiring_token_is_refreshed_through_oauth_cb(
    oauth_stream: Callable[..., ChangeStream], cdc: CdcProducer, topic: str
) -> None:
    """Tokens living 20 s. The broker gives each connection a session as long as its
    token and makes librdkafka re-authenticate at 90 % of it; librdkafka asks for a new
    token at 80 %. Reading on past the first token's expiry only works if the callback
    ran again, on the reading thread, and its token reached the broker."""
    produce(cdc, topic, rows(0, 3))
    issuer = TokenIssuer(lifetime=20.0)
    seen: list[Row] = []
    with oauth_stream(topic, issuer, group_id=f"oauth-{topic}") as stream:
        opened = time.monotonic()
        produced = 3
        while time.monotonic() - opened < 22.0:
            change = stream.poll(timeout=0.5)
            if change is not None:
                seen.append(change.after)
            # A row every two seconds, so the stream needs the broker all along.
            if produced < 3 + int((time.monotonic() - opened) / 2):
                produce(cdc, topic, rows(produced, 1))
                produced += 1
        while len(seen) < produced:
            change = stream.poll(timeout=10.0)
            assert change is not None, f"read {len(seen)} of {produced}"
            seen.append(change.after)
    assert seen == rows(0, produced)
    assert issuer.calls == 2, issuer.times
    refreshed_after = issuer.times[1] - issuer.times[0]
    assert 15.0 < refreshed_after < 18.0, refreshed_after
    assert set(issuer.threads) == {threading.current_thread().name}


def test_a_callback_raising_on_refresh_ends_the_stream(
    oauth_stream: Callable[..., ChangeStream], cdc: CdcProducer, topic: str
) -> None:
    produce(cdc, topic, rows(0, 2))
    # librdkafka refreshes by the expiry the callback returns (2 s); the broker goes by
    # the JWT's (60 s), so no re-authentication gets in the way.
    issuer = TokenIssuer(lifetime=2.0, token_lifetime=60.0, fail_from=1)
    with oauth_stream(topic, issuer) as stream:
        assert [stream.poll(timeout=10.0).after for _ in range(2)] == rows(0, 2)  # type: ignore[union-attr]
        started = time.monotonic()
        with pytest.raises(KafkaError, match="oauth_cb raised RuntimeError") as raised:
            poll_for(stream, 10.0)
        # Asked for at 80 % of 2 s, raised by the poll that ran the callback.
        assert time.monotonic() - started < 2.0 + IMMEDIATE
    assert raised.value.retriable is False
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_async_iteration_refreshes_the_token_too(
    oauth_stream: Callable[..., ChangeStream], cdc: CdcProducer, topic: str
) -> None:
    """``async for``: the callback runs in the event loop's thread, between waits."""
    import asyncio

    produce(cdc, topic, rows(0, 2))
    issuer = TokenIssuer(lifetime=2.0, token_lifetime=60.0)

    async def read() -> list[Row]:
        seen: list[Row] = []
        async with oauth_stream(topic, issuer) as stream:
            ends = time.monotonic() + 5.0
            while time.monotonic() < ends:
                try:
                    change = await asyncio.wait_for(stream.__anext__(), timeout=0.5)
                except TimeoutError:
                    continue
                seen.append(change.after)
        return seen

    assert asyncio.run(read()) == rows(0, 2)
    assert issuer.calls >= 2, issuer.times
    assert set(issuer.threads) == {threading.current_thread().name}


@pytest.mark.parametrize(
    ("kafka", "oauth_cb", "message"),
    [
        ({}, TokenIssuer(), "oauth_cb needs the kafka setting sasl.mechanism=OAUTHBEARER"),
        (oauthbearer_settings(), None, "needs oauth_cb="),
        (
            {**oauthbearer_settings(), "enable.sasl.oauthbearer.unsecure.jwt": "true"},
            TokenIssuer(),
            "both supply tokens",
        ),
        (oauthbearer_settings(), "not callable", "oauth_cb must be a callable, not str"),
        (oauthbearer_settings(), lambda config: "just a token", "oauth_cb must return"),
        (oauthbearer_settings(), lambda config: ("token", "soon"), "the expiry must be a number"),
        (
            oauthbearer_settings(),
            lambda config: ("token", time.time() + 60, "alice", {"traceId": "1"}),
            "SASL extensions",
        ),
    ],
    ids=[
        "callback-without-oauthbearer",
        "oauthbearer-without-callback",
        "two-token-sources",
        "not-callable",
        "not-a-tuple",
        "expiry-not-a-number",
        "extensions",
    ],
)
def test_oauth_settings_that_cannot_work_are_config_errors(
    kafka: dict[str, str], oauth_cb: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ChangeStream(
            "any-topic",
            bootstrap_servers="127.0.0.1:9",
            schema_registry_url="http://127.0.0.1:9",
            kafka=kafka,
            oauth_cb=oauth_cb,
        )
