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

A second table, ``clears``, keeps the mark (`base.clear_mark`) of each clear
of the last CLEAR_MARK_SECONDS, by bin ('' for a clear of everything): a
batch skips the exchanges that arrived before a clear of their bin or of
everything, so one another process answered before the clear and wrote
after it is cleared as well.

The schema version is SQLite's ``user_version`` and the file carries Echo's
``application_id``. At start an older file is migrated in place (one
transaction, so several processes starting together migrate it once); a newer
one, a foreign SQLite file or a file that is not SQLite at all is refused with
one `ConfigError` line, before anything is written to it.

Writes. `prepare(exchange)` makes an exchange's row (its filter columns and
record), on the recording thread when the write-behind queue holds it;
`add_prepared(rows)`, and `add_many(exchanges)` through it, writes a batch in
one transaction on the caller's thread: insert (``INSERT OR REPLACE``, so
writing an id again is harmless and a batch retried after a failure leaves
the file as one write would), drop what `--history-ttl` has expired (by id:
an id starts with its arrival time, 16 hex digits of microseconds) and trim
to `--history`, so no process can leave more in the file than its bound. `add`
is `add_many` of one. One lock lets one thread of the store write at a time;
another process's lock is waited on for at most `--store-timeout`
(``busy_timeout``), then the call raises `StoreError`. Exchanges that can
never be stored raise `UnstorableError` once the others are written.

The store keeps no queue of its own: `make_store` puts it behind the
write-behind queue (`buffered.BufferedStore`), which returns to the request at
once, writes batches within about 50 ms (so other processes see an exchange
well within 1 s), keeps the exchanges and retries while the file refuses
writes, shows what it holds in this process's reads and writes it at a clean
stop.

Reads run on a connection per thread (`threading.local`), each page in one
read transaction (one snapshot). `page(query, max_scan)` walks a window of at
most `max_scan` ids, newest first, on the id index; the conditions SQL can
decide run on that window in SQL, and only the rows they let through are
decoded and checked in Python. Its `scanned` counts the window's rows, refused
by SQL or by Python alike, as memory and Redis count what they examine.

Durability: ``synchronous=NORMAL`` in WAL mode does not fsync each commit, but
a commit is in the OS's page cache when it returns, so it survives the process
being killed (``kill -9``), not a power loss or a kernel crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeVar

from ..config import ConfigError, flag, sqlite_path
from ..model.filter import Filter
from ..model.records import Exchange
from .base import (
    CLEAR_MARK_SECONDS,
    Health,
    Page,
    Prepared,
    Query,
    Store,
    StoreError,
    UnstorableError,
    add_by_preparing,
    clear_mark,
    id_micros,
)
from .codec import CodecError, exchange_from_bytes, exchange_to_bytes

log = logging.getLogger("echo")

T = TypeVar("T")

# "ECHO" in ASCII: SQLite's application_id marks the file as Echo's history.
APPLICATION_ID = 0x4543484F
SCHEMA_VERSION = 4

# Exchanges per chunk while an older file is migrated: one chunk of full
# --keep-body bodies stays a few tens of MB.
BATCH = 500
# The first window of a bounded page (`page`) is twice the page or this many
# ids, whichever is more, and each next one twice the last, up to
# WINDOW_MOST: a page that fills at once walks little of the id index, a
# filter that matches rarely reaches --max-scan in a few statements.
WINDOW_FIRST = 64
WINDOW_MOST = 4096
# The page size a new file gets (an existing file keeps its own). A kept
# exchange is one row of about 1-4 KB: at SQLite's default 4096 most rows
# take a page each, at 8192 a few share one, which halves what a batch
# writes (measured: 10.7 -> 5.7 us per 2.5 KB row in batches of 100).
PAGE_SIZE = 8192
# At start, another process creating or migrating the same file may hold its
# lock: wait this long for it rather than refusing to start.
OPEN_SECONDS = 10.0

_COLUMNS = ("id", "started", "method", "path", "path_lc", "query_lc", "bin", "bin_path",
            "status", "remote_addr", "rule", "lossy", "data")
_INSERT = f"INSERT OR REPLACE INTO exchanges ({', '.join(_COLUMNS)}) VALUES "
_ROW = f"({', '.join('?' for _ in _COLUMNS)})"
# Rows per INSERT statement: a batch is written by as few statements as fit
# SQLite's oldest bound on parameters (999), not one per row. Each statement
# lets go of the GIL while SQLite works and must take it back, a switch
# between threads each time, which the echo's requests pay on the same CPU.
ROWS_PER_INSERT = 999 // len(_COLUMNS)
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


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE clears (bin TEXT PRIMARY KEY, mark INTEGER NOT NULL)")


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    # --history-ttl goes by the id (which starts with the arrival time) on
    # the id's own index: a third b-tree that every row was written into and
    # deleted from served nothing else (36.1k -> 32.7k instructions per row).
    conn.execute("DROP INDEX IF EXISTS exchanges_started")


# from version -> the step to the next one
MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}


def _clean(text: str) -> bool:
    """Whether SQLite keeps and compares this text exactly (valid UTF-8, no NUL)."""
    if text.isascii():  # nearly every text: decided without encoding it
        return "\x00" not in text
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
    method, path, query, bin_name, bin_path, remote_addr = (
        request.method.upper(), request.path, request.query_string, request.bin, request.bin_path,
        request.remote_addr)
    # One check of every text at once: this runs for every exchange written,
    # and nearly every one is ASCII without NUL, whose lowercase is too.
    joined = "".join((method, path, query, remote_addr, bin_name or "", bin_path or "", rule or ""))
    if joined.isascii() and "\x00" not in joined:
        return (method, path, path.lower(), query.lower(), bin_name, bin_path, exchange.response.status,
                remote_addr, rule, 0)
    texts: list[str | None] = [method, path, path.lower(), query.lower(), bin_name, bin_path, remote_addr, rule]
    lossy = not all(text is None or _clean(text) for text in texts)
    if lossy:
        texts = [None if text is None else _storable(text) for text in texts]
    return (*texts[:6], exchange.response.status, *texts[6:], int(lossy))


_BIN = _COLUMNS.index("bin")

# sqlite3 looks for an adapter (the `__conform__` protocol) for every parameter
# that is not exactly an int, float or str: each None and bytes a row binds (its
# record, the columns it has no value for) failed two attribute lookups and
# formatted an error message to throw away, about a third of inserting a row
# (measured: 6.2 -> 3.9 us). A registered adapter is found in one dict lookup.
# These give back what they are given, so nothing another user of sqlite3 in
# this process binds changes; neither type can carry a `__conform__` of its own.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), lambda value: value)


def _cleared(row: tuple[Any, ...], marks: dict[str, int]) -> bool:
    """Whether a clear of everything ('') or of the row's bin came after the row's exchange arrived."""
    at = id_micros(row[0])
    return at <= marks.get("", -1) or (row[_BIN] is not None and at <= marks.get(row[_BIN], -1))


def _row(exchange: Exchange) -> tuple[Any, ...]:
    request = exchange.request
    exchange_id = request.id
    if not _clean(exchange_id):
        raise CodecError(f"exchange id {exchange_id!r} cannot be a key")
    return (exchange_id, float(request.started), *_filter_columns(exchange), exchange_to_bytes(exchange))


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


def _where(query: Query, live_from: str | None) -> _Where:
    where = _Where([], [])
    if live_from is not None:
        where.add("id >= ?", live_from)
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
                              "(a locked file would hold a write without bound)")
        self._path = sqlite_path(url)
        self._limit = limit
        self._timeout = timeout
        self._ttl = ttl
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one of this store's threads writes at a time
        self._closed = False
        self._warned_unreadable = False
        self._check_place()
        self._open_file()

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
            # Some builds (Debian's) zero every deleted row by default: a batch's
            # trim of the oldest exchanges, whose space the next batch writes
            # again, was a twelfth of writing a row (79k -> 72k instructions per
            # row of a GET). A clear still overwrites what it forgets (`clear`).
            conn.execute("PRAGMA secure_delete = OFF")
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
            if self._closed:
                raise StoreError(f"sqlite {self._path}: the store is closed")
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
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a no-op unless the file is still empty
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
        self.add_many((exchange,))

    def add_many(self, exchanges: Sequence[Exchange]) -> None:
        """Write these exchanges now, in one transaction: StoreError when the file refuses,
        UnstorableError (after writing the others) for those that can never be stored."""
        add_by_preparing(self, exchanges)

    def prepare(self, exchange: Exchange) -> Prepared:
        try:
            row = _row(exchange)
        except CodecError as exc:
            raise UnstorableError(f"exchange {exchange.id}: {exc}", 1) from exc
        return Prepared(row[0], exchange.request.bin, row, row[-1])

    def add_prepared(self, items: Sequence[Prepared]) -> None:
        if self._limit > 0 and items:
            self._write([item.fields for item in items])

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction by this store's one writer at a time: committed when
        the block ends, rolled back when it raises; StoreError when the file refuses."""
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: {what} failed: {exc}") from exc

    def _write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        with self._transaction("write") as conn:
            marks = dict(conn.execute("SELECT bin, mark FROM clears").fetchall())
            if marks:
                rows = [row for row in rows if not _cleared(row, marks)]
            for start in range(0, len(rows), ROWS_PER_INSERT):
                chunk = rows[start:start + ROWS_PER_INSERT]
                conn.execute(_INSERT + ", ".join([_ROW] * len(chunk)), list(chain.from_iterable(chunk)))
            live_from = self._live_from()
            if live_from is not None:
                conn.execute("DELETE FROM exchanges WHERE id < ?", (live_from,))
            conn.execute(_TRIM, (self._limit,))

    # ---- reading -----------------------------------------------------------

    def _live_from(self) -> str | None:
        """With --history-ttl, the least id still kept: ids start with their
        arrival time (`IdSource`), so the time's own 16 hex digits."""
        if self._ttl <= 0:
            return None
        return f"{max(0, int((time.time() - self._ttl) * 1_000_000)):016x}"

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

    def get(self, exchange_id: str) -> Exchange | None:
        if not _clean(exchange_id):
            return None
        sql = "SELECT id, data FROM exchanges WHERE id = ?"
        params: list[Any] = [exchange_id]
        live_from = self._live_from()
        if live_from is not None:
            sql += " AND id >= ?"
            params.append(live_from)
        rows = self._read("get", sql, params)
        return self._decode(rows[0][0], rows[0][1]) if rows else None

    def list(self, query: Query) -> list[Exchange]:
        if query.limit <= 0:
            return []
        where = _where(query, self._live_from())
        return [*self._snapshot("list", lambda conn: self._matching(conn, query, where)[0])]

    def page(self, query: Query, max_scan: int) -> Page:
        """Like `list`, examining at most the `max_scan` newest kept exchanges before `query.before`.

        The conditions SQL can decide run in SQL, on a window of ids walked
        newest first; only the rows they let through are decoded and checked
        in Python. `scanned` counts the window's rows, whichever of SQL or
        Python refused them (as in every store), so a filter pushed into SQL
        is bounded exactly as one checked in Python."""
        if query.limit <= 0 or max_scan <= 0:
            return Page([], 0)
        if query.before and not _clean(query.before):
            return super().page(query, max_scan)  # a `before` SQL cannot compare: the generic scan decides
        return self._snapshot("page", lambda conn: self._page(conn, query, max_scan))

    def _snapshot(self, what: str, read: Callable[[sqlite3.Connection], T]) -> T:
        """`read` in one read transaction: every statement of a page sees one snapshot of the file."""
        conn = self._conn()
        try:
            if conn.in_transaction:  # left open by a COMMIT that failed: start afresh
                conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            try:
                return read(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self._path}: {what} failed: {exc}") from exc

    def _matching(self, conn: sqlite3.Connection, query: Query, where: _Where,
                  want: int | None = None) -> tuple[Sequence[Exchange], str | None]:
        """Up to `want` (the query's limit) rows that `where` lets through and the query matches,
        newest first, and the id of the last one when that many were found.

        The rows are stepped through one at a time and the statement is left
        as soon as the page is full: never the whole history at once."""
        want = query.limit if want is None else want
        found: list[Exchange] = []
        cursor = conn.execute(f"SELECT id, data FROM exchanges WHERE {where.text()} ORDER BY id DESC", where.params)
        try:
            for exchange_id, data in cursor:
                if query.before and not exchange_id < query.before:
                    continue  # a `before` SQL could not compare (see `_where`)
                exchange = self._decode(exchange_id, data)
                if exchange is not None and query.matches(exchange):
                    found.append(exchange)
                    if len(found) >= want:
                        return found, exchange_id
        finally:
            cursor.close()
        return found, None

    def _page(self, conn: sqlite3.Connection, query: Query, max_scan: int) -> Page:
        live_from = self._live_from()
        # The kept exchanges in id order, before `before`: what the window is cut from.
        kept = _Where([], [])
        if live_from is not None:
            kept.add("id >= ?", live_from)
        if query.before:
            kept.add("id < ?", query.before)
        found: list[Exchange] = []
        scanned = 0
        upper: str | None = None  # the window so far ends above this id
        size = min(max(2 * query.limit, WINDOW_FIRST), max_scan)
        while True:
            # The next `size` kept ids: their lowest, or None when fewer are left.
            # Walked on the id index alone, so a window costs no row reads.
            window = _Where(list(kept.parts), list(kept.params))
            if upper is not None:
                window.add("id < ?", upper)
            row = conn.execute(f"SELECT id FROM exchanges WHERE {window.text()} ORDER BY id DESC LIMIT 1 OFFSET ?",
                               (*window.params, size - 1)).fetchone()
            lowest: str | None = None if row is None else row[0]
            where = _where(query, live_from)
            if upper is not None:
                where.add("id < ?", upper)
            if lowest is not None:
                where.add("id >= ?", lowest)
            more, last = self._matching(conn, query, where, query.limit - len(found))
            found += more
            if last is not None or lowest is None:
                # Full at `last`, or the oldest was reached: the window counts up to where it ended.
                if last is not None:
                    window.add("id >= ?", last)
                scanned += int(conn.execute(f"SELECT count(*) FROM exchanges WHERE {window.text()}",
                                            window.params).fetchone()[0])
                return Page(found, scanned)
            scanned += size
            upper = lowest
            if scanned >= max_scan:
                break
            size = min(size * 2, WINDOW_MOST, max_scan - scanned)
        # The bound is used up: stopped only if something older is left to look at.
        kept.add("id < ?", upper)
        older = conn.execute(f"SELECT 1 FROM exchanges WHERE {kept.text()} LIMIT 1", kept.params).fetchone()
        return Page(found, scanned, upper if older else None)

    def clear(self, bin: str | None = None) -> None:  # noqa: A002 - the name the Store interface uses
        """Forget every exchange, or only those of one bin."""
        mark = clear_mark()
        with self._transaction("clear") as conn:
            # Asked to forget, the file overwrites the cleared exchanges with zeros
            # rather than leaving them in its free space until they are reused.
            conn.execute("PRAGMA secure_delete = ON")
            try:
                if bin is None:
                    conn.execute("DELETE FROM exchanges")
                    conn.execute("DELETE FROM clears")
                else:
                    conn.execute("DELETE FROM exchanges WHERE bin = ?", (bin,))
                    conn.execute("DELETE FROM clears WHERE mark < ?", (mark - CLEAR_MARK_SECONDS * 1_000_000,))
                conn.execute("INSERT OR REPLACE INTO clears (bin, mark) VALUES (?, ?)",
                             ("" if bin is None else bin, mark))
            finally:
                conn.execute("PRAGMA secure_delete = OFF")

    def count(self) -> int:
        sql, params = "SELECT count(*) FROM exchanges", []
        live_from = self._live_from()
        if live_from is not None:
            sql += " WHERE id >= ?"
            params.append(live_from)
        return int(self._read("count", sql, params)[0][0])

    def health(self) -> Health:
        where = f"sqlite {self._path}"
        try:
            kept = int(self._read("count", "SELECT count(*) FROM exchanges", ())[0][0])
        except StoreError as exc:
            return Health(ok=False, backend=self.backend, detail=str(exc))
        folder = os.path.dirname(os.path.abspath(self._path))
        if not (os.access(self._path, os.W_OK) and os.access(folder, os.W_OK)):
            return Health(ok=False, backend=self.backend, detail=f"{where}: the file or its directory is not writable")
        return Health(ok=True, backend=self.backend, detail=f"{kept} of {self._limit} exchanges kept in {self._path}")

    def close(self) -> None:
        """Let go of the file: every connection of every thread. Later calls raise StoreError."""
        self._closed = True
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
