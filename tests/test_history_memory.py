"""What the memory store costs: the bytes a kept exchange takes, a page read
without copying the whole history, and the faster paths of capture and the
records giving exactly what the slower ones gave."""

from __future__ import annotations

import dataclasses
import gc
import io
import tracemalloc
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from echo.capture.request import CaptureLimits, _pairs, _split_query, capture
from echo.history import Query
from echo.history.memory import MemoryStore
from echo.history.packed import Packed, pack, unpack
from echo.model.records import JSON_FROM_BODY, Exchange, IdSource, ParsedJSON, RequestRecord, ResponseRecord

NO_CONTROLS = MappingProxyType({"status": 200, "headers": (), "cookies": (), "delay": 0.0})
# A kept small GET is about 0.7 KB of fields; orjson's output alone used to hold 8 KiB.
MOST_BYTES_PER_GET = 1500
# Reading a page of 50 from 20,000 kept: 50 unpacked exchanges, not 20,000 ids.
MOST_BYTES_PER_PAGE = 200_000


def small_get(ids: IdSource, controls: Any = NO_CONTROLS) -> Exchange:
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/anything", "QUERY_STRING": "a=1&b=2", "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_URI": "/anything?a=1&b=2", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.input_terminated": True,
    }
    request = capture(environ, CaptureLimits(), ids)
    response = ResponseRecord(
        status=200, headers=(("Content-Type", "application/json"), ("Content-Length", "400"), ("X-Echo-Id", request.id)),
        body=None, body_size=400, body_sha256="0" * 64, content_type="application/json",
    )
    return Exchange(request=request, response=response, controls=controls, duration_ms=0.25)


def test_a_kept_small_get_takes_its_size_not_orjsons_buffer() -> None:
    ids = IdSource()
    exchanges = [small_get(ids) for _ in range(1000)]
    store = MemoryStore(1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for exchange in exchanges:
            store.add(exchange)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown / 1000 < MOST_BYTES_PER_GET, f"{grown / 1000:.0f} bytes per kept GET"


def test_a_plain_exchange_is_one_bytes_object_and_comes_back_equal() -> None:
    original = small_get(IdSource())
    kept = pack(original)
    assert type(kept) is bytes
    again = unpack(kept)
    assert again == original
    assert again.controls is NO_CONTROLS  # a read-only shared summary comes back as itself


@pytest.mark.parametrize(("content", "response_body", "controls"), [
    (None, None, NO_CONTROLS), (b"decoded", None, NO_CONTROLS), (None, b"answer", {}), (b"", b"", {}),
])
def test_a_post_with_bodies_is_a_plain_tuple_the_collector_stops_tracking(
    content: bytes | None, response_body: bytes | None, controls: Any,
) -> None:
    base = small_get(IdSource(), controls=controls)
    request = dataclasses.replace(base.request, method="POST", body=b'{"a": 1}', json=ParsedJSON({"a": 1}),
                                  content=content)
    original = dataclasses.replace(base, request=request,
                                   response=dataclasses.replace(base.response, body=response_body))
    kept = pack(original)
    assert type(kept) is tuple and len(kept) == 4
    assert kept[1] is request.body and kept[2] is content and kept[3] is response_body  # bodies not copied
    # Bytes and None alone: a long history is nothing for the collector's full passes to walk.
    gc.collect()
    assert not gc.is_tracked(kept)
    again = unpack(kept)
    assert again == dataclasses.replace(original, request=dataclasses.replace(request, json=JSON_FROM_BODY))
    if controls is NO_CONTROLS:
        assert again.controls is NO_CONTROLS
    else:
        assert again.controls == {} and again.controls is not controls


def test_empty_dict_controls_come_back_as_a_new_dict_each_time() -> None:
    kept = pack(small_get(IdSource(), controls={}))
    assert type(kept) is bytes
    first, second = unpack(kept).controls, unpack(kept).controls
    assert first == {} and type(first) is dict and first is not second


def test_controls_with_content_are_kept_by_reference() -> None:
    controls = {"status": 418}
    kept = pack(small_get(IdSource(), controls=controls))
    assert isinstance(kept, Packed)
    assert unpack(kept).controls is controls


def test_a_page_is_read_without_copying_the_whole_history() -> None:
    ids = IdSource()
    store = MemoryStore(20_000)
    exchange = small_get(ids)
    for _ in range(20_000):
        request = dataclasses.replace(exchange.request, id=ids.next()[0])
        store.add(dataclasses.replace(exchange, request=request))
    newest = store.list(Query(limit=1))[0].id
    tracemalloc.start()
    try:
        page = store.list(Query(limit=50))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page) == 50 and page[0].id == newest
    assert [e.id for e in page] == sorted((e.id for e in page), reverse=True)
    assert peak < MOST_BYTES_PER_PAGE, f"reading a page of 50 allocated {peak} bytes at its peak"


def test_a_filtered_page_walks_back_in_batches_past_what_does_not_match() -> None:
    ids = IdSource()
    store = MemoryStore(5000)
    exchange = small_get(ids)
    wanted = []
    for i in range(5000):
        method = "POST" if i % 700 == 0 else "GET"
        request = dataclasses.replace(exchange.request, id=ids.next()[0], method=method)
        store.add(dataclasses.replace(exchange, request=request))
        if method == "POST":
            wanted.append(request.id)
    found = store.list(Query(limit=100, method="POST"))
    assert [e.id for e in found] == wanted[::-1]
    older = store.list(Query(limit=3, method="POST", before=wanted[-2]))
    assert [e.id for e in older] == wanted[-3::-1][:3]


QUERY_TEXT = st.text(alphabet="ab=&%+2Fx\u00e9", max_size=30)


@given(QUERY_TEXT)
def test_a_query_split_as_text_gives_the_pairs_the_decoder_gives(text: str) -> None:
    raw = text.encode("utf-8")
    errors: list[str] = []
    slow = tuple(
        (key.decode("utf-8", "replace"), value.decode("utf-8", "replace")) for key, value in _split_query(raw, 5)
    )
    assert _pairs(raw, "query", errors, 5) == slow


def test_a_query_over_the_limit_is_cut_as_before() -> None:
    raw = b"&".join(b"k%d=v" % i for i in range(20))
    assert _pairs(raw, "query", [], 5) == tuple((f"k{i}", "v") for i in range(6))


def test_records_built_quickly_are_the_dataclasses_records() -> None:
    record = small_get(IdSource()).request
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(RequestRecord)}
    again = RequestRecord(**values)
    assert again == record and again.truncated is False and again.bin is None
    positional = RequestRecord(*values.values())
    assert positional == record
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.method = "POST"  # type: ignore[misc]
    with pytest.raises(TypeError):
        RequestRecord(id="x")  # type: ignore[call-arg]


# A history of `limit` driven by adds (new, older than the newest, repeated)
# and clears, against a sorted-dict model of what must be kept.
MEMORY_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40), st.sampled_from([None, "a", "b"])),
        st.tuples(st.just("clear"), st.just(0), st.sampled_from([None, "a", "b"])),
    ),
    max_size=120,
)


@given(limit=st.integers(1, 6), ops=MEMORY_OPS)
def test_adds_evictions_and_clears_keep_exactly_the_newest_limit(limit: int, ops: list[tuple[str, int, Any]]) -> None:
    base = small_get(IdSource())
    store = MemoryStore(limit)
    model: dict[str, Any] = {}  # id -> bin
    for op, n, bin_name in ops:
        if op == "add":
            exchange_id = f"{n:028d}"
            request = dataclasses.replace(base.request, id=exchange_id, bin=bin_name)
            store.add(dataclasses.replace(base, request=request))
            model[exchange_id] = bin_name
            for oldest in sorted(model)[:max(len(model) - limit, 0)]:
                del model[oldest]
        else:
            store.clear(bin_name)
            model = {} if bin_name is None else {i: b for i, b in model.items() if b != bin_name}
        newest_first = sorted(model, reverse=True)
        assert [e.id for e in store.list(Query(limit=100))] == newest_first
        assert store.count() == len(model)
        if newest_first:
            assert [e.id for e in store.list(Query(limit=2, before=newest_first[0]))] == newest_first[1:3]
            bounded = store.page(Query(limit=100), 1)
            assert [e.id for e in bounded.exchanges] == newest_first[:1]
            assert bounded.stopped == (newest_first[0] if len(newest_first) > 1 else None)


def test_evicting_the_oldest_does_not_shift_the_kept_ids_each_time() -> None:
    ids = IdSource()
    store = MemoryStore(1000)
    exchange = small_get(ids)
    for _ in range(1001):
        store.add(dataclasses.replace(exchange, request=dataclasses.replace(exchange.request, id=ids.next()[0])))
    # The evicted id is passed over, not removed from the front (a move of
    # every kept id); the front goes in one cut once it is as long as the rest.
    assert len(store._ids) == 1001 and store.count() == 1000
    for _ in range(2000):
        store.add(dataclasses.replace(exchange, request=dataclasses.replace(exchange.request, id=ids.next()[0])))
    assert len(store._ids) <= 2000 and store.count() == 1000


@pytest.mark.parametrize("limit", [1, 1000, 100_000])
def test_every_kept_exchange_is_packed_and_each_reader_gets_records_of_its_own(limit: int) -> None:
    exchange = small_get(IdSource(), controls={"status": 201})
    store = MemoryStore(limit)
    store.add(exchange)
    assert isinstance(store._items[exchange.id], Packed)  # not the records themselves
    first, second = store.get(exchange.id), store.get(exchange.id)
    assert first == second == exchange
    assert first is not exchange and first.request is not second.request


def test_a_parsed_json_body_is_packed_at_any_limit_and_its_parsed_value_not_kept() -> None:
    base = small_get(IdSource())
    request = dataclasses.replace(base.request, method="POST", body=b'{"a": [1, 2]}', json=ParsedJSON({"a": [1, 2]}))
    exchange = dataclasses.replace(base, request=request)
    store = MemoryStore(10)
    store.add(exchange)
    kept = store._items[exchange.id]
    # Bytes and bodies alone: the parsed value is not among what is kept.
    assert type(kept) is tuple and all(part is None or type(part) is bytes for part in kept)
    again = store.get(exchange.id)
    assert again is not None and again.request.json is JSON_FROM_BODY
    assert store.get(exchange.id).request.json_value() == {"a": [1, 2]}
