"""Async iteration: `async with` / `async for`, the same changes as the blocking iterator,
and cancellation that loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import changestream
import pytest
from cdc import CdcProducer, bottled_water_row_schema

pytestmark = pytest.mark.stack

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
