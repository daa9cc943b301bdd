"""Recording: what history keeps of each echo exchange, on the real server.

The observer records after the response is built and never changes the echo:
--redact headers are kept as [redacted] (API, pages, HAR, curl), bodies are cut
to --keep-body with their full size, SHA-256 and `truncated`, concurrent
requests are each kept exactly once, the bound drops the oldest, inspector,
static and health requests are not recorded, and --history 0 keeps nothing.
The recorder's own cut, in process, takes the same table at the limit and
limit+1 for every body it cuts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from contextlib import closing
from http.client import HTTPConnection
from typing import Any

import pytest

from echo.history import StoreError
from echo.history.memory import MemoryStore
from echo.model.factory import make_exchange, make_request, make_response
from echo.model.records import Exchange, IdSource
from echo.observe.arrivals import Arrivals
from echo.observe.recorder import Recorder

from support import call


def listed(port: int, query: str = "limit=1000") -> list[dict[str, Any]]:
    status, _, body = call(port, "GET", f"/_/api/exchanges?{query}")
    assert status == 200
    return json.loads(body)["exchanges"]


def one(port: int, exchange_id: str) -> dict[str, Any]:
    status, _, body = call(port, "GET", f"/_/api/exchanges/{exchange_id}")
    assert status == 200
    return json.loads(body)


# ---- redaction --------------------------------------------------------------------

SECRET = "s3cret-value"
KEEP = 16


@pytest.fixture(scope="module")
def recorder() -> Any:
    """A server that redacts and cuts; each test starts with its history empty."""
    from conftest import start_echo

    server = start_echo("--log", "off", "--keep-body", str(KEEP),
                        "--redact", "authorization,Cookie,X-Api-Key,Set-Cookie,X-Reply-Secret")
    yield server
    server.stop()


@pytest.fixture
def redacting(recorder: Any) -> Any:
    assert call(recorder.port, "DELETE", "/_/api/exchanges")[0] == 204
    return recorder


def test_redacted_headers_are_kept_as_redacted_everywhere(redacting: Any) -> None:
    port = redacting.port
    status, headers, body = call(
        port, "POST", f"/login?_header=X-Reply-Secret:%20{SECRET}&_cookie=sid%3D{SECRET}", b"user=ada",
        {"Authorization": f"Bearer {SECRET}", "Cookie": f"sid={SECRET}; theme=dark", "X-Api-Key": SECRET,
         "X-Visible": "shown", "Content-Type": "application/x-www-form-urlencoded"},
    )
    # The echo itself is not redacted: recording never changes what was sent back.
    assert status == 200
    echoed = json.loads(body)
    assert echoed["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert echoed["cookies"]["sid"] == SECRET
    assert headers["X-Reply-Secret"] == SECRET
    exchange_id = headers["X-Echo-Id"]

    doc = one(port, exchange_id)
    request = doc["request"]
    assert request["headers"]["Authorization"] == "[redacted]"
    assert request["headers"]["Cookie"] == "[redacted]"
    assert request["headers"]["X-Api-Key"] == "[redacted]"
    assert request["headers"]["X-Visible"] == "shown"
    assert request["cookies"] == {"sid": "[redacted]", "theme": "[redacted]"}
    response_headers = dict((name, value) for name, value in doc["response"]["headers"])
    assert response_headers["X-Reply-Secret"] == "[redacted]"
    assert response_headers["Set-Cookie"] == "[redacted]"

    # ... and nowhere else either: list, detail page, curl, HAR.
    for path in ("/_/api/exchanges", f"/_/api/exchanges/{exchange_id}", f"/_/exchanges/{exchange_id}",
                 f"/_/api/exchanges/{exchange_id}/curl", "/_/api/exchanges.har", "/_/"):
        code, _, page = call(port, "GET", path)
        assert code == 200, path
        # The secret also sits in the query string (the caller put it in _header), which
        # is not a header and stays; so look for it in header form only.
        text = page.decode()
        assert f"Bearer {SECRET}" not in text and f"sid={SECRET}; theme" not in text, path
        assert f'"X-Api-Key":"{SECRET}"' not in text and f"X-Api-Key: {SECRET}" not in text, path
    _, _, detail = call(port, "GET", f"/_/exchanges/{exchange_id}")
    assert b"[redacted]" in detail


# ---- the keep-body cut ----------------------------------------------------------------

@pytest.fixture
def cutting(redacting: Any) -> Any:
    return redacting


@pytest.mark.parametrize("size", [0, 1, KEEP - 1, KEEP, KEEP + 1, 10_000])
def test_bodies_are_kept_up_to_keep_body_with_full_size_and_digest(cutting: Any, size: int) -> None:
    body = bytes(ord("a") + i % 26 for i in range(size))
    status, headers, answer = call(cutting.port, "PUT", "/cut", body, {"Content-Type": "text/plain"})
    assert status == 200
    # The echo answers with the whole body whatever history keeps.
    assert json.loads(answer)["body"]["text"] == body.decode()
    kept = one(cutting.port, headers["X-Echo-Id"])["request"]["body"]
    assert kept["size"] == size
    assert kept["sha256"] == hashlib.sha256(body).hexdigest()
    assert kept["truncated"] is (size > KEEP)
    assert kept["text"] == body[:KEEP].decode()


def test_a_cut_binary_body_is_base64_of_the_kept_bytes(cutting: Any) -> None:
    body = bytes(range(255, -1, -1))  # starts with bytes that are not UTF-8
    _, headers, _ = call(cutting.port, "POST", "/bin", body, {"Content-Type": "application/octet-stream"})
    kept = one(cutting.port, headers["X-Echo-Id"])["request"]["body"]
    assert kept["truncated"] is True and kept["size"] == 256 and kept["text"] is None
    assert base64.b64decode(kept["base64"]) == body[:KEEP]


def test_response_bodies_are_cut_too(cutting: Any) -> None:
    reply = "r" * (KEEP + 5)
    _, headers, answer = call(cutting.port, "GET", f"/reply?_body={reply}")
    assert answer == reply.encode()
    kept = one(cutting.port, headers["X-Echo-Id"])["response"]["body"]
    assert kept["size"] == KEEP + 5
    assert kept["sha256"] == hashlib.sha256(reply.encode()).hexdigest()
    assert kept["truncated"] is True and kept["text"] == reply[:KEEP]


def test_a_cut_body_keeps_no_parse_of_the_whole(cutting: Any) -> None:
    # json and form are parsed from the whole body; history keeping them would
    # keep the whole body in another shape (a 1 MiB JSON document is tens of
    # MiB of Python objects), so a cut body keeps only what fits.
    document = json.dumps({"items": list(range(1000))}).encode()
    _, headers, answer = call(cutting.port, "POST", "/big-json", document, {"Content-Type": "application/json"})
    assert json.loads(answer)["json"] == {"items": list(range(1000))}
    request = one(cutting.port, headers["X-Echo-Id"])["request"]
    assert request["body"]["truncated"] is True
    assert request["json"] is None
    form = b"&".join(b"f%d=%s" % (i, b"v" * 50) for i in range(100))
    _, headers, _ = call(cutting.port, "POST", "/big-form", form, {"Content-Type": "application/x-www-form-urlencoded"})
    kept_form = one(cutting.port, headers["X-Echo-Id"])["request"]["form"]
    assert sum(len(name) + len(value) for name, values in kept_form.items() for value in values) <= KEEP


JSON_DOCUMENTS = {
    "1 KiB webhook": {"type": "order.updated", "events": [{"seq": i, "sku": f"SKU-{i:05d}", "price": i * 1.25}
                                                        for i in range(14)]},
    "large": {"items": [{"n": i, "s": "é" * 3} for i in range(500)], "deep": [[[1.5, None, True]]]},
    "scalars": [-0.0, 10**30, 2.5e-310, "\u2028", {}],
    "a string": "just text",
}


@pytest.mark.parametrize("name", JSON_DOCUMENTS)
def test_a_json_body_kept_whole_is_shown_parsed(echo_server: Any, name: str) -> None:
    # History keeps a JSON body as its bytes and parses it again on read;
    # what the API and HAR show must be what the echo showed.
    server = echo_server("--log", "off")
    document = JSON_DOCUMENTS[name]
    payload = json.dumps(document, ensure_ascii=False).encode()
    _, headers, answer = call(server.port, "POST", "/json", payload, {"Content-Type": "application/json"})
    assert json.loads(answer)["json"] == document
    request = one(server.port, headers["X-Echo-Id"])["request"]
    assert request["body"]["truncated"] is False
    assert request["json"] == document
    assert json.dumps(request["json"]) == json.dumps(document)  # -0.0 and big ints survive exactly
    _, _, har = call(server.port, "GET", "/_/api/exchanges.har")
    assert json.loads(json.loads(har)["log"]["entries"][0]["request"]["postData"]["text"]) == document


def test_history_keeps_a_json_body_without_its_parsed_copy(app: Any, client: Any) -> None:
    # The parsed document costs several times the body in small objects; the
    # kept record holds the body alone, while the echo still answered parsed.
    from echo.history import Query
    from echo.model.records import JSON_FROM_BODY

    document = JSON_DOCUMENTS["1 KiB webhook"]
    answer = client.post("/hook", json=document)
    assert answer.get_json()["json"] == document
    kept = app.extensions["echo"].store.list(Query(limit=1))[0].request
    assert kept.json is JSON_FROM_BODY
    assert kept.json_value() == document


# ---- concurrency and the bound ------------------------------------------------------------

THREADS = 8
EACH = 25


def test_every_concurrent_exchange_is_kept_exactly_once(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--history", str(THREADS * EACH), "--threads", "8")
    sent: list[tuple[str, str]] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with closing(HTTPConnection("127.0.0.1", server.port, timeout=30)) as conn:
                for m in range(EACH):
                    path = f"/t{n}/r{m}"
                    conn.request("POST", path, body=f"{n}:{m}".encode())
                    response = conn.getresponse()
                    response.read()
                    with lock:
                        sent.append((response.headers["X-Echo-Id"], path))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    kept = listed(server.port)
    assert len(kept) == THREADS * EACH
    assert sorted((x["id"], x["request"]["path"]) for x in kept) == sorted(sent)
    assert [x["id"] for x in kept] == sorted((x["id"] for x in kept), reverse=True)  # newest first


HISTORY = 5


@pytest.fixture(scope="module")
def bounded() -> Any:
    from conftest import start_echo

    server = start_echo("--log", "off", "--history", str(HISTORY))
    yield server
    server.stop()


@pytest.mark.parametrize("sent", [1, HISTORY - 1, HISTORY, HISTORY + 1, 3 * HISTORY])
def test_the_bound_drops_the_oldest(bounded: Any, sent: int) -> None:
    assert call(bounded.port, "DELETE", "/_/api/exchanges")[0] == 204
    ids = [call(bounded.port, "GET", f"/n/{i}")[1]["X-Echo-Id"] for i in range(sent)]
    assert [x["id"] for x in listed(bounded.port)] == ids[::-1][:HISTORY]
    if sent > HISTORY:
        assert call(bounded.port, "GET", f"/_/api/exchanges/{ids[0]}")[0] == 404


# ---- what is not recorded -------------------------------------------------------------------

def test_inspector_static_and_health_requests_are_not_recorded(redacting: Any) -> None:
    port = redacting.port
    for method, path in [("GET", "/_/"), ("GET", "/_/healthz"), ("GET", "/_/static/inspector.js"),
                         ("GET", "/_/static/favicon.svg"), ("GET", "/_/pygments.css"), ("GET", "/_/api/exchanges"),
                         ("GET", "/_/exchanges/" + "0" * 28), ("GET", "/_"), ("GET", "/_/metrics"),
                         ("POST", "/_/api/exchanges"), ("GET", "/_/no/such/page")]:
        call(port, method, path)
    _, headers, _ = call(port, "GET", "/_x/not-the-prefix")  # only the prefix itself is the inspector's
    assert [x["id"] for x in listed(port)] == [headers["X-Echo-Id"]]


def test_history_0_records_nothing_and_the_echo_still_answers(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--history", "0")
    for i in range(3):
        status, headers, body = call(server.port, "POST", f"/off/{i}", b"x")
        assert status == 200 and json.loads(body)["path"] == f"/off/{i}"
        assert headers["X-Echo-Id"]
    assert listed(server.port) == []
    status, _, body = call(server.port, "GET", "/_/healthz")
    assert status == 200


def test_recording_does_not_change_the_echo(redacting: Any) -> None:
    body = b"0123456789" * 3  # longer than KEEP: history cuts it, the echo must not
    status, headers, answer = call(redacting.port, "POST", "/same?_status=201", body,
                                   {"X-Api-Key": "abc", "Content-Type": "text/plain"})
    assert status == 201
    echoed = json.loads(answer)
    assert echoed["headers"]["X-Api-Key"] == "abc" and echoed["body"]["text"] == body.decode()
    response = one(redacting.port, headers["X-Echo-Id"])["response"]
    assert response["status"] == 201
    assert response["body"]["size"] == len(answer)
    assert response["body"]["sha256"] == hashlib.sha256(answer).hexdigest()


# ---- the recorder's cut, in process -------------------------------------------------

CUT = 8


@pytest.mark.parametrize(("name", "exchange", "redact", "cut"), [
    ("nothing to cut", make_exchange(make_request(body=b"b" * CUT)), (), False),
    ("request body over", make_exchange(make_request(body=b"b" * (CUT + 1))), (), True),
    ("body cut on the wire", make_exchange(make_request(body=b"b", too_large=True)), (), True),
    ("content at the limit", make_exchange(make_request(body=b"z", content=b"c" * CUT)), (), False),
    ("content over", make_exchange(make_request(body=b"z", content=b"c" * (CUT + 1))), (), True),
    ("answer at the limit", make_exchange(response=make_response(body=b"r" * CUT)), (), False),
    ("answer over", make_exchange(response=make_response(body=b"r" * (CUT + 1))), (), True),
    ("redacted header absent", make_exchange(), ("x-secret",), False),
    ("redacted header present", make_exchange(make_request(headers=(("X-Secret", "s"),))), ("x-secret",), True),
])
def test_the_recorder_keeps_an_exchange_as_it_is_unless_something_is_cut_or_hidden(
    name: str, exchange: Exchange, redact: tuple[str, ...], cut: bool,
) -> None:
    recorder = Recorder(MemoryStore(10), 10, CUT, redact)
    kept = recorder.for_history(exchange)
    assert (kept is not exchange) is cut, name
    recorder.observe(exchange)
    stored = recorder.store.get(exchange.id)
    assert stored is not None and stored == kept, name
    request, response = stored.request, stored.response
    assert len(request.body) <= CUT and (request.content is None or len(request.content) <= CUT), name
    assert response.body is None or len(response.body) <= CUT, name
    assert dict(request.headers).get("X-Secret") != "s", name


class Flaky(MemoryStore):
    """A store written directly whose adds fail while `down`."""

    def __init__(self) -> None:
        super().__init__(10)
        self.down = False

    def add(self, exchange: Exchange) -> None:
        if self.down:
            raise StoreError("connection refused")
        super().add(exchange)


def test_a_store_written_directly_that_fails_counts_its_drops_and_says_so_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="echo")
    store, arrivals = Flaky(), Arrivals()
    recorder = Recorder(store, 10, CUT, (), arrivals=arrivals)
    ids = IdSource()
    recorder.observe(make_exchange(make_request(id=ids.next()[0])))
    assert (arrivals.generation, recorder.dropped, recorder.errors) == (1, 0, 0)
    store.down = True
    for _ in range(3):
        recorder.observe(make_exchange(make_request(id=ids.next()[0])))
    assert (arrivals.generation, recorder.dropped, recorder.errors) == (1, 3, 3)  # no arrival for a drop
    store.down = False
    back = make_exchange(make_request(id=ids.next()[0]))
    recorder.observe(back)
    recorder.observe(make_exchange(make_request(id=ids.next()[0])))
    assert store.get(back.id) == back and store.count() == 3
    assert (arrivals.generation, recorder.dropped) == (3, 3)
    said = [r.getMessage() for r in caplog.records if r.name == "echo"]
    assert [m for m in said if "failing" in m] == [
        "history store failing, exchanges are not being recorded: connection refused"]
    assert [m for m in said if "is back" in m] == ["history store is back; 3 exchanges were not recorded"]
