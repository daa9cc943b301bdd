"""The filter language against every history backend, and --max-scan.

`backend` is parametrized over the stores: memory, SQLite (a real file),
Redis (a real redis-server), and `generic` (a store with only `list`, so `Store.page`'s
default is what runs, as it does for a backend that does not override it). A
new backend is one more param in `BACKENDS`. Every test asks the same of each:
filtered pages newest first, `before` paging with a filter, the limit, and
`page(query, max_scan)` stopping at the bound and saying where.

Then --max-scan through the real server: the API list and the inspector page
at the bound and one past it, and the setting itself.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echo.history import MemoryStore, Page, Query, Store, redis_store
from echo.history.base import Health
from echo.history.packed import Packed, may_hold, pack
from echo.history.redis_store import RedisStore
from echo.history.sqlite_store import SqliteStore
from echo.model.factory import make_exchange, make_request, make_response
from echo.model.filter import FilterError, parse
from echo.model.records import Exchange

from support import EchoServer, RedisServer, call

BASE_US = 1_767_225_600_000_000
STORE_TIMEOUT = 5.0


def ident(n: int) -> str:
    """The n-th id: sorts by n, like arrival order."""
    return f"{BASE_US + n:016x}0a0b0c0d{n & 0xFFFF:04x}"


def exchange(n: int, method: str = "GET", path: str = "/items", status: int = 200,
             headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> Exchange:
    request = make_request(id=ident(n), method=method, path=path, body=body, started=(BASE_US + n) / 1e6,
                           headers=(("Host", "127.0.0.1:8080"), *headers))
    return make_exchange(request, make_response(status=status))


class ListOnly(Store):
    """A backend with only the abstract methods: `page` is Store's generic one."""

    backend = "generic"

    def __init__(self, limit: int) -> None:
        self._inner = MemoryStore(limit)
        self.list_calls = 0

    def add(self, exchange: Exchange) -> None:
        self._inner.add(exchange)

    def get(self, exchange_id: str) -> Exchange | None:
        return self._inner.get(exchange_id)

    def list(self, query: Query) -> list[Exchange]:
        self.list_calls += 1
        return self._inner.list(query)

    def clear(self) -> None:
        self._inner.clear()

    def count(self) -> int:
        return self._inner.count()

    def health(self) -> Health:
        return self._inner.health()


MakeStore = Callable[[int], Store]
BACKENDS = ["memory", "generic", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    """backend(limit) -> a fresh, empty store of that backend."""
    opened: list[Store] = []

    def make(limit: int) -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(limit)
        elif request.param == "generic":
            store = ListOnly(limit)
        elif request.param == "sqlite":
            folder = request.getfixturevalue("tmp_path")
            store = SqliteStore(f"sqlite:///{folder}/{uuid.uuid4().hex[:8]}.db", limit=limit, timeout=STORE_TIMEOUT)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisStore(server.url, limit=limit, prefix=f"test-{uuid.uuid4().hex[:12]}", timeout=STORE_TIMEOUT)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.clear()
        store.close()


def ids(found: list[Exchange] | Page) -> list[str]:
    return [e.id for e in (found.exchanges if isinstance(found, Page) else found)]


def fill(store: Store, count: int, hook_every: int = 7) -> list[Exchange]:
    """`count` exchanges; every `hook_every`-th is a POST to /hooks/ with X-Event: push."""
    made = []
    for n in range(1, count + 1):
        if n % hook_every == 0:
            made.append(exchange(n, "POST", f"/hooks/{n}", 201, (("X-Event", "push"),), b'{"n": %d}' % n))
        else:
            made.append(exchange(n, "GET", f"/items/{n}", 404 if n % 5 == 0 else 200))
    for item in made:
        store.add(item)
    return made


HOOKS = "method:POST path:/hooks/* header:X-Event=push"


def test_a_filtered_list_is_newest_first_and_only_matches(backend: MakeStore) -> None:
    store = backend(100)
    made = fill(store, 50)
    f = parse(HOOKS)
    expected = [e.id for e in reversed(made) if f.matches(e)]
    assert len(expected) == 7
    assert ids(store.list(Query(limit=50, filter=f))) == expected
    assert ids(store.list(Query(limit=3, filter=f))) == expected[:3]
    assert ids(store.list(Query(limit=50, filter=parse("-" + HOOKS.split()[0])))) == [
        e.id for e in reversed(made) if e.request.method != "POST"]


def test_before_pages_a_filter_without_skipping_or_repeating(backend: MakeStore) -> None:
    store = backend(100)
    made = fill(store, 60, hook_every=4)
    f = parse("status:2xx -path:/hooks/1*")
    expected = [e.id for e in reversed(made) if f.matches(e)]
    seen: list[str] = []
    before = None
    while True:
        page = store.list(Query(limit=4, before=before, filter=f))
        seen += ids(page)
        if len(page) < 4:
            break
        before = page[-1].id
    assert seen == expected


def test_a_filter_combines_with_method_status_and_q(backend: MakeStore) -> None:
    store = backend(100)
    made = fill(store, 40, hook_every=3)
    query = Query(limit=100, method="GET", status_class=2, q="items/1", filter=parse("-path:/items/11"))
    assert ids(store.list(query)) == [e.id for e in reversed(made) if query.matches(e)]
    assert ids(store.list(query)) == [ident(n) for n in (19, 17, 16, 14, 13, 10, 1)
                                      if n % 3 and n % 5]


def test_a_page_that_fills_before_the_bound_is_not_stopped(backend: MakeStore) -> None:
    store = backend(100)
    fill(store, 30)
    page = store.page(Query(limit=2, filter=parse("method:POST")), max_scan=20)
    assert ids(page) == [ident(28), ident(21)]
    assert page.stopped is None


def test_a_scan_that_ends_at_the_oldest_exactly_at_the_bound_is_complete(backend: MakeStore) -> None:
    store = backend(100)
    fill(store, 10)
    page = store.page(Query(limit=5, filter=parse("method:DELETE")), max_scan=10)
    assert page == Page([], 10, None)


def test_one_past_the_bound_stops_and_says_where(backend: MakeStore) -> None:
    store = backend(100)
    fill(store, 11)
    f = parse("method:DELETE")
    page = store.page(Query(limit=5, filter=f), max_scan=10)
    # The ten newest (11..2) were examined; going on before 2 examines 1.
    assert page == Page([], 10, ident(2))
    rest = store.page(Query(limit=5, before=page.stopped, filter=f), max_scan=10)
    assert rest == Page([], 1, None)


def test_what_lies_past_the_bound_is_found_by_going_on(backend: MakeStore) -> None:
    store = backend(100)
    for n in range(1, 26):
        store.add(exchange(n, "POST" if n in (1, 2, 20) else "GET"))
    f = parse("method:POST")
    page = store.page(Query(limit=5, filter=f), max_scan=10)
    assert ids(page) == [ident(20)] and page.stopped == ident(16) and page.scanned == 10
    page = store.page(Query(limit=5, before=page.stopped, filter=f), max_scan=10)
    assert ids(page) == [] and page.stopped == ident(6)
    page = store.page(Query(limit=5, before=page.stopped, filter=f), max_scan=10)
    assert ids(page) == [ident(2), ident(1)] and page.stopped is None and page.scanned == 5


def test_the_bound_counts_what_method_status_and_q_skip_too(backend: MakeStore) -> None:
    store = backend(100)
    fill(store, 11)
    page = store.page(Query(limit=5, method="DELETE"), max_scan=10)
    assert page == Page([], 10, ident(2))


def test_an_unfiltered_page_is_bounded_too(backend: MakeStore) -> None:
    store = backend(100)
    fill(store, 11)
    assert store.page(Query(limit=3), max_scan=10) == Page(store.list(Query(limit=3)), 3, None)
    page = store.page(Query(limit=50), max_scan=10)
    assert ids(page) == [ident(n) for n in range(11, 1, -1)] and page.stopped == ident(2)


def test_list_is_a_page_without_a_bound(backend: MakeStore) -> None:
    store = backend(5000)
    made = fill(store, 3000, hook_every=1000)
    assert ids(store.list(Query(limit=10, filter=parse("method:POST")))) == [ident(3000), ident(2000), ident(1000)]
    assert len(made) == store.count()


@pytest.mark.redis
def test_redis_small_batches_give_the_same_pages_as_memory(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches and budgets that end mid-page, mid-scan and on the oldest id:
    # the cursor arithmetic must not skip, repeat or misreport a stop.
    monkeypatch.setattr(redis_store, "FETCH_PER_CALL", 3)
    monkeypatch.setattr(redis_store, "SCAN_PER_CALL", 5)
    rng = random.Random(7)
    memory = MemoryStore(200)
    redis = RedisStore(redis_server.url, limit=200, prefix=f"test-{uuid.uuid4().hex[:12]}", timeout=STORE_TIMEOUT)
    try:
        for n in range(1, 121):
            item = exchange(n, rng.choice(["GET", "POST", "PUT"]), rng.choice(["/a", "/hooks/x", "/b/c"]),
                            rng.choice([200, 201, 404, 500]),
                            (("X-Event", rng.choice(["push", "tag"])),) if rng.random() < 0.5 else ())
            memory.add(item)
            redis.add(item)
        filters = ["method:POST", "path:/hooks/* header:X-Event=push", "-status:2xx", "status:5xx method:PUT", ""]
        for _ in range(60):
            f = rng.choice(filters)
            query = Query(limit=rng.randint(1, 12), before=rng.choice([None, ident(rng.randint(1, 121))]),
                          method=rng.choice([None, None, "GET"]), filter=parse(f) if f else None)
            max_scan = rng.randint(1, 40)
            assert redis.list(query) == memory.list(query), (f, query)
            got, want = redis.page(query, max_scan), memory.page(query, max_scan)
            assert (ids(got), got.stopped) == (ids(want), want.stopped), (f, query, max_scan)
            if got.stopped:
                assert got.scanned == want.scanned == max_scan
    finally:
        redis.clear()
        redis.close()


def test_the_generic_page_reads_in_bounded_batches() -> None:
    store = ListOnly(2000)
    fill(store, 1000, hook_every=2000)
    store.list_calls = 0
    page = store.page(Query(limit=5, filter=parse("method:POST")), max_scan=600)
    assert page.stopped == ident(401) and page.scanned == 600
    # 250 + 250 + 100, and one look past the bound: never one call per exchange.
    assert store.list_calls == 4


# ---- --max-scan through the real server ------------------------------------


def api(server: EchoServer, path: str) -> tuple[int, Any]:
    status, _, body = call(server.port, "GET", path)
    return status, json.loads(body)


def send_items(server: EchoServer, count: int) -> list[str]:
    sent = []
    for n in range(count):
        status, headers, _ = call(server.port, "GET", f"/items/{n}")
        assert status == 200
        sent.append(headers["X-Echo-Id"])
    return sent


def test_the_api_list_at_max_scan_is_complete(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--max-scan", "5", "--log", "off")
    send_items(server, 5)
    status, doc = api(server, "/_/api/exchanges?f=" + quote("method:POST"))
    assert status == 200
    assert doc == {"exchanges": []}


def test_the_api_list_one_past_max_scan_is_partial_with_next(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--max-scan", "5", "--log", "off")
    sent = send_items(server, 6)
    status, doc = api(server, "/_/api/exchanges?f=" + quote("path:/items/0"))
    assert status == 200
    assert doc == {"exchanges": [], "next": sent[1], "partial": True, "scanned": 5}
    status, doc = api(server, f"/_/api/exchanges?before={doc['next']}&f=" + quote("path:/items/0"))
    assert status == 200
    assert [x["id"] for x in doc["exchanges"]] == [sent[0]] and "partial" not in doc and "next" not in doc
    # A full page stops at the page, not the bound: next is its last exchange, not partial.
    status, doc = api(server, "/_/api/exchanges?limit=2&f=" + quote("path:/items/*"))
    assert doc == {"exchanges": doc["exchanges"], "next": sent[4]} and len(doc["exchanges"]) == 2


def test_the_inspector_page_says_where_a_bounded_scan_stopped(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--max-scan", "5", "--log", "off")
    sent = send_items(server, 6)
    status, _, body = call(server.port, "GET", "/_/?f=" + quote("path:/items/0"))
    page = body.decode()
    assert status == 200
    assert '<p id="partial" class="warn">' in page
    assert f"before={sent[1]}" in page and 'id="older"' in page
    # A page (of 2 rows, plus one to know of an older page) that fills within the bound.
    status, _, body = call(server.port, "GET", "/_/?limit=2&f=" + quote("path:/items/*"))
    assert '<p id="partial" class="warn" hidden>' in body.decode()


def test_the_har_export_is_not_cut_by_max_scan(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--max-scan", "2", "--log", "off")
    send_items(server, 4)
    status, doc = api(server, "/_/api/exchanges.har?f=" + quote("path:/items/*"))
    assert status == 200 and len(doc["log"]["entries"]) == 4


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--max-scan", "0"], {}, "--max-scan: 0 is out of range: must be at least 1"),
    ([], {"ECHO_MAX_SCAN": "many"}, "ECHO_MAX_SCAN: 'many' is not a whole number"),
])
def test_a_bad_max_scan_is_one_line_and_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")} | env
    done = subprocess.run([sys.executable, "-m", "echo", "--port", "0", *args], capture_output=True, text=True,
                          env=environment, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"echo-server: error: {message}"]


def test_max_scan_is_in_help_with_its_variable() -> None:
    done = subprocess.run([sys.executable, "-m", "echo", "--help"], capture_output=True, text=True, timeout=30)
    assert "--max-scan N" in done.stdout and "ECHO_MAX_SCAN" in done.stdout


# ---- the memory store's pre-check (Filter.hints on packed text) ------------

# Characters that lowercase oddly ("K" Kelvin sign to k, "İ" to i + a dot, "ſ"
# uppercases to S), that JSON escapes, and plain ones.
ODD = st.text(alphabet=st.sampled_from([*"aAbBkKsS/-_.=*:5", "\u212a", "\u0130", "\u017f", "\u00e9", "\u03a3",
                                         '"', "\\", " ", "\x01", "\x7f"]), max_size=8)


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def around(draw: Any, text: str) -> str:
    """A glob that `text` matches (a slice of it between stars), or the text itself."""
    if not text or draw(st.booleans()):
        return text if "*" not in text else "*"
    i = draw(st.integers(0, len(text) - 1))
    j = draw(st.integers(i, len(text)))
    return "*" + text[i:j].replace("*", "") + "*"


def flip(draw: Any, text: str) -> str:
    return "".join(c.swapcase() if draw(st.booleans()) else c for c in text)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_the_pre_check_never_hides_a_match(data: st.DataObject) -> None:
    draw = data.draw
    path, query, name, value, rule, word = (draw(ODD) for _ in range(6))
    item = make_exchange(
        make_request(path="/" + path, query=quote(query), headers=(("Host", "h"), ("X-" + name, value)),
                     remote_addr=draw(st.sampled_from(["127.0.0.1", "::1", "10.0.0.K"])),
                     bin=draw(st.sampled_from([None, "team-a"])), bin_path=draw(st.sampled_from([None, "/" + path])),
                     body=draw(st.sampled_from([b"", b"{}"]))),  # kept as bytes alone, or with its body
        make_response(status=draw(st.sampled_from([200, 404, 503]))),
        rule=draw(st.sampled_from([None, {"name": rule, "id": "r", "step": 0}])),
        controls=draw(st.sampled_from([None, {}])),  # by reference (Packed), or none to keep
    )
    kept = pack(item)
    if isinstance(kept, Exchange):  # kept as the records: nothing to pre-check
        return
    request = item.request
    candidates = [
        "path:" + quoted(around(draw, request.path)),
        "path:" + quoted(around(draw, request.bin_path or "/")) + " bin:team-a",
        "header:" + quoted(flip(draw, "X-" + name) + "=" + around(draw, value)),
        "header:" + quoted(flip(draw, "X-" + name)),
        "query:" + quoted(request.args[0][0] + "=" + around(draw, request.args[0][1])) if request.args else "x",
        "client:" + quoted(around(draw, request.remote_addr)),
        "rule:" + quoted(around(draw, rule)),
        "status:" + str(item.response.status),
        quoted(flip(draw, word)) if word.strip() else "y",
        quoted(flip(draw, path[:3])) if path.strip() else "z",
        # Lowercased first: "K" (Kelvin) matches the ASCII word "k", whose hint must still be found.
        quoted(request.path.lower()[1:4]) if path.strip() else "z",
        "header:" + quoted(("X-" + name).lower()),
    ]
    text = " ".join(draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=3)))
    try:
        f = parse(text)
    except FilterError:
        return
    if f.matches(item):
        assert may_hold(kept, f.hints), (text, f.hints, kept)


def test_the_pre_check_skips_what_cannot_match() -> None:
    f = parse("method:POST path:/hooks/* header:X-Event=push")
    assert f.hints == (b"/hooks/", b"x-event", b"push")
    assert parse("-path:/x status:4xx method:GET body:a json:a=1").hints == ()
    assert parse("status:404 query:page=2* bin:b1 hooks").hints == (b"404", b"page", b"2", b"b1", b"hooks")
    hook = pack(exchange(1, "POST", "/hooks/gh", headers=(("x-EVENT", "push"),)))
    other = pack(exchange(2, "POST", "/hooks/gh", headers=(("X-Event", "tag"),)))
    assert isinstance(hook, Packed) and isinstance(other, Packed)
    assert may_hold(hook, f.hints) and not may_hold(other, f.hints)


@pytest.mark.parametrize(("text", "fields"), [
    ('"k"', {"path": "/\u212a"}),  # the Kelvin sign lowercases to an ASCII k
    ("i", {"path": "/\u0130x"}),  # "İ" lowercases to i and a combining dot
    ("header:X-k", {"headers": (("X-\u212a", "1"),)}),
    ("query:\u212a", {"query": "%E2%84%AA=1"}),
])
def test_the_pre_check_lowercases_as_matching_does(text: str, fields: dict[str, Any]) -> None:
    item = make_exchange(make_request(**fields))
    kept = pack(item)
    f = parse(text)
    assert isinstance(kept, Packed) and f.matches(item)
    assert may_hold(kept, f.hints)


def test_every_backend_finds_what_lowercases_oddly(backend: MakeStore) -> None:
    # A store that pre-checks literal texts must lowercase as matching does.
    store = backend(10)
    odd = make_exchange(make_request(id=ident(1), path="/\u212a", headers=(("X-\u212a", "push"),)))
    plain = make_exchange(make_request(id=ident(2), path="/other"))
    store.add(odd)
    store.add(plain)
    for text in ('"k"', "header:X-k=push", "path:/* header:x-K"):
        assert ids(store.list(Query(filter=parse(text)))) == [ident(1)], text
    assert ids(store.list(Query(filter=parse("other")))) == [ident(2)]
