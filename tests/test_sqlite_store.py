"""The SQLite history store on real files: the contract with two stores on one
file, filters decided in SQL, bounded pages, restarts, kill -9, two processes
sharing a file, schema migration and refusal, the bound and the TTL.

The contract with one store per file runs in test_store_contract.py (its
`open_store` fixture has an sqlite backend); here it runs again with the
writer and the reader as two stores on one file, like two processes.

The store alone is synchronous (an add is written when it returns), so the
tests of the store use it directly. What needs a queue (an add that does not
wait for a locked file, reads that show what waits, the stop that writes it)
runs through `make_store` - the production path, the write-behind queue in
front of the store - or through a real server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from test_store_contract import STORE_TIMEOUT, OpenStore, exchange, full_exchange, ident, ids_of
from test_store_contract import TestStoreContract as _Contract

from echo.config import ConfigError, load_settings
from echo.history import (
    BufferedStore,
    MemoryStore,
    Page,
    Query,
    Store,
    StoreError,
    StoreOptions,
    UnstorableError,
    make_store,
    sqlite_store,
)
from echo.history.codec import exchange_to_bytes
from echo.history.sqlite_store import APPLICATION_ID, SCHEMA_VERSION, SqliteStore, _where
from echo.model.filter import parse
from echo.model.records import Exchange, IdSource

from support import ROOT, call, fetch, start_echo

# How long a test waits for something the spec says happens within 1 s: far
# longer, so a loaded machine does not fail it; the waits end as soon as it holds.
PATIENCE = 15.0


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"  # path is absolute: sqlite:////tmp/...


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[..., SqliteStore]]:
    opened: list[SqliteStore] = []

    def make(path: Path | None = None, limit: int = 100, **kw: Any) -> SqliteStore:
        kw.setdefault("timeout", STORE_TIMEOUT)
        store = SqliteStore(url_of(path or tmp_path / "echo.db"), limit=limit, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def queued(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """queued(limit=, timeout=) -> the store `--store sqlite:///...` makes: the write-behind queue in front."""
    opened: list[Store] = []

    def make(limit: int = 100, timeout: float = STORE_TIMEOUT) -> Store:
        store = make_store(StoreOptions(url=url_of(tmp_path / "echo.db"), limit=limit, timeout=timeout))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def rows_in_file(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM exchanges").fetchone()[0])


def wait_until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + PATIENCE
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)
    return check()


class TestSharedFileContract(_Contract):
    """The store contract with writer and reader as two stores on one file."""

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Iterator[OpenStore]:
        opened: list[Store] = []

        def make(limit: int) -> tuple[Store, Store]:
            path = tmp_path / f"shared-{len(opened)}.db"
            pair = (SqliteStore(url_of(path), limit=limit, timeout=STORE_TIMEOUT),
                    SqliteStore(url_of(path), limit=limit, timeout=STORE_TIMEOUT))
            opened.extend(pair)
            return pair

        yield make
        for store in opened:
            store.close()


# ---- filters in SQL -----------------------------------------------------------

FILTER_ROWS: list[Exchange] = [
    exchange(1, "GET", "/orders/1", "", 200, remote_addr="10.0.0.1"),
    exchange(2, "POST", "/orders", "x=1", 201, remote_addr="10.0.0.2"),
    exchange(3, "DELETE", "/orders/[1]", "", 404, remote_addr="::1"),
    exchange(4, "PURGE", "/Health?", "verbose=YES", 503),
    exchange(5, "POST", "/b/ci-7/hook", "", 413, bin="ci-7", bin_path="/hook"),
    exchange(6, "PUT", "/b/ci-8/hook", "q=orders", 200, bin="ci-8", bin_path="/hook"),
    exchange(7, "GET", "/Café", "", 302),
    exchange(8, "GET", "/lone-\ud800/x", "", 200),  # not valid UTF-8: kept, marked lossy
    exchange(9, "PATCH", "/nul\x00/x", "", 500),
    full_exchange(),  # PROPFIND /café/✓ 599, bin ci-job_7, rule "fails twice"
]

FILTERS = [
    "method:POST", "-method:POST", "method:get,patch", "status:2xx", "-status:200-299", "status:404",
    "path:/orders*", "-path:/orders*", "path:/orders/[1]", "path:/Health?", "path:/orders/?", "path:*x",
    "bin:ci-7", "-bin:ci-7", "bin:ci-7 path:/hook", "bin:ci-8 -path:/hook", "client:10.0.0.*", "-client:::1",
    "rule:fails*", "-rule:fails*", "orders", "-orders", "CAFÉ", "lone", "\"/orders\"", "path:\"/orders/[1]\"",
    "header:X-Dup=a", "body:utf-8", "method:GET path:*x", "status:5xx -path:/nul*", "\ud800", "-\ud800",
    "path:*\ud800*", "nul\x00",
]


@pytest.mark.parametrize("text", FILTERS)
def test_sql_and_python_find_the_same_exchanges(stores: Callable[..., SqliteStore], text: str) -> None:
    store, memory = stores(limit=100), MemoryStore(100)
    for item in FILTER_ROWS:
        store.add(item)
        memory.add(item)
    query = Query(limit=100, filter=parse(text))
    assert ids_of(store.list(query)) == ids_of(memory.list(query))


@pytest.mark.parametrize("fields", [
    {"method": "post"}, {"status": 200}, {"status_class": 4}, {"q": "ORDERS"}, {"q": "café"},
    {"q": "\ud800"}, {"before": ident(6), "method": "GET"},
])
def test_sql_and_python_agree_on_the_other_query_fields(stores: Callable[..., SqliteStore], fields: dict[str, Any]) -> None:
    store, memory = stores(limit=100), MemoryStore(100)
    for item in FILTER_ROWS:
        store.add(item)
        memory.add(item)
    query = Query(limit=100, **fields)
    assert ids_of(store.list(query)) == ids_of(memory.list(query))


@pytest.mark.parametrize("text, fragment", [
    ("method:POST", "method IN"),
    ("status:4xx", "status BETWEEN"),
    ("path:/hooks/*", "path GLOB"),
    ("bin:ci-7", "bin = ?"),
    ("client:10.*", "remote_addr GLOB"),
    ("rule:retry*", "rule GLOB"),
    ("orders", "instr(path_lc"),
])
def test_the_terms_sql_can_decide_are_decided_there_with_parameters(text: str, fragment: str) -> None:
    where = _where(Query(filter=parse(text)), None)
    assert fragment in where.text()
    value = text.partition(":")[2] or text
    assert value not in where.text()  # the filter's text travels as a parameter only


def test_terms_sql_cannot_decide_are_left_to_python() -> None:
    assert _where(Query(filter=parse("header:X-A=1 body:x json:a.b=1")), None).text() == "1"


def test_none_and_bytes_are_bound_through_an_adapter_that_gives_them_back() -> None:
    # Without one, sqlite3 tries the __conform__ protocol on every None and
    # bytes a row binds, and formats an error message for each to throw away.
    for value in (None, b"\x00 a record"):
        adapter = sqlite3.adapters[(type(value), sqlite3.PrepareProtocol)]
        assert adapter(value) is value


# ---- files that last ---------------------------------------------------------


def test_history_survives_reopening(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    first = stores()
    for n in range(1, 6):
        first.add(exchange(n))
    first.add(full_exchange())
    first.close()
    again = stores()
    assert ids_of(again.list(Query())) == [ident(n) for n in (7, 5, 4, 3, 2, 1)]
    assert again.get(ident(7)) == full_exchange()


def test_an_add_is_written_when_it_returns(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    store = stores()
    threads = threading.active_count()
    store.add(exchange(1))
    assert rows_in_file(tmp_path / "echo.db") == 1  # no queue of its own, no writer thread
    assert threading.active_count() == threads
    assert store.flush(0.0) == 0  # the Store contract: nothing left unwritten


def test_the_store_url_puts_the_write_behind_queue_in_front(tmp_path: Path) -> None:
    store = make_store(StoreOptions(url=url_of(tmp_path / "echo.db"), limit=5))
    try:
        assert isinstance(store, BufferedStore) and isinstance(store.store, SqliteStore)
    finally:
        store.close()


def test_after_close_a_call_is_a_store_error(stores: Callable[..., SqliteStore]) -> None:
    store = stores()
    store.add(exchange(1))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.add(exchange(2))
    with pytest.raises(StoreError, match="closed"):
        store.list(Query())


def test_a_clean_stop_writes_everything_queued(queued: Callable[..., Store], tmp_path: Path) -> None:
    store = queued(limit=1000)
    for n in range(1, 301):
        store.add(exchange(n))
    assert store.flush(PATIENCE) == 0  # what the command line does at a stop, then close
    store.close()
    assert rows_in_file(tmp_path / "echo.db") == 300


def test_the_queue_holds_the_row_to_write_not_the_records_and_reads_them_back(
    queued: Callable[..., Store], tmp_path: Path
) -> None:
    store = queued(timeout=0.2)
    blocker = sqlite3.connect(tmp_path / "echo.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the batch cannot be written: it stays queued
    try:
        kept = full_exchange()
        references = sys.getrefcount(kept)
        store.add(kept)
        # Records waiting in the queue would be walked by every garbage collection meanwhile.
        assert sys.getrefcount(kept) == references
        assert store.get(kept.id) == kept
        assert store.list(Query()) == [kept]
        assert store.write_stats().buffered == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.flush(PATIENCE) == 0
    assert rows_in_file(tmp_path / "echo.db") == 1


def test_add_does_not_wait_for_a_locked_file_and_reads_show_what_is_queued(
    queued: Callable[..., Store], tmp_path: Path
) -> None:
    store = queued(timeout=0.2)
    store.add(exchange(1))
    assert store.flush(PATIENCE) == 0
    blocker = sqlite3.connect(tmp_path / "echo.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        for n in range(2, 5):
            store.add(exchange(n))  # returns while the lock is held: the queue retries in the background
        assert ids_of(store.list(Query())) == [ident(n) for n in (4, 3, 2, 1)]
        assert ids_of(store.page(Query(), 100).exchanges) == [ident(n) for n in (4, 3, 2, 1)]
        assert store.get(ident(3)) is not None
        assert store.count() == 4
        assert wait_until(lambda: not store.health().ok)
        health = store.health()
        assert health.buffered == 3 and "3 exchange(s) buffered since a failed write" in health.detail
        assert "locked" in health.detail
        assert rows_in_file(tmp_path / "echo.db") == 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.flush(PATIENCE) == 0
    assert store.health().ok
    assert rows_in_file(tmp_path / "echo.db") == 4


def test_a_backlog_written_after_a_lock_keeps_the_newest_history(queued: Callable[..., Store], tmp_path: Path) -> None:
    limit = 3
    store = queued(limit=limit, timeout=0.2)
    store.add(exchange(1))
    assert store.flush(PATIENCE) == 0
    blocker = sqlite3.connect(tmp_path / "echo.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        for n in (5, 2, 6, 4, 3):  # ids out of order, more than the bound
            store.add(exchange(n))
        assert ids_of(store.list(Query()))[:limit] == [ident(6), ident(5), ident(4)]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.flush(PATIENCE) == 0
    assert ids_of(store.list(Query())) == [ident(6), ident(5), ident(4)]
    assert store.count() == limit and rows_in_file(tmp_path / "echo.db") == limit


def test_add_many_writes_at_once_and_twice_is_once(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    store, other = stores(), stores()
    batch = [exchange(n) for n in range(1, 4)]
    store.add_many([])
    store.add_many(batch)
    store.add_many(batch)  # a retried batch
    assert ids_of(other.list(Query())) == [ident(n) for n in (3, 2, 1)]
    assert other.count() == 3


@pytest.mark.parametrize("added", [3, 4])  # the limit, and one past it
def test_two_stores_on_one_file_keep_the_bound_together(stores: Callable[..., SqliteStore], added: int) -> None:
    limit = 3
    one, two = stores(limit=limit), stores(limit=limit)
    for n in range(1, added + 1):
        (one, two)[n % 2].add(exchange(n))
    kept = list(range(added, added - limit, -1))
    assert ids_of(one.list(Query())) == ids_of(two.list(Query())) == [ident(n) for n in kept]
    assert one.count() == two.count() == limit


def arrived(n: int, when: float) -> Exchange:
    """The n-th exchange, arrived at `when`: its id starts with that time, as `IdSource`'s do."""
    micros = int(when * 1_000_000) + n
    return exchange(f"{micros:016x}0a0b0c0d{n:04x}", started=micros / 1_000_000)


def test_history_ttl_forgets_exchanges_older_than_it(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    store = stores(ttl=60)
    now = time.time()
    old, new, newer = arrived(1, now - 120), arrived(2, now), arrived(3, now)
    store.add(old)
    store.add(new)
    assert ids_of(store.list(Query())) == [new.id]
    assert store.get(old.id) is None
    assert store.get(new.id) is not None
    assert store.count() == 1
    store.add(newer)
    with closing(sqlite3.connect(tmp_path / "echo.db")) as conn:  # and it is gone from the file too
        assert [r[0] for r in conn.execute("SELECT id FROM exchanges ORDER BY id")] == [new.id, newer.id]


def test_history_ttl_goes_by_the_arrival_time_in_the_id_on_the_id_index(
        stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    store = stores(ttl=60)
    now = time.time()
    store.add_many([arrived(1, now - 61), arrived(2, now - 59)])
    assert ids_of(store.list(Query())) == [arrived(2, now - 59).id]
    with closing(sqlite3.connect(tmp_path / "echo.db")) as conn:
        indexes = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN DELETE FROM exchanges WHERE id < ?",
                                                            ("0",)))
    assert "exchanges_started" not in indexes  # dropped by version 4: every row paid for it
    assert "USING PRIMARY KEY" in plan or "sqlite_autoindex_exchanges_1" in plan, plan


def test_clear_of_one_bin_keeps_the_others(stores: Callable[..., SqliteStore]) -> None:
    store = stores()
    store.add(exchange(1, bin="a", bin_path="/x"))
    store.add(exchange(2, bin="b", bin_path="/x"))
    store.add(exchange(3))
    store.clear(bin="a")
    assert ids_of(store.list(Query())) == [ident(3), ident(2)]


def test_a_trim_leaves_deleted_rows_to_be_overwritten_and_a_clear_zeroes_them(
        stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    store = stores(limit=1)
    marker = b"forget-me-7f3a9c"
    store.add(exchange(1, body=marker + b" one", body_size=len(marker) + 4))
    store.add(exchange(2))  # trims exchange 1 without zeroing its row (PRAGMA secure_delete = OFF)
    store.add(exchange(3, body=marker + b" three", body_size=len(marker) + 6))
    assert ids_of(store.list(Query())) == [ident(3)]
    store.clear()
    with closing(sqlite3.connect(tmp_path / "echo.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page the WAL held, into the file
    assert marker not in (tmp_path / "echo.db").read_bytes()
    assert store._conn().execute("PRAGMA secure_delete").fetchone()[0] == 0  # back to OFF after the clear


def test_health_is_not_ok_when_the_file_is_gone(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    store = stores()
    assert store.health().ok
    (tmp_path / "echo.db").unlink()
    assert not store.health().ok


def test_the_store_url_picks_sqlite(tmp_path: Path) -> None:
    store = make_store(StoreOptions(url=f"SQLITE:///{tmp_path}/x.db", limit=5))
    try:
        assert store.backend == "sqlite"
    finally:
        store.close()


def test_a_relative_path_is_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteStore("sqlite:///sub.db", limit=5)
    store.close()
    assert (tmp_path / "sub.db").is_file()


# ---- bounded pages ---------------------------------------------------------------


def compare_pages(store: SqliteStore, memory: MemoryStore, query: Query, max_scan: int) -> None:
    got, want = store.page(query, max_scan), memory.page(query, max_scan)
    assert (ids_of(got.exchanges), got.scanned, got.stopped) == (ids_of(want.exchanges), want.scanned, want.stopped)


@pytest.mark.parametrize("text", FILTERS)
@pytest.mark.parametrize("max_scan", [1, 4, 10, 11])
def test_a_page_finds_what_memory_finds_and_scans_as_far(
    stores: Callable[..., SqliteStore], text: str, max_scan: int
) -> None:
    store, memory = stores(limit=100), MemoryStore(100)
    for item in FILTER_ROWS:
        store.add(item)
        memory.add(item)
    for limit in (1, 3, 100):
        for before in (None, ident(6), "\ud800"):
            compare_pages(store, memory, Query(limit=limit, before=before, filter=parse(text)), max_scan)


def test_small_windows_give_the_same_pages_as_memory(
    stores: Callable[..., SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows that end mid-page, mid-scan and on the oldest id: the window
    # arithmetic must not skip, repeat or miscount.
    monkeypatch.setattr(sqlite_store, "WINDOW_FIRST", 2)
    monkeypatch.setattr(sqlite_store, "WINDOW_MOST", 5)
    rng = random.Random(11)
    store, memory = stores(limit=200), MemoryStore(200)
    for n in range(1, 121):
        item = exchange(n, rng.choice(["GET", "POST", "PUT"]), rng.choice(["/a", "/hooks/x", "/b/c"]),
                        status=rng.choice([200, 201, 404, 500]),
                        headers=(("X-Event", rng.choice(["push", "tag"])),) if rng.random() < 0.5 else ())
        store.add(item)
        memory.add(item)
    filters = ["method:POST", "path:/hooks/* header:X-Event=push", "-status:2xx", "status:5xx method:PUT", ""]
    for _ in range(150):
        text = rng.choice(filters)
        query = Query(limit=rng.randint(1, 12), before=rng.choice([None, ident(rng.randint(1, 125))]),
                      method=rng.choice([None, None, "GET"]), filter=parse(text) if text else None)
        compare_pages(store, memory, query, rng.randint(1, 40))


def test_a_page_decodes_only_the_rows_sql_lets_through(
    stores: Callable[..., SqliteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores(limit=1000)
    store.add_many([exchange(n, "POST" if n % 100 == 0 else "GET", "/hooks/x" if n % 100 == 0 else "/items")
                    for n in range(1, 1001)])
    decoded: list[bytes] = []
    real = sqlite_store.exchange_from_bytes

    def counting(data: bytes) -> Exchange:
        decoded.append(data)
        return real(data)

    monkeypatch.setattr(sqlite_store, "exchange_from_bytes", counting)
    page = store.page(Query(limit=50, filter=parse("method:POST path:/hooks/*")), max_scan=1000)
    assert ids_of(page.exchanges) == [ident(n) for n in range(1000, 0, -100)]
    assert page.scanned == 1000 and page.stopped is None
    assert len(decoded) == 10  # the 990 GETs were refused by SQL, never read into Python
    decoded.clear()
    page = store.page(Query(limit=50, filter=parse("method:POST")), max_scan=450)
    assert ids_of(page.exchanges) == [ident(n) for n in (1000, 900, 800, 700, 600)]
    assert page.scanned == 450 and page.stopped == ident(551) and len(decoded) == 5


def test_a_page_counts_only_exchanges_the_ttl_keeps(stores: Callable[..., SqliteStore]) -> None:
    store = stores(ttl=60)
    now = time.time()
    store.add_many([arrived(1, now - 120), *(arrived(n, now) for n in (2, 3, 4))])
    assert store.page(Query(limit=10), max_scan=3) == Page(store.list(Query()), 3, None)
    page = store.page(Query(limit=10, filter=parse("method:DELETE")), max_scan=2)
    assert page == Page([], 2, arrived(3, now).id)


def test_a_page_through_the_store_url_is_the_store_s_bounded_page(queued: Callable[..., Store]) -> None:
    store = queued(limit=100)
    for n in range(1, 12):
        store.add(exchange(n, "POST" if n == 1 else "GET"))
    assert store.flush(PATIENCE) == 0
    page = store.page(Query(limit=5, filter=parse("method:POST")), max_scan=10)
    assert page == Page([], 10, ident(2))
    assert ids_of(store.page(Query(limit=5, before=page.stopped, filter=parse("method:POST")), 10).exchanges) == [ident(1)]


# ---- schema versions -----------------------------------------------------------


def make_version_1(path: Path, items: list[Exchange]) -> None:
    """A file as schema version 1 left it: the record, its id and its time only."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE exchanges (id TEXT PRIMARY KEY, started REAL NOT NULL, data BLOB NOT NULL)")
    conn.execute("CREATE INDEX exchanges_started ON exchanges (started)")
    conn.executemany("INSERT INTO exchanges VALUES (?, ?, ?)",
                     [(e.id, e.request.started, exchange_to_bytes(e)) for e in items])
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_an_older_file_is_migrated_in_place(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_version_1(path, [exchange(1, "GET"), exchange(2, "POST", status=500), full_exchange()])
    store = stores(path)
    assert ids_of(store.list(Query())) == [ident(7), ident(2), ident(1)]
    # The filter columns were filled from the records, so SQL finds them.
    assert ids_of(store.list(Query(filter=parse("method:POST status:500")))) == [ident(2)]
    assert ids_of(store.list(Query(filter=parse("bin:ci-job_7 path:/hooks/*")))) == [ident(7)]
    assert store.get(ident(7)) == full_exchange()
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_3_file_loses_the_started_index_and_keeps_its_exchanges(
        stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    make_version_1(path, [exchange(1, "GET"), exchange(2, "POST")])
    with closing(sqlite3.connect(path)) as conn, conn:
        sqlite_store.MIGRATIONS[1](conn)
        sqlite_store.MIGRATIONS[2](conn)  # as version 3 left it: the started index still there
        conn.execute("PRAGMA user_version = 3")
    store = stores(path)
    assert ids_of(store.list(Query())) == [ident(2), ident(1)]
    assert ids_of(store.list(Query(filter=parse("method:POST")))) == [ident(2)]
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    assert "exchanges_started" not in names and "exchanges_bin" in names


def test_a_version_2_file_gains_the_clears_and_a_clear_is_remembered(
        stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    make_version_1(path, [exchange(1, "GET")])
    with closing(sqlite3.connect(path)) as conn, conn:
        sqlite_store.MIGRATIONS[1](conn)  # as version 2 left it: filter columns, no clears
        conn.execute("PRAGMA user_version = 2")
    store, other = stores(path), stores(path)
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute("SELECT count(*) FROM clears").fetchone()[0] == 0
    assert ids_of(store.list(Query())) == [ident(1)]
    early = IdSource().next()[0]
    store.clear()
    other.add_many([exchange(early)])  # arrived before the clear, written after it: refused
    assert store.list(Query()) == []


def test_a_new_file_has_the_larger_page(stores: Callable[..., SqliteStore], tmp_path: Path) -> None:
    stores(tmp_path / "new.db")
    with closing(sqlite3.connect(tmp_path / "new.db")) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == sqlite_store.PAGE_SIZE == 8192
    make_version_1(tmp_path / "old.db", [exchange(1, "GET")])
    stores(tmp_path / "old.db")  # an existing file keeps its own
    with closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    environment["ECHO_RUNTIME_FILE"] = "off"
    return subprocess.run([sys.executable, "-m", "echo", "--host", "127.0.0.1", "--port", "0", *args],
                          capture_output=True, text=True, env=environment, cwd=ROOT, timeout=60)


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def newer(path: Path) -> None:
    SqliteStore(url_of(path), limit=5).close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def foreign(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")


def not_sqlite(path: Path) -> None:
    path.write_bytes(b"just some notes, not a database\n" * 100)


def other_application(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE exchanges (id TEXT PRIMARY KEY, started REAL NOT NULL, data BLOB NOT NULL)")


@pytest.mark.parametrize("make, says", [
    (newer, "newer than this Echo reads"),
    (foreign, "another application"),
    (other_application, "another application"),
    (not_sqlite, "not an SQLite database"),
])
def test_a_file_that_is_not_ours_to_open_is_refused_and_left_alone(
    tmp_path: Path, make: Callable[[Path], None], says: str
) -> None:
    path = tmp_path / "echo.db"
    make(path)
    before = path.read_bytes()
    line = refused(run_cli("--store", url_of(path)))
    assert says in line and str(path) in line
    assert path.read_bytes() == before


@pytest.mark.parametrize("url, says", [
    ("sqlite://host/echo.db", "three slashes"),
    ("sqlite:///", "name the database file"),
    ("sqlite:///{tmp}/", "name the database file"),
    ("sqlite:///{tmp}/x.db?mode=ro", "takes no options"),
    ("sqlite:///{tmp}/missing/echo.db", "does not exist"),
    ("sqlite:///{tmp}/file/echo.db", "does not exist (or is not a directory)"),
    ("sqlite:///{tmp}", "is a directory"),
])
def test_a_bad_store_url_or_place_is_one_line_and_exit_2(tmp_path: Path, url: str, says: str) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    line = refused(run_cli("--store", url.replace("{tmp}", str(tmp_path))))
    assert says in line


# ---- real servers ---------------------------------------------------------------


def echo_ids(port: int, count: int) -> list[str]:
    ids = []
    for n in range(count):
        status, headers, _ = call(port, "POST", f"/durable/{n}", body=b"x" * n)
        assert status == 200
        ids.append(headers["X-Echo-Id"])
    return ids


def ids_in_file(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return {row[0] for row in conn.execute("SELECT id FROM exchanges")}


def test_every_exchange_answered_a_second_before_kill_9_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    server = start_echo("--store", url_of(path))
    try:
        sent = echo_ids(server.port, 50)
        time.sleep(1.0)  # the spec's promise: answered at least 1 s before the kill
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(PATIENCE)
    finally:
        server.stop()
    assert server.proc.returncode == -signal.SIGKILL
    assert set(sent) <= ids_in_file(path)
    store = SqliteStore(url_of(path), limit=1000)
    try:
        assert set(sent) == set(ids_of(store.list(Query(limit=100))))
    finally:
        store.close()


def test_a_clean_stop_writes_everything_and_a_restart_shows_it(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    server = start_echo("--store", url_of(path))
    try:
        sent = echo_ids(server.port, 30)
    finally:
        assert server.stop() == 0  # SIGTERM straight after the last answer
    assert set(sent) == ids_in_file(path)
    again = start_echo("--store", url_of(path))
    try:
        status, _, body = fetch(f"{again.url}/_/api/exchanges?limit=100")
        assert status == 200
        assert [e["id"] for e in json.loads(body)["exchanges"]] == sorted(sent, reverse=True)
    finally:
        again.stop()


def wait_for_id(port: int, exchange_id: str) -> bool:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        status, _, _ = call(port, "GET", f"/_/api/exchanges/{exchange_id}")
        if status == 200:
            return True
        time.sleep(0.05)
    return False


def test_two_processes_on_one_file_see_each_others_exchanges(tmp_path: Path) -> None:
    url = url_of(tmp_path / "echo.db")
    one, two = start_echo("--store", url), start_echo("--store", url)
    try:
        from_one = echo_ids(one.port, 5)
        from_two = echo_ids(two.port, 5)
        assert wait_for_id(two.port, from_one[-1])
        assert wait_for_id(one.port, from_two[-1])
        for port in (one.port, two.port):
            status, _, body = fetch(f"http://127.0.0.1:{port}/_/api/exchanges?limit=100")
            assert [e["id"] for e in json.loads(body)["exchanges"]] == sorted(from_one + from_two, reverse=True)
        status, _, body = fetch(f"{one.url}/_/healthz")
        assert status == 200 and json.loads(body)["store"]["backend"] == "sqlite"
    finally:
        one.stop()
        two.stop()


def test_concurrent_requests_are_all_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "echo.db"
    server = start_echo("--store", url_of(path), "--history", "400")
    found: list[str] = []
    lock = threading.Lock()
    try:
        def send() -> None:
            ids = echo_ids(server.port, 40)
            with lock:
                found.extend(ids)

        workers = [threading.Thread(target=send) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        assert server.stop() == 0
    assert len(found) == 320
    assert ids_in_file(path) == set(found)


def test_an_exchange_that_cannot_be_stored_does_not_stop_the_others(stores: Callable[..., SqliteStore]) -> None:
    store = stores()
    broken = dataclasses.replace(exchange(1), controls={"not json": {1, 2}})
    with pytest.raises(UnstorableError) as raised:
        store.add_many([broken, exchange(2)])
    assert raised.value.skipped == 1 and ident(1) in str(raised.value)
    assert ids_of(store.list(Query())) == [ident(2)]
    assert store.health().ok


def test_through_the_queue_an_unstorable_exchange_is_dropped_and_counted(queued: Callable[..., Store]) -> None:
    store = queued()
    store.add(dataclasses.replace(exchange(1), controls={"not json": {1, 2}}))
    store.add(exchange(2))
    assert store.flush(PATIENCE) == 0
    assert ids_of(store.list(Query())) == [ident(2)]
    assert store.write_stats().dropped == 1
    assert store.health().ok


def test_the_image_declares_a_volume_for_the_history_owned_by_its_user() -> None:
    from test_container import DOCKERFILE, read_dockerfile

    runtime = read_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    words = [word for word, _ in runtime.instructions]
    assert runtime.all("VOLUME") == ["/data"]
    user = runtime.all("USER")[-1].split(":")
    made = [i for i, (word, args) in enumerate(runtime.instructions)
            if word == "RUN" and f"install -d -o {user[0]} -g {user[1]}" in args and "/data" in args]
    assert made and made[0] < words.index("VOLUME"), "created (and owned) before the VOLUME line fixes it"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "ECHO_STORE: sqlite:////data/echo.db" in readme and "- echo-history:/data" in readme


@pytest.mark.parametrize("value, ok", [
    ("sqlite:////data/echo.db", True),
    ("sqlite:///echo.db", True),
    ("sqlite://data/echo.db", False),
    ("sqlite:/data/echo.db", False),
])
def test_echo_store_takes_sqlite_urls_from_the_environment(value: str, ok: bool) -> None:
    if ok:
        assert load_settings({"ECHO_STORE": value}, {}).store == value
    else:
        with pytest.raises(ConfigError, match="ECHO_STORE|three slashes"):
            load_settings({"ECHO_STORE": value}, {})
