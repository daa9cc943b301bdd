"""The in-process history store: a bounded, id-ordered map behind one lock.

Every kept exchange is packed (`packed`): its text and numbers as one bytes
object, its bodies beside it, unpacked when read. Kept as records, a GET is
about 20 objects that each request must allocate in memory the cache no
longer holds and that evicting it walks again; measured against the server
without history, records cost a GET several microseconds more than packing
it does (bench/README.md). A packed history also keeps no parsed JSON body
(several times the body's size in Python objects) and hands every reader
records of its own.
"""

from __future__ import annotations

import bisect
import threading

from ..model.records import Exchange
from .base import Health, Page, Query, Store
from .packed import Kept, may_hold, pack, unpack

# A page is read in batches of ids taken under the lock, newest first, and
# unpacked outside it; a filter that passes few exchanges gets larger batches.
FIRST_BATCH_MIN = 16
BATCH_MAX = 4096
# `list` is a page whose scan has no bound of its own.
UNBOUNDED = 1 << 62


class MemoryStore(Store):
    """Keeps at most `limit` exchanges; the smallest (oldest) ids go first.

    Ids are taken when a request arrives but stored when it is answered, so a
    slow exchange can be stored after a newer one: a sorted id list keeps
    "newest first" exact without sorting on every read.
    """

    backend = "memory"
    # An add is a dict insert under a lock: a queue in front would only add
    # work and a thread, so requests write here directly.
    write_behind = False

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # The kept ids are `_ids[_head:]`: evicting the oldest moves `_head` on
        # instead of shifting the whole list down (800 KB of pointers per
        # request with --history 100000); the evicted front is cut off in one
        # go once it is as long as what is kept.
        self._ids: list[str] = []
        self._head = 0
        self._items: dict[str, Kept] = {}
        self._lock = threading.Lock()

    def add(self, exchange: Exchange) -> None:
        if self._limit <= 0:
            return
        kept = pack(exchange)
        exchange_id = exchange.request.id
        with self._lock:
            ids, items = self._ids, self._items
            if len(ids) == self._head or exchange_id > ids[-1]:
                ids.append(exchange_id)  # newer than every kept id, so not among them
            elif exchange_id in items:
                items[exchange_id] = kept
                return
            else:
                bisect.insort(ids, exchange_id, self._head)
            items[exchange_id] = kept
            if len(items) > self._limit:  # one in, one out: the limit is never lowered
                head = self._head
                del items[ids[head]]
                head += 1
                if head >= self._limit:
                    del ids[:head]
                    head = 0
                self._head = head

    def get(self, exchange_id: str) -> Exchange | None:
        kept = self._items.get(exchange_id)
        return None if kept is None else unpack(kept)

    def list(self, query: Query) -> list[Exchange]:
        return self.page(query, UNBOUNDED).exchanges

    def page(self, query: Query, max_scan: int) -> Page:
        found: list[Exchange] = []
        scanned = 0
        before = query.before
        hints = query.filter.hints if query.filter else ()
        batch = max(query.limit, FIRST_BATCH_MIN)
        while scanned < max_scan:
            # Walk back from the page's end by index: no copy of the id list,
            # which is 100,000 entries with a large --history. Each batch starts
            # before the last id seen, so adds and evictions in between move nothing.
            with self._lock:
                ids, items, head = self._ids, self._items, self._head
                end = bisect.bisect_left(ids, before, head) if before is not None else len(ids)
                start = max(end - min(batch, max_scan - scanned), head)
                taken = [(ids[i], items[ids[i]]) for i in range(end - 1, start - 1, -1)]
            # Unpacked outside the lock: the echo adds while a page is read.
            for _, kept in taken:
                scanned += 1
                if hints and not isinstance(kept, Exchange) and not may_hold(kept, hints):
                    continue  # cannot match: not worth unpacking
                exchange = unpack(kept)
                if query.matches(exchange):
                    found.append(exchange)
                    if len(found) >= query.limit:
                        return Page(found, scanned)
            if start == head or not taken:
                return Page(found, scanned)
            before = taken[-1][0]
            batch = min(batch * 2, BATCH_MAX)
        # The bound is used up: the scan stopped at the last id it examined,
        # and says so only when something older is left unexamined.
        with self._lock:
            more = before is not None and bisect.bisect_left(self._ids, before, self._head) > self._head
        return Page(found, scanned, before if more else None)

    def clear(self, bin: str | None = None) -> None:
        if bin is None:
            with self._lock:
                self._ids.clear()
                self._head = 0
                self._items.clear()
            return
        # Kept exchanges may be packed: finding a bin's means unpacking each, which
        # happens outside the lock so that the echo's adds never wait on it.
        with self._lock:
            kept = list(self._items.items())
        doomed = {exchange_id for exchange_id, item in kept if unpack(item).request.bin == bin}
        if not doomed:
            return
        with self._lock:
            for exchange_id in doomed:
                self._items.pop(exchange_id, None)
            self._ids = [exchange_id for exchange_id in self._ids[self._head:] if exchange_id not in doomed]
            self._head = 0

    def count(self) -> int:
        return len(self._items)

    def health(self) -> Health:
        return Health(ok=True, backend=self.backend, detail=f"{self.count()} of {self._limit} exchanges kept")
