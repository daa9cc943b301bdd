"""The in-process history store: a bounded, id-ordered map behind one lock,
of exchanges kept packed (`packed`) and unpacked when read."""

from __future__ import annotations

import bisect
import threading

from ..model.records import Exchange
from .base import Health, Query, Store
from .packed import Kept, pack, unpack

# A page is read in batches of ids taken under the lock, newest first, and
# unpacked outside it; a filter that passes few exchanges gets larger batches.
FIRST_BATCH_MIN = 16
BATCH_MAX = 4096


class MemoryStore(Store):
    """Keeps at most `limit` exchanges; the smallest (oldest) ids go first.

    Ids are taken when a request arrives but stored when it is answered, so a
    slow exchange can be stored after a newer one: a sorted id list keeps
    "newest first" exact without sorting on every read.
    """

    backend = "memory"

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._ids: list[str] = []
        self._items: dict[str, Kept] = {}
        self._lock = threading.Lock()

    def add(self, exchange: Exchange) -> None:
        if self._limit <= 0:
            return
        kept = pack(exchange)
        exchange_id = exchange.request.id
        ids, items = self._ids, self._items
        with self._lock:
            if exchange_id in items:
                items[exchange_id] = kept
                return
            if not ids or exchange_id > ids[-1]:
                ids.append(exchange_id)
            else:
                bisect.insort(ids, exchange_id)
            items[exchange_id] = kept
            if len(ids) > self._limit:  # one in, one out: the limit is never lowered
                del items[ids[0]]
                del ids[0]

    def get(self, exchange_id: str) -> Exchange | None:
        kept = self._items.get(exchange_id)
        return None if kept is None else unpack(kept)

    def list(self, query: Query) -> list[Exchange]:
        found: list[Exchange] = []
        before = query.before
        batch = max(query.limit, FIRST_BATCH_MIN)
        while len(found) < query.limit:
            # Walk back from the page's end by index: no copy of the id list,
            # which is 100,000 entries with a large --history. Each batch starts
            # before the last id seen, so adds and evictions in between move nothing.
            with self._lock:
                ids, items = self._ids, self._items
                end = bisect.bisect_left(ids, before) if before is not None else len(ids)
                start = max(end - batch, 0)
                taken = [items[ids[i]] for i in range(end - 1, start - 1, -1)]
                oldest = ids[start] if start < end else None
            # Unpacked outside the lock: the echo adds while a page is read.
            for kept in taken:
                exchange = unpack(kept)
                if query.matches(exchange):
                    found.append(exchange)
                    if len(found) >= query.limit:
                        return found
            if start == 0 or oldest is None:
                break
            before = oldest
            batch = min(batch * 2, BATCH_MAX)
        return found

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()
            self._items.clear()

    def count(self) -> int:
        return len(self._ids)

    def health(self) -> Health:
        return Health(ok=True, backend=self.backend, detail=f"{self.count()} of {self._limit} exchanges kept")
