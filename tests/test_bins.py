"""Bins (SPEC section 9): /b/{bin}/... and X-Echo-Bin put an exchange in a bin.

Capture's rule for what is a bin (the names at 64 and 65 characters, paths
that only look like one), the echo's 400 for a bad or conflicting X-Echo-Bin,
the fields of the echo, API and HAR documents, clearing one bin in the
memory store and in a real redis-server, DELETE ?bin=, httpbin routes under a
bin, and parallel test jobs sharing one real server that each see only their
own bin.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from werkzeug.test import EnvironBuilder

from echo import create_app
from echo.capture.request import CaptureLimits, bin_of, capture
from echo.history import MemoryStore, Query, Store, redis_store
from echo.history.redis_store import RedisStore
from echo.model.factory import make_exchange, make_request, make_response
from echo.model.records import Exchange, IdSource

from support import ROOT, EchoServer, RedisServer, call, fetch, need, start_echo, wait_for

NAME_64 = "a" * 64
NAME_65 = "a" * 65
BIN_MESSAGE = "X-Echo-Bin must be a bin name: 1 to 64 of A-Z a-z 0-9 _ -"


# ---- what is a bin (capture, a pure step) -------------------------------------------------

@pytest.mark.parametrize("path, header, expected", [
    ("/b/job-1/hook", None, ("job-1", "/hook")),
    ("/b/job_1/a/b/", None, ("job_1", "/a/b/")),
    ("/b/Job9", None, ("Job9", "/")),  # nothing below the name: bin_path is "/"
    ("/b/Job9/", None, ("Job9", "/")),
    ("/b/x//y", None, ("x", "//y")),
    (f"/b/{NAME_64}/x", None, (NAME_64, "/x")),  # the longest name
    (f"/b/{NAME_65}/x", None, (None, None)),  # one more is an ordinary path
    (f"/b/{NAME_65}", None, (None, None)),
    ("/b/", None, (None, None)),
    ("/b", None, (None, None)),
    ("/b//x", None, (None, None)),
    ("/b/../x", None, (None, None)),
    ("/b/a.b/x", None, (None, None)),
    ("/b/café/x", None, (None, None)),
    ("/bins/x", None, (None, None)),
    ("/x/b/y/z", None, (None, None)),
    ("/orders/7", "ci-7", ("ci-7", "/orders/7")),  # the header: bin_path is the whole path
    ("/", NAME_64, (NAME_64, "/")),
    ("/orders/7", NAME_65, (None, None)),
    ("/orders/7", "", (None, None)),
    ("/orders/7", "bad name", (None, None)),
    ("/orders/7", "a/b", (None, None)),
    ("/b/a/x", "b", ("a", "/x")),  # the path's bin wins here; the echo refuses the pair
    ("/b/../x", "h", ("h", "/b/../x")),
])
def test_bin_of(path: str, header: str | None, expected: tuple[str | None, str | None]) -> None:
    assert bin_of(path, header) == expected


def test_capture_keeps_the_full_path_beside_the_bin() -> None:
    environ = EnvironBuilder(path="/b/ci-3/hooks/7", query_string="x=1").get_environ()
    record = capture(environ, CaptureLimits(), IdSource())
    assert (record.path, record.bin, record.bin_path) == ("/b/ci-3/hooks/7", "ci-3", "/hooks/7")
    plain = capture(EnvironBuilder(path="/hooks/7").get_environ(), CaptureLimits(), IdSource())
    assert (plain.bin, plain.bin_path) == (None, None)
    by_header = capture(EnvironBuilder(path="/hooks/7", headers=[("X-Echo-Bin", "h1")]).get_environ(),
                        CaptureLimits(), IdSource())
    assert (by_header.path, by_header.bin, by_header.bin_path) == ("/hooks/7", "h1", "/hooks/7")


# ---- the echo and its documents (Flask's test client) -------------------------------------

@pytest.fixture
def echo_app() -> Any:
    return create_app({"log": "off"}, environ={}).test_client()


def listed(client: Any, query: str = "") -> list[dict[str, Any]]:
    response = client.get("/_/api/exchanges?limit=1000" + query)
    assert response.status_code == 200, response.get_data(as_text=True)
    exchanges: list[dict[str, Any]] = response.get_json()["exchanges"]
    return exchanges


@pytest.mark.parametrize("path, headers, bin_name, bin_path", [
    ("/orders/7", {}, None, None),
    ("/b/job-1/orders/7", {}, "job-1", "/orders/7"),
    ("/b/job-1", {}, "job-1", "/"),
    ("/b/job-1/", {}, "job-1", "/"),
    (f"/b/{NAME_65}/x", {}, None, None),
    ("/b/../x", {}, None, None),
    ("/orders/7", {"X-Echo-Bin": "hdr"}, "hdr", "/orders/7"),
    ("/orders/7", {"X-Echo-Bin": NAME_64}, NAME_64, "/orders/7"),
    ("/b/same/x", {"X-Echo-Bin": "same"}, "same", "/x"),  # the same bin twice is one bin
])
def test_the_echo_document_shows_the_bin(
    echo_app: Any, path: str, headers: dict[str, str], bin_name: str | None, bin_path: str | None
) -> None:
    response = echo_app.get(path, headers=headers)
    assert response.status_code == 200
    doc = response.get_json()
    assert (doc["path"], doc["bin"], doc["bin_path"]) == (path, bin_name, bin_path)
    # The API's exchange document shows them too.
    one = echo_app.get(f"/_/api/exchanges/{response.headers['X-Echo-Id']}").get_json()
    assert (one["request"]["path"], one["request"]["bin"], one["request"]["bin_path"]) == (path, bin_name, bin_path)


@pytest.mark.parametrize("path, value, message", [
    ("/orders/7", "", BIN_MESSAGE),
    ("/orders/7", "bad!", BIN_MESSAGE),
    ("/orders/7", "a b", BIN_MESSAGE),
    ("/orders/7", NAME_65, BIN_MESSAGE),
    ("/b/ok/x", NAME_65, BIN_MESSAGE),
    ("/b/a/x", "b", "X-Echo-Bin names bin 'b' but the path is in bin 'a'"),
])
def test_a_bad_x_echo_bin_is_a_400_naming_the_header_and_is_recorded(
    echo_app: Any, path: str, value: str, message: str
) -> None:
    response = echo_app.get(path, headers={"X-Echo-Bin": value})
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["param"] == "X-Echo-Bin" and doc["value"] == value
    assert doc["error"].startswith(message)
    kept = listed(echo_app)
    assert [(x["id"], x["response"]["status"]) for x in kept] == [(response.headers["X-Echo-Id"], 400)]


def test_a_bad_x_echo_bin_is_refused_in_httpbin_mode_too() -> None:
    client = create_app({"log": "off", "httpbin": True}, environ={}).test_client()
    response = client.get("/get", headers={"X-Echo-Bin": "no good"})
    assert response.status_code == 400 and response.get_json()["param"] == "X-Echo-Bin"


def test_controls_work_on_bin_paths(echo_app: Any) -> None:
    response = echo_app.get("/b/c1/x?_status=201&_header=X-A:%201")
    assert response.status_code == 201 and response.headers["X-A"] == "1"
    assert response.get_json()["bin"] == "c1"
    bad = echo_app.get("/b/c1/x?_status=abc")
    assert bad.status_code == 400 and bad.get_json()["param"] == "_status"
    assert [x["response"]["status"] for x in listed(echo_app, "&f=bin:c1")] == [400, 201]


def test_har_entries_carry_the_bin(echo_app: Any) -> None:
    echo_app.get("/plain")
    echo_app.post("/b/job-2/hook", data=b"x")
    echo_app.get("/x", headers={"X-Echo-Bin": "hdr"})
    entries = json.loads(echo_app.get("/_/api/exchanges.har").get_data())["log"]["entries"]
    assert [(e["request"]["url"].split("/", 3)[3], e.get("_bin"), e.get("_binPath")) for e in entries] == [
        ("plain", None, None), ("b/job-2/hook", "job-2", "/hook"), ("x", "hdr", "/x"),
    ]
    assert "_bin" not in entries[0]


# ---- DELETE /_/api/exchanges?bin= ---------------------------------------------------------

def test_delete_with_a_bin_clears_that_bin_only(echo_app: Any) -> None:
    for path, headers in [("/b/a/1", {}), ("/b/b/1", {}), ("/plain", {}), ("/x", {"X-Echo-Bin": "a"}),
                          (f"/b/{NAME_64}/1", {})]:
        assert echo_app.get(path, headers=headers).status_code == 200
    assert echo_app.delete("/_/api/exchanges?bin=a").status_code == 204
    assert [(x["request"]["path"], x["request"]["bin"]) for x in listed(echo_app)] == [
        (f"/b/{NAME_64}/1", NAME_64), ("/plain", None), ("/b/b/1", "b"),
    ]
    assert echo_app.delete(f"/_/api/exchanges?bin={NAME_64}").status_code == 204
    assert echo_app.delete("/_/api/exchanges?bin=nobody").status_code == 204
    assert [x["request"]["path"] for x in listed(echo_app)] == ["/plain", "/b/b/1"]
    assert echo_app.delete("/_/api/exchanges").status_code == 204
    assert listed(echo_app) == []


@pytest.mark.parametrize("value", ["", "bad!", "a b", NAME_65, "a/b"])
def test_delete_with_a_bad_bin_is_a_400_and_clears_nothing(echo_app: Any, value: str) -> None:
    echo_app.get("/b/a/1")
    response = echo_app.delete("/_/api/exchanges", query_string={"bin": value})
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["param"] == "bin" and doc["value"] == value and "bin name" in doc["error"]
    assert len(listed(echo_app)) == 1


# ---- Store.clear(bin) on memory and on a real redis-server --------------------------------

BASE_US = 1_780_000_000_000_000


def ident(n: int) -> str:
    return f"{BASE_US + n:016x}0a0b0c0d{n:04x}"


def kept(n: int, bin_name: str | None, exchange_id: str | None = None) -> Exchange:
    exchange_id = exchange_id or ident(n)
    path = f"/b/{bin_name}/{n}" if bin_name else f"/{n}"
    return make_exchange(
        make_request(id=exchange_id, path=path, bin=bin_name, bin_path=f"/{n}" if bin_name else None),
        make_response(headers=(("Content-Type", "application/json"), ("X-Echo-Id", exchange_id))),
    )


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_of(request: pytest.FixtureRequest) -> Iterator[Callable[[int], Store]]:
    opened: list[Store] = []

    def make(limit: int) -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(limit)
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisStore(server.url, limit=limit, prefix=f"test-{uuid.uuid4().hex[:12]}", timeout=5)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.clear()
        store.close()


def ids(store: Store) -> list[str]:
    return [x.id for x in store.list(Query(limit=1000))]


# Interleaved: 1 a, 2 b, 3 -, 4 a, 5 b, 6 -, ...
BINS = ("a", "b", None)


def test_clear_of_a_bin_forgets_only_its_exchanges(store_of: Callable[[int], Store]) -> None:
    store = store_of(100)
    for n in range(1, 31):
        store.add(kept(n, BINS[(n - 1) % 3]))
    store.clear("a")
    expected = [ident(n) for n in range(30, 0, -1) if BINS[(n - 1) % 3] != "a"]
    assert ids(store) == expected
    assert store.count() == 20
    assert store.get(ident(1)) is None and store.get(ident(2)) is not None
    store.clear("nobody")
    assert ids(store) == expected
    # The rest keeps its order and the bound still drops the oldest first;
    # the bin records again (what arrives after its clear).
    after, _ = IdSource().next()
    store.add(kept(31, "a", after))
    assert ids(store)[:2] == [after, ident(30)]
    assert [x.request.bin for x in store.list(Query(limit=1000, filter=None))].count("a") == 1


def test_after_a_bin_clear_the_bound_still_holds_exactly_the_newest(store_of: Callable[[int], Store]) -> None:
    store = store_of(6)
    for n in range(1, 7):
        store.add(kept(n, BINS[(n - 1) % 3]))
    store.clear("b")  # 2 and 5 go: four are kept
    assert ids(store) == [ident(n) for n in (6, 4, 3, 1)]
    for n in range(7, 11):
        store.add(kept(n, None))
    assert ids(store) == [ident(n) for n in (10, 9, 8, 7, 6, 4)]
    assert store.count() == 6
    store.clear()
    assert store.count() == 0 and ids(store) == []


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


@pytest.mark.redis
def test_a_redis_bin_clear_is_bounded_per_script(
    own_redis: Callable[..., RedisServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One script looks at SCAN_PER_CALL ids at most: a large history is walked
    # in several short scripts, never one that blocks Redis for every replica.
    server = own_redis()
    store = RedisStore(server.url, limit=1000, prefix="bounded", timeout=5)
    try:
        for n in range(1, 101):
            store.add(kept(n, BINS[(n - 1) % 3]))
        store.clear("nobody")  # loads the script once
        monkeypatch.setattr(redis_store, "SCAN_PER_CALL", 7)
        with redis.Redis.from_url(server.url) as client:
            client.config_resetstat()
            store.clear("b")
            calls = command_calls(client)
            assert calls["evalsha"] == 1 + math.ceil(100 / 7)  # the bin's mark, then the walk
            assert calls["zrangebylex"] == math.ceil(100 / 7)
        assert ids(store) == [ident(n) for n in range(100, 0, -1) if BINS[(n - 1) % 3] != "b"]
        # Only the bin's keys went: no index entry without its exchange, none left behind.
        with redis.Redis.from_url(server.url) as client:
            assert client.zcard("bounded:ids") == 67
            assert len(client.keys("bounded:x:*")) == 67
    finally:
        store.clear()
        store.close()


# ---- against the real server --------------------------------------------------------------

@pytest.fixture(scope="module")
def shared() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--history", "5000")
    yield server
    server.stop()


def api_list(port: int, query: str) -> list[dict[str, Any]]:
    status, _, body = call(port, "GET", "/_/api/exchanges?limit=1000&" + query)
    assert status == 200, body
    exchanges: list[dict[str, Any]] = json.loads(body)["exchanges"]
    return exchanges


def test_parallel_jobs_each_see_exactly_their_own_bin(shared: EchoServer) -> None:
    jobs, each = 8, 25
    sent: dict[str, list[str]] = {}
    seen: dict[str, list[str]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(jobs)

    def job(number: int) -> None:
        name = f"job-{number}-{uuid.uuid4().hex[:8]}"
        try:
            start.wait(10)
            mine = []
            for i in range(each):
                # Half by path, half by header: both put the exchange in the bin.
                if i % 2:
                    status, headers, _ = call(shared.port, "POST", f"/b/{name}/hook/{i}", body=b"{}")
                else:
                    status, headers, _ = call(shared.port, "POST", f"/hook/{i}", body=b"{}",
                                              headers={"X-Echo-Bin": name})
                assert status == 200
                mine.append(headers["X-Echo-Id"])
            sent[name] = mine
            seen[name] = [x["id"] for x in api_list(shared.port, f"f=bin:{name}")]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=job, args=(n,)) for n in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert len(sent) == jobs
    for name, mine in sent.items():
        assert seen[name] == mine[::-1], name  # exactly its own, newest first
    # One job clearing its bin leaves every other job's exchanges in place.
    first, *others = sent
    assert call(shared.port, "DELETE", f"/_/api/exchanges?bin={first}")[0] == 204
    assert api_list(shared.port, f"f=bin:{first}") == []
    for name in others:
        assert [x["id"] for x in api_list(shared.port, f"f=bin:{name}")] == sent[name][::-1]


def test_a_bin_filter_matches_paths_below_the_bin(shared: EchoServer) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    call(shared.port, "GET", f"/b/{name}/hooks/1")
    call(shared.port, "GET", "/hooks/2", headers={"X-Echo-Bin": name})
    call(shared.port, "GET", f"/b/{name}/other")
    found = api_list(shared.port, f"f=bin:{name}%20path:/hooks/*")
    assert [x["request"]["bin_path"] for x in found] == ["/hooks/2", "/hooks/1"]


# ---- httpbin mode under a bin -------------------------------------------------------------

@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin")
    yield server
    server.stop()


def test_httpbin_routes_answer_under_a_bin(httpbin: EchoServer) -> None:
    name = f"ci-{uuid.uuid4().hex[:8]}"
    status, _, body = fetch(f"{httpbin.url}/b/{name}/get?a=1")
    assert status == 200
    doc = json.loads(body)
    assert set(doc) == {"args", "headers", "origin", "url"}  # httpbin's /get, not the echo
    assert doc["args"] == {"a": "1"} and doc["url"] == f"{httpbin.url}/b/{name}/get?a=1"
    status, _, body = fetch(f"{httpbin.url}/b/{name}/status/418")
    assert status == 418 and b"teapot" in body
    status, _, body = fetch(f"{httpbin.url}/b/{name}/post", method="POST", data=b"x=1",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and json.loads(body)["form"] == {"x": "1"}
    status, _, _ = fetch(f"{httpbin.url}/b/{name}/get", method="POST", data=b"")
    assert status == 405
    # Not an httpbin path below the bin: the echo, in the bin.
    status, _, body = fetch(f"{httpbin.url}/b/{name}/hooks/1")
    assert status == 200 and json.loads(body)["bin_path"] == "/hooks/1"
    # X-Echo-Bin on an httpbin path: the route answers, and the exchange is in the bin.
    status, _, body = fetch(f"{httpbin.url}/get", headers={"X-Echo-Bin": name})
    assert status == 200 and set(json.loads(body)) == {"args", "headers", "origin", "url"}
    found = api_list(httpbin.port, f"f=bin:{name}")
    assert [(x["request"]["bin_path"], x["response"]["status"]) for x in found] == [
        ("/get", 200), ("/hooks/1", 200), ("/get", 405), ("/post", 200), ("/status/418", 418), ("/get", 200),
    ]


def test_httpbin_redirects_under_a_bin_stay_in_the_bin(httpbin: EchoServer) -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    for route in ("redirect/3", "relative-redirect/2", "absolute-redirect/2", "status/302"):
        with urllib.request.urlopen(f"{httpbin.url}/b/{name}/{route}", timeout=10) as response:
            assert response.status == 200
            assert response.url == f"{httpbin.url}/b/{name}/get"
    hops = [x["request"]["bin_path"] for x in api_list(httpbin.port, f"f=bin:{name}")][::-1]
    assert hops == [
        "/redirect/3", "/relative-redirect/2", "/relative-redirect/1", "/get",
        "/relative-redirect/2", "/relative-redirect/1", "/get",
        "/absolute-redirect/2", "/absolute-redirect/1", "/get",
        "/status/302", "/redirect/1", "/get",
    ]
    # /redirect-to sends the caller's own url as given.
    status, headers, _ = call(httpbin.port, "GET", f"/b/{name}/redirect-to?url=/elsewhere")
    assert status == 302 and headers["Location"] == "/elsewhere"


# ---- the README's example -----------------------------------------------------------------

def test_the_readme_bins_example_runs(shared: EchoServer) -> None:
    need("curl", shutil.which("curl") is not None, "curl")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Bins: one part of the history per test job", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None
    script = match.group(1).replace("http://127.0.0.1:8080", shared.url)
    call(shared.port, "GET", "/b/job-18/hooks/order")  # another job's: it stays
    lines = [line for line in script.splitlines() if line.startswith("curl ")]
    outputs = [subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30, check=True).stdout
               for line in lines]
    sent = [json.loads(outputs[0]), json.loads(outputs[1])]
    assert [(doc["bin"], doc["bin_path"]) for doc in sent] == [("job-17", "/hooks/order"), ("job-17", "/hooks/ping")]
    assert [x["id"] for x in json.loads(outputs[2])["exchanges"]] == [sent[1]["id"], sent[0]["id"]]
    assert outputs[3] == ""
    assert api_list(shared.port, "f=bin:job-17") == []
    assert [x["request"]["path"] for x in api_list(shared.port, "f=bin:job-18")] == ["/b/job-18/hooks/order"]


@pytest.mark.redis
def test_two_replicas_on_redis_clear_one_bin_for_both(
    redis_server: RedisServer, echo_server: Callable[..., EchoServer]
) -> None:
    prefix = f"bins-{uuid.uuid4().hex[:8]}"
    first, second = (echo_server("--store", redis_server.url, "--store-prefix", prefix, "--log", "off")
                     for _ in range(2))
    for server, path in [(first, "/b/a/1"), (second, "/b/b/1"), (first, "/plain"), (second, "/b/a/2")]:
        assert call(server.port, "GET", path)[0] == 200
    assert call(second.port, "DELETE", "/_/api/exchanges?bin=a")[0] == 204
    # The first may not have written /b/a/1 yet: the clear's mark refuses it
    # when it does, and the first shows the shared history within a second.
    for server in (first, second):
        assert wait_for(lambda s=server: [x["request"]["path"] for x in api_list(s.port, "")] == ["/plain", "/b/b/1"])
    status, _, body = call(first.port, "DELETE", "/_/api/exchanges?bin=no%20good")
    assert status == 400 and json.loads(body)["param"] == "bin"
    assert len(api_list(first.port, "")) == 2
