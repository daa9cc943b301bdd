"""The in-process history store: a bounded, id-ordered map behind one lock,
of exchanges kept packed (`packed`) and unpacked when read."""

from __future__ import annotations

import bisect
import threading

from ..model.records import Exchange
from .base import Health, Query, Store
from .packed import Packed, pack, unpack


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
        # Unpacked outside the lock: the echo adds while a page is read.
        with self._lock:
            end = bisect.bisect_left(self._ids, query.before) if query.before else len(self._ids)
            items = self._items
            newest_first = [items[exchange_id] for exchange_id in reversed(self._ids[:end])]
        found: list[Exchange] = []
        for kept in newest_first:
            exchange = unpack(kept)
            if query.matches(exchange):
                found.append(exchange)
                if len(found) >= query.limit:
                    break
        return found

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
            self._items.clear()

    def count(self) -> int:
        return len(self._ids)

    def health(self) -> Health:
        return Health(ok=True, backend=self.backend, detail=f"{self.count()} of {self._limit} exchanges kept")
