"""Write-behind: the bounded queue in front of a store whose writes wait on I/O.

`BufferedStore(store, ...)` is itself a `Store`. Its `add` appends the
exchange to a queue, as the store will write it (`Store.prepare`: a row of
text, numbers and the codec's bytes rather than the records), and returns,
so no request waits on Redis (or a disk). An exchange that can never be
stored is dropped and counted there and then. One writer thread drains the
queue in batches through `store.add_prepared`, in arrival order. While the
store fails, the batch stays at the head of the queue and is retried with
backoff, so an outage loses nothing up to the bounds (--store-buffer
exchanges, --store-buffer-bytes bytes); past them the oldest waiting are
dropped, counted and logged once per outage. Batches are written
idempotently by id (`Store.add_many`), so one retried after it was half
written keeps each exchange once.

Reads merge what is still queued with the store's answer, decoding no more
of the queue than a page can take: the process that answered an exchange
shows it at once (read your own writes); other replicas see it when its
batch is written, within about LINGER_SECONDS (50 ms).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from ..config import flag
from ..model.records import Exchange
from .base import Counters, Health, Page, Prepared, Query, Store, StoreError, UnstorableError, WriteStats
from .codec import CodecError

log = logging.getLogger("echo")

# Exchanges per batch: one transaction or one script call (one round trip)
# each. A busy echo fills a batch of this size only as LINGER_SECONDS ends
# (about 400 exchanges at 8,000 a second), so it writes one batch per 50 ms,
# not several: each batch has a fixed cost (the writer's wake-up, the
# transaction or round trip, the GIL handed over and back for each
# statement) paid on the answers' CPU. Measured: SQLite at 0.875x of the
# memory store's req/s with batches of 100, 0.91x with 500. BATCH_BYTES
# keeps a batch of large exchanges to a few MiB.
BATCH = 500
# Bytes (by `approximate_size`) per batch: a batch of large exchanges is cut
# short so one call stays well under a --store-timeout.
BATCH_BYTES = 4 * 1024 * 1024
# How long the writer waits for a batch to fill before writing it short. Each
# write has a fixed cost (a transaction, a round trip) that a busy echo pays on
# the same CPU as its answers, so waiting for a full batch is what keeps the
# store's price small; 50 ms stays far inside the 1 s in which other replicas
# and a SIGKILL must see an answered exchange.
LINGER_SECONDS = 0.05
# Backoff between attempts while the store fails: the first retry is soon (a
# restarted Redis is back in a moment), later ones at most a second apart so
# the backlog is written within a second of the store's return.
RETRY_FIRST_SECONDS = 0.05
RETRY_MOST_SECONDS = 1.0
# What `close` waits for the queue when nobody flushed it first (the pytest
# plugin, embedders): the command line flushes within its own stop budget.
CLOSE_FLUSH_SECONDS = 1.0
# Python objects around an exchange's bytes (records, tuples, strings): about
# what a small exchange costs beyond its bodies and headers.
ENTRY_OVERHEAD = 1024


def approximate_size(exchange: Exchange) -> int:
    """About the bytes an exchange holds: its bodies, URL and headers plus a fixed overhead.

    Cheap on the request thread (no encoding); bodies dominate any exchange
    large enough for the byte bound to matter."""
    request, response = exchange.request, exchange.response
    size = ENTRY_OVERHEAD + len(request.body) + len(request.url) + len(response.body or b"")
    if request.content is not None:
        size += len(request.content)
    for name, value in request.headers:
        size += len(name) + len(value)
    for name, value in response.headers:
        size += len(name) + len(value)
    return size


@dataclass(slots=True, eq=False)
class _Entry:
    seq: int  # arrival order in this queue
    item: Prepared  # as the store writes it (`Store.prepare`)
    size: int


class BufferedStore(Store):
    """`store` behind a bounded write-behind queue of at most `max_items`
    exchanges and `max_bytes` bytes; `limit` is the history bound (for `count`)."""

    write_behind = False  # it is the queue

    def __init__(self, store: Store, *, max_items: int, max_bytes: int, limit: int) -> None:
        self.store = store
        self.backend = store.backend
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._limit = limit
        self._queue: deque[_Entry] = deque()
        self._by_id: dict[str, _Entry] = {}
        self._bytes = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # something was queued, or close
        self._empty = threading.Condition(self._lock)  # the queue became empty
        self._nudge = threading.Event()  # cuts a backoff short (flush, close)
        # Held while a batch is written: `clear` takes it, so a batch taken
        # before a clear is never written after it.
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = True  # the writer waits for work (or has not started): `add` may wake it
        self._in_flight_end = 0  # entries with a smaller seq are being written now
        self._lost_in_flight = 0  # of those, pushed out by the bounds: lost if the attempt fails
        self._closing = False
        self._stop_by = 0.0
        self._flushed = False
        self.errors = 0
        self.dropped = 0
        # One outage: from the first failed write until the queue has caught up.
        self._failing_since: float | None = None
        self._last_error = ""
        self._dropped_before = 0
        # `dropped` when the last write succeeded: drops since then (the queue
        # filled while a batch waited) belong to the outage that follows.
        self._dropped_at_write = 0
        self._backlog_end: int | None = None  # once the store is back: the seq after the last buffered
        self._warned_full = False

    # ---- writes -----------------------------------------------------------

    def add(self, exchange: Exchange) -> None:
        # Prepared here, not by the writer: the queue then holds the store's row
        # rather than the records, which every garbage collection would walk
        # while they wait (about 12k instructions per exchange on SQLite).
        try:
            item = self.store.prepare(exchange)
        except Exception as exc:  # noqa: BLE001 - a bug in a backend must not fail the answer it records
            with self._lock:
                self.dropped += 1
            if isinstance(exc, UnstorableError):
                log.warning("history store: exchange %s dropped, it cannot be stored: %s", exchange.id, exc)
            else:
                log.exception("history store: unexpected error preparing exchange %s; dropped", exchange.id)
            return
        # A store that wrote the codec's bytes has measured the exchange already.
        size = approximate_size(exchange) if item.exchange is not None else ENTRY_OVERHEAD + len(item.data)
        with self._lock:
            entry = _Entry(self._seq, item, size)
            self._seq += 1
            self._queue.append(entry)
            self._by_id[item.id] = entry
            self._bytes += size
            full = len(self._queue) > self._max_items or self._bytes > self._max_bytes
            if full:
                while len(self._queue) > self._max_items or self._bytes > self._max_bytes:
                    self._drop_oldest()
                warn = not self._warned_full
                self._warned_full = True
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._run, name="echo-store-writer", daemon=True)
                self._thread.start()
            # The writer waits for the first exchange, then for a full batch:
            # waking it for every one in between would cost a switch each, and
            # while it writes (the batch stays queued until written) nobody waits.
            if self._idle and (len(self._queue) == 1 or len(self._queue) >= BATCH or self._bytes >= BATCH_BYTES):
                self._work.notify()
        if full and warn:
            log.error("history store buffer full (%s %d, %s %d): dropping the oldest exchanges not yet written",
                      flag("store_buffer"), self._max_items, flag("store_buffer_bytes"), self._max_bytes)

    def add_many(self, exchanges: Sequence[Exchange]) -> None:
        for exchange in exchanges:
            self.add(exchange)

    def _drop_oldest(self) -> None:
        old = self._queue.popleft()
        self._bytes -= old.size
        if self._by_id.get(old.item.id) is old:
            del self._by_id[old.item.id]
        if old.seq < self._in_flight_end:
            self._lost_in_flight += 1  # its batch may still be written: counted once that fails
        else:
            self.dropped += 1

    def _batch_ready(self) -> bool:
        return len(self._queue) >= BATCH or self._bytes >= BATCH_BYTES or self._flushed or self._closing

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        for entry in self._queue:
            if batch and (len(batch) >= BATCH or size + entry.size > BATCH_BYTES):
                break
            batch.append(entry)
            size += entry.size
        return batch

    def _run(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while True:
            with self._lock:
                self._idle = True
                while not self._queue and not self._closing:
                    self._work.wait()
                if not self._queue or (self._closing and time.monotonic() >= self._stop_by):
                    return
                # Let a busy echo's next answers join this batch: one write for
                # many exchanges instead of one each, for at most LINGER_SECONDS
                # before other replicas see them.
                self._work.wait_for(self._batch_ready, LINGER_SECONDS)
                self._idle = False
            with self._writing:
                with self._lock:
                    batch = self._take()
                    if not batch:
                        continue  # cleared meanwhile
                    self._in_flight_end = batch[-1].seq + 1
                failure: BaseException | None = None
                unstorable = 0
                try:
                    self.store.add_prepared([entry.item for entry in batch])
                except UnstorableError as exc:
                    unstorable = exc.skipped  # the rest of the batch is written
                    log.warning("history store: %d exchange(s) dropped, they cannot be stored: %s", unstorable, exc)
                except StoreError as exc:
                    failure = exc
                except Exception as exc:  # noqa: BLE001 - a bug in a backend must not end the writer
                    failure = exc
                    if self._failing_since is None:  # with its traceback, once per outage
                        log.exception("history store: unexpected error writing a batch")
                if failure is None:
                    self._written(batch, unstorable)
                    delay = RETRY_FIRST_SECONDS
                    continue
                self._failed(failure)
            # Back off outside the writing lock, so a clear is never held up by it.
            self._nudge.wait(delay)
            self._nudge.clear()
            delay = RETRY_FIRST_SECONDS if self._closing else min(delay * 2, RETRY_MOST_SECONDS)

    def _written(self, batch: list[_Entry], unstorable: int) -> None:
        end = batch[-1].seq
        recovered: tuple[float, int] | None = None
        with self._lock:
            self._in_flight_end = 0
            self._lost_in_flight = 0  # pushed out of the queue, but written all the same
            self.dropped += unstorable
            while self._queue and self._queue[0].seq <= end:
                entry = self._queue.popleft()
                self._bytes -= entry.size
                if self._by_id.get(entry.item.id) is entry:
                    del self._by_id[entry.item.id]
            if self._failing_since is not None and self._backlog_end is None:
                self._backlog_end = self._seq  # the store is back: what arrived until now is the backlog
            if not self._queue or self._queue[0].seq >= (self._backlog_end or 0):
                # Caught up: whatever waits arrived after the store was back.
                if self._failing_since is not None:
                    recovered = (time.monotonic() - self._failing_since, self.dropped - self._dropped_before)
                    self._failing_since = None
                    self._backlog_end = None
                self._warned_full = False
            if self._failing_since is None:
                self._dropped_at_write = self.dropped
        if recovered is not None:
            down, dropped = recovered
            log.warning("history store is back after %.1f s; the exchanges buffered meanwhile are written, "
                        "%d were dropped (buffer full)", down, dropped)
        with self._lock:
            # After the log line: a flush that returns has seen the outage end in full.
            if not self._queue:
                self._empty.notify_all()

    def _failed(self, failure: BaseException) -> None:
        with self._lock:
            self.errors += 1
            self._in_flight_end = 0
            self.dropped += self._lost_in_flight
            self._lost_in_flight = 0
            self._last_error = str(failure) or type(failure).__name__
            self._backlog_end = None  # failing again before the backlog was written: still one outage
            first = self._failing_since is None
            if first:
                self._failing_since = time.monotonic()
                self._dropped_before = self._dropped_at_write
        if first:
            log.error("history store failing: exchanges wait in the buffer (up to %s %d) and are written "
                      "when it is back: %s", flag("store_buffer"), self._max_items, self._last_error)

    def flush(self, timeout: float) -> int:
        """Write what is queued, waiting at most `timeout` seconds; how many are still not written."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flushed = True
            self._work.notify()
            self._nudge.set()  # retry now rather than after the backoff
            while self._queue and self._thread is not None and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._empty.wait(left)
            return len(self._queue)

    def close(self) -> None:
        left = self.flush(0.0 if self._flushed else CLOSE_FLUSH_SECONDS)
        with self._lock:
            self._closing = True
            self._stop_by = time.monotonic()
            self._work.notify()
            reason = self._last_error
        self._nudge.set()
        if left:
            log.warning("history store: stopping with %d exchange(s) not written (%s)",
                        left, reason or "the store did not take them in time")
        self.store.close()

    # ---- reads: the queue first, so this process reads its own writes -------

    def _waiting(self, query: Query) -> tuple[list[Exchange], int]:
        """The queued exchanges a page of `query` may show, newest first, and how many were looked at.

        A merged page takes at most `limit` of them, the newest by id, so no
        more than those are decoded. Ids are not quite in the queue's order (an
        exchange is queued when its answer ends, a slow one after faster ones
        that arrived later), hence the sort."""
        with self._lock:
            items = [entry.item for entry in self._queue]
        items.sort(key=attrgetter("id"), reverse=True)
        found: list[Exchange] = []
        looked = 0
        before = query.before
        for item in items:
            if before is not None and item.id >= before:
                continue
            looked += 1
            exchange = _record(item)
            if exchange is not None and query.matches(exchange):
                found.append(exchange)
                if len(found) >= query.limit:
                    break
        return found, looked

    def get(self, exchange_id: str) -> Exchange | None:
        with self._lock:
            entry = self._by_id.get(exchange_id)
        if entry is not None:
            exchange = _record(entry.item)
            if exchange is not None:
                return exchange
        return self.store.get(exchange_id)

    def list(self, query: Query) -> list[Exchange]:
        # The queue is read before the store: an exchange written and taken off
        # the queue in between is then in the store's answer, never in neither.
        extra, _ = self._waiting(query)
        stored = self.store.list(query)
        if not extra:
            return stored
        merged = {e.id: e for e in stored}
        merged.update((e.id, e) for e in extra)
        return sorted(merged.values(), key=lambda e: e.id, reverse=True)[:query.limit]

    def page(self, query: Query, max_scan: int) -> Page:
        # The store's own bounded scan, with what still waits here merged in (as `list`).
        extra, looked = self._waiting(query)
        inner = self.store.page(query, max_scan)
        if not extra:
            return inner
        merged = {e.id: e for e in inner.exchanges}
        merged.update((e.id, e) for e in extra)
        found = sorted(merged.values(), key=lambda e: e.id, reverse=True)[:query.limit]
        # A page filled by waiting exchanges goes on from its last one, as any full page does.
        stopped = inner.stopped if len(found) < query.limit else None
        return Page(found, inner.scanned + looked, stopped)

    def clear(self, bin: str | None = None) -> None:
        # Holding `_writing`: no batch is in flight, so the queue may be cut freely.
        with self._writing:
            self.store.clear(bin)
            with self._lock:
                if bin is None:
                    self._queue.clear()
                    self._by_id.clear()
                    self._bytes = 0
                else:
                    kept = deque(entry for entry in self._queue if entry.item.bin != bin)
                    for entry in self._queue:
                        if entry.item.bin == bin and self._by_id.get(entry.item.id) is entry:
                            del self._by_id[entry.item.id]
                    self._queue = kept
                    self._bytes = sum(entry.size for entry in kept)
                if not self._queue:
                    self._empty.notify_all()

    def count(self) -> int:
        stored = self.store.count()
        with self._lock:
            waiting = len(self._queue)
        return min(self._limit, stored + waiting)

    def health(self) -> Health:
        inner = self.store.health()
        with self._lock:
            buffered = len(self._queue)
            failing = self._failing_since is not None
            reason = self._last_error
        if inner.ok and failing:
            detail = f"{inner.detail}; {buffered} exchange(s) buffered since a failed write ({reason})"
            return Health(ok=False, backend=inner.backend, detail=detail, buffered=buffered)
        return Health(ok=inner.ok and not failing, backend=inner.backend, detail=inner.detail, buffered=buffered)

    def counters(self) -> Counters:
        # Rule sequences count where the history is kept (shared by replicas on Redis), not in this queue.
        return self.store.counters()

    def write_stats(self) -> WriteStats:
        with self._lock:
            return WriteStats(buffered=len(self._queue), errors=self.errors, dropped=self.dropped)


def _record(item: Prepared) -> Exchange | None:
    """A queued exchange read back; None (and a log line) if its bytes do not decode."""
    try:
        return item.record()
    except CodecError as exc:  # the store's own encoding: a bug, not the wire
        log.warning("history store: queued exchange %s cannot be read back: %s", item.id, exc)
        return None
