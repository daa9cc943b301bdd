"""The held budget: how many requests may keep a worker thread while they wait.

A `_delay` (and later rule delays, history waits and live streams) keeps its
worker asleep. With every worker asleep, `/_/healthz`, the inspector and plain
echoes queue behind them, so these holders share one budget of --max-held
slots, below --threads. Taking a slot never blocks: a request that finds none
is answered `503` at once instead of waiting for one.

The budget also carries the stop signal: on shutdown every holder's wait ends
at once, so its answer can still be sent before the process exits.
"""

from __future__ import annotations

import threading

# What a refused holder is told to wait before trying again: slots free up as
# soon as any delay ends, and a delay is at most --max-delay.
RETRY_AFTER_SECONDS = 1


class HeldBudget:
    """At most `limit` holders at once; `acquire` says no instead of waiting."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the held budget cannot be negative")
        self.limit = limit
        self._in_use = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self) -> bool:
        """Take a slot if one is free; False (at once) when all are taken."""
        with self._lock:
            if self._in_use >= self.limit:
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._in_use <= 0:
                raise RuntimeError("released a held slot that was not taken")
            self._in_use -= 1

    def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when it ended early because the server stops."""
        return self._stopping.wait(seconds)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """End every hold now (the server is stopping) and every later one at once."""
        self._stopping.set()
