"""The ``changestream`` command against the stack: output parsed, exit statuses checked.

Events are written by confluent-kafka's AvroSerializer (tests/items_cdc.py); the command runs
as users run it, in a subprocess (``python -m changestream`` and the installed console script).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest
from cdc import CdcProducer
from items_cdc import inserts, item, produce

pytestmark = [pytest.mark.timeout(120, func_only=True)]

CONSOLE_SCRIPT = Path(sys.executable).parent / "changestream"


def run(
    stack: dict[str, str], *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m changestream ARGS`` with the stack's addresses in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "changestream", *args],
        env=env if env is not None else stack_env(stack),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def offline_env() -> dict[str, str]:
    """The environment without connection settings: for what must fail before connecting."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL")
    }


def offline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m changestream ARGS`` with no services' addresses in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "changestream", *args],
        env=env if env is not None else offline_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def stack_env(stack: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
        "SCHEMA_REGISTRY_URL": stack["SCHEMA_REGISTRY_URL"],
    }


def test_tail_json_prints_each_change_exactly(
    stack: dict[str, str], cdc: CdcProducer, topic: str
) -> None:
    old, new = item(1), item(1, price="1234567.89", name="renamed ünïcode")
    delivered = produce(cdc, topic, [("c", None, old), ("u", old, new), ("d", new, None)])

    done = run(stack, "tail", "--from", "earliest", "--until", "end", "--json", topic)

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["op"] for line in lines] == ["insert", "update", "delete"]
    assert lines[0]["before"] is None
    assert lines[0]["after"] == old.json()
    assert lines[1]["before"] == old.json()
    assert lines[1]["after"] == new.json()
    assert lines[1]["after"]["price"] == "1234567.89"  # exact, as a string
    assert lines[2]["before"] == new.json()
    assert lines[2]["after"] is None
    for line, sent in zip(lines, delivered, strict=True):
        assert line["table"] == "items"
        assert line["key"] == {"id": 1}
        assert (line["topic"], line["partition"], line["offset"]) == (
            sent.topic,
            sent.partition,
            sent.offset,
        )
        assert line["timestamp"] == sent.timestamp.isoformat()
    assert set(lines[0]) == {
        "op", "table", "key", "before", "after", "topic", "partition", "offset", "timestamp"
    }  # fmt: skip


def test_tail_lines_through_the_console_script_show_what_an_update_changed(
    stack: dict[str, str], cdc: CdcProducer, topic: str
) -> None:
    old = item(7)
    new = item(7, price="99.50")
    produce(cdc, topic, [("c", None, old), ("u", old, new)])

    done = subprocess.run(
        [CONSOLE_SCRIPT, "tail", "--until", "end", topic],
        env=stack_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    insert, update = done.stdout.splitlines()
    assert f" {topic}[0]@0 insert items key={{'id': 7}} " in insert
    assert "'name': 'item 7'" in insert
    assert update.endswith(
        "update items key={'id': 7} {price: Decimal('7.07') -> Decimal('99.50')}"
    ), update


def test_tail_with_a_group_commits_and_lag_reads_it(
    stack: dict[str, str], cdc: CdcProducer, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(2)
    group = f"cli-{uuid4().hex[:8]}"
    inserts(cdc, topic, range(5), partition=0)
    inserts(cdc, topic, range(5, 8), partition=1)

    before = run(stack, "lag", "--group", group, topic)
    assert before.returncode == 0, before.stderr
    header, p0, p1, total = before.stdout.splitlines()
    assert header.split() == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]
    assert p0.split() == [topic, "0", "-", "5", "5"]
    assert p1.split() == [topic, "1", "-", "3", "3"]
    assert total == f"TOTAL LAG 8 (group {group})"

    tailed = run(stack, "tail", "--group", group, "--until", "end", "--json", topic)
    assert tailed.returncode == 0, tailed.stderr
    assert len(tailed.stdout.splitlines()) == 8
    inserts(cdc, topic, range(8, 10), partition=1)

    after = run(stack, "lag", "--group", group, "--json", topic)
    assert after.returncode == 0, after.stderr
    rows = [json.loads(line) for line in after.stdout.splitlines()]
    where = {"group": group, "topic": topic, "start": 0, "end": 5}
    assert rows == [
        {**where, "partition": 0, "committed": 5, "lag": 0},
        {**where, "partition": 1, "committed": 3, "lag": 2},
        {"group": group, "total_lag": 2},
    ]

    # The group resumes where it committed: only the two new changes.
    again = run(stack, "tail", "--group", group, "--until", "end", "--json", topic)
    assert [json.loads(line)["key"] for line in again.stdout.splitlines()] == [{"id": 8}, {"id": 9}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail"], "the following arguments are required: TOPIC"),
        (["tail", "--from", "committed", "t"], "--from committed needs --group"),
        (["tail", "--kafka", "novalue", "t"], "--kafka takes KEY=VALUE, not 'novalue'"),
        (["tail", "--until", "tomorrow", "t"], "invalid choice: 'tomorrow'"),
        (["lag", "t"], "the following arguments are required: --group"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["capture"], "the following arguments are required: --dsn"),
        (["capture", "--dsn", "postgresql://x/y", "--snapshot", "sometimes"], "invalid choice"),
        (["follow", "t"], "the following arguments are required: --to"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    env = {
        **offline_env(),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "SCHEMA_REGISTRY_URL": "http://127.0.0.1:1",
    }
    done = offline(*args, env=env)
    assert done.returncode == 2, done
    assert message in done.stderr
    assert "usage: changestream" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_connection_settings_are_usage_errors() -> None:
    done = offline("tail", "t")
    assert done.returncode == 2
    assert "give --bootstrap-servers or set KAFKA_BOOTSTRAP_SERVERS" in done.stderr
    # Flags work without the environment.
    done = offline("tail", "-b", "127.0.0.1:1", "t")
    assert done.returncode == 2
    assert "give --schema-registry-url or set SCHEMA_REGISTRY_URL" in done.stderr


def test_failures_exit_1_with_one_line_and_the_traceback_only_with_debug(
    stack: dict[str, str],
) -> None:
    missing = f"no-such-topic-{uuid4().hex[:8]}"
    done = run(stack, "tail", "--until", "end", missing)
    assert done.returncode == 1
    assert done.stderr == (
        f"changestream: ConfigError: invalid configuration: topic {missing!r} does not exist\n"
    ).replace("'", '"')

    debug = run(stack, "--debug", "tail", "--until", "end", missing)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback")
    assert debug.stderr.endswith(done.stderr)


def test_lag_with_no_broker_fails_with_a_kafka_error() -> None:
    done = offline("lag", "-b", "127.0.0.1:1", "--group", "g", "--timeout", "2", "t")
    assert done.returncode == 1
    assert done.stderr.startswith("changestream: KafkaError: ")
    assert len(done.stderr.splitlines()) == 1


def test_a_registry_url_without_the_api_path_is_reported_as_a_wrong_url(
    stack: dict[str, str], cdc: CdcProducer, topic: str
) -> None:
    inserts(cdc, topic, range(1))
    server_root = stack["SCHEMA_REGISTRY_URL"].removesuffix("/apis/ccompat/v7")
    assert server_root != stack["SCHEMA_REGISTRY_URL"]

    done = run(stack, "tail", "--until", "end", "-r", server_root, topic)

    assert done.returncode == 1
    assert done.stderr.startswith("changestream: SchemaRegistryError: ")
    assert "is this the URL of a Confluent-compatible API" in done.stderr
    assert "not found" not in done.stderr


def test_ctrl_c_ends_a_following_tail_quietly(
    stack: dict[str, str], cdc: CdcProducer, topic: str
) -> None:
    inserts(cdc, topic, range(2))
    # `python -m changestream`, with the SIGINT handler a terminal's Python has even where
    # this test's process ignores SIGINT (a job a script started with &; children inherit it).
    as_in_a_terminal = (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('changestream', run_name='__main__', alter_sys=True)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", as_in_a_terminal, "tail", "--from", "earliest", "--json", topic],
        env=stack_env(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Both changes printed (flushed line by line), then it waits for more.
    lines = [process.stdout.readline(), process.stdout.readline()]
    assert [json.loads(line)["key"] for line in lines] == [{"id": 0}, {"id": 1}]
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - started < 2
    assert process.returncode == 130
    assert err == ""
    assert out == ""
