"""The arrival signal: the recorder says "an exchange was recorded", waits hear it.

A wait (`GET <prefix>api/exchanges/wait`) must answer the moment a matching
exchange is recorded, without a loop that sleeps and looks. The recorder calls
`notify` after the store has kept an exchange; every waiter blocks on the one
condition and wakes on the next generation. The signal carries no exchange:
the waiter asks the store, so what it answers is exactly what the API shows.

Only this process's recorder signals. Exchanges another replica records in a
shared store make no sound here; waits on such a store also look again at a
bounded rate (the inspector's waits module says how fast).
"""

from __future__ import annotations

import threading


class Arrivals:
    """A generation counter behind a condition: each `notify` is one generation more.

    Every recorded exchange notifies, and almost always nobody waits: the
    counter moves without the lock then, and only a registered waiter makes
    `notify` take it (a lock and `notify_all` are most of a microsecond, about
    1% of a plain GET). A waiter registers under the lock before it looks at
    the counter, and `notify` moves the counter before it looks for waiters,
    so a notify either sees the waiter or is seen by it.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._waiters = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        """An exchange was recorded: wake every waiter."""
        # Two unlocked increments may land as one under the GIL; the counter still
        # moves past every `seen` taken before, which is all a waiter compares.
        self._generation += 1
        if self._waiters:
            with self._condition:
                self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the generation is past `seen`, at most `timeout` seconds; the generation now.

        Take `seen` from `generation` before looking in the store: an exchange
        recorded between the look and this call then returns at once."""
        with self._condition:
            self._waiters += 1
            try:
                self._condition.wait_for(lambda: self._generation != seen, timeout)
            finally:
                self._waiters -= 1
            return self._generation
