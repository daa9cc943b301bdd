"""The Redis history store: one history shared by every replica pointed at it.

Key layout, for `--store-prefix P` (default ``echo``):

* ``P:ids`` - a sorted set of exchange ids, every score 0. Equal scores make
  Redis order members by their bytes, and ids are fixed-width lowercase hex
  that sort in arrival order, so the set *is* the history in order: newest
  first is ZREVRANGEBYLEX, ``before=<id>`` is the range ``(<id>``, the oldest
  are rank 0.
* ``P:x:<id>`` - a hash per exchange: ``d`` the encoded exchange (`codec`),
  and the few fields the list filters look at (``m`` method, ``s`` status,
  ``p``/``q`` path and query string, lowercased) so a filtered page is chosen
  inside Redis without shipping the bodies of exchanges it skips; ``b`` is
  the exchange's bin ('' when none), which a bin's clear looks at.
* ``P:clears`` - a sorted set of the clears of the last CLEAR_MARK_SECONDS:
  member the bin ('' for a clear of everything), score its mark
  (`base.clear_mark`, microseconds). An add skips an exchange whose id's time
  is at or below its bin's mark or the mark of everything, so one that
  another replica answered before a clear and wrote after is cleared too.

Every operation is one Lua script (or one plain command), so it is atomic
across replicas: an add inserts, expires and trims to `--history` in one step
(no replica can keep more or drop a newer one), and a page is read in one
round trip, or a few when it is large or a filter has to look past many
exchanges. Only adds and clears write, so the inspector still reads when
Redis refuses writes (maxmemory reached).

`--history-ttl` (default 0: no expiry) gives each exchange key a PEXPIRE;
reads ignore ids older than the TTL by Redis's clock, and adds remove them
from the index. Needs Redis 5 or newer (ZPOPMIN, UNLINK, TIME in scripts that
write); a single Redis or a primary, not Redis Cluster (the scripts touch keys
they derive from the prefix).

An add is `add_many` of one: the write-behind queue (`buffered`) hands
batches to `add_many`, one script call (one round trip) per batch.

Failures never escape as redis exceptions: every call raises `StoreError`
after at most about `--store-timeout`, which the write-behind queue turns
into "log once, keep the exchanges and retry" and the inspector into a 503.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from ..config import ConfigError, flag
from ..model.records import Exchange
from .base import (
    CLEAR_MARK_SECONDS,
    Counters,
    Health,
    Page,
    Prepared,
    Query,
    Store,
    StoreError,
    UnstorableError,
    add_by_preparing,
    clear_mark,
)
from .codec import CodecError, exchange_from_bytes, exchange_to_bytes

log = logging.getLogger("echo")

T = TypeVar("T")

# Exchanges returned by one page script. The inspector's largest page (1000)
# is four round trips; a reply stays under ~50 MB even when every exchange
# carries two full --keep-body bodies, so neither Redis's output
# buffer nor ours balloons on a HAR export.
FETCH_PER_CALL = 250

# Ids one page script may look at before handing back a cursor. A filter that
# matches rarely would otherwise scan the whole history inside one script and
# block Redis for every replica; 2000 hash lookups take a few milliseconds.
SCAN_PER_CALL = 2000

# Expired ids removed from the index per add: far more than the one id an add
# inserts, so expiry keeps up, while no single add does unbounded work.
EXPIRE_PER_CALL = 1000

# A stale pooled connection (Redis restarted) fails once with a connection
# error and is redialled; one retry hides that. Timeouts are not retried:
# a stalled Redis must cost at most --store-timeout, not a multiple of it.
RETRY = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))

_LUA_COMMON = """
local index = KEYS[1]
local xprefix = ARGV[1]
local ttl_ms = tonumber(ARGV[2])

-- The lowest id still within --history-ttl, as a ZRANGEBYLEX bound ('-' when
-- nothing expires). An id starts with its arrival time in microseconds as 16
-- hex digits, so "older than the TTL" is a lexicographic range. Redis's clock
-- is the one every replica shares.
local function live_from()
  if ttl_ms <= 0 then return '-' end
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000000 + tonumber(now[2]) - ttl_ms * 1000
  if cutoff <= 0 then return '-' end
  return '[' .. string.format('%016x', cutoff)
end

-- Drop exchanges (ids[first], ids[first + step], ...) and, unless they have
-- left the index already, their index entries. In chunks, because unpack()
-- is limited by Lua's stack (a few thousand values).
local function forget(ids, first, step, in_index)
  local chunk = 500 * step
  for i = first, #ids, chunk do
    local keys, members = {}, {}
    for j = i, math.min(i + chunk - 1, #ids), step do
      keys[#keys + 1] = xprefix .. ids[j]
      members[#members + 1] = ids[j]
    end
    redis.call('UNLINK', unpack(keys))
    if in_index then redis.call('ZREM', index, unpack(members)) end
  end
end
"""

# KEYS: index, clears, then one exchange key per exchange. ARGV: prefix, ttl_ms,
# expire batch, limit, then per exchange: id, encoded exchange, method,
# status, path, query, bin. An exchange that arrived before a clear of its
# bin or of everything (P:clears) is skipped. A batch is one script, so it is as atomic as one add
# was: every exchange of it is in, and the history trimmed to `limit`, in one
# step no replica can see half of. ZADD of a member already there and HSET of
# a key already there replace, so a batch written again (its reply was lost)
# keeps each exchange once.
# Only adds and clears write: reads keep working on a read-only replica and
# when Redis refuses writes (maxmemory reached).
_LUA_ADD = _LUA_COMMON + """
local from = live_from()
if from ~= '-' then
  -- Expired exchanges' keys are gone already (PEXPIRE); drop their ids too.
  local old = redis.call('ZRANGEBYLEX', index, '-', '(' .. string.sub(from, 2), 'LIMIT', 0, tonumber(ARGV[3]))
  if #old > 0 then forget(old, 1, 1, true) end
end
local everything = tonumber(redis.call('ZSCORE', KEYS[2], '') or -1)
local marks = {}
local function cleared(id, bin)
  -- Microseconds as 16 hex digits: below 2^53, exact in a Lua number.
  local at = tonumber(string.sub(id, 1, 16), 16) or -1
  if at <= everything then return true end
  if bin == '' then return false end
  if marks[bin] == nil then marks[bin] = tonumber(redis.call('ZSCORE', KEYS[2], bin) or -1) end
  return at <= marks[bin]
end
for i = 3, #KEYS do
  local a = 5 + (i - 3) * 7
  if not cleared(ARGV[a], ARGV[a + 6]) then
    redis.call('ZADD', index, 0, ARGV[a])
    redis.call('HSET', KEYS[i], 'd', ARGV[a + 1], 'm', ARGV[a + 2], 's', ARGV[a + 3], 'p', ARGV[a + 4], 'q', ARGV[a + 5], 'b', ARGV[a + 6])
    if ttl_ms > 0 then redis.call('PEXPIRE', KEYS[i], ttl_ms) end
  end
end
if ttl_ms > 0 then
  -- Every id in the index arrived before the last one added: once that
  -- expires, so has the whole history, index included.
  redis.call('PEXPIRE', index, ttl_ms)
end
local excess = redis.call('ZCARD', index) - tonumber(ARGV[4])
if excess > 0 then
  -- Equal scores: ZPOPMIN pops the lexicographically smallest, the oldest.
  -- Its reply alternates member and score.
  forget(redis.call('ZPOPMIN', index, excess), 1, 2, false)
end
return excess
"""

# KEYS: index. ARGV: prefix, ttl_ms, expire batch, upper bound ('+' or '(id'),
# wanted, scan budget, method, status, status class, needle ('' = no filter),
# then the filter's hints (Filter.hints), if any.
# Returns {cursor, scanned, id, data, id, data, ...}; cursor is the last id
# looked at when older ids remain, '' when the index is exhausted; scanned is
# how many ids were looked at.
_LUA_PAGE = _LUA_COMMON + """
local from = live_from()
local upper = ARGV[4]
local want = tonumber(ARGV[5])
local budget = tonumber(ARGV[6])
local method, needle = ARGV[7], ARGV[10]
local status, class = tonumber(ARGV[8]), tonumber(ARGV[9])
local hints = {}
for i = 11, #ARGV do hints[#hints + 1] = ARGV[i] end
local filtered = method ~= '' or status ~= nil or class ~= nil or needle ~= '' or #hints > 0
-- Non-ASCII text, as UTF-8 (codec formats 3 and 2) or as backslash-u escapes (format 1),
-- and any body with a byte past ASCII (format 3 keeps bodies as they are):
-- Python lowercases some of it to ASCII (the Kelvin sign to k), which Lua's
-- byte-wise lower does not, so such an exchange is always sent.
local escape = string.char(92) .. 'u'
local wide = '[' .. string.char(128) .. '-' .. string.char(255) .. ']'
local out = {'', 0}
local found, last, exhausted = 0, nil, false
local scanned = 0

local function matches(key)
  local f = redis.call('HMGET', key, 'm', 's', 'p', 'q')
  if not f[1] then return false end
  if method ~= '' and f[1] ~= method then return false end
  local s = tonumber(f[2])
  if status ~= nil and s ~= status then return false end
  if class ~= nil and math.floor(s / 100) ~= class then return false end
  if needle ~= '' and not string.find(f[3], needle, 1, true)
                  and not string.find(f[4], needle, 1, true) then return false end
  return true
end

-- False when the encoded exchange lacks a hint the filter needs: not worth
-- sending to be decoded and matched (Echo decides for the others).
local function may_hold(data)
  if #hints == 0 or string.find(data, escape, 1, true) or string.find(data, wide) then return true end
  local text = string.lower(data)
  for _, hint in ipairs(hints) do
    if not string.find(text, hint, 1, true) then return false end
  end
  return true
end

while found < want and budget > 0 do
  local batch = math.min(budget, math.max(want - found, filtered and 100 or 0))
  local ids = redis.call('ZREVRANGEBYLEX', index, upper, from, 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    budget = budget - 1
    scanned = scanned + 1
    last = id
    local key = xprefix .. id
    if not filtered or matches(key) then
      local data = redis.call('HGET', key, 'd')
      if data and may_hold(data) then
        out[#out + 1] = id
        out[#out + 1] = data
        found = found + 1
        if found >= want then break end
      end
    end
  end
  if #ids < batch then
    exhausted = true
    break
  end
  upper = '(' .. ids[#ids]
end
if not exhausted and last then
  -- A scan that ends on the oldest id is not cut short: no cursor then.
  local older = redis.call('ZREVRANGEBYLEX', index, '(' .. last, from, 'LIMIT', 0, 1)
  if #older > 0 then out[1] = last end
end
out[2] = scanned
return out
"""

# KEYS: index. ARGV: prefix, ttl_ms, expire batch.
_LUA_COUNT = _LUA_COMMON + """
return redis.call('ZLEXCOUNT', index, live_from(), '+')
"""

# KEYS: index, clears. ARGV: prefix, ttl_ms, expire batch, mark. A clear of
# everything replaces every bin's mark with its own.
_LUA_CLEAR = _LUA_COMMON + """
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[2], ARGV[4], '')
local total = 0
while true do
  local ids = redis.call('ZRANGE', index, 0, 999)
  if #ids == 0 then break end
  forget(ids, 1, 1, true)
  total = total + #ids
end
redis.call('DEL', index)
return total
"""

# KEYS: index, clears. ARGV: bin, mark, oldest mark to keep. Sets the bin's
# mark, forgets marks older than CLEAR_MARK_SECONDS and returns the newest id
# ('' when none), in one step: what a replica adds from now on is refused if
# it arrived before the clear, and what it added before is at or below that id.
_LUA_MARK_BIN = """
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
local newest = redis.call('ZREVRANGEBYLEX', KEYS[1], '+', '-', 'LIMIT', 0, 1)
return newest[1] or ''
"""

# KEYS: index. ARGV: prefix, ttl_ms, expire batch, lower bound ('-' or '(id'),
# upper bound ('[id'), bin, scan budget. Forgets the bin's exchanges among the
# next `budget` ids in the range, oldest first; returns {cursor, forgotten},
# cursor the last id looked at when more may follow, '' when the range is done.
_LUA_CLEAR_BIN = _LUA_COMMON + """
local budget = tonumber(ARGV[7])
local ids = redis.call('ZRANGEBYLEX', index, ARGV[4], ARGV[5], 'LIMIT', 0, budget)
local doomed = {}
for _, id in ipairs(ids) do
  -- An expired or foreign entry has no 'b' (false): it is not in the bin.
  if redis.call('HGET', xprefix .. id, 'b') == ARGV[6] then doomed[#doomed + 1] = id end
end
if #doomed > 0 then forget(doomed, 1, 1, true) end
local cursor = ''
if #ids == budget then cursor = ids[#ids] end
return {cursor, #doomed}
"""


# What Redis (and redis-py) say when a URL carries no password, or the wrong one.
_NO_PASSWORD = ("noauth", "hello must be called", "authentication required")
_BAD_PASSWORD = ("wrongpass", "invalid username-password pair", "invalid password", "user is disabled")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _credentials(exc: BaseException, where: str) -> str | None:
    """What to change when Redis wants other credentials than the URL's; None for other failures."""
    text = _reason(exc)
    lowered = text.lower()
    if any(mark in lowered for mark in _NO_PASSWORD):
        return (f"the Redis at {where} needs a password: put it in the URL, redis://:PASSWORD@host:port/db "
                f"(or redis://USER:PASSWORD@host:port/db for an ACL user)")
    if any(mark in lowered for mark in _BAD_PASSWORD):
        return (f"the Redis at {where} refused the user or password in the URL ({text.rstrip('.')}): "
                f"check redis://[USER]:PASSWORD@host:port/db")
    return None


def _text(value: str) -> bytes:
    # Paths and query strings may hold lone surrogates; encode them the same
    # way on both sides so substring matching in Redis equals matching in Python.
    return value.encode("utf-8", "surrogatepass")


class RedisStore(Store):
    """A bounded history in Redis, shared by every Echo using the same prefix."""

    backend = "redis"

    def __init__(self, url: str, *, limit: int, prefix: str = "echo", timeout: float = 0.5, ttl: float = 0.0) -> None:
        if not prefix:
            raise ConfigError(f"{flag('store_prefix')}: must not be empty for a Redis store")
        if timeout <= 0:
            raise ConfigError(f"{flag('store_timeout')}: must be more than 0 for a Redis store (a dead Redis would hang requests)")
        parts = urlsplit(url)
        url = urlunsplit(parts._replace(scheme=parts.scheme.lower()))
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=RETRY,
                health_check_interval=0,
            )
        except ValueError as exc:
            raise ConfigError(f"{flag('store')}: {exc}") from None
        self._where = self._describe(parts.scheme.lower())
        self._limit = limit
        self._ttl_ms = max(1, round(ttl * 1000)) if ttl > 0 else 0
        self._index = f"{prefix}:ids"
        self._clears = f"{prefix}:clears"
        self._xprefix = f"{prefix}:x:"
        self._prefix = prefix
        self._add = self._client.register_script(_LUA_ADD)
        self._page = self._client.register_script(_LUA_PAGE)
        self._count = self._client.register_script(_LUA_COUNT)
        self._clear = self._client.register_script(_LUA_CLEAR)
        self._clear_bin = self._client.register_script(_LUA_CLEAR_BIN)
        self._mark_bin = self._client.register_script(_LUA_MARK_BIN)
        self._warned_unreadable = False

    def _describe(self, scheme: str) -> str:
        """Where the store lives, for messages: never the password."""
        kwargs = self._client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix:{kwargs['path']} db {kwargs.get('db', 0)}"
        return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (RedisError, OSError) as exc:
            advice = _credentials(exc, self._where)
            if advice:
                raise StoreError(f"redis {what} failed: {advice}") from exc
            raise StoreError(f"redis {self._where}: {what} failed: {_reason(exc)}") from exc

    def _common(self) -> list[Any]:
        return [self._xprefix, self._ttl_ms, EXPIRE_PER_CALL]

    # ---- Store ------------------------------------------------------------

    def add(self, exchange: Exchange) -> None:
        self.add_many((exchange,))

    def add_many(self, exchanges: Sequence[Exchange]) -> None:
        add_by_preparing(self, exchanges)

    def prepare(self, exchange: Exchange) -> Prepared:
        try:
            data = exchange_to_bytes(exchange)
        except CodecError as exc:
            raise UnstorableError(str(exc), 1) from exc
        request = exchange.request
        fields = (exchange.id, data, _text(request.method.upper()), str(exchange.response.status),
                  _text(request.path.lower()), _text(request.query_string.lower()), request.bin or "")
        return Prepared(exchange.id, request.bin, fields, data=data)

    def add_prepared(self, items: Sequence[Prepared]) -> None:
        if self._limit <= 0 or not items:
            return
        keys = [self._index, self._clears]
        args: list[Any] = [*self._common(), self._limit]
        for item in items:
            keys.append(self._xprefix + item.id)
            args += item.fields
        self._call("add", lambda: self._add(keys=keys, args=args))

    def get(self, exchange_id: str) -> Exchange | None:
        data = self._call("get", lambda: self._client.hget(self._xprefix + exchange_id, "d"))
        if data is None:
            return None
        try:
            return exchange_from_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        except CodecError as exc:
            raise StoreError(f"redis {self._where}: exchange {exchange_id}: {exc}") from exc

    def list(self, query: Query) -> list[Exchange]:
        return self._scan(query, None).exchanges

    def page(self, query: Query, max_scan: int) -> Page:
        return self._scan(query, max_scan)

    def _scan(self, query: Query, max_scan: int | None) -> Page:
        """Pages of the page script until the query's limit, the index's end or `max_scan` ids looked at.

        method/status/q are matched inside Redis; the filter language (`f=`) is
        matched here, on exchanges fetched in batches of at most FETCH_PER_CALL.
        """
        upper: str | bytes = "(" + query.before if query.before else "+"
        filters = [
            _text(query.method.upper()) if query.method else b"",
            "" if query.status is None else str(query.status),
            "" if query.status_class is None else str(query.status_class),
            _text(query.q.lower()) if query.q else b"",
        ]
        language = query.filter or None
        hints = list(language.hints) if language else []
        found: list[Exchange] = []
        scanned = 0
        cursor = b""
        while len(found) < query.limit:
            budget = SCAN_PER_CALL if max_scan is None else min(SCAN_PER_CALL, max_scan - scanned)
            if budget <= 0:
                return Page(found, scanned, cursor.decode("ascii"))
            # With a filter to match here, every exchange the budget allows is
            # fetched (in bounded batches); without, only what the page lacks.
            want = min(budget if language else query.limit - len(found), FETCH_PER_CALL)
            args = [*self._common(), upper, want, budget, *filters, *hints]
            reply = self._call("list", functools.partial(self._page, keys=[self._index], args=args))
            cursor = reply[0]
            scanned += int(reply[1])
            for i in range(2, len(reply) - 1, 2):
                exchange = self._decode(reply[i], reply[i + 1])
                if exchange is not None and (language is None or language.matches(exchange)):
                    found.append(exchange)
                    if len(found) >= query.limit:
                        break
            if not cursor:
                break
            upper = b"(" + cursor
        return Page(found, scanned)

    def _decode(self, exchange_id: bytes, data: bytes) -> Exchange | None:
        try:
            return exchange_from_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        except CodecError as exc:
            # One unreadable entry (another version's format, a foreign key
            # under our prefix) must not take every list page down with it.
            if not self._warned_unreadable:
                self._warned_unreadable = True
                log.warning("history store: skipping unreadable exchange %s: %s",
                            exchange_id.decode("ascii", "replace"), exc)
            return None

    def clear(self, bin: str | None = None) -> None:
        mark = clear_mark()
        keys = [self._index, self._clears]
        if bin is None:
            self._call("clear", lambda: self._clear(keys=keys, args=[*self._common(), mark]))
            return
        # A bin's exchanges are spread through the one index: it is walked from
        # the oldest up to the newest id when the bin's mark was set,
        # SCAN_PER_CALL ids per script, so no script blocks Redis for long
        # whatever --history is.
        oldest_kept = mark - CLEAR_MARK_SECONDS * 1_000_000
        newest = self._call("clear", lambda: self._mark_bin(keys=keys, args=[bin, mark, oldest_kept]))
        if not newest:
            return
        lower: str | bytes = "-"
        upper = b"[" + (newest if isinstance(newest, bytes) else newest.encode("ascii"))
        while True:
            args = [*self._common(), lower, upper, bin, SCAN_PER_CALL]
            cursor, _ = self._call("clear", functools.partial(self._clear_bin, keys=[self._index], args=args))
            if not cursor:
                return
            lower = b"(" + cursor

    def count(self) -> int:
        return int(self._call("count", lambda: self._count(keys=[self._index], args=self._common())))

    def health(self) -> Health:
        try:
            kept = int(self._count(keys=[self._index], args=self._common()))
        except (RedisError, OSError) as exc:
            detail = _credentials(exc, self._where) or f"{self._where}: {_reason(exc)}"
            return Health(ok=False, backend=self.backend, detail=detail)
        return Health(ok=True, backend=self.backend,
                      detail=f"{kept} of {self._limit} exchanges kept in {self._where} under {self._prefix}:")

    def counters(self) -> Counters:
        return RedisCounters(self)

    def close(self) -> None:
        self._client.close()


class RedisCounters(Counters):
    """Rule counters in Redis (``P:rule:<key>``): INCR is atomic across replicas,
    so a sequence is shared by every replica answering for the same rule."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._prefix = f"{store._prefix}:rule:"

    def incr(self, key: str) -> int:
        client = self._store._client
        return int(self._store._call("count a rule hit", lambda: client.incr(self._prefix + key)))

    def get(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        client = self._store._client
        values = self._store._call("read rule hits", lambda: client.mget([self._prefix + key for key in keys]))
        return [int(value or 0) for value in values]

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            client = self._store._client
            self._store._call("forget rule hits", lambda: client.delete(*[self._prefix + key for key in keys]))
