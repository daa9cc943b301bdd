"""History waits: `GET <prefix>api/exchanges/wait?f=...&after={id}&timeout=5`.

A test that sent something asks "has it arrived?" once, and the answer comes
the moment it has: `200` with the first (oldest) exchange after `after` that
matches the filter `f` (the one-exchange document of `api/exchanges/{id}`), at
once when one is already kept. On timeout `404` with the near misses: the
recent exchanges that failed the fewest terms, each with the terms it failed.

A waiting request keeps its worker thread, so waits are bounded twice: by
--max-waiters (waits at once) and by the --max-held budget every holder
shares; a wait that finds no slot is answered `503` with `Retry-After` at once,
so the echo and `/_/healthz` keep their workers. A wait that is answered at
once (found, or `timeout=0`) takes no slot.

While it waits, the worker sleeps on the recorder's arrival signal
(`observe.arrivals`): a local exchange wakes it the moment it is recorded. It
also wakes every `TICK_SECONDS` to see whether its caller left (then the slot is
freed) or the server stops. On a shared store (Redis) another replica's
exchanges make no local signal, so there it looks in the store again every
`SHARED_POLL_SECONDS` as well. Each look examines at most --max-scan kept
exchanges, as a filtered list does.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Response, request

from ...answer.held import RETRY_AFTER_SECONDS, HeldBudget
from ...config import flag
from ...formats.documents import exchange_document
from ...history import Query, Store
from ...model.filter import EVERYTHING, Filter, parse
from ...model.records import ID_LENGTH, ID_PATTERN, Exchange
from ..echo import _caller_left as caller_left
from ..services import Services, services
from .common import api_error, bad_param, bp, json_response, parse_filter, wants_bodies

# The timeout of a wait that names none: long enough for a webhook sent by a
# background job, short enough that a test that waits for the wrong thing fails soon.
DEFAULT_TIMEOUT_SECONDS = 5.0
# How often a waiting worker looks whether its caller closed the connection or
# the server stops; an arrival wakes it at once regardless.
TICK_SECONDS = 0.1
# On a shared store (not memory), how often a wait looks in the store again for
# exchanges other replicas recorded: four store reads a second per waiter at most.
SHARED_POLL_SECONDS = 0.25
# Exchanges fetched per store read while looking for the oldest match after `after`.
SEARCH_PAGE = 200
# Near misses shown on a timeout, chosen among this many of the newest exchanges.
NEAR_MISSES = 3
NEAR_MISS_SCAN = 100


@bp.get("/api/exchanges/wait")
def api_wait() -> Response:
    found = services()
    parsed = parse_filter(request.args)
    if isinstance(parsed, Response):
        return parsed
    wanted = parsed or EVERYTHING
    after = request.args.get("after") or None
    if after is not None and not ID_PATTERN.fullmatch(after):
        return bad_param("after", after, f"after must be an exchange id ({ID_LENGTH} lowercase hex digits)")
    timeout = _timeout(request.args.get("timeout"), found.options.max_wait)
    if isinstance(timeout, Response):
        return timeout
    deadline = time.monotonic() + timeout
    seen = found.arrivals.generation  # before the first look: an arrival during it is not missed
    exchange = first_match(found.store, wanted, after, found.options.max_scan)
    if exchange is None and timeout > 0:
        busy = _take_slots(found)
        if busy is not None:
            return busy
        try:
            exchange, stopped = _hold(found, wanted, after, deadline, seen, request.environ)
        finally:
            found.held.release()
            found.waiters.release()
        if stopped:
            return api_error(503, "the server is stopping; no exchange matched before it did", f=wanted.source)
    if exchange is None:
        max_scan = found.options.max_scan
        message = f"no exchange matched within {timeout:g} s"
        extra: dict[str, Any] = {}
        if _scan_cut(found.store, wanted, after, max_scan):
            # Older exchanges were left unexamined: say so, or the 404 claims more than was looked at.
            message += f" among the newest {max_scan} kept exchanges ({flag('max_scan')})"
            extra = {"partial": True, "scanned": max_scan}
        return api_error(
            404, message, f=wanted.source, after=after, timeout=timeout, **extra,
            near_misses=near_misses(found.store, wanted, after, max_scan),
        )
    return json_response(exchange_document(exchange, bodies=wants_bodies(request.args)))


def _timeout(raw: str | None, most: float) -> float | Response:
    """The `timeout` parameter in seconds (default 5, within --max-wait), or a 400 naming it."""
    if raw is None or raw.strip() == "":
        return min(DEFAULT_TIMEOUT_SECONDS, most)
    message = f"timeout must be a number of seconds from 0 to {most:g} ({flag('max_wait')})"
    try:
        value = float(raw)
    except ValueError:
        return bad_param("timeout", raw, message)
    if not math.isfinite(value) or value < 0:
        return bad_param("timeout", raw, message)
    if value > most:
        return api_error(400, message, param="timeout", value=raw, limit=most, setting=flag("max_wait"))
    return value


def _take_slots(found: Services) -> Response | None:
    """A waiter slot and a held slot, or the 503 that says which budget is full."""
    if not found.waiters.acquire():
        return _busy(found.waiters, "max_waiters", "history waits")
    if not found.held.acquire():
        found.waiters.release()
        return _busy(found.held, "max_held", "requests (delays and waits)")
    return None


def _busy(budget: HeldBudget, setting: str, what: str) -> Response:
    response = api_error(503, f"too many {what} are waiting already; try again shortly",
                         limit=budget.limit, setting=flag(setting))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _hold(
    found: Services, wanted: Filter, after: str | None, deadline: float, seen: int, environ: dict[str, Any]
) -> tuple[Exchange | None, bool]:
    """Wait for a match until `deadline`: (the match or None, whether the server is stopping)."""
    shared = found.store.backend != "memory"
    next_poll = time.monotonic() + SHARED_POLL_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        if found.held.stopping:
            return None, True
        generation = found.arrivals.wait(seen, min(left, TICK_SECONDS))
        look = generation != seen
        seen = generation
        if shared and time.monotonic() >= next_poll:
            look = True
            next_poll = time.monotonic() + SHARED_POLL_SECONDS
        if caller_left(environ):
            return None, False  # nobody reads the answer; the slot goes back now
        if look and (exchange := first_match(found.store, wanted, after, found.options.max_scan)) is not None:
            return exchange, False
    # A last look: on a shared store, something may have arrived since the last poll.
    return (first_match(found.store, wanted, after, found.options.max_scan) if shared else None), False


def first_match(store: Store, wanted: Filter, after: str | None, max_scan: int) -> Exchange | None:
    """The oldest kept exchange after `after` (any, without it) that `wanted` matches.

    Pages go newest first and stop at `after`, so a wait with `after` reads
    little more than what is newer; ids sort in arrival order. One look
    examines at most --max-scan kept exchanges, as a filtered list does."""
    query = Query(limit=SEARCH_PAGE, filter=wanted or None)
    oldest = None
    budget = max_scan
    while budget > 0:
        page = store.page(query, budget)
        budget -= page.scanned
        for exchange in page.exchanges:
            if after is not None and exchange.id <= after:
                return oldest
            oldest = exchange
        full = len(page.exchanges) >= SEARCH_PAGE
        older = page.exchanges[-1].id if full else page.stopped
        if older is None or page.scanned == 0 or (after is not None and older <= after):
            return oldest
        query = Query(limit=SEARCH_PAGE, before=older, filter=wanted or None)
    return oldest


def _scan_cut(store: Store, wanted: Filter, after: str | None, max_scan: int) -> bool:
    """Whether a look stops at --max-scan before it reaches `after` (or the oldest kept exchange)."""
    stopped = store.page(Query(limit=1, filter=wanted or None), max_scan).stopped
    return stopped is not None and (after is None or stopped > after)


def near_misses(store: Store, wanted: Filter, after: str | None, max_scan: int) -> list[dict[str, Any]]:
    """Up to NEAR_MISSES recent exchanges that failed the fewest terms, newest first among equals.

    The candidates are the NEAR_MISS_SCAN newest exchanges and, for a filter
    that names a bin, as many of that bin's newest, ranked before any other
    bin's: on a server many test jobs share, a bin's own exchanges are the
    near misses that matter, however busy the others are. An exchange at or before `after` fails `after={id}` too, so a
    match that came too early says so."""
    candidates = {exchange.id: exchange for exchange in store.list(Query(limit=NEAR_MISS_SCAN))}
    if wanted.bin is not None:
        own = store.page(Query(limit=NEAR_MISS_SCAN, filter=parse(f"bin:{wanted.bin}")), max_scan)
        candidates.update((exchange.id, exchange) for exchange in own.exchanges)
    scored = []
    for exchange_id in sorted(candidates, reverse=True):  # newest first
        exchange = candidates[exchange_id]
        failed = wanted.difference(exchange)
        if after is not None and exchange.id <= after:
            failed.append(f"after={after}")
        if failed:
            # Another bin's exchange is another test's: any of the bin's own comes first.
            elsewhere = wanted.bin is not None and exchange.request.bin != wanted.bin
            scored.append(((elsewhere, len(failed)), exchange, failed))
    scored.sort(key=lambda item: item[0])  # stable: newest first among equals
    return [
        {
            "id": exchange.id,
            "method": exchange.request.method,
            "path": exchange.request.path,
            "status": exchange.response.status,
            "failed": failed,
        }
        for _, exchange, failed in scored[:NEAR_MISSES]
    ]
