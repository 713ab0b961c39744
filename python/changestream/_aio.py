"""``async for change in stream``: an async generator over the stream's ready changes.

Each step takes a change already fetched and decoded (``_take_ready``, which never blocks),
and awaits only when none is: then ``_ready_future`` gives an asyncio future that the
stream completes from the event loop's thread when changes may have arrived (``aio.rs``).
Yielding from a generator costs the interpreter less than completing one awaitable
object per change (``__anext__``, still there for ``anext(stream)``). Cancelling the wait
takes nothing, so it loses nothing; a change is finished, as with ``for``, when the next
is asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from changestream._core import Change, ChangeStream

_END = object()


async def changes(stream: ChangeStream) -> AsyncIterator[Change]:
    take = stream._take_ready
    while True:
        change = take(_END)
        if change is None:
            await stream._ready_future()
        elif change is _END:
            return
        else:
            yield change
