"""The stream's manners: configuration errors, bounded and unbounded waits, close, Ctrl-C,
the GIL, and resuming a consumer group from what the application finished."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import changestream
import pytest
from cdc import CdcProducer, bottled_water_row_schema

ROW = bottled_water_row_schema("items", [("id", "long"), ("name", "string")])


def produce_rows(cdc: CdcProducer, topic: str, count: int) -> None:
    cdc.produce(topic, None, ROW, [(None, {"id": i, "name": f"item {i}"}) for i in range(count)])


def test_invalid_options_raise_config_error(
    open_stream: Callable[..., changestream.ChangeStream], topic: str
) -> None:
    with pytest.raises(changestream.ConfigError, match="start must be"):
        open_stream(topic, start="yesterday")
    with pytest.raises(changestream.ConfigError, match="until must be"):
        open_stream(topic, until="forever")
    with pytest.raises(changestream.ConfigError, match="schema_registry_url"):
        changestream.ChangeStream(
            topic, bootstrap_servers="127.0.0.1:1", schema_registry_url="not a url"
        )


def test_missing_topic_is_a_config_error(
    open_stream: Callable[..., changestream.ChangeStream],
) -> None:
    with pytest.raises(changestream.ConfigError, match="does not exist") as raised:
        open_stream("test.no-such-topic.0f3c9a")
    assert raised.value.retriable is False
    assert raised.value.topic is None


def test_bounded_read_of_an_empty_topic_ends_at_once(
    open_stream: Callable[..., changestream.ChangeStream], topic: str
) -> None:
    with open_stream(topic, until="end") as stream:
        assert list(stream) == []


def test_poll_times_out_with_none_and_then_delivers(
    open_stream: Callable[..., changestream.ChangeStream], cdc: CdcProducer, topic: str
) -> None:
    with open_stream(topic) as stream:
        assert stream.poll(timeout=0.3) is None
        produce_rows(cdc, topic, 1)
        change = stream.poll(timeout=30)
        assert change is not None
        assert change.after == {"id": 0, "name": "item 0"}


def test_close_is_idempotent_and_a_closed_stream_raises(
    open_stream: Callable[..., changestream.ChangeStream], topic: str
) -> None:
    stream = open_stream(topic)
    stream.close()
    stream.close()
    with pytest.raises(changestream.ChangeStreamError, match="closed"):
        next(stream)


def test_the_gil_is_released_while_waiting(
    open_stream: Callable[..., changestream.ChangeStream], topic: str
) -> None:
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    with open_stream(topic) as stream:
        thread = threading.Thread(target=count)
        thread.start()
        try:
            assert stream.poll(timeout=1.0) is None
        finally:
            stop.set()
            thread.join()
    # A thread that could not take the GIL during the wait would have counted next to nothing.
    assert ticks > 100


@pytest.mark.parametrize(
    "call",
    [
        # An idle topic of the shared stack: next() waits for a change.
        "next(changestream.ChangeStream(TOPIC, bootstrap_servers=BOOT, schema_registry_url=REG))",
        # Without a group, opening asks for the topic's partitions, for up to 30 s.
        "changestream.ChangeStream('nowhere', bootstrap_servers=NOBODY, schema_registry_url=REG)",
        "changestream.group_lag('nowhere', group_id='g', bootstrap_servers=NOBODY, timeout=30)",
    ],
    ids=["next", "open_without_brokers", "group_lag_without_brokers"],
)
def test_ctrl_c_interrupts_a_blocking_call(stack: dict[str, str], topic: str, call: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{probe.getsockname()[1]}"
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time, changestream
        # As in a terminal, whatever this test was started from (see test_batches).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        TOPIC, BOOT, NOBODY = {topic!r}, {stack["KAFKA_BOOTSTRAP_SERVERS"]!r}, {nobody!r}
        REG = {stack["SCHEMA_REGISTRY_URL"]!r}
        sent = []
        def interrupt():
            time.sleep(1.0)
            sent.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            {call}
            print("returned")
        except KeyboardInterrupt:
            print("interrupted after", round(time.monotonic() - sent[0], 3))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("interrupted after"), done.stdout + done.stderr
    latency = float(done.stdout.split()[-1])
    # Waits are sliced at 100 ms; a wait that ignored signals would end only with its call.
    assert latency < 1.0, latency


def test_the_process_signals_reach_python_while_a_stream_is_open(
    stack: dict[str, str], cdc: CdcProducer, topic: str
) -> None:
    """A signal goes to any thread of the process that does not block it. Python runs handlers in
    its main thread only, so one taken by a thread of ours would leave the main thread waiting
    (a pool worker that never ended on ``terminate()``). Ours must all block signals."""
    produce_rows(cdc, topic, 10)
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, threading, changestream
        stream = changestream.ChangeStream(
            {topic!r}, bootstrap_servers={stack["KAFKA_BOOTSTRAP_SERVERS"]!r},
            schema_registry_url={stack["SCHEMA_REGISTRY_URL"]!r})
        # Every kind of thread of ours: fetch, registry, and a wait started by async iteration.
        assert [next(stream).offset for _ in range(10)] == list(range(10))
        async def wait_async():
            try:
                await asyncio.wait_for(stream.__anext__(), 0.5)
            except TimeoutError:
                pass
        asyncio.run(wait_async())
        python_threads = {{t.native_id for t in threading.enumerate()}}
        for tid in os.listdir("/proc/self/task"):
            if int(tid) in python_threads:
                continue
            status = open(f"/proc/self/task/{{tid}}/status").read()
            fields = dict(line.split(":", 1) for line in status.splitlines())
            blocked = int(fields["SigBlk"], 16)
            for number in (signal.SIGINT, signal.SIGTERM):
                if not blocked & (1 << (number - 1)):
                    print("unblocked", number, fields["Name"].strip(), flush=True)
        class Woke(Exception):
            pass
        def woke(signum, frame):
            raise Woke
        signal.signal(signal.SIGTERM, woke)
        held = threading.Lock()
        held.acquire()
        for _ in range(20):
            try:
                print("waiting", flush=True)
                held.acquire(timeout=10)
                print("not woken", flush=True)
            except Woke:
                print("woke", flush=True)
        stream.close()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:

        def the_rest(said: str) -> str:
            child.kill()
            out, err = child.communicate()
            return said + out + err

        assert child.stdout is not None
        for _ in range(20):
            said = child.stdout.readline()
            assert said == "waiting\n", the_rest(said)
            child.send_signal(signal.SIGTERM)
            # A signal a thread of ours took would leave the 10 s wait running to its end.
            said = child.stdout.readline()
            assert said == "woke\n", the_rest(said)
        try:
            out, err = child.communicate(timeout=30)
        finally:
            child.kill()
        assert child.returncode == 0, out + err


def test_group_resumes_after_the_last_finished_change(
    open_stream: Callable[..., changestream.ChangeStream], cdc: CdcProducer, topic: str
) -> None:
    produce_rows(cdc, topic, 10)
    group = f"group-{topic}"
    options: dict[str, Any] = {"group_id": group}  # start="committed", then earliest
    with open_stream(topic, **options) as stream:
        handed_out = [next(stream) for _ in range(4)]
    # Changes 0-2 were finished (the application asked for the next one); change 3 was handed
    # out last and never finished, so it must come again.
    assert [c.offset for c in handed_out] == [0, 1, 2, 3]
    with open_stream(topic, **options) as stream:
        resumed = next(stream)
    assert resumed.offset == 3
    assert resumed.after == {"id": 3, "name": "item 3"}


def test_progress_bar_counts_a_bounded_read(
    open_stream: Callable[..., changestream.ChangeStream],
    cdc: CdcProducer,
    topic: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    produce_rows(cdc, topic, 25)
    with open_stream(topic, until="end", progress=True) as stream:
        assert len(list(stream)) == 25
    shown = capsys.readouterr().err
    # tqdm's last refresh shows every change delivered, out of a total that ended at 25.
    assert "25/25" in shown, shown
