"""Progress display for bounded reads (``ChangeStream(..., until=..., progress=True)``).

Uses tqdm (``tqdm.auto``, so notebooks get a widget) when it is installed, otherwise prints
a line to stderr at most once a second.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """A progress bar whose total grows as the stream learns where its partitions end."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._last_print = 0.0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(unit=" changes", desc="changestream", dynamic_ncols=True)

    def update(self, done: int, remaining: int) -> None:
        """``done`` changes delivered; ``remaining`` messages left before the end."""
        if self._bar is not None:
            self._bar.total = done + remaining
            self._bar.n = done
            self._bar.refresh()
            return
        now = time.monotonic()
        if now - self._last_print >= 1.0:
            self._last_print = now
            print(f"changestream: {done} changes, {remaining} to go", file=sys.stderr)

    def close(self) -> None:
        """Stop displaying."""
        if self._bar is not None:
            self._bar.close()
