"""The write-behind queue (`history.buffered.BufferedStore`) in front of a store.

Requests never wait on the store; reads of the answering process see what
waits (read your own writes); writes go in arrival order, in batches; an
outage loses nothing up to the bounds (items and bytes, at the limit and one
past it), the oldest are dropped past them, counted and logged once; a batch
retried after it was half written keeps each exchange once (memory and a real
Redis); a clean close flushes and says what it could not write. The store
behind is a real one (memory or Redis) wrapped by `Switch`, which fails,
hangs or half-writes on demand the way a store behind a network does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from echo import create_app
from echo.config import STORE_BUFFER, STORE_BUFFER_BYTES, ConfigError, load_settings
from echo.history import (
    BufferedStore,
    Health,
    MemoryStore,
    Query,
    Store,
    StoreError,
    StoreOptions,
    UnstorableError,
    buffered,
    make_store,
)
from echo.history.base import Prepared
from echo.history.buffered import approximate_size
from echo.history.codec import exchange_from_bytes, exchange_to_bytes
from echo.history.redis_store import RedisStore
from echo.model.factory import make_exchange, make_request, make_response
from echo.model.filter import parse
from echo.model.records import Exchange
from echo.observe.recorder import Recorder

from support import RedisServer, free_port

BASE_US = 1_767_225_600_000_000
# How long to wait for what the writer thread does by itself; far above what it takes.
SETTLE_SECONDS = 10.0


def ident(n: int) -> str:
    return f"{BASE_US + n:016x}0a0b0c0d{n & 0xFFFF:04x}"


def exchange(n: int, method: str = "GET", status: int = 200, bin: str | None = None) -> Exchange:
    exchange_id = ident(n)
    return make_exchange(
        make_request(id=exchange_id, method=method, path=f"/n/{n:04d}", body_sha256="0" * 64,
                     started=(BASE_US + n) / 1_000_000, bin=bin, bin_path=None if bin is None else "/"),
        make_response(status=status, headers=(("Content-Type", "application/json"), ("X-Echo-Id", exchange_id)),
                      body_sha256="1" * 64),
    )


def ids(found: Sequence[Exchange]) -> list[str]:
    return [e.id for e in found]


def settle(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class Switch(Store):
    """A real store behind a switch: writes fail, hang, or are half written on demand."""

    backend = "switch"

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.fail_writes = False
        self.fail_reads = False
        self.half_write: str | None = None  # "half": the first half then a failure; "all": all, reply lost
        self.unstorable_first = False
        self.stall_after: int | None = None  # hang once this many batches are written
        self.gate = threading.Event()  # add_many waits here while it is clear, as on a stalled store
        self.gate.set()
        self.entered = threading.Event()  # set when a write has begun
        self.batches: list[list[str]] = []  # every batch written in full, in order
        self.attempts = 0

    def add(self, exchange: Exchange) -> None:
        self.add_many([exchange])

    def add_many(self, exchanges: Sequence[Exchange]) -> None:
        self.entered.set()
        assert self.gate.wait(SETTLE_SECONDS)
        self.attempts += 1
        if self.fail_writes:
            raise StoreError("connection refused")
        if self.half_write is not None:
            written = exchanges if self.half_write == "all" else exchanges[:len(exchanges) // 2]
            self.half_write = None
            self.inner.add_many(written)
            raise StoreError("timeout reading the reply")
        if self.unstorable_first:
            self.unstorable_first = False
            self.inner.add_many(exchanges[1:])
            self.batches.append(ids(exchanges[1:]))
            raise UnstorableError("exchange cannot be stored", 1)
        self.inner.add_many(exchanges)
        self.batches.append(ids(exchanges))
        if self.stall_after is not None and len(self.batches) >= self.stall_after:
            self.stall_after = None
            self.gate.clear()  # the next write hangs

    def _read(self) -> None:
        if self.fail_reads:
            raise StoreError("connection refused")

    def get(self, exchange_id: str) -> Exchange | None:
        self._read()
        return self.inner.get(exchange_id)

    def list(self, query: Query) -> list[Exchange]:
        self._read()
        return self.inner.list(query)

    def clear(self, bin: str | None = None) -> None:
        self._read()
        self.inner.clear(bin)

    def count(self) -> int:
        self._read()
        return self.inner.count()

    def health(self) -> Health:
        if self.fail_reads:  # Redis's health is a read, as here
            return Health(ok=False, backend=self.backend, detail="connection refused")
        return Health(ok=True, backend=self.backend, detail="answers")

    def down(self) -> None:
        self.fail_writes = self.fail_reads = True

    def up(self) -> None:
        self.fail_writes = self.fail_reads = False

    def written(self) -> list[str]:
        return [exchange_id for batch in self.batches for exchange_id in batch]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The backoff's ceiling is a second; the tests need no such patience.
    monkeypatch.setattr(buffered, "RETRY_MOST_SECONDS", 0.05)


@pytest.fixture
def queues() -> Iterator[Callable[..., tuple[BufferedStore, Switch]]]:
    """queues(max_items=..., max_bytes=..., inner=...) -> (the queue, the switch behind it), closed after."""
    opened: list[BufferedStore] = []

    def make(max_items: int = STORE_BUFFER, max_bytes: int = STORE_BUFFER_BYTES,
             inner: Store | None = None) -> tuple[BufferedStore, Switch]:
        switch = Switch(inner or MemoryStore(100_000))
        queue = BufferedStore(switch, max_items=max_items, max_bytes=max_bytes, limit=100_000)
        opened.append(queue)
        return queue, switch

    yield make
    for queue in opened:
        switch = queue.store
        assert isinstance(switch, Switch)
        switch.gate.set()
        switch.up()
        queue.close()


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# ---- no request waits; reads see the queue -------------------------------------------

def test_an_add_returns_while_the_store_hangs_and_this_process_reads_its_own_writes(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.gate.clear()  # every write hangs, as on a stalled Redis
    added = [exchange(n) for n in range(1, 4)]
    adding = threading.Thread(target=lambda: [queue.add(e) for e in added])
    adding.start()
    adding.join(SETTLE_SECONDS)
    assert not adding.is_alive()  # the adds did not wait for the store

    assert ids(queue.list(Query())) == [ident(3), ident(2), ident(1)]
    assert queue.get(ident(2)) == added[1]
    assert queue.count() == 3
    assert switch.inner.count() == 0  # nothing written yet

    switch.gate.set()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert ids(switch.inner.list(Query())) == [ident(3), ident(2), ident(1)]
    assert ids(queue.list(Query())) == [ident(3), ident(2), ident(1)]  # once each, from the store now


def test_reads_merge_the_queue_with_the_store_filters_and_pages_included(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    for n in range(1, 6):
        switch.inner.add(exchange(n))  # written before
    switch.inner.add(exchange(8))  # in the store and in the queue, as after a half-written batch
    switch.gate.clear()
    queue.add(exchange(6, method="POST"))
    queue.add(exchange(7, status=404))
    queue.add(exchange(8))

    assert ids(queue.list(Query(limit=4))) == [ident(8), ident(7), ident(6), ident(5)]
    assert ids(queue.list(Query(limit=100))) == [ident(n) for n in range(8, 0, -1)]  # 8 once
    assert ids(queue.list(Query(method="post"))) == [ident(6)]
    assert ids(queue.list(Query(status=404))) == [ident(7)]
    assert ids(queue.list(Query(filter=parse("status:404")))) == [ident(7)]
    assert ids(queue.list(Query(filter=parse("-method:POST"), limit=3))) == [ident(8), ident(7), ident(5)]
    assert ids(queue.list(Query(before=ident(7), limit=3))) == [ident(6), ident(5), ident(4)]
    assert queue.get(ident(7)) == exchange(7, status=404)  # from the queue
    assert queue.get(ident(2)) == exchange(2)  # from the store
    assert queue.get(ident(99)) is None


def test_a_queued_exchange_is_shown_while_the_store_is_down(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.down()
    queue.add(exchange(1))
    assert queue.get(ident(1)) == exchange(1)
    with pytest.raises(StoreError):
        queue.list(Query())  # a page would be this process's queue alone: the store's error instead


# ---- order and batches ----------------------------------------------------------------

def test_batches_are_written_in_arrival_order(queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.gate.clear()
    # Arrival order is not id order: a slow exchange is answered after newer ones.
    total = buffered.BATCH * 5 // 2
    arrival = [n for pair in zip(range(1, total, 2), range(2, total + 1, 2), strict=True) for n in reversed(pair)]
    for n in arrival:
        queue.add(exchange(n))
    switch.gate.set()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.written() == [ident(n) for n in arrival]
    assert all(len(batch) <= buffered.BATCH for batch in switch.batches)
    assert len(switch.batches) >= 3  # two and a half batches' worth in batches, not one call each
    assert len(switch.batches) < len(arrival)


def test_adds_do_not_wake_the_writer_while_it_writes(queues: Callable[..., tuple[BufferedStore, Switch]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    queue, switch = queues()
    switch.gate.clear()
    queue.add(exchange(1))
    assert switch.entered.wait(SETTLE_SECONDS)  # the writer is in its write, which hangs
    wakes: list[int] = []
    notify = queue._work.notify
    monkeypatch.setattr(queue._work, "notify", lambda n=1: (wakes.append(n), notify(n)))
    for n in range(2, buffered.BATCH + 52):  # past a full batch while the write still hangs
        queue.add(exchange(n))
    assert wakes == []  # nobody was waiting: each wake-up would have cost a switch of threads
    switch.gate.set()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.written() == [ident(n) for n in range(1, buffered.BATCH + 52)]


# ---- outages --------------------------------------------------------------------------

def test_an_outage_loses_nothing_and_writes_each_exchange_once_in_order_when_it_is_back(
        queues: Callable[..., tuple[BufferedStore, Switch]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="echo")
    queue, switch = queues()
    queue.add(exchange(0))
    assert queue.flush(SETTLE_SECONDS) == 0
    switch.down()
    for n in range(1, 31):
        queue.add(exchange(n))
    assert settle(lambda: switch.attempts >= 3)  # retried, not given up
    health = queue.health()
    assert (health.ok, health.buffered) == (False, 30)
    assert "connection refused" in health.detail
    assert queue.write_stats().buffered == 30 and queue.write_stats().dropped == 0
    assert queue.write_stats().errors >= 2

    switch.up()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.written() == [ident(n) for n in range(31)]
    assert ids(switch.inner.list(Query(limit=100))) == [ident(n) for n in range(30, -1, -1)]
    health = queue.health()
    assert (health.ok, health.buffered) == (True, 0)
    assert len(messages(caplog, "history store failing")) == 1  # once per outage, not per attempt
    assert settle(lambda: len(messages(caplog, "history store is back")) == 1)


def test_healthz_is_degraded_until_the_buffer_has_caught_up(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.fail_writes = True  # reads answer (Redis refusing writes); writes fail
    queue.add(exchange(1))
    assert settle(lambda: queue.write_stats().errors >= 1)
    health = queue.health()
    assert not health.ok and health.buffered == 1
    assert "1 exchange(s) buffered since a failed write (connection refused)" in health.detail
    switch.fail_writes = False
    assert queue.flush(SETTLE_SECONDS) == 0
    assert queue.health().ok


def test_health_stays_degraded_while_the_backlog_of_an_outage_is_written(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.down()
    total = buffered.BATCH * 3 // 2
    for n in range(total):
        queue.add(exchange(n))
    assert settle(lambda: switch.attempts >= 1)
    # One batch of the backlog is written, then the writer hangs: fewer than a
    # batch wait, all of them from the outage.
    switch.stall_after = 1
    switch.up()
    assert settle(lambda: len(switch.batches) == 1 and not switch.gate.is_set())
    health = queue.health()
    assert (health.ok, health.buffered) == (False, total - buffered.BATCH)
    switch.gate.set()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert queue.health().ok
    assert switch.written() == [ident(n) for n in range(total)]


@pytest.mark.parametrize("extra", [0, 1, 5])
def test_the_item_bound_keeps_the_newest_and_drops_the_oldest_counted_and_logged_once(
        queues: Callable[..., tuple[BufferedStore, Switch]], caplog: pytest.LogCaptureFixture, extra: int) -> None:
    caplog.set_level(logging.INFO, logger="echo")
    limit = 10
    queue, switch = queues(max_items=limit)
    switch.down()
    for n in range(limit + extra):
        queue.add(exchange(n))
    assert settle(lambda: switch.attempts >= 1 and queue.write_stats().dropped == extra)
    assert queue.write_stats().buffered == limit
    switch.up()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.written() == [ident(n) for n in range(extra, limit + extra)]
    assert queue.write_stats().dropped == extra
    full = messages(caplog, "history store buffer full")
    assert len(full) == (1 if extra else 0)
    assert all("--store-buffer 10," in line for line in full)


@pytest.mark.parametrize(("spare", "dropped"), [(0, 0), (-1, 1)])
def test_the_byte_bound_at_the_limit_and_one_past_it(
        queues: Callable[..., tuple[BufferedStore, Switch]], spare: int, dropped: int) -> None:
    size = approximate_size(exchange(1))
    assert all(approximate_size(exchange(n)) == size for n in range(4))
    queue, switch = queues(max_bytes=4 * size + spare)
    switch.down()
    for n in range(4):
        queue.add(exchange(n))
    assert settle(lambda: switch.attempts >= 1 and queue.write_stats().dropped == dropped)
    switch.up()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.written() == [ident(n) for n in range(dropped, 4)]


def test_the_byte_size_counts_bodies_and_headers() -> None:
    small = exchange(1)
    large = make_exchange(make_request(id=ident(2), body=b"x" * 5000),
                          make_response(body=b"y" * 7000, headers=(("X-Long", "z" * 300),)))
    assert approximate_size(large) >= 5000 + 7000 + 300 > approximate_size(small)


# ---- a half-written batch -----------------------------------------------------------------

@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[Callable[[], Store]]:
    """A real store behind the switch: memory, or Redis on its own prefix."""
    opened: list[Store] = []

    def make() -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(1000)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisStore(server.url, limit=1000, prefix=f"wb-{uuid.uuid4().hex[:12]}", timeout=5.0)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.clear()


@pytest.mark.parametrize("written", ["half", "all"])
def test_a_half_written_batch_is_retried_without_duplicates(
        queues: Callable[..., tuple[BufferedStore, Switch]], backend: Callable[[], Store], written: str) -> None:
    inner = backend()
    queue, switch = queues(inner=inner)
    switch.down()
    for n in range(1, 41):
        queue.add(exchange(n))
    assert settle(lambda: switch.attempts >= 1)
    switch.half_write = written  # the next attempt writes `written`, then its reply is lost
    switch.up()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.half_write is None  # the half-written attempt happened, and was retried
    assert inner.count() == 40
    assert ids(inner.list(Query(limit=100))) == [ident(n) for n in range(40, 0, -1)]
    if isinstance(inner, RedisStore):  # the index itself: each id once, in order
        client = inner._client
        assert client.zcard(inner._index) == 40
        assert [m.decode() for m in client.zrange(inner._index, 0, -1)] == [ident(n) for n in range(1, 41)]


def test_redis_add_many_of_ids_already_there_keeps_each_once(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, limit=5, prefix=f"wb-{uuid.uuid4().hex[:12]}", timeout=5.0)
    try:
        store.add_many([exchange(n) for n in range(1, 4)])
        store.add_many([exchange(n) for n in range(1, 7)])  # 1-3 again, then 4-6; the bound is 5
        assert store.count() == 5
        assert ids(store.list(Query(limit=100))) == [ident(n) for n in range(6, 1, -1)]
        assert store.get(ident(3)) == exchange(3)
    finally:
        store.clear()
        store.close()


def test_an_exchange_the_store_can_never_take_is_dropped_not_retried(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.gate.clear()
    switch.unstorable_first = True
    for n in range(1, 4):
        queue.add(exchange(n))
    switch.gate.set()
    assert queue.flush(SETTLE_SECONDS) == 0
    assert queue.write_stats().dropped == 1
    assert ident(1) not in switch.written() and switch.inner.count() == 2


def test_clear_forgets_what_waits_too(queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.fail_writes = True
    for n in range(1, 4):
        queue.add(exchange(n))
    assert settle(lambda: switch.attempts >= 1)
    queue.clear()
    assert queue.list(Query()) == [] and queue.count() == 0 and queue.write_stats().buffered == 0
    switch.fail_writes = False
    queue.add(exchange(4))
    assert queue.flush(SETTLE_SECONDS) == 0
    assert ids(switch.inner.list(Query())) == [ident(4)]


def test_a_bin_clear_forgets_that_bin_in_the_queue_and_the_store_alone(
        queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    switch.inner.add(exchange(1, bin="a"))
    switch.inner.add(exchange(2, bin="b"))
    switch.gate.clear()  # what follows waits in the queue
    queue.add(exchange(3, bin="a"))
    queue.add(exchange(4, bin="b"))
    queue.add(exchange(5))
    clearing = threading.Thread(target=queue.clear, args=("a",))
    switch.gate.set()  # the clear waits for a batch in flight, never cuts into it
    clearing.start()
    clearing.join(SETTLE_SECONDS)
    assert not clearing.is_alive()
    assert ids(queue.list(Query(limit=100))) == [ident(5), ident(4), ident(2)]
    assert queue.flush(SETTLE_SECONDS) == 0
    assert ids(switch.inner.list(Query(limit=100))) == [ident(5), ident(4), ident(2)]


def test_a_bounded_page_sees_the_queue_too(queues: Callable[..., tuple[BufferedStore, Switch]]) -> None:
    queue, switch = queues()
    for n in range(1, 6):
        switch.inner.add(exchange(n))
    switch.gate.clear()
    queue.add(exchange(6, bin="a"))
    queue.add(exchange(7))
    page = queue.page(Query(filter=parse("bin:a")), max_scan=3)
    assert ids(page.exchanges) == [ident(6)]
    page = queue.page(Query(limit=2), max_scan=100)
    assert ids(page.exchanges) == [ident(7), ident(6)] and page.stopped is None


# ---- stopping ---------------------------------------------------------------------------

def test_close_writes_what_waits(queues: Callable[..., tuple[BufferedStore, Switch]],
                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="echo")
    queue, switch = queues()
    switch.gate.clear()
    for n in range(1, 21):
        queue.add(exchange(n))
    switch.gate.set()
    queue.close()
    assert switch.inner.count() == 20
    assert messages(caplog, "stopping with") == []


def test_close_during_an_outage_says_how_many_it_could_not_write(
        queues: Callable[..., tuple[BufferedStore, Switch]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="echo")
    queue, switch = queues()
    switch.down()
    for n in range(1, 6):
        queue.add(exchange(n))
    assert queue.flush(0.2) == 5
    queue.close()
    assert messages(caplog, "stopping with") == [
        "history store: stopping with 5 exchange(s) not written (connection refused)"]


# ---- settings, wiring, the recorder and the routes ------------------------------------------

@pytest.mark.parametrize("name", ["store_buffer", "store_buffer_bytes"])
def test_buffer_settings_take_one_or_more(name: str) -> None:
    assert getattr(load_settings({}, {name: "1"}), name) == 1
    with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')}: 0 is out of range"):
        load_settings({}, {name: "0"})
    env = "ECHO_" + name.upper()
    assert getattr(load_settings({env: "12345"}), name) == 12345
    assert getattr(load_settings({}), name) == {"store_buffer": 10_000, "store_buffer_bytes": 64 << 20}[name]


def test_redis_goes_behind_the_queue_and_memory_is_written_directly() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = make_store(StoreOptions(url=url, limit=10, buffer=7, buffer_bytes=9000))
    try:
        assert isinstance(store, BufferedStore) and isinstance(store.store, RedisStore)
        assert (store._max_items, store._max_bytes, store.backend) == (7, 9000, "redis")
    finally:
        store.close()
    assert isinstance(make_store(StoreOptions(url="memory://", limit=10)), MemoryStore)


def test_a_store_that_cannot_prepare_an_exchange_drops_it_and_the_add_returns(
        queues: Callable[..., tuple[BufferedStore, Switch]], caplog: pytest.LogCaptureFixture) -> None:
    queue, switch = queues()
    prepare = switch.prepare

    def broken(exchange: Exchange) -> Prepared:
        if exchange.request.method == "PUT":
            raise RuntimeError("a bug in the backend")
        return prepare(exchange)

    switch.prepare = broken  # type: ignore[method-assign]
    queue.add(exchange(1, "PUT"))  # does not raise into the request that recorded it
    queue.add(exchange(2))
    assert queue.flush(SETTLE_SECONDS) == 0
    assert switch.written() == [ident(2)]
    assert queue.write_stats().dropped == 1
    assert len(messages(caplog, "unexpected error preparing exchange")) == 1


def test_the_recorder_counts_what_the_queue_dropped() -> None:
    switch = Switch(MemoryStore(100))
    switch.down()
    queue = BufferedStore(switch, max_items=2, max_bytes=STORE_BUFFER_BYTES, limit=100)
    recorder = Recorder(queue, history=100, keep_body=100, redact=())
    try:
        for n in range(3):
            recorder.observe(exchange(n))
        assert settle(lambda: recorder.dropped == 1 and recorder.errors >= 1)
        assert recorder.write_stats().buffered == 2
    finally:
        switch.up()
        queue.close()


def test_healthz_and_metrics_while_redis_is_unreachable() -> None:
    app = create_app({"log": "off", "store": f"redis://127.0.0.1:{free_port()}/0", "store_timeout": "0.2",
                      "store_buffer": "2"}, environ={})
    client = app.test_client()
    try:
        for n in range(3):
            assert client.get(f"/during/{n}").status_code == 200

        def scraped() -> dict[str, float]:
            lines = client.get("/_/metrics").get_data(as_text=True).splitlines()
            return {line.split()[0]: float(line.split()[1]) for line in lines if line and not line.startswith("#")}

        assert settle(lambda: scraped().get("echo_store_dropped_total") == 1
                      and scraped().get("echo_store_errors_total", 0) >= 1)
        metrics = scraped()
        assert metrics["echo_store_buffered"] == 2 and metrics["echo_history_dropped_total"] == 1
        health = client.get("/_/healthz")
        doc: dict[str, Any] = health.get_json()
        assert health.status_code == 503
        assert (doc["status"], doc["buffered"], doc["store"]["ok"]) == ("degraded", 2, False)
    finally:
        app.extensions["echo"].store.close()


def test_healthz_says_ok_with_nothing_buffered_for_memory() -> None:
    doc = create_app({"log": "off"}, environ={}).test_client().get("/_/healthz").get_json()
    assert doc["status"] == "ok" and "buffered" not in doc


# ---- the codec the writer runs for every exchange ----------------------------------------

@pytest.mark.parametrize(("change", "version"), [
    ({}, 3),
    ({"controls": {"weights": [0.5, float("inf")]}}, 1),  # orjson would write null
    ({"controls": {"n": 2**70}}, 1),  # over 64 bits
    ({"rule": {"name": "caf\u00e9", "id": "r1", "step": 1}}, 3),  # UTF-8 is exact in orjson
    ({"rule": {"name": "\ud800", "id": "r1", "step": 1}}, 1),  # a lone surrogate
])
def test_the_codec_reads_back_exactly_what_either_form_wrote(change: dict[str, Any], version: int) -> None:
    original = dataclasses.replace(exchange(1), **change)
    data = exchange_to_bytes(original)
    assert data.startswith(b"[3," if version == 3 else b'{"v":1,')
    assert version == 3 or data.isascii()
    again = exchange_from_bytes(data)
    if "weights" in change.get("controls", {}):
        assert math.isinf(again.controls["weights"][1])
    else:
        assert again == original
