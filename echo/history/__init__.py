"""History: the store interface, its backends, and the table that picks one.

`make_store(options)` looks the --store URL's scheme up in `STORES`; a new
backend is one more row there. A backend whose writes wait on I/O is put
behind the write-behind queue (`BufferedStore`), so no request waits on it.
This folder is the only importer of a store client (redis-py, sqlite3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import STORE_BUFFER, STORE_BUFFER_BYTES
from .base import (
    DEFAULT_PAGE,
    Counters,
    Health,
    LocalCounters,
    Page,
    Query,
    Store,
    StoreError,
    UnstorableError,
    WriteStats,
)
from .buffered import BufferedStore
from .memory import MemoryStore

__all__ = [
    "DEFAULT_PAGE", "STORES", "BufferedStore", "Counters", "Health", "LocalCounters", "MemoryStore", "Page", "Query",
    "Store", "StoreError", "StoreOptions", "UnstorableError", "WriteStats", "make_store",
]


@dataclass(frozen=True)
class StoreOptions:
    """What a backend needs to know, as plain values (the app fills it from its settings)."""

    url: str = "memory://"
    limit: int = 1000
    prefix: str = "echo"
    timeout: float = 0.5
    ttl: float = 0.0
    buffer: int = STORE_BUFFER  # exchanges the write-behind queue holds
    buffer_bytes: int = STORE_BUFFER_BYTES


def _memory(options: StoreOptions) -> Store:
    return MemoryStore(options.limit)


def _redis(options: StoreOptions) -> Store:
    # Imported here so the default install never needs the redis client loaded.
    from .redis_store import RedisStore

    return RedisStore(options.url, limit=options.limit, prefix=options.prefix, timeout=options.timeout, ttl=options.ttl)


def _sqlite(options: StoreOptions) -> Store:
    from .sqlite_store import SqliteStore

    return SqliteStore(options.url, limit=options.limit, timeout=options.timeout, ttl=options.ttl)


# URL scheme -> backend (the settings table accepts exactly these schemes).
STORES: dict[str, Callable[[StoreOptions], Store]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "sqlite": _sqlite,
}


def make_store(options: StoreOptions) -> Store:
    """The backend named by the store URL (validated by the settings already),
    behind the write-behind queue when its writes wait on I/O."""
    store = STORES[urlsplit(options.url).scheme.lower()](options)
    if not store.write_behind:
        return store
    return BufferedStore(store, max_items=options.buffer, max_bytes=options.buffer_bytes, limit=options.limit)
