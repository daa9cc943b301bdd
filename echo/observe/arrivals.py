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
    """A generation counter behind a condition: each `notify` is one generation more."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        """An exchange was recorded: wake every waiter."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the generation is past `seen`, at most `timeout` seconds; the generation now.

        Take `seen` from `generation` before looking in the store: an exchange
        recorded between the look and this call then returns at once."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen, timeout)
            return self._generation
