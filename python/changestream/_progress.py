"""Progress display for bounded reads (``ChangeStream(..., until=..., progress=True)``).

With tqdm installed, a ``tqdm.auto`` bar (a widget in Jupyter, one updating line in a
terminal). Without it, a line through ``logging`` (logger ``changestream.progress``, INFO) at
most once a second, and always the final count: Airflow and friends show stderr as errors.
"""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("changestream.progress")

#: Seconds between two log lines of the fallback display.
LOG_EVERY = 1.0


class Progress:
    """Messages read out of the total between each partition's start and its end."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._total = -1
        self._last_log = 0.0
        self._done = 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=0, unit=" messages", desc="changestream", dynamic_ncols=True)

    def update(self, done: int, total: int) -> None:
        """``done`` messages of ``total`` read (the total grows as partitions are assigned)."""
        self._done, new_total = done, total
        if self._bar is not None:
            if new_total != self._total:
                # `reset` is what makes a notebook widget take a new total.
                self._bar.reset(total=new_total)
                self._total = new_total
            self._bar.n = done
            self._bar.refresh()
            return
        self._total = new_total
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            logger.info("changestream: %d of %d messages read", done, new_total)

    def close(self) -> None:
        """Show the final count and stop displaying."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        if self._total >= 0:
            logger.info("changestream: %d of %d messages read, done", self._done, self._total)
            self._total = -1
