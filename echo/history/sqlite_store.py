"""The SQLite history store: history in one file that survives restarts.

`--store sqlite:///relative/path.db` or `sqlite:////absolute/path.db`, using
the standard library's `sqlite3` with the file in WAL mode, so readers never
wait for the writer and several Echo processes may share one file.

Layout: one table, one row per exchange keyed by its id (PRIMARY KEY, so the
index sorts in arrival order, as in every store). Beside the record itself
(``data``, the versioned format of `codec`) each row keeps the few fields a
list filter looks at, so a filtered page is chosen in SQL: the method
(uppercased), path, lowercased path and query string (for `q=` and bare
words), bin and bin path, status, client address and the rule's name. A row
whose text cannot be stored exactly (lone surrogates from the wire, NUL) is
marked ``lossy``: every text condition lets it through, and the Python check
that always follows (`Query.matches`) decides. SQL is built only from fixed
fragments and `?` parameters, never from a filter's text.

The schema version is SQLite's ``user_version`` and the file carries Echo's
``application_id``. At start an older file is migrated in place (one
transaction, so several processes starting together migrate it once); a newer
one, a foreign SQLite file or a file that is not SQLite at all is refused with
one `ConfigError` line, before anything is written to it.

Writes. `add()` never waits on disk: it puts the exchange in a queue bounded by
`--history` (more could not be kept anyway; past it the oldest queued is
dropped) and returns. One writer thread per store drains the queue in batches,
one transaction each: insert (``INSERT OR REPLACE``, so writing an id again is
harmless), drop what `--history-ttl` has expired (by ``started``) and trim to
`--history`, so no process can leave more in the file than its bound. It writes
at most `FLUSH_SECONDS` after an add, so other processes see an exchange well
within 1 s. When a write fails the batch stays queued and is retried, the
failure is logged once and `health()` says so.

`add_many(exchanges)` writes a batch in one transaction on the caller's thread
and raises `StoreError` when it cannot: for a caller that queues and retries by
itself (a write-behind buffer in front of every store). It is idempotent by id,
so a retried batch leaves the file as one successful write would.

Reads run on a connection per thread (`threading.local`). A read first lets the
writer commit what this process has queued (waiting at most `--store-timeout`)
and shows anything still queued on top, so an exchange added is in this
process's `get`/`list` at once. `busy_timeout` is `--store-timeout`, so no
call waits on another process's lock for longer.

Durability: ``synchronous=NORMAL`` in WAL mode does not fsync each commit, but
a commit is in the OS's page cache when it returns, so it survives the process
being killed (``kill -9``), not a power loss or a kernel crash. `close()` (at a
clean stop) writes everything queued before returning.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, flag, sqlite_path
from ..model.filter import Filter
from ..model.records import Exchange
from .base import Health, Query, Store, StoreError
from .codec import CodecError, exchange_from_bytes, exchange_to_bytes

log = logging.getLogger("echo")

# "ECHO" in ASCII: SQLite's application_id marks the file as Echo's history.
APPLICATION_ID = 0x4543484F
SCHEMA_VERSION = 2

# The writer commits at most this long after an add: small enough that other
# processes see an exchange within 1 s and a kill -9 loses only what arrived
# in the last moments, large enough that a busy server writes many per commit.
FLUSH_SECONDS = 0.1
# Exchanges per transaction: a batch of full --keep-body bodies stays a few
# tens of MB, and no transaction holds the write lock for long.
BATCH = 500
# Rows fetched per SELECT while a page is filled: a filtered page that SQL
# cannot fully decide is read in chunks, never the whole history at once.
FETCH = 200
# After a failed write, wait this long before trying again.
RETRY_SECONDS = 1.0
# At start, another process creating or migrating the same file may hold its
# lock: wait this long for it rather than refusing to start.
OPEN_SECONDS = 10.0
# A clean stop waits at most this long for the queue to be written.
CLOSE_SECONDS = 10.0

_COLUMNS = ("id", "started", "method", "path", "path_lc", "query_lc", "bin", "bin_path",
            "status", "remote_addr", "rule", "lossy", "data")
_INSERT = (f"INSERT OR REPLACE INTO exchanges ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join('?' for _ in _COLUMNS)})")
# Everything with an id at or below the (limit + 1)-th newest goes.
_TRIM = "DELETE FROM exchanges WHERE id <= (SELECT id FROM exchanges ORDER BY id DESC LIMIT 1 OFFSET ?)"

# Version 1 kept the record alone; version 2 adds the columns filters are
# decided on. A new file is created as version 1 and migrated, so the
# migration runs on every new file, not only on old ones.
_CREATE_V1 = (
    "CREATE TABLE exchanges (id TEXT PRIMARY KEY, started REAL NOT NULL, data BLOB NOT NULL)",
    "CREATE INDEX exchanges_started ON exchanges (started)",
)
_V2_COLUMNS = (
    "method TEXT NOT NULL DEFAULT ''", "path TEXT NOT NULL DEFAULT ''", "path_lc TEXT NOT NULL DEFAULT ''",
    "query_lc TEXT NOT NULL DEFAULT ''", "bin TEXT", "bin_path TEXT", "status INTEGER NOT NULL DEFAULT 0",
    "remote_addr TEXT NOT NULL DEFAULT ''", "rule TEXT", "lossy INTEGER NOT NULL DEFAULT 0",
)


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    for column in _V2_COLUMNS:
        conn.execute(f"ALTER TABLE exchanges ADD COLUMN {column}")
    conn.execute("CREATE INDEX exchanges_bin ON exchanges (bin, id) WHERE bin IS NOT NULL")
    # Back-fill from the records, a chunk at a time (a file holds --history rows).
    last = ""
    while True:
        rows = conn.execute("SELECT id, data FROM exchanges WHERE id > ? ORDER BY id LIMIT ?", (last, BATCH)).fetchall()
        if not rows:
            break
        for exchange_id, data in rows:
            try:
                values = _filter_columns(exchange_from_bytes(bytes(data)))
            except CodecError:
                values = ("", "", "", "", None, None, 0, "", None, 1)  # unreadable: lossy, skipped on read
            conn.execute("UPDATE exchanges SET method = ?, path = ?, path_lc = ?, query_lc = ?, bin = ?, "
                         "bin_path = ?, status = ?, remote_addr = ?, rule = ?, lossy = ? WHERE id = ?",
                         (*values, exchange_id))
        last = rows[-1][0]


# from version -> the step to the next one
MIGRATIONS = {1: _migrate_1_to_2}


def _clean(text: str) -> bool:
    """Whether SQLite keeps and compares this text exactly (valid UTF-8, no NUL)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(text: str) -> str:
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _filter_columns(exchange: Exchange) -> tuple[Any, ...]:
    """method, path, path_lc, query_lc, bin, bin_path, status, remote_addr, rule, lossy."""
    request = exchange.request
    rule = None if exchange.rule is None else str(exchange.rule.get("name", ""))
    texts = [request.method.upper(), request.path, request.path.lower(), request.query_string.lower(),
             request.bin, request.bin_path, request.remote_addr, rule]
    lossy = not all(text is None or _clean(text) for text in texts)
    if lossy:
        texts = [None if text is None else _storable(text) for text in texts]
    method, path, path_lc, query_lc, bin_name, bin_path, remote_addr, rule = texts
    return (method, path, path_lc, query_lc, bin_name, bin_path, exchange.response.status, remote_addr, rule,
            int(lossy))


def _row(exchange: Exchange) -> tuple[Any, ...]:
    if not _clean(exchange.id):
        raise CodecError(f"exchange id {exchange.id!r} cannot be a key")
    return (exchange.id, float(exchange.request.started), *_filter_columns(exchange), exchange_to_bytes(exchange))


# ---- filters pushed into SQL ------------------------------------------------


@dataclass
class _Where:
    """A WHERE clause of fixed fragments and its parameters."""

    parts: list[str]
    params: list[Any]

    def add(self, fragment: str, *params: Any) -> None:
        self.parts.append(fragment)
        self.params.extend(params)

    def text(self) -> str:
        return " AND ".join(self.parts) if self.parts else "1"


def _sql_glob(pattern: str) -> str:
    """A filter glob (`*` only) as an SQLite GLOB pattern: its other wildcards taken literally."""
    return pattern.replace("[", "[[]").replace("?", "[?]")


def _status_range(value: str) -> tuple[int, int] | None:
    if re.fullmatch(r"[1-5]xx", value, re.IGNORECASE):
        return int(value[0]) * 100, int(value[0]) * 100 + 99
    if re.fullmatch(r"\d{3}", value):
        return int(value), int(value)
    if re.fullmatch(r"\d{3}-\d{3}", value):
        return int(value[:3]), int(value[4:])
    return None


def _push_filter(where: _Where, found: Filter) -> None:
    """The filter's terms SQL can decide; the rest (and these again) are checked in Python.

    A condition here may let through rows the filter refuses, never the other
    way round: rows marked lossy pass every text condition.
    """
    for term in found.terms:
        if '"' in term.text:  # quoted: the value is not the text as written
            continue
        word = term.text[1:] if term.negated else term.text
        key, _, value = word.partition(":")
        if not _clean(value):
            continue
        negate = "NOT " if term.negated else ""
        if term.kind == "method":
            methods = sorted({part.strip().upper() for part in value.split(",")})
            if not all(_clean(m) for m in methods):
                continue
            where.add(f"(lossy OR {negate}method IN ({', '.join('?' for _ in methods)}))", *methods)
        elif term.kind == "status":
            span = _status_range(value)
            if span is not None:
                where.add(f"{negate}status BETWEEN ? AND ?", *span)
        elif term.kind == "path":
            column = "COALESCE(bin_path, path)" if found.bin is not None else "path"
            where.add(f"(lossy OR {negate}{column} GLOB ?)", _sql_glob(value))
        elif term.kind == "client":
            where.add(f"(lossy OR {negate}remote_addr GLOB ?)", _sql_glob(value))
        elif term.kind == "bin":
            if term.negated:
                where.add("(lossy OR bin IS NULL OR bin <> ?)", value)
            else:
                where.add("(lossy OR bin = ?)", value)
        elif term.kind == "rule":
            if term.negated:
                where.add("(lossy OR rule IS NULL OR NOT rule GLOB ?)", _sql_glob(value))
            else:
                where.add("(lossy OR rule GLOB ?)", _sql_glob(value))
        elif term.kind == "word" and _clean(word):
            needle = word.lower()
            where.add(f"(lossy OR {negate}(instr(path_lc, ?) > 0 OR instr(query_lc, ?) > 0))", needle, needle)


def _where(query: Query, live_from: float | None) -> _Where:
    where = _Where([], [])
    if live_from is not None:
        where.add("started >= ?", live_from)
    if query.before and _clean(query.before):  # otherwise compared in Python only
        where.add("id < ?", query.before)
    if query.method and _clean(query.method):
        where.add("(lossy OR method = ?)", query.method.upper())
    if query.status is not None:
        where.add("status = ?", query.status)
    if query.status_class is not None:
        where.add("status BETWEEN ? AND ?", query.status_class * 100, query.status_class * 100 + 99)
    if query.q and _clean(query.q):
        needle = query.q.lower()
        where.add("(lossy OR instr(path_lc, ?) > 0 OR instr(query_lc, ?) > 0)", needle, needle)
    if query.filter is not None:
        _push_filter(where, query.filter)
    return where


# ---- the store ----------------------------------------------------------------


class SqliteStore(Store):
    """A bounded history in one SQLite file, shared by every Echo process that opens it."""

    backend = "sqlite"

    def __init__(self, url: str, *, limit: int, timeout: float = 0.5, ttl: float = 0.0) -> None:
        if timeout <= 0:
            raise ConfigError(f"{flag('store_timeout')}: must be more than 0 for an SQLite store "
                              "(a locked file would hang the writer)")
        self._path = sqlite_path(url)
        self._limit = limit
        self._timeout = timeout
        self._ttl = ttl
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._check_place()
        self._open_file()
        # The queue: id -> latest exchange added, in the order added. An entry
        # leaves only once the transaction that wrote it has committed.
        self._pending: dict[str, tuple[int, Exchange]] = {}  # id -> (its add's number, exchange)
        self._cond = threading.Condition()
        self._queued_ids: list[str] = []  # a heap of the ids queued (and some already written)
        self._added = 0  # adds so far
        self._write_lock = threading.Lock()  # one batch or clear at a time
        self._stop_by = 0.0  # when a stopping writer gives up on a file that refuses writes
        self._flush_wanted = False
        self._stopping = False
        self._closed = False
        self._failing: str | None = None
        self._dropped = 0
        self._warned_unreadable = False
        self._writer = threading.Thread(target=self._write_loop, name="echo-sqlite-writer", daemon=True)
        self._writer.start()

    # ---- opening -----------------------------------------------------------

    def _check_place(self) -> None:
        """The file's place, checked before SQLite touches it: one clear line for each mistake."""
        where = flag("store")
        path = self._path
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise ConfigError(f"{where}: {path} is a directory: name a file, e.g. sqlite:///{path.rstrip('/')}/echo.db")
        if not os.path.isdir(folder):
            raise ConfigError(f"{where}: the directory {folder} does not exist (or is not a directory)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: the directory {folder} is not writable (SQLite keeps its journal beside the file)")
        if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"{where}: {path} is not readable and writable")

    def _connect(self) -> sqlite3.Connection:
        try:
            # Autocommit (isolation_level=None): transactions are the explicit BEGINs below.
            conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            if type(exc) is sqlite3.DatabaseError:  # SQLITE_NOTADB: not an SQLite file at all
                raise StoreError(f"sqlite {self._path} is not an SQLite database ({exc})") from exc
            raise StoreError(f"sqlite {self._path}: cannot open: {exc}") from exc
        with self._connections_lock:
            self._connections.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _inspect(self, conn: sqlite3.Connection) -> tuple[int, int, int]:
        """(application_id, user_version, number of schema objects): reads only."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        return int(app_id), int(version), int(objects)

    def _refusal(self, app_id: int, version: int, objects: int) -> str | None:
        where = f"{flag('store')}: {self._path}"
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and objects):
            return f"{where} is an SQLite file of another application (not an Echo history); name another file"
        if version > SCHEMA_VERSION:
            return (f"{where} has history schema version {version}, newer than this Echo reads ({SCHEMA_VERSION}); "
                    "run a newer Echo or name another file")
        if app_id == APPLICATION_ID and version not in MIGRATIONS and version != SCHEMA_VERSION:
            return f"{where} has history schema version {version}, which this Echo cannot migrate"
        return None

    def _open_file(self) -> None:
        where = f"{flag('store')}: {self._path}"
        try:
            conn = self._conn()
            # Another process may be creating or migrating the file right now.
            conn.execute(f"PRAGMA busy_timeout = {int(max(self._timeout, OPEN_SECONDS) * 1000)}")
            try:
                state = self._inspect(conn)
            except sqlite3.DatabaseError as exc:
                raise ConfigError(f"{where} is not an SQLite database ({exc})") from None
            refusal = self._refusal(*state)
            if refusal:
                raise ConfigError(refusal)
            if state[1] != SCHEMA_VERSION:
                self._create_or_migrate(conn)
            elif conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except sqlite3.Error as exc:
            self._close_connections()
            raise ConfigError(f"{where}: cannot open: {exc}") from None
        except (ConfigError, StoreError) as exc:
            self._close_connections()
            if isinstance(exc, StoreError):
                raise ConfigError(f"{flag('store')}: {exc}") from None
            raise

    def _create_or_migrate(self, conn: sqlite3.Connection) -> None:
        """A new file gets the schema, an older one is brought up to it.

        WAL first (it cannot change inside a transaction), then the work under
        the write lock, looking again there: another process may have done it
        meanwhile."""
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id, version, objects = self._inspect(conn)
            refusal = self._refusal(app_id, version, objects)
            if refusal:
                raise ConfigError(refusal)
            if version == 0:
                for statement in _CREATE_V1:
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                version = 1
            elif version < SCHEMA_VERSION:
                log.warning("history store: migrating %s from schema version %d to %d",
                            self._path, version, SCHEMA_VERSION)
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](conn)
                version += 1
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---- writing -----------------------------------------------------------

    def add(self, exchange: Exchange) -> None:
        if self._limit <= 0:
            return
        with self._cond:
            if self._closed:
                raise StoreError(f"sqlite {self._path}: the store is closed")
            was_empty = not self._pending
            self._added += 1
            # A new version of an id goes to the back, so the queue stays in add order.
            self._pending.pop(exchange.id, None)
            self._pending[exchange.id] = (self._added, exchange)
            heapq.heappush(self._queued_ids, exchange.id)
            if len(self._pending) > self._limit:
                # More than --history queued: the smallest id queued cannot be
                # among the newest --history, so the trim would drop it anyway.
                while self._queued_ids[0] not in self._pending:
                    heapq.heappop(self._queued_ids)
                del self._pending[heapq.heappop(self._queued_ids)]
                self._dropped += 1
            elif len(self._queued_ids) > 2 * len(self._pending) + BATCH:
                # Ids the writer has written linger in the heap; drop them now and then.
                self._queued_ids = list(self._pending)
                heapq.heapify(self._queued_ids)
            if was_empty or len(self._pending) >= BATCH:
                self._cond.notify_all()

    def add_many(self, exchanges: Iterable[Exchange]) -> None:
        """Write these exchanges now, in one transaction; StoreError when the file refuses."""
        if self._limit <= 0:
            return
        with self._write_lock:
            self._write(list(exchanges))

    def _write(self, exchanges: Sequence[Exchange]) -> None:
        rows = []
        for exchange in exchanges:
            try:
                rows.append(_row(exchange))
            except CodecError as exc:
                log.error("history store: exchange %s cannot be stored: %s", exchange.id, exc)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                live_from = self._live_from()
                if live_from is not None:
                    conn.execute("DELETE FROM exchanges WHERE started < ?", (live_from,))
                conn.execute(_TRIM, (self._limit,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self._path}: write failed: {exc}") from exc

    def _done(self, target: int) -> bool:
        """Whether every add up to the `target`-th is written (or gone from the queue)."""
        # The queue is in add order: its first entry is the oldest add still waiting.
        return not self._pending or next(iter(self._pending.values()))[0] > target

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                if not (self._stopping or self._flush_wanted or len(self._pending) >= BATCH):
                    # Let a few more arrive: one commit for many adds.
                    self._cond.wait(FLUSH_SECONDS)
                self._flush_wanted = False
            try:
                with self._write_lock:
                    # Taken under the write lock, so a clear() meanwhile is not undone.
                    with self._cond:
                        batch = list(itertools.islice(self._pending.items(), BATCH))
                    if batch:
                        self._write([exchange for _, (_, exchange) in batch])
            except Exception as exc:  # noqa: BLE001 - whatever it is, the writer must live on and say so
                with self._cond:
                    if self._failing is None:
                        log.error("history store failing, %d exchanges waiting to be written: %s",
                                  len(self._pending), exc)
                    self._failing = str(exc)
                    self._cond.notify_all()
                    if self._stopping and time.monotonic() >= self._stop_by:
                        return
                    self._cond.wait(RETRY_SECONDS / 10 if self._stopping else RETRY_SECONDS)
                continue
            with self._cond:
                if self._failing is not None:
                    log.warning("history store is writable again: %s", self._path)
                    self._failing = None
                for exchange_id, entry in batch:
                    if self._pending.get(exchange_id) is entry:
                        del self._pending[exchange_id]
                self._cond.notify_all()

    def _settle(self) -> list[Exchange]:
        """Let the writer commit what was added before now (waiting at most
        --store-timeout); what is still queued after that, oldest first."""
        with self._cond:
            if self._pending and self._writer.is_alive():
                target = self._added
                self._flush_wanted = True
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._done(target) or self._failing is not None, self._timeout)
            return [exchange for _, exchange in self._pending.values()]

    # ---- reading -----------------------------------------------------------

    def _live_from(self) -> float | None:
        return time.time() - self._ttl if self._ttl > 0 else None

    def _read(self, what: str, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self._path}: {what} failed: {exc}") from exc

    def _decode(self, exchange_id: str, data: bytes) -> Exchange | None:
        try:
            return exchange_from_bytes(bytes(data))
        except CodecError as exc:
            # One unreadable row must not take every page down with it.
            if not self._warned_unreadable:
                self._warned_unreadable = True
                log.warning("history store: skipping unreadable exchange %s: %s", exchange_id, exc)
            return None

    def _live(self, exchange: Exchange, live_from: float | None) -> bool:
        return live_from is None or exchange.request.started >= live_from

    def get(self, exchange_id: str) -> Exchange | None:
        queued = {e.id: e for e in self._settle()}
        live_from = self._live_from()
        if exchange_id in queued:
            found = queued[exchange_id]
            return found if self._live(found, live_from) else None
        if not _clean(exchange_id):
            return None
        sql = "SELECT id, data FROM exchanges WHERE id = ?"
        params: list[Any] = [exchange_id]
        if live_from is not None:
            sql += " AND started >= ?"
            params.append(live_from)
        rows = self._read("get", sql, params)
        return self._decode(rows[0][0], rows[0][1]) if rows else None

    def list(self, query: Query) -> list[Exchange]:
        if query.limit <= 0:
            return []
        live_from = self._live_from()
        queued = [e for e in self._settle()
                  if self._live(e, live_from) and (not query.before or e.id < query.before) and query.matches(e)]
        shadowed = {e.id for e in queued}
        where = _where(query, live_from)
        found: list[Exchange] = []
        upper: str | None = None
        conn = self._conn()
        try:
            conn.execute("BEGIN")  # one snapshot for every chunk of the page
            try:
                while len(found) < query.limit:
                    sql = f"SELECT id, data FROM exchanges WHERE {where.text()}"
                    params = list(where.params)
                    if upper is not None:
                        sql += " AND id < ?"
                        params.append(upper)
                    sql += " ORDER BY id DESC LIMIT ?"
                    want = min(max(query.limit - len(found), 1) + len(shadowed), FETCH)
                    rows = conn.execute(sql, (*params, want)).fetchall()
                    for exchange_id, data in rows:
                        if exchange_id in shadowed or (query.before and not exchange_id < query.before):
                            continue
                        exchange = self._decode(exchange_id, data)
                        if exchange is not None and query.matches(exchange):
                            found.append(exchange)
                    if len(rows) < want:
                        break
                    upper = rows[-1][0]
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self._path}: list failed: {exc}") from exc
        if queued:
            # Still queued (the writer is stalled): shown on top, and the
            # bound applied to them as the writer will.
            found = sorted(found + queued, key=lambda e: e.id, reverse=True)
        return found[: query.limit]

    def clear(self, bin: str | None = None) -> None:  # noqa: A002 - the name the Store interface uses
        """Forget every exchange, or only those of one bin: queued and written."""
        conn = self._conn()
        with self._write_lock:
            with self._cond:
                for exchange_id, (_, exchange) in list(self._pending.items()):
                    if bin is None or exchange.request.bin == bin:
                        del self._pending[exchange_id]
                self._cond.notify_all()
            try:
                if bin is None:
                    conn.execute("DELETE FROM exchanges")
                else:
                    conn.execute("DELETE FROM exchanges WHERE bin = ?", (bin,))
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: clear failed: {exc}") from exc

    def count(self) -> int:
        queued = self._settle()
        live_from = self._live_from()
        sql, params = "SELECT count(*) FROM exchanges", []
        if live_from is not None:
            sql += " WHERE started >= ?"
            params.append(live_from)
        kept = int(self._read("count", sql, params)[0][0])
        if not queued:
            return kept
        ids = [e.id for e in queued if self._live(e, live_from) and _clean(e.id)]
        marks = ", ".join("?" for _ in ids)
        known = int(self._read("count", f"SELECT count(*) FROM exchanges WHERE id IN ({marks})", ids)[0][0]) if ids else 0
        return min(kept + len(ids) - known, self._limit)

    def health(self) -> Health:
        where = f"sqlite {self._path}"
        try:
            kept = int(self._read("count", "SELECT count(*) FROM exchanges", ())[0][0])
        except StoreError as exc:
            return Health(ok=False, backend=self.backend, detail=str(exc))
        folder = os.path.dirname(os.path.abspath(self._path))
        if not (os.access(self._path, os.W_OK) and os.access(folder, os.W_OK)):
            return Health(ok=False, backend=self.backend, detail=f"{where}: the file or its directory is not writable")
        with self._cond:
            failing, waiting = self._failing, len(self._pending)
        if failing is not None:
            return Health(ok=False, backend=self.backend, detail=f"{failing} ({waiting} exchanges waiting)")
        return Health(ok=True, backend=self.backend, detail=f"{kept} of {self._limit} exchanges kept in {self._path}")

    def flush(self, timeout: float = CLOSE_SECONDS) -> bool:
        """Wait until everything added so far is written; False when that took longer than `timeout`."""
        with self._cond:
            target = self._added
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done(target), timeout)

    def close(self) -> None:
        """Write everything queued (at most CLOSE_SECONDS), then let go of the file."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._stop_by = time.monotonic() + CLOSE_SECONDS
            self._cond.notify_all()
        self._writer.join(CLOSE_SECONDS + self._timeout)
        with self._cond:
            left = len(self._pending)
        if left:
            log.error("history store: %d exchanges could not be written to %s before stopping", left, self._path)
        self._close_connections()

    def _close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    @property
    def dropped(self) -> int:
        """Exchanges dropped from a full queue (more than --history waiting)."""
        return self._dropped
