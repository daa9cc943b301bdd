"""The history store contract, run against every backend; then what only Redis adds.

`TestStoreContract` is written once and runs against `MemoryStore` and
`RedisStore` (on a real redis-server). Every test gets two handles on one
history: for memory both are the same store, for Redis they are two clients
on one key prefix, like two replicas, so "write through one, read through the
other" is part of the contract. Then: the codec's round trip, and the Redis
store's key layout, round trips, expiry and failure behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo.config import ConfigError
from echo.history import MemoryStore, Query, Store, StoreError, codec, packed, redis_store, sqlite_store
from echo.history.codec import CodecError, exchange_from_bytes, exchange_to_bytes
from echo.history.packed import Packed, pack, unpack
from echo.history.redis_store import RedisStore
from echo.history.sqlite_store import SqliteStore
from echo.model.factory import make_exchange, make_request, make_response
from echo.model.records import JSON_FROM_BODY, Exchange, FileInfo, IdSource, RequestRecord, ResponseRecord

from support import RedisServer, free_port, need

# Generous: a loaded CI machine must not turn a slow answer into a failure.
STORE_TIMEOUT = 5.0
# Short: for the tests that make Redis stall on purpose.
STALL_TIMEOUT = 0.3
# 2026-01-01T00:00:00Z in microseconds: ids in the contract tests are built
# from it so their order is the order the test says.
BASE_US = 1_767_225_600_000_000


def ident(n: int, node: str = "0a0b0c0d") -> str:
    """The n-th id: sorts (as a string) by n, like `IdSource` ids by arrival."""
    return f"{BASE_US + n:016x}{node}{n & 0xFFFF:04x}"


def exchange(
    n: int | str,
    method: str = "GET",
    path: str = "/items",
    query: str = "",
    status: int = 200,
    **request_fields: Any,
) -> Exchange:
    exchange_id = n if isinstance(n, str) else ident(n)
    request_fields.setdefault("started", (BASE_US + 1) / 1_000_000)
    request_fields.setdefault("body_sha256", "0" * 64)
    return make_exchange(
        make_request(id=exchange_id, method=method, path=path, query=query, **request_fields),
        make_response(
            status=status,
            headers=(("Content-Type", "application/json"), ("X-Echo-Id", exchange_id)),
            body_sha256="1" * 64,
        ),
    )


def full_exchange() -> Exchange:
    """Every field set to something that a lossy format would get wrong."""
    request = RequestRecord(
        id=ident(7),
        started=1_767_225_600.123456,
        method="PROPFIND",
        url="http://127.0.0.1:8080/caf%C3%A9/%E2%9C%93?x=1&x=2&empty=",
        path="/café/✓",
        query_string="x=1&x=2&empty=",
        http_version="HTTP/1.0",
        remote_addr="::1",
        args=(("x", "1"), ("x", "2"), ("empty", "")),
        headers=(("Host", "h"), ("X-Dup", "a"), ("X-Dup", "b"), ("X-Latin", "caf\xe9"), ("Content-Type", "multipart/form-data")),
        cookies=(("sid", "abc"), ("sid", "def")),
        form=(("name", "Ada"), ("name", "Grace"), ("emoji", "\U0001f600"), ("lone", "\ud800")),
        files=(
            FileInfo(field="avatar", filename="a.png", content_type="image/png", size=4, sha256="a" * 64),
            FileInfo(field="avatar", filename="", content_type="", size=0, sha256="b" * 64),
        ),
        json={"n": [1, -0.0, 2.5e-310, 10**40, True, False, None], "s": "\u2028\x00\"\\", "": {}, "l": []},
        body=b"\x00\xff\xfe\x80not utf-8\r\n",
        body_size=1_000_000,
        body_sha256="c" * 64,
        content=b"\x1f\x8b\x08decoded \xc3(",
        content_encoding="gzip",
        errors=("invalid JSON: Expecting value", "second"),
        truncated=True,
        too_large=True,
        bin="ci-job_7",
        bin_path="/hooks/café",
    )
    response = ResponseRecord(
        status=599,
        headers=(("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Type", "application/octet-stream")),
        body=b"\x89PNG\r\n\x1a\n\x00",
        body_size=9,
        body_sha256="d" * 64,
        content_type="application/octet-stream",
        truncated=True,
    )
    controls = {
        "status": 599,
        "headers": [{"name": "X-A", "value": "1"}],
        "cookies": ["a=1; Path=/"],
        "delay": 0.25,
        "body": {"size": 9, "content_type": "application/octet-stream"},
    }
    return Exchange(request=request, response=response, controls=controls, duration_ms=12.345678901234,
                    rule={"name": "fails twice", "id": "r1", "step": 1})


def ids_of(found: list[Exchange]) -> list[str]:
    return [e.id for e in found]


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


OpenStore = Callable[[int], tuple[Store, Store]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def open_store(request: pytest.FixtureRequest) -> Iterator[OpenStore]:
    """open_store(limit) -> (writer, reader): two handles on one fresh history."""
    opened: list[Store] = []

    if request.param == "memory":
        def make(limit: int) -> tuple[Store, Store]:
            store = MemoryStore(limit)
            opened.append(store)
            return store, store
    elif request.param == "sqlite":
        # One store, so reads see its own not-yet-written adds; two stores on
        # one file run this contract again in test_sqlite_store.py.
        folder: Path = request.getfixturevalue("tmp_path")

        def make(limit: int) -> tuple[Store, Store]:
            store = SqliteStore(f"sqlite:///{folder}/history-{len(opened)}.db", limit=limit, timeout=STORE_TIMEOUT)
            opened.append(store)
            return store, store
    else:
        server: RedisServer = request.getfixturevalue("redis_server")

        def make(limit: int) -> tuple[Store, Store]:
            prefix = unique_prefix()
            pair = tuple(
                RedisStore(server.url, limit=limit, prefix=prefix, timeout=STORE_TIMEOUT) for _ in range(2)
            )
            opened.extend(pair)
            return pair  # type: ignore[return-value]

    yield make
    for store in opened:
        store.clear()
        store.close()


class TestStoreContract:
    def test_get_gives_back_every_field_of_what_was_added(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        original = full_exchange()
        writer.add(original)
        assert reader.get(original.id) == original
        assert reader.list(Query()) == [original]

    def test_get_of_an_unknown_id_is_none(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        writer.add(exchange(1))
        assert reader.get(ident(2)) is None
        assert reader.get("f" * 28) is None

    def test_list_is_newest_first(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        for n in range(1, 6):
            writer.add(exchange(n))
        assert ids_of(reader.list(Query())) == [ident(n) for n in (5, 4, 3, 2, 1)]

    def test_an_older_id_added_after_a_newer_one_is_listed_in_id_order(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        for n in (2, 4, 1, 3):
            writer.add(exchange(n))
        assert ids_of(reader.list(Query())) == [ident(n) for n in (4, 3, 2, 1)]

    def test_adding_the_same_id_again_keeps_it_once(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        writer.add(exchange(1, status=200))
        reader.add(exchange(1, status=500))
        assert reader.count() == 1
        assert [e.response.status for e in writer.list(Query())] == [500]

    @pytest.mark.parametrize("limit, expected", [(1, [5]), (4, [5, 4, 3, 2]), (5, [5, 4, 3, 2, 1]), (6, [5, 4, 3, 2, 1])])
    def test_query_limit_gives_at_most_that_many_newest(self, open_store: OpenStore, limit: int, expected: list[int]) -> None:
        writer, reader = open_store(10)
        for n in range(1, 6):
            writer.add(exchange(n))
        assert ids_of(reader.list(Query(limit=limit))) == [ident(n) for n in expected]

    @pytest.mark.parametrize("page", [1, 2, 6, 7, 8])
    def test_before_pages_through_everything_once_newest_first(self, open_store: OpenStore, page: int) -> None:
        writer, reader = open_store(20)
        for n in range(1, 8):
            writer.add(exchange(n))
        seen: list[str] = []
        before: str | None = None
        for _ in range(10):  # 7 pages at most; a paging bug must fail, not loop
            found = reader.list(Query(limit=page, before=before))
            assert len(found) <= page
            if not found:
                break
            seen.extend(ids_of(found))
            before = found[-1].id
        assert seen == [ident(n) for n in range(7, 0, -1)]

    @pytest.mark.parametrize("before, expected", [
        (ident(4), [3, 2, 1]),     # exclusive of the id itself
        (ident(1), []),            # nothing is older than the oldest
        (ident(3)[:-1] + "f", [3, 2, 1]),  # an id that is not kept is still a position
        (ident(99), [5, 4, 3, 2, 1]),
    ])
    def test_before_is_a_position_in_id_order(self, open_store: OpenStore, before: str, expected: list[int]) -> None:
        writer, reader = open_store(10)
        for n in range(1, 6):
            writer.add(exchange(n))
        assert ids_of(reader.list(Query(before=before))) == [ident(n) for n in expected]

    FILTER_DATA = [
        (1, "GET", "/orders/1", "", 200),
        (2, "POST", "/orders", "x=1", 201),
        (3, "DELETE", "/orders/1", "", 404),
        (4, "PURGE", "/Health", "verbose=YES", 503),
        (5, "POST", "/upload", "", 413),
        (6, "PUT", "/orders/2", "q=orders", 200),
        (7, "GET", "/Café", "", 302),
    ]

    @pytest.mark.parametrize("filters, expected", [
        ({"method": "POST"}, [5, 2]),
        ({"method": "post"}, [5, 2]),
        ({"method": "purge"}, [4]),
        ({"method": "PATCH"}, []),
        ({"status": 200}, [6, 1]),
        ({"status": 404}, [3]),
        ({"status": 418}, []),
        ({"status_class": 2}, [6, 2, 1]),
        ({"status_class": 3}, [7]),
        ({"status_class": 4}, [5, 3]),
        ({"status_class": 5}, [4]),
        ({"status_class": 1}, []),
        ({"q": "orders"}, [6, 3, 2, 1]),   # 6 matches in path and query: listed once
        ({"q": "ORDERS/1"}, [3, 1]),
        ({"q": "verbose=yes"}, [4]),       # query string, any case
        ({"q": "health"}, [4]),            # path, any case
        ({"q": "x=1"}, [2]),
        ({"q": "CAFÉ"}, [7]),              # case-insensitive beyond ASCII
        ({"q": "no such text"}, []),
        ({"method": "POST", "status_class": 4}, [5]),
        ({"method": "GET", "q": "orders"}, [1]),
        ({"status_class": 2, "limit": 2}, [6, 2]),
        ({"status_class": 2, "before": ident(2)}, [1]),
        ({"q": "orders", "before": ident(6), "limit": 2}, [3, 2]),
    ])
    def test_filters(self, open_store: OpenStore, filters: dict[str, Any], expected: list[int]) -> None:
        writer, reader = open_store(20)
        for n, method, path, query, status in self.FILTER_DATA:
            writer.add(exchange(n, method=method, path=path, query=query, status=status))
        assert ids_of(reader.list(Query(**filters))) == [ident(n) for n in expected]

    def test_clear_forgets_everything_and_recording_goes_on(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        for n in range(1, 4):
            writer.add(exchange(n))
        reader.clear()
        assert writer.count() == 0
        assert writer.list(Query()) == []
        assert writer.get(ident(1)) is None
        # What arrives after the clear is kept (a shared store refuses what arrived before it).
        after, _ = IdSource().next()
        writer.add(exchange(after))
        assert ids_of(reader.list(Query())) == [after]

    def test_count_is_the_number_kept(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        assert reader.count() == 0
        for n in range(1, 4):
            writer.add(exchange(n))
        assert reader.count() == 3

    @pytest.mark.parametrize("added", [2, 3, 4, 9])  # limit - 1, limit, limit + 1, far past it
    def test_the_bound_drops_the_oldest(self, open_store: OpenStore, added: int) -> None:
        limit = 3
        writer, reader = open_store(limit)
        for n in range(1, added + 1):
            writer.add(exchange(n))
        kept = list(range(added, max(added - limit, 0), -1))
        assert reader.count() == len(kept)
        assert ids_of(reader.list(Query(limit=100))) == [ident(n) for n in kept]
        for n in range(1, added - limit + 1):
            assert reader.get(ident(n)) is None

    def test_the_bound_drops_an_old_exchange_that_arrives_last(self, open_store: OpenStore) -> None:
        writer, reader = open_store(2)
        for n in (2, 3, 1):
            writer.add(exchange(n))
        assert ids_of(reader.list(Query())) == [ident(3), ident(2)]
        assert reader.get(ident(1)) is None

    def test_history_zero_keeps_nothing(self, open_store: OpenStore) -> None:
        writer, reader = open_store(0)
        writer.add(exchange(1))
        assert reader.count() == 0
        assert reader.list(Query()) == []
        assert reader.get(ident(1)) is None

    def test_concurrent_adds_are_all_kept_exactly_once(self, open_store: OpenStore) -> None:
        threads, each = 8, 50
        writer, reader = open_store(threads * each)
        source = IdSource()
        errors: list[BaseException] = []

        def send(store: Store) -> None:
            try:
                for _ in range(each):
                    store.add(exchange(source.next()[0]))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        workers = [threading.Thread(target=send, args=((writer, reader)[i % 2],)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        found = ids_of(reader.list(Query(limit=threads * each)))
        assert len(found) == threads * each == len(set(found)) == reader.count()
        assert found == sorted(found, reverse=True)

    def test_concurrent_adds_past_the_bound_keep_exactly_the_newest(self, open_store: OpenStore) -> None:
        threads, each, limit = 8, 25, 40
        writer, reader = open_store(limit)
        numbers = list(range(1, threads * each + 1))
        random.Random(7).shuffle(numbers)  # arrival order is not id order
        errors: list[BaseException] = []

        def send(store: Store, mine: list[int]) -> None:
            try:
                for n in mine:
                    store.add(exchange(n))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        workers = [
            threading.Thread(target=send, args=((writer, reader)[i % 2], numbers[i::threads])) for i in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        # Whatever the interleaving, each add keeps the `limit` largest ids
        # seen so far, so the end state is the `limit` largest of all.
        assert ids_of(reader.list(Query(limit=1000))) == [ident(n) for n in range(threads * each, threads * each - limit, -1)]
        assert reader.count() == limit

    def test_health_is_ok_while_the_store_answers(self, open_store: OpenStore) -> None:
        writer, reader = open_store(10)
        health = reader.health()
        assert health.ok
        assert health.backend == writer.backend


# ---- the codec -------------------------------------------------------------

_text = st.text(max_size=20)
_pairs = st.lists(st.tuples(_text, _text), max_size=4).map(tuple)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)
_finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def exchanges(draw: st.DrawFn) -> Exchange:
    body = draw(st.binary(max_size=64))
    request = RequestRecord(
        id=draw(st.from_regex(r"[0-9a-f]{28}", fullmatch=True)),
        started=draw(_finite), method=draw(_text), url=draw(_text), path=draw(_text),
        query_string=draw(_text), http_version=draw(_text), remote_addr=draw(_text),
        args=draw(_pairs), headers=draw(_pairs), cookies=draw(_pairs), form=draw(_pairs),
        files=tuple(draw(st.lists(st.builds(FileInfo, _text, _text, _text, st.integers(0), _text), max_size=2))),
        json=draw(_json), body=body, body_size=draw(st.integers(0)), body_sha256=draw(_text),
        content=draw(st.none() | st.binary(max_size=32)), content_encoding=draw(st.none() | _text),
        errors=tuple(draw(st.lists(_text, max_size=3))), truncated=draw(st.booleans()), too_large=draw(st.booleans()),
        bin=draw(st.none() | _text), bin_path=draw(st.none() | _text),
    )
    response = ResponseRecord(
        status=draw(st.integers(100, 599)), headers=draw(_pairs), body=draw(st.none() | st.binary(max_size=32)),
        body_size=draw(st.integers(0)), body_sha256=draw(_text), content_type=draw(_text), truncated=draw(st.booleans()),
    )
    controls = draw(st.dictionaries(_text, _json, max_size=3))
    rule = draw(st.none() | st.fixed_dictionaries({"name": _text, "id": _text, "step": st.integers(0, 99)}))
    return Exchange(request=request, response=response, controls=controls, duration_ms=draw(_finite), rule=rule)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def two_replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two stores on one shared history, as two replicas (or processes) have them."""
    if request.param == "sqlite":
        path = tmp_path / "shared.db"
        pair: tuple[Store, Store] = (SqliteStore(f"sqlite:///{path}", limit=100, timeout=STORE_TIMEOUT),
                                     SqliteStore(f"sqlite:///{path}", limit=100, timeout=STORE_TIMEOUT))
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix = unique_prefix()
        pair = (RedisStore(server.url, limit=100, prefix=prefix, timeout=STORE_TIMEOUT),
                RedisStore(server.url, limit=100, prefix=prefix, timeout=STORE_TIMEOUT))
    yield pair
    pair[0].clear()
    for store in pair:
        store.close()


def marks_of(store: Store) -> dict[str, int]:
    """The clears a shared store remembers: bin ('' for everything) -> mark."""
    if isinstance(store, SqliteStore):
        return dict(store._conn().execute("SELECT bin, mark FROM clears").fetchall())
    assert isinstance(store, RedisStore)
    return {k.decode(): int(v) for k, v in store._client.zrange(f"{store._prefix}:clears", 0, -1, withscores=True)}


class TestClearsOnASharedStore:
    """A replica may write an exchange after another cleared the history (its
    batch was filling, or the store was down): what arrived before the clear is
    refused then, on every replica, and what arrives after is kept."""

    def test_an_exchange_that_arrived_before_a_bin_clear_is_refused_when_written_after(
            self, two_replicas: tuple[Store, Store]) -> None:
        first, second = two_replicas
        ids = IdSource()
        early_a, early_b, early_none = (ids.next()[0] for _ in range(3))
        second.clear("a")  # while the first still holds its three, unwritten
        late_a = ids.next()[0]
        first.add_many([exchange(early_a, bin="a"), exchange(early_b, bin="b"), exchange(early_none),
                        exchange(late_a, bin="a")])
        assert ids_of(second.list(Query())) == [late_a, early_none, early_b]

    def test_an_exchange_that_arrived_before_a_clear_of_everything_is_refused(
            self, two_replicas: tuple[Store, Store]) -> None:
        first, second = two_replicas
        ids = IdSource()
        early = ids.next()[0]
        second.clear()
        late = ids.next()[0]
        first.add_many([exchange(early), exchange(late)])
        assert ids_of(second.list(Query())) == [late]
        assert second.get(early) is None

    def test_marks_past_the_horizon_are_forgotten_and_a_full_clear_keeps_one(
            self, two_replicas: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch) -> None:
        first, second = two_replicas
        second.clear("a")
        second.clear("b")
        assert set(marks_of(first)) == {"a", "b"}
        # With no horizon, the next bin clear forgets every older mark.
        monkeypatch.setattr(redis_store, "CLEAR_MARK_SECONDS", 0)
        monkeypatch.setattr(sqlite_store, "CLEAR_MARK_SECONDS", 0)
        time.sleep(0.002)
        second.clear("c")
        assert set(marks_of(first)) == {"c"}
        second.clear()
        assert set(marks_of(first)) == {""}


class TestCodec:
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(exchanges())
    def test_round_trip_is_exact(self, original: Exchange) -> None:
        data = exchange_to_bytes(original)
        assert data.startswith(b"[3,") or (data.startswith(b'{"v":1,') and data.isascii())
        assert exchange_from_bytes(data) == original

    def test_an_ordinary_exchange_is_written_by_orjson_with_its_bodies_as_they_are(self) -> None:
        wire = wire_exchange()
        original = dataclasses.replace(wire, request=dataclasses.replace(wire.request, json={"n": [1, -0.0], "s": "\u2028"}))
        data = exchange_to_bytes(original)
        head, _, bodies = data.partition(b"\n")
        assert head.startswith(b"[3,") and head.endswith(b"]")
        assert "\U0001f600".encode() in head  # UTF-8, not escaped
        request, response = original.request, original.response
        assert response.body is not None and request.content is not None
        assert bodies == request.body + request.content + response.body  # no base64
        assert exchange_from_bytes(data) == original

    def test_a_body_with_newlines_and_any_bytes_is_kept_exactly(self) -> None:
        body = bytes(range(256)) * 3 + b"\n\n"
        original = exchange(1, body=body)
        again = exchange_from_bytes(exchange_to_bytes(original))
        assert again.request.body == body and again == original

    def test_what_orjson_cannot_write_exactly_is_written_by_the_standard_library(self) -> None:
        original = full_exchange()  # an integer over 64 bits and a lone surrogate
        data = exchange_to_bytes(original)
        assert data.startswith(b'{"v":1,') and data.isascii()
        again = exchange_from_bytes(data)
        assert again == original and again.request.json["n"][3] == 10**40

    def test_read_only_controls_shared_by_exchanges_are_copied_once_and_written_as_they_are(self) -> None:
        shared = MappingProxyType({"status": 201, "headers": [], "cookies": [], "delay": 0.25})
        first, second = (dataclasses.replace(exchange(n), controls=shared) for n in (1, 2))
        data = exchange_to_bytes(first)
        assert data.startswith(b"[3,")
        index = packed.shared_index(shared)
        assert index is not None and packed._SHARED_CONTROLS[index] is shared  # held, so its id stays its own
        again = exchange_from_bytes(exchange_to_bytes(second))
        assert again == second and again.controls == dict(shared)
        assert exchange_from_bytes(data) == first

    def test_read_only_controls_that_are_not_finite_are_written_exactly_every_time(self) -> None:
        shared = MappingProxyType({"status": 200, "delay": math.inf})
        for n in (1, 2):  # the second from the copy the first left
            original = dataclasses.replace(exchange(n), controls=shared)
            data = exchange_to_bytes(original)
            assert data.startswith(b'{"v":1,')
            assert exchange_from_bytes(data).controls == {"status": 200, "delay": math.inf}

    @pytest.mark.parametrize("version", [1, 2])
    def test_a_document_an_older_echo_wrote_is_read(self, version: int) -> None:
        wire = wire_exchange()  # with JSON orjson can write: version 2 was only written for such
        original = dataclasses.replace(wire, request=dataclasses.replace(wire.request, json={"n": [1, -0.0]}))
        request = original.request
        kept_json = None if request.kept_json is JSON_FROM_BODY else request.kept_json
        doc = json.loads(codec._exact(original, kept_json, dict(original.controls),
                                      None if original.rule is None else dict(original.rule)))
        assert doc["v"] == 1
        doc["v"] = version  # version 2 was this document, by orjson
        data = orjson.dumps(doc) if version == 2 else json.dumps(doc, separators=(",", ":")).encode("ascii")
        assert exchange_from_bytes(data) == original

    def test_round_trip_keeps_the_types_equality_would_forgive(self) -> None:
        original = full_exchange()
        again = exchange_from_bytes(exchange_to_bytes(original))
        assert again == original
        assert type(again.request.args) is tuple and type(again.request.args[0]) is tuple
        assert type(again.request.files[0]) is FileInfo
        assert type(again.request.body) is bytes and type(again.response.body) is bytes
        assert math.copysign(1.0, again.request.json["n"][1]) == -1.0  # -0.0 stays negative
        assert type(again.request.json["n"][3]) is int

    @pytest.mark.parametrize("data", [
        b"",
        b"not json",
        b"[]",
        b'{"v": 2, "request": {}}',
        b'{"v": 1}',
        b'{"v":3,"request":{}}',
        b'{"v":4,"request":{}}',
        b"[4]",
        b"[3]\n",
        b"[3,1,2]\n",
        exchange_to_bytes(exchange(1, body=b"abc")).partition(b"\n")[0],  # no newline, no bodies
        exchange_to_bytes(exchange(1, body=b"abc"))[:-1],  # a body cut short
        exchange_to_bytes(exchange(1, body=b"abc")) + b"x",  # a byte too many
        exchange_to_bytes(exchange(1, body=b"abc")).replace(b",3,-1,-1]", b",-3,-1,-1]"),
        exchange_to_bytes(exchange(1, body=b"abc")).replace(b",3,-1,-1]", b',"3",-1,-1]'),
        exchange_to_bytes(exchange(1)).replace(b'{"status":200,"headers":[],"cookies":[],"delay":0}', b'["status"]'),
        codec._exact(exchange(1), None, {}, None).replace(b'"body":"', b'"body":"!!').replace(b'"v":1', b'"v":2'),
    ])
    def test_anything_else_is_a_codec_error(self, data: bytes) -> None:
        with pytest.raises(CodecError):
            exchange_from_bytes(data)


# ---- how the memory store keeps an exchange -------------------------------


def wire_exchange() -> Exchange:
    """`full_exchange` without the lone surrogate capture never produces."""
    full = full_exchange()
    return dataclasses.replace(full, request=dataclasses.replace(full.request, form=(("name", "Ada"), ("e", "\U0001f600"))))


class TestPacking:
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(exchanges())
    def test_round_trip_is_exact(self, original: Exchange) -> None:
        assert unpack(pack(original)) == original

    def test_an_exchange_from_the_wire_is_packed_and_comes_back_with_its_types(self) -> None:
        original = wire_exchange()
        kept = pack(original)
        assert isinstance(kept, Packed)
        again = unpack(kept)
        assert again == original
        assert type(again.request.args) is tuple and type(again.request.args[0]) is tuple
        assert type(again.response.headers[0]) is tuple
        assert type(again.request.files[0]) is FileInfo and again.request.files == original.request.files
        assert again.request.started == 1_767_225_600.123456 and again.duration_ms == 12.345678901234
        # Bodies, the parsed JSON and the controls are kept as they are, not copied.
        assert again.request.body is original.request.body and again.request.json is original.request.json
        assert again.controls is original.controls

    @pytest.mark.parametrize("change", [
        {"form": (("lone", "\ud800"),)},
        {"body_size": 2**64},
        {"started": math.nan},
        {"started": math.inf},
    ], ids=["lone surrogate", "int over 64 bits", "nan", "infinity"])
    def test_what_cannot_be_packed_exactly_is_kept_as_records(self, change: dict[str, Any]) -> None:
        original = wire_exchange()
        original = dataclasses.replace(original, request=dataclasses.replace(original.request, **change))
        assert pack(original) is original
        assert unpack(pack(original)) is original


# ---- what only the Redis store does -----------------------------------------


@pytest.fixture
def stores() -> Iterator[Callable[..., RedisStore]]:
    opened: list[RedisStore] = []

    def make(url: str, **options: Any) -> RedisStore:
        options.setdefault("limit", 100)
        options.setdefault("prefix", unique_prefix())
        options.setdefault("timeout", STORE_TIMEOUT)
        store = RedisStore(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_redis_replies_are_read_and_commands_written_by_hiredis() -> None:
    # redis-py's pure-Python reply parser and command packer cost the echo a
    # third of each Redis write; hiredis, a dependency, does both in C.
    assert redis.connection.DefaultParser.__name__ == "_HiredisParser"


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


@pytest.mark.redis
class TestRedisStore:
    def test_keys_live_under_the_prefix(self, redis_server: RedisServer, stores: Callable[..., RedisStore]) -> None:
        prefix = unique_prefix()
        store = stores(redis_server.url, prefix=prefix)
        store.add(exchange(1))
        store.add(exchange(2))
        with redis.Redis.from_url(redis_server.url) as client:
            keys = sorted(k.decode() for k in client.scan_iter(match=f"{prefix}*"))
            assert keys == [f"{prefix}:ids", f"{prefix}:x:{ident(1)}", f"{prefix}:x:{ident(2)}"]
            assert client.type(f"{prefix}:ids") == b"zset"
            assert {score for _, score in client.zrange(f"{prefix}:ids", 0, -1, withscores=True)} == {0.0}
            assert client.pttl(f"{prefix}:x:{ident(1)}") == -1  # no --history-ttl: no expiry
            store.clear()
            # Only the clear's mark is left (the exchanges that arrived before it are refused).
            assert [k.decode() for k in client.scan_iter(match=f"{prefix}*")] == [f"{prefix}:clears"]
            assert client.zrange(f"{prefix}:clears", 0, -1) == [b""]

    def test_prefixes_keep_deployments_apart(self, redis_server: RedisServer, stores: Callable[..., RedisStore]) -> None:
        one = stores(redis_server.url)
        other = stores(redis_server.url)
        one.add(exchange(1))
        other.add(exchange(2))
        assert ids_of(one.list(Query())) == [ident(1)]
        other.clear()
        assert one.count() == 1

    def test_an_add_is_one_round_trip_and_a_page_a_bounded_few(
        self, own_redis: Callable[..., RedisServer], stores: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        server = own_redis()
        store = stores(server.url, limit=1000)
        for warm_up in (lambda: store.add(exchange(1)), lambda: store.list(Query()), store.count,
                        lambda: store.clear("a-bin"), lambda: store.clear()):
            warm_up()  # loads each script once; Redis keeps them from now on
        with redis.Redis.from_url(server.url) as client:
            # The exchanges below carry fixed ids from the past: forget the
            # clears' marks that would refuse them (each clear leaves one).
            def forget_marks() -> None:
                client.delete(f"{store._prefix}:clears")

            forget_marks()
            def round_trips(action: Callable[[], Any]) -> int:
                client.config_resetstat()
                action()
                calls = command_calls(client)
                calls.pop("info", None)
                calls.pop("config|resetstat", None)
                # Commands run by a script are counted too; the client sent
                # only the EVALSHA (or the one plain command).
                return calls.get("evalsha", 0) or sum(calls.values())

            assert round_trips(lambda: store.add(exchange(2))) == 1
            for n in range(3, 301):
                store.add(exchange(n, method="POST" if n % 100 == 0 else "GET"))
            assert round_trips(lambda: store.list(Query(limit=50))) == 1
            assert round_trips(lambda: store.list(Query(limit=300))) == math.ceil(300 / redis_store.FETCH_PER_CALL)
            assert round_trips(lambda: store.get(ident(5))) == 1
            assert round_trips(lambda: store.count()) == 1
            assert round_trips(lambda: store.clear()) == 1
            assert round_trips(lambda: store.clear("a-bin")) == 1  # its mark, which finds no id to walk to
            forget_marks()
            for n in range(1, 301):
                store.add(exchange(n, method="POST" if n % 100 == 0 else "GET"))
            # A filter that matches rarely looks at every id, but in chunks of
            # SCAN_PER_CALL per round trip, never one per exchange (and a chunk
            # that ends on the oldest id says so: no empty last round trip).
            monkeypatch.setattr(redis_store, "SCAN_PER_CALL", 50)
            assert round_trips(lambda: store.list(Query(method="POST"))) == math.ceil(300 / 50)

    def test_small_chunks_give_the_same_pages_as_memory(
        self, redis_server: RedisServer, stores: Callable[..., RedisStore], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Continuing a page across scripts (cursor, chunk edges) must not skip
        # or repeat anything: compare with the memory store on random data.
        monkeypatch.setattr(redis_store, "FETCH_PER_CALL", 3)
        monkeypatch.setattr(redis_store, "SCAN_PER_CALL", 5)
        rng = random.Random(11)
        store = stores(redis_server.url, limit=60)
        memory = MemoryStore(60)
        for n in rng.sample(range(1, 200), 80):
            item = exchange(n, method=rng.choice(["GET", "POST"]), path=rng.choice(["/a", "/b/c", "/A/b"]),
                            status=rng.choice([200, 201, 404, 500]))
            store.add(item)
            memory.add(item)
        kept = ids_of(memory.list(Query(limit=1000)))
        for _ in range(60):
            query = Query(
                limit=rng.choice([1, 2, 3, 4, 7, 50]),
                before=rng.choice([None, rng.choice(kept), ident(rng.randrange(200))]),
                method=rng.choice([None, "GET", "post"]),
                status=rng.choice([None, None, 404]),
                status_class=rng.choice([None, 2, 5]),
                q=rng.choice([None, "b", "/A"]),
            )
            assert ids_of(store.list(query)) == ids_of(memory.list(query)), query

    def test_a_smaller_bound_trims_the_shared_history_at_once(
        self, redis_server: RedisServer, stores: Callable[..., RedisStore]
    ) -> None:
        # Replicas should share --history; when one does not, its next add
        # trims to its own bound in one step (here over 1000 at once, past
        # the chunk size of the script's deletes).
        prefix = unique_prefix()
        large = stores(redis_server.url, prefix=prefix, limit=2000)
        small = stores(redis_server.url, prefix=prefix, limit=3)
        for n in range(1, 1201):
            large.add(exchange(n))
        small.add(exchange(1201))
        assert ids_of(large.list(Query(limit=1000))) == [ident(n) for n in (1201, 1200, 1199)]
        with redis.Redis.from_url(redis_server.url) as client:
            assert sum(1 for _ in client.scan_iter(match=f"{prefix}:x:*", count=1000)) == 3

    def test_reads_work_while_redis_refuses_writes(
        self, own_redis: Callable[..., RedisServer], stores: Callable[..., RedisStore]
    ) -> None:
        server = own_redis()
        store = stores(server.url, ttl=3600)
        kept = exchange(IdSource().next()[0])
        store.add(kept)
        with redis.Redis.from_url(server.url) as client:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", 1)  # every write is now refused (OOM)
            with pytest.raises(StoreError, match="maxmemory"):
                store.add(exchange(IdSource().next()[0]))
            assert ids_of(store.list(Query(method="get"))) == [kept.id]
            assert store.get(kept.id) == kept
            assert store.count() == 1
            assert store.health().ok
            client.config_set("maxmemory", 0)

    def test_history_ttl_expires_old_exchanges(self, redis_server: RedisServer, stores: Callable[..., RedisStore]) -> None:
        prefix = unique_prefix()
        store = stores(redis_server.url, prefix=prefix, ttl=0.5)
        source = IdSource()
        old = exchange(source.next()[0])
        store.add(old)
        with redis.Redis.from_url(redis_server.url) as client:
            assert 0 < client.pttl(f"{prefix}:x:{old.id}") <= 500
        deadline = time.monotonic() + 10
        while store.get(old.id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get(old.id) is None
        assert store.count() == 0
        fresh = exchange(source.next()[0])
        store.add(fresh)
        assert ids_of(store.list(Query())) == [fresh.id]

    def test_an_unreadable_entry_is_skipped_in_lists(self, redis_server: RedisServer, stores: Callable[..., RedisStore]) -> None:
        prefix = unique_prefix()
        store = stores(redis_server.url, prefix=prefix)
        store.add(exchange(1))
        store.add(exchange(3))
        with redis.Redis.from_url(redis_server.url) as client:
            client.zadd(f"{prefix}:ids", {ident(2): 0})
            client.hset(f"{prefix}:x:{ident(2)}", mapping={"d": b'{"v": 99}', "m": "GET", "s": "200", "p": "/", "q": ""})
        assert ids_of(store.list(Query())) == [ident(3), ident(1)]
        with pytest.raises(StoreError, match="format 99"):
            store.get(ident(2))

    def test_every_call_fails_with_store_error_while_redis_is_down_and_recovers(
        self, own_redis: Callable[..., RedisServer], stores: Callable[..., RedisStore]
    ) -> None:
        server = own_redis()
        store = stores(server.url)
        store.add(exchange(1))
        server.proc.terminate()
        server.proc.wait(10)
        for call in (lambda: store.add(exchange(2)), lambda: store.get(ident(1)), lambda: store.list(Query()),
                     store.count, store.clear):
            with pytest.raises(StoreError, match="refused"):
                call()
        health = store.health()
        assert (health.ok, health.backend) == (False, "redis")
        assert f"127.0.0.1:{server.port}" in health.detail and "refused" in health.detail
        own_redis(server.port)  # the same address again, empty
        store.add(exchange(3))  # pooled connections to the old process are redialled
        assert store.health().ok
        assert ids_of(store.list(Query())) == [ident(3)]

    def test_a_stalled_redis_fails_with_store_error_not_a_hang(
        self, own_redis: Callable[..., RedisServer], stores: Callable[..., RedisStore]
    ) -> None:
        server = own_redis()
        store = stores(server.url, timeout=STALL_TIMEOUT)
        store.add(exchange(1))
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreError, match="[Tt]imeout"):
                store.add(exchange(2))
            with pytest.raises(StoreError, match="[Tt]imeout"):
                store.list(Query())
            health = store.health()
            assert not health.ok and "imeout" in health.detail
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert store.get(ident(1)) is not None

    def test_a_password_in_the_url_is_used_and_never_shown(
        self, own_redis: Callable[..., RedisServer], stores: Callable[..., RedisStore]
    ) -> None:
        server = own_redis()
        with redis.Redis.from_url(server.url) as client:
            client.config_set("requirepass", "s3cret-pw")
        good = stores(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0")
        good.add(exchange(1))
        assert good.count() == 1
        assert "s3cret-pw" not in good.health().detail
        wrong = stores(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
        health = wrong.health()
        assert not health.ok and "wrong-pw" not in health.detail
        with pytest.raises(StoreError) as failure:
            wrong.add(exchange(2))
        assert "wrong-pw" not in str(failure.value)

    def test_rediss_talks_tls(self, redis_server: RedisServer, stores: Callable[..., RedisStore], tmp_path: Path) -> None:
        openssl = shutil.which("openssl")
        need("openssl", openssl is not None, "openssl")
        assert openssl is not None
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        port = free_port()
        binary = shutil.which("redis-server")
        assert binary is not None
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
             "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            store = stores(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}")
            deadline = time.monotonic() + 10
            while not store.health().ok and time.monotonic() < deadline:
                time.sleep(0.05)
            store.add(exchange(1))
            assert ids_of(store.list(Query())) == [ident(1)]
            plain = stores(f"redis://127.0.0.1:{port}/0", timeout=STALL_TIMEOUT)
            with pytest.raises(StoreError):
                plain.add(exchange(2))  # TLS port, plain client: a StoreError, not a hang
        finally:
            proc.terminate()
            proc.wait(10)

    @pytest.mark.parametrize("url, options, message", [
        ("redis://127.0.0.1:notaport/0", {}, "--store"),
        ("redis://127.0.0.1:6379/0", {"timeout": 0}, "--store-timeout"),
        ("redis://127.0.0.1:6379/0", {"prefix": ""}, "--store-prefix"),
    ])
    def test_unusable_settings_are_config_errors(self, url: str, options: dict[str, Any], message: str) -> None:
        options = {"limit": 10, **options}
        with pytest.raises(ConfigError, match=message):
            RedisStore(url, **options).close()
