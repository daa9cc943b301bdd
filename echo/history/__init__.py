"""History: the store interface, its backends, and the table that picks one.

`make_store(options)` looks the --store URL's scheme up in `STORES`; a new
backend is one more row there. This folder is the only importer of a store
client (redis-py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import DEFAULT_PAGE, Counters, Health, LocalCounters, Query, Store, StoreError
from .memory import MemoryStore

__all__ = [
    "DEFAULT_PAGE", "STORES", "Counters", "Health", "LocalCounters", "MemoryStore", "Query", "Store", "StoreError", "StoreOptions", "make_store",
]


@dataclass(frozen=True)
class StoreOptions:
    """What a backend needs to know, as plain values (the app fills it from its settings)."""

    url: str = "memory://"
    limit: int = 1000
    prefix: str = "echo"
    timeout: float = 0.5
    ttl: float = 0.0


def _memory(options: StoreOptions) -> Store:
    return MemoryStore(options.limit)


def _redis(options: StoreOptions) -> Store:
    # Imported here so the default install never needs the redis client loaded.
    from .redis_store import RedisStore

    return RedisStore(options.url, limit=options.limit, prefix=options.prefix, timeout=options.timeout, ttl=options.ttl)


# URL scheme -> backend (the settings table accepts exactly these schemes).
STORES: dict[str, Callable[[StoreOptions], Store]] = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
}


def make_store(options: StoreOptions) -> Store:
    """The backend named by the store URL (validated by the settings already)."""
    return STORES[urlsplit(options.url).scheme.lower()](options)
