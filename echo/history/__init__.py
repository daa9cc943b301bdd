"""History: the store interface, its backends, and the choice between them."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import Settings
from .base import Health, Query, Store, StoreError
from .memory import MemoryStore

__all__ = ["Health", "MemoryStore", "Query", "Store", "StoreError", "make_store"]


def make_store(settings: Settings) -> Store:
    """The backend named by --store (validated by config already)."""
    scheme = urlsplit(settings.store).scheme.lower()
    if scheme == "memory":
        return MemoryStore(settings.history)
    # Imported here so the default install never needs the redis client loaded.
    from .redis_store import RedisStore

    return RedisStore(
        settings.store,
        limit=settings.history,
        prefix=settings.store_prefix,
        timeout=settings.store_timeout,
        ttl=settings.history_ttl,
    )
