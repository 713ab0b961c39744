"""Async iteration: `async with` / `async for`, the same changes as the blocking iterator,
and cancellation that loses nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable

import changestream
import pytest
from cdc import CdcProducer, bottled_water_row_schema

Open = Callable[..., changestream.ChangeStream]
ROW = bottled_water_row_schema("items", [("id", "long"), ("name", "string")])


def produce(cdc: CdcProducer, topic: str, ids: range) -> None:
    cdc.produce(topic, None, ROW, [(None, {"id": i, "name": f"item {i}"}) for i in ids])


def test_async_for_delivers_what_the_blocking_iterator_delivers(
    open_stream: Open, cdc: CdcProducer, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(3)
    produce(cdc, topic, range(2000))

    async def read() -> list[tuple[int, int, dict[str, object] | None]]:
        async with open_stream(topic, until="end") as stream:
            return [(c.partition, c.offset, c.after) async for c in stream]

    got_async = asyncio.run(read())
    with open_stream(topic, until="end") as stream:
        got_sync = [(c.partition, c.offset, c.after) for c in stream]
    assert len(got_async) == 2000
    assert sorted(got_async, key=lambda t: (t[0], t[1])) == sorted(
        got_sync, key=lambda t: (t[0], t[1])
    )
    assert {row["id"] for _, _, row in got_async if row is not None} == set(range(2000))


def test_cancelled_wait_loses_nothing(open_stream: Open, cdc: CdcProducer, topic: str) -> None:
    async def scenario() -> list[int]:
        async with open_stream(topic) as stream:
            # Nothing is there yet: the wait is pending when it is cancelled.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(stream.__anext__(), timeout=0.5)
            produce(cdc, topic, range(5))
            got: list[int] = []
            while len(got) < 5:
                change = await asyncio.wait_for(stream.__anext__(), timeout=30)
                assert change.after is not None
                got.append(int(change.after["id"]))
            return got

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_cancelled_async_for_loses_nothing(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    """``async for`` waits inside its iterator: cancelling that wait ends the loop, and the
    next ``async for`` on the stream delivers everything from the first change."""

    async def first_change(stream: changestream.ChangeStream) -> changestream.Change:
        async for change in stream:
            return change
        raise AssertionError("the stream ended")

    async def scenario() -> list[int]:
        async with open_stream(topic) as stream:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(first_change(stream), timeout=0.5)
            produce(cdc, topic, range(5))
            got: list[int] = []
            async for change in stream:
                assert change.after is not None
                got.append(int(change.after["id"]))
                if len(got) == 5:
                    break
            return got

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_an_awaitable_of_the_next_change_takes_it_only_when_awaited(
    open_stream: Open, cdc: CdcProducer, topic: str
) -> None:
    """``stream.__anext__()`` made and dropped unawaited, with the next change already
    fetched, takes nothing: the change comes next all the same."""
    produce(cdc, topic, range(3))

    async def scenario() -> list[int]:
        async with open_stream(topic, until="end") as stream:
            first = await stream.__anext__()
            # The three changes arrived together: the next one is fetched already, the case
            # in which an awaitable that took a change when made would lose it.
            assert stream.stats()["buffered_bytes"] > 0
            dropped = stream.__anext__()
            del dropped
            return [int(first.after["id"])] + [int(c.after["id"]) async for c in stream]

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_other_tasks_run_while_waiting(open_stream: Open, topic: str) -> None:
    async def scenario() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        async with open_stream(topic) as stream:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(stream.__anext__(), timeout=1.0)
        ticker.cancel()
        return ticks

    # A wait that blocked the event loop would leave the ticker at next to nothing.
    assert asyncio.run(scenario()) > 20


EXIT_WHILE_AWAITING = """
import asyncio, sys
from changestream import ChangeStream

async def main(topic: str, kafka: str, registry: str, batches: bool) -> None:
    stream = ChangeStream(topic, bootstrap_servers=kafka, schema_registry_url=registry)
    reader = stream.batches(max_rows=7, max_wait=0.01) if batches else stream
    got = 0
    async for _ in reader:
        got += 1
        if got == 5:
            break
    # Leave with a wait running on a runtime thread and the stream unclosed.
    try:
        await asyncio.wait_for(reader.__anext__(), 0.001)
    except asyncio.TimeoutError:
        pass
    print(got, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "batches"))
"""


def test_the_interpreter_exits_cleanly_while_an_await_is_pending(
    stack: dict[str, str], cdc: CdcProducer, topic: str
) -> None:
    """50 processes end while a wait runs on a runtime thread: none may crash or hang (the
    wake-up reaches asyncio through a socket, so no Rust thread is in Python at exit)."""
    produce(cdc, topic, range(40))
    runs = 50
    outcomes: list[tuple[int, str, str]] = []
    for first in range(0, runs, 5):
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    EXIT_WHILE_AWAITING,
                    topic,
                    stack["KAFKA_BOOTSTRAP_SERVERS"],
                    stack["SCHEMA_REGISTRY_URL"],
                    "batches" if n % 2 else "changes",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(first, first + 5)
        ]
        for child in children:
            out, err = child.communicate(timeout=60)
            outcomes.append((child.returncode, out, err))
    failed = [(code, err[-400:]) for code, _, err in outcomes if code != 0]
    assert not failed, f"{len(failed)} of {runs} exits failed: {failed[:3]}"
    assert all(out.strip() == "5" for _, out, _ in outcomes)
