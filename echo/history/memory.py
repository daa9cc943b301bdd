"""The in-process history store: a bounded, id-ordered map behind one lock,
of exchanges kept packed (`packed`) and unpacked when read."""

from __future__ import annotations

import bisect
import threading

from ..model.records import Exchange
from .base import Health, Page, Query, Store
from .packed import Packed, may_hold, pack, unpack


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
        self._ids: list[str] = []
        self._items: dict[str, Packed | Exchange] = {}
        self._lock = threading.Lock()

    def add(self, exchange: Exchange) -> None:
        if self._limit <= 0:
            return
        kept = pack(exchange)
        with self._lock:
            if exchange.id in self._items:
                self._items[exchange.id] = kept
                return
            if not self._ids or exchange.id > self._ids[-1]:
                self._ids.append(exchange.id)
            else:
                bisect.insort(self._ids, exchange.id)
            self._items[exchange.id] = kept
            if len(self._ids) > self._limit:  # one in, one out: the limit is never lowered
                del self._items[self._ids[0]]
                del self._ids[0]

    def get(self, exchange_id: str) -> Exchange | None:
        kept = self._items.get(exchange_id)
        return None if kept is None else unpack(kept)

    def list(self, query: Query) -> list[Exchange]:
        return self.page(query, len(self._ids)).exchanges

    def page(self, query: Query, max_scan: int) -> Page:
        # Only the newest `max_scan` before the bound can be examined: copy
        # just those ids under the lock, unpack outside it (the echo adds
        # while a page is read).
        with self._lock:
            end = bisect.bisect_left(self._ids, query.before) if query.before else len(self._ids)
            start = max(0, end - max(max_scan, 0))
            items = self._items
            newest_first = [items[exchange_id] for exchange_id in reversed(self._ids[start:end])]
        found: list[Exchange] = []
        scanned = 0
        hints = query.filter.hints if query.filter else ()
        for kept in newest_first:
            scanned += 1
            if hints and isinstance(kept, Packed) and not may_hold(kept, hints):
                continue  # cannot match: not worth unpacking
            exchange = unpack(kept)
            if query.matches(exchange):
                found.append(exchange)
                if len(found) >= query.limit:
                    return Page(found, scanned)
        # Every id before `start` was left unexamined: the scan stopped at the last one it took.
        stopped = newest_first[-1].id if start > 0 and newest_first else None
        return Page(found, scanned, stopped)

    def clear(self, bin: str | None = None) -> None:
        if bin is None:
            with self._lock:
                self._ids.clear()
                self._items.clear()
            return
        # Kept exchanges are packed: finding a bin's means unpacking each, which
        # happens outside the lock so that the echo's adds never wait on it.
        with self._lock:
            kept = [(exchange_id, self._items[exchange_id]) for exchange_id in self._ids]
        doomed = {exchange_id for exchange_id, item in kept if unpack(item).request.bin == bin}
        if not doomed:
            return
        with self._lock:
            for exchange_id in doomed:
                self._items.pop(exchange_id, None)
            self._ids = [exchange_id for exchange_id in self._ids if exchange_id not in doomed]

    def count(self) -> int:
        return len(self._ids)

    def health(self) -> Health:
        return Health(ok=True, backend=self.backend, detail=f"{self.count()} of {self._limit} exchanges kept")
