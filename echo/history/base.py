"""The history store contract: what every backend (memory, Redis) must do.

Exchanges are identified by ids that sort as strings in arrival order, so
"newest first" is "largest id first" in every backend, and `before=<id>` pages
are plain string comparisons.
"""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..model.filter import Filter
from ..model.records import Exchange

STATUS_FILTER = re.compile(r"([1-5])(?:xx|XX)|([1-5]\d\d)")
# A page of the API list: large enough for a screenful, small enough to stay fast.
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class Query:
    """A page of history: newest first, optionally before an id, filtered."""

    limit: int = DEFAULT_PAGE
    before: str | None = None
    method: str | None = None  # exact, case-insensitive
    status: int | None = None  # exact code
    status_class: int | None = None  # 4 for 4xx
    q: str | None = None  # case-insensitive text in path or query string
    filter: Filter | None = None  # the `f=` filter language (section 9)

    def matches(self, exchange: Exchange) -> bool:
        if self.filter is not None and not self.filter.matches(exchange):
            return False
        request = exchange.request
        if self.method and request.method.upper() != self.method.upper():
            return False
        status = exchange.response.status
        if self.status is not None and status != self.status:
            return False
        if self.status_class is not None and status // 100 != self.status_class:
            return False
        if self.q:
            needle = self.q.lower()
            if needle not in request.path.lower() and needle not in request.query_string.lower():
                return False
        return True


@dataclass(frozen=True)
class Health:
    ok: bool
    backend: str
    detail: str = ""


class StoreError(Exception):
    """The store could not be reached or answered badly."""


class Counters(abc.ABC):
    """Named counters that every thread (and, in a shared store, every replica) sees alike.

    Rules count their hits here: `incr` is atomic, so of N concurrent requests
    each gets its own count and a `times = 2` step answers exactly two."""

    @abc.abstractmethod
    def incr(self, key: str) -> int:
        """Add one and return the new value (1 for the first). Raises StoreError."""

    @abc.abstractmethod
    def get(self, keys: Sequence[str]) -> list[int]:
        """The values of `keys` (0 for one never counted)."""

    @abc.abstractmethod
    def delete(self, keys: Sequence[str]) -> None:
        """Forget `keys`."""


class LocalCounters(Counters):
    """Counters of this process only, behind one lock."""

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    def incr(self, key: str) -> int:
        with self._lock:
            value = self._values.get(key, 0) + 1
            self._values[key] = value
            return value

    def get(self, keys: Sequence[str]) -> list[int]:
        return [self._values.get(key, 0) for key in keys]

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._values.pop(key, None)


class Store(abc.ABC):
    """A bounded, thread-safe history of exchanges, shared by every thread."""

    backend: str = "?"

    @abc.abstractmethod
    def add(self, exchange: Exchange) -> None:
        """Keep one exchange, dropping the oldest past the bound. Raises StoreError."""

    @abc.abstractmethod
    def get(self, exchange_id: str) -> Exchange | None:
        """One exchange, or None when unknown (or pushed out)."""

    @abc.abstractmethod
    def list(self, query: Query) -> list[Exchange]:
        """Up to query.limit exchanges, newest first, matching the query."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every exchange."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many exchanges are kept."""

    @abc.abstractmethod
    def health(self) -> Health:
        """Whether the store answers now."""

    def counters(self) -> Counters:
        """Counters kept where this store keeps history: in process by default,
        in Redis for the Redis store, so that replicas share rule sequences."""
        return LocalCounters()

    def close(self) -> None:  # noqa: B027 - optional: most backends hold nothing to release
        """Release connections; the default has none."""
