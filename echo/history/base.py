"""The history store contract: what every backend (memory, Redis) must do.

A backend whose writes wait on I/O says so (`write_behind`); `make_store`
then puts it behind the write-behind queue (`buffered.BufferedStore`), so no
request waits on it.

Exchanges are identified by ids that sort as strings in arrival order, so
"newest first" is "largest id first" in every backend, and `before=<id>` pages
are plain string comparisons.
"""

from __future__ import annotations

import abc
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..model.filter import Filter
from ..model.records import Exchange
from .codec import exchange_from_bytes

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
class Page:
    """A listing and how far its scan went (`Store.page`).

    `stopped` is set when the scan used up its bound before the page filled
    while older exchanges remain: the last id examined, where the caller goes
    on with `before=stopped`. `scanned` is how many kept exchanges were examined.
    """

    exchanges: list[Exchange]
    scanned: int
    stopped: str | None = None


# Kept exchanges one step of the generic `Store.page` reads through `list`.
SCAN_BATCH = 250


@dataclass(frozen=True)
class Health:
    ok: bool
    backend: str
    detail: str = ""
    # Exchanges waiting in the write-behind queue; None for a store written directly.
    buffered: int | None = None


@dataclass(frozen=True)
class WriteStats:
    """What became of the writes handed to a store, for metrics."""

    buffered: int = 0  # exchanges waiting to be written
    errors: int = 0  # failed write attempts
    dropped: int = 0  # exchanges that will never be written (buffer full)


class StoreError(Exception):
    """The store could not be reached or answered badly."""


class UnstorableError(StoreError):
    """Some exchanges of a batch can never be stored (the others were written):
    writing them again would fail again, so they are dropped, not retried."""

    def __init__(self, message: str, skipped: int) -> None:
        super().__init__(message)
        self.skipped = skipped


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


# How long a shared store remembers a clear (`clear_mark`): an exchange another
# replica answered before the clear but had not written yet (its batch was
# filling, or the store was down) is refused for this long after it.
CLEAR_MARK_SECONDS = 3600


def clear_mark() -> int:
    """Now, in the microseconds an id starts with: a clear's mark.

    A shared store (Redis, an SQLite file) keeps the mark of each clear (per
    bin, or of everything) and does not write an exchange whose id is at or
    below it: one answered before the clear by a replica whose write-behind
    queue had not written it yet is gone on every replica, as if it had been
    written in time."""
    return time.time_ns() // 1000


def id_micros(exchange_id: str) -> int:
    """The arrival time an id starts with, in microseconds; -1 for an id of another shape."""
    try:
        return int(exchange_id[:16], 16)
    except ValueError:
        return -1


@dataclass(slots=True, eq=False)
class Prepared:
    """An exchange as a write-behind store will write it, made on the request's
    thread (`Store.prepare`) so that the queue holds few objects.

    A queued exchange lives until its batch is written: kept as records (about
    20 objects, most of them tracked by the garbage collector) it is walked by
    every collection meanwhile, while a backend's row of text, numbers and the
    codec's bytes is a few untracked objects. Reads of the queue decode `data`
    (or take `exchange`, kept by a backend that writes records as they are)."""

    id: str
    bin: str | None
    fields: tuple[Any, ...]  # what the backend writes, in its own layout
    data: bytes = b""  # the exchange in the codec's format (`codec.exchange_to_bytes`)
    exchange: Exchange | None = None

    def record(self) -> Exchange:
        """The exchange itself; raises CodecError if `data` is not the codec's."""
        return self.exchange if self.exchange is not None else exchange_from_bytes(self.data)


class Store(abc.ABC):
    """A bounded, thread-safe history of exchanges, shared by every thread."""

    backend: str = "?"
    # Whether an add may wait on I/O (a network, a disk), so that requests
    # should hand exchanges to the write-behind queue (`buffered`) instead.
    write_behind: bool = True

    @abc.abstractmethod
    def add(self, exchange: Exchange) -> None:
        """Keep one exchange, dropping the oldest past the bound. Raises StoreError."""

    def add_many(self, exchanges: Sequence[Exchange]) -> None:
        """Keep several exchanges, in the order given, as `add` keeps one. Raises StoreError.

        Idempotent by id: adding an id again replaces it and never keeps it
        twice, so a batch retried after it was half written duplicates nothing."""
        for exchange in exchanges:
            self.add(exchange)

    def prepare(self, exchange: Exchange) -> Prepared:
        """The exchange as `add_prepared` writes it; raises UnstorableError (with
        `skipped` 1) for one that can never be stored. By default the records."""
        return Prepared(exchange.id, exchange.request.bin, (), exchange=exchange)

    def add_prepared(self, items: Sequence[Prepared]) -> None:
        """`add_many` of prepared exchanges, with its guarantees."""
        self.add_many([item.record() for item in items])

    @abc.abstractmethod
    def get(self, exchange_id: str) -> Exchange | None:
        """One exchange, or None when unknown (or pushed out)."""

    @abc.abstractmethod
    def list(self, query: Query) -> list[Exchange]:
        """Up to query.limit exchanges, newest first, matching the query."""

    def page(self, query: Query, max_scan: int) -> Page:
        """Like `list`, but examines at most `max_scan` kept exchanges (newest first).

        A filter that matches little must not walk the whole history per call.
        This generic form reads unfiltered batches through `list` and filters
        them here; a backend that can count what it examines does better.
        """
        found: list[Exchange] = []
        scanned = 0
        before = query.before
        while scanned < max_scan:
            asked = min(SCAN_BATCH, max_scan - scanned)
            batch = self.list(Query(limit=asked, before=before))
            for exchange in batch:
                scanned += 1
                if query.matches(exchange):
                    found.append(exchange)
                    if len(found) >= query.limit:
                        return Page(found, scanned)
            if len(batch) < asked:
                return Page(found, scanned)
            before = batch[-1].id
        # The bound is used up: stopped only if something older is left to look at.
        more = before is not None and bool(self.list(Query(limit=1, before=before)))
        return Page(found, scanned, before if more else None)

    @abc.abstractmethod
    def clear(self, bin: str | None = None) -> None:
        """Forget every exchange, or with `bin` only those of that bin (section 9).

        A bin's clear forgets what the bin held when the clear began; exchanges
        outside it keep their ids, order and place under the bound. A store
        shared by replicas also refuses, for CLEAR_MARK_SECONDS, the
        exchanges that arrived before the clear and reach it after
        (`clear_mark`)."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many exchanges are kept."""

    @abc.abstractmethod
    def health(self) -> Health:
        """Whether the store answers now."""

    def write_stats(self) -> WriteStats:
        """Counts of queued, failed and dropped writes; a store written directly has none."""
        return WriteStats()

    def flush(self, timeout: float) -> int:
        """Write what is queued, waiting at most `timeout` seconds; how many are still not written."""
        return 0
    def counters(self) -> Counters:
        """Counters kept where this store keeps history: in process by default,
        in Redis for the Redis store, so that replicas share rule sequences."""
        return LocalCounters()

    def close(self) -> None:  # noqa: B027 - optional: most backends hold nothing to release
        """Release connections; the default has none."""


def add_by_preparing(store: Store, exchanges: Sequence[Exchange]) -> None:
    """`add_many` for a store that writes prepared exchanges: those that can be
    stored are written in one `add_prepared`, then UnstorableError names the rest."""
    items: list[Prepared] = []
    unstorable: list[str] = []
    for exchange in exchanges:
        try:
            items.append(store.prepare(exchange))
        except UnstorableError as exc:
            unstorable.append(str(exc))
    if items:
        store.add_prepared(items)
    if unstorable:
        raise UnstorableError(unstorable[0], len(unstorable))
