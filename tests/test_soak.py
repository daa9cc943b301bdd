"""The real server under volume: seeded random requests, a concurrent soak, and memory under large bodies.

Everything is bounded in count and time and seeded, so a failure replays the
same way: a few hundred random requests, 8 threads x 400 requests, and a
stream of 1 MiB bodies of each kind while the server's resident memory
(VmRSS from /proc) is read.
"""

from __future__ import annotations

import gzip
import http.client
import json
import random
import threading
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from support import EchoServer, raw_request, split_response, start_echo

SEED = 20261126
RANDOM_REQUESTS = 300
SOAK_THREADS = 8
SOAK_PER_THREAD = 400
ANSWER_TIMEOUT = 30.0
MiB = 1024 * 1024


def strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def proc_status(server: EchoServer, field: str) -> int:
    with open(f"/proc/{server.proc.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} line")


def get_json(server: EchoServer, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=ANSWER_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:200])
        return strict_json(body)
    finally:
        conn.close()


def history_ids(server: EchoServer) -> list[str]:
    """Every id in the history, newest first, paging with before=."""
    ids: list[str] = []
    before = ""
    while True:
        page = get_json(server, f"/_/api/exchanges?limit=1000&bodies=0{before}")["exchanges"]
        ids += [exchange["id"] for exchange in page]
        if len(page) < 1000:
            return ids
        before = f"&before={page[-1]['id']}"


# ---- seeded random requests ---------------------------------------------------

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "PURGE", "X-CUSTOM"]
SEGMENTS = ["a", "orders", "7", "%ff", "%00", "%2e%2e", "..", "%e2%80%ae", "%F0%9F%98%80", "x%0ay", "~", "a;b", "%25"]
CONTENT_TYPES = [None, "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=rb",
                 "text/plain", "text/plain; charset=latin-1", "text/plain; charset=utf-16", "application/xml",
                 "application/octet-stream", "image/png", "text/html", "application/json; charset=x-nope",
                 "multipart/form-data", "application/vnd.api+json"]
ENCODINGS = [None, None, None, "gzip", "deflate", "br", "gzip, gzip", "identity", "bogus"]


def random_body(rng: random.Random, content_type: str | None) -> bytes:
    kind = rng.choice(["json", "form", "multipart", "bytes", "text", "empty", "deep", "numbers"])
    if kind == "json":
        return json.dumps({"n": rng.randint(-10**6, 10**6), "s": "é\u2028<x>", "l": [1.5, None, True]}).encode()
    if kind == "form":
        return "&".join(f"{quote(chr(rng.randint(32, 0x2FF)))}={rng.randint(0, 9)}" for _ in range(rng.randint(0, 20))).encode()
    if kind == "multipart":
        return (b'--rb\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
                + rng.randbytes(rng.randint(0, 200)) + b"\r\n--rb--\r\n")
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 2000))
    if kind == "text":
        return "".join(chr(rng.randint(1, 0xD7FF)) for _ in range(rng.randint(0, 100))).encode("utf-8")
    if kind == "deep":
        depth = rng.randint(100, 5000)
        return b"[" * depth + b"]" * depth
    if kind == "numbers":
        return rng.choice([b"1e999", b"NaN", b"[Infinity]", b"1" + b"0" * 5000, b'"\\ud800"'])
    return b""


def encode(body: bytes, coding: str | None) -> bytes:
    if coding in ("gzip", "deflate"):
        return gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    if coding == "gzip, gzip":
        return gzip.compress(gzip.compress(body))
    return body


def random_request(rng: random.Random) -> tuple[bytes, str, dict[str, str]]:
    method = rng.choice(METHODS)
    path = "/" + "/".join(rng.choice(SEGMENTS) for _ in range(rng.randint(0, 4)))
    params: list[tuple[str, str]] = [(f"k{rng.randint(0, 5)}", rng.choice(["1", "é", "%", "", "a b"]))
                                     for _ in range(rng.randint(0, 6))]
    controls: dict[str, str] = {}
    if rng.random() < 0.3:
        controls["_status"] = rng.choice(["200", "201", "204", "301", "304", "404", "418", "abc", "200,404", "700"])
    if rng.random() < 0.2:
        controls["_header"] = rng.choice(["X-A: 1", "Content-Length: 0", "Bad Name: x", "X-B: \u00e9"])
    if rng.random() < 0.1:
        controls["_body"] = rng.choice(["ok", "<b>hi</b>", ""])
    if rng.random() < 0.1:
        controls["_cookie"] = rng.choice(["a=b; Path=/", "bad cookie", "a=b; SameSite=Nope"])
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params + list(controls.items()))
    content_type = rng.choice(CONTENT_TYPES)
    coding = rng.choice(ENCODINGS)
    body = encode(random_body(rng, content_type), coding) if method not in ("GET", "HEAD") or rng.random() < 0.1 else b""
    head = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    if coding:
        head.append(f"Content-Encoding: {coding}")
    if rng.random() < 0.2:
        head.append("Origin: http://example.test")
    if rng.random() < 0.1:
        head.append(f"Cookie: sid={rng.randint(0, 99)}; theme=dark")
    head.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body
    return data, method, controls


@pytest.fixture(scope="module")
def server() -> Iterator[EchoServer]:
    running = start_echo("--log", "off", "--history", "2000")
    yield running
    running.stop()


def test_seeded_random_requests_get_no_5xx_and_valid_answers(server: EchoServer) -> None:
    rng = random.Random(SEED)
    seen: set[int] = set()
    for n in range(RANDOM_REQUESTS):
        data, method, controls = random_request(rng)
        raw = raw_request(server.port, data, timeout=ANSWER_TIMEOUT)
        assert raw.startswith(b"HTTP/1.1 "), (n, data[:200], raw[:100])
        status, header_list, body = split_response(raw)
        headers = {name.lower(): value for name, value in header_list}
        seen.add(status)
        assert status < 500, (n, data[:300], body[:300])
        assert "x-echo-id" in headers
        if method == "HEAD" or status in (204, 304):
            assert body == b"", (n, status)
        elif "_body" in controls and status not in (400,):
            assert body == controls["_body"].encode()
        else:
            document = strict_json(body)
            assert document.get("id") == headers["x-echo-id"] or "error" in document
    assert 200 in seen and 400 in seen  # the seed reaches both good and refused requests
    assert not any("Traceback" in line for line in server.lines())
    assert get_json(server, "/_/healthz")["status"] == "ok"


# ---- concurrency soak ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(90)
def test_concurrent_soak_loses_and_duplicates_nothing(echo_server: Any) -> None:
    total = SOAK_THREADS * SOAK_PER_THREAD
    server = echo_server("--log", "off", "--history", str(total + 500), "--threads", "8")
    answered: list[list[str]] = [[] for _ in range(SOAK_THREADS)]
    failures: list[str] = []

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=ANSWER_TIMEOUT)
        try:
            for n in range(SOAK_PER_THREAD):
                method = ("GET", "POST", "PUT", "DELETE")[n % 4]
                body = f'{{"t": {index}, "n": {n}}}'.encode() if method in ("POST", "PUT") else None
                conn.request(method, f"/soak/{index}/{n}?i={index}&n={n}", body=body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    failures.append(f"{index}/{n}: {response.status} {data[:100]!r}")
                    return
                answered[index].append(response.headers["X-Echo-Id"])
        except Exception as exc:  # noqa: BLE001 - reported below with the thread that failed
            failures.append(f"{index}: {exc!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(SOAK_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ANSWER_TIMEOUT * 2)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures[:5]

    sent = [exchange_id for ids in answered for exchange_id in ids]
    assert len(sent) == total and len(set(sent)) == total
    kept = history_ids(server)
    assert len(kept) == len(set(kept)) == total  # each exactly once
    assert set(kept) == set(sent)
    assert kept == sorted(kept, reverse=True)  # newest first
    assert get_json(server, "/_/healthz")["status"] == "ok"
    assert get_json(server, "/_/api/exchanges?limit=1")["exchanges"][0]["request"]["path"].startswith("/soak/")


# ---- memory under large bodies -----------------------------------------------

STREAM_HISTORY = 40
STREAM_KEEP = 64 * 1024
STREAM_REQUESTS = 60  # past the history bound, so eviction is part of the run
# Requests before the first reading: each worker thread's allocator arena grows
# to hold a 1 MiB body once, and that is not what is being measured.
STREAM_WARM_UP = 8
# Per exchange, history holds up to --keep-body of the request body, of its
# decoded form and of what was parsed from it, and the request head (query
# string, URL, args: about three copies of it) up to --max-header. The slack
# covers allocator fragmentation and waitress buffers (3-11 MiB measured).
MAX_HEADER = 64 * 1024
RSS_SLACK_MIB = 24
RSS_BOUND_MIB = {"body": STREAM_HISTORY * 3 * STREAM_KEEP / MiB + RSS_SLACK_MIB,
                 "head": STREAM_HISTORY * 4 * MAX_HEADER / MiB + RSS_SLACK_MIB}


def large_body(kind: str) -> tuple[bytes, dict[str, str]]:
    rng = random.Random(SEED)
    if kind == "binary":
        return rng.randbytes(MiB), {"Content-Type": "application/octet-stream"}
    if kind == "text":
        return b"line of text\n" * (MiB // 13), {"Content-Type": "text/plain"}
    if kind == "gzip":
        return gzip.compress(rng.randbytes(MiB // 2) * 2)[:MiB], {"Content-Encoding": "gzip"}
    if kind == "json":
        # Records, as webhook payloads hold: each costs Python several times its text.
        items = [{"id": n, "name": f"customer {n:06d}", "tags": ["a", "b"]} for n in range(MiB // 64)]
        return json.dumps(items).encode(), {"Content-Type": "application/json"}
    if kind == "form":
        return (b"&".join(b"f%d=%s" % (i, b"v" * 1000) for i in range(1000)),
                {"Content-Type": "application/x-www-form-urlencoded"})
    if kind == "query":
        return b"", {}
    assert kind == "multipart"
    parts = b"".join(b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n%s\r\n' % (i, b"v" * 1000)
                     for i in range(1000))
    return parts + b"--b--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", [
    "binary", "text", "gzip", "json", "form", "multipart",
    # Not a body but a head: 62 KB of "a&a&..." (under --max-header) is 31,000 args.
    "query",
])
def test_rss_stays_bounded_under_a_stream_of_large_bodies(echo_server: Any, kind: str) -> None:
    server = echo_server("--log", "off", "--history", str(STREAM_HISTORY), "--keep-body", str(STREAM_KEEP),
                         "--max-body", str(MiB + 1024 * 64), "--max-header", str(MAX_HEADER))
    body, headers = large_body(kind)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=ANSWER_TIMEOUT)
    try:
        bound = RSS_BOUND_MIB["head" if kind == "query" else "body"]
        before = grown_mib = 0.0
        for n in range(STREAM_WARM_UP + STREAM_REQUESTS):
            if n == STREAM_WARM_UP:
                before = proc_status(server, "VmRSS") / 1024
            # _body keeps the answer small: the memory under test is what is kept.
            query = "&a" * 31_000 if kind == "query" else ""
            conn.request("POST", f"/large/{n}?_body=ok{query}", body=body, headers=headers)
            response = conn.getresponse()
            assert response.read() == b"ok" and response.status == 200
            if n >= STREAM_WARM_UP:
                # Bounded all along the stream, not only at its end.
                grown_mib = proc_status(server, "VmRSS") / 1024 - before
                assert grown_mib < bound, f"RSS grew {grown_mib:.1f} MiB after {n + 1 - STREAM_WARM_UP} requests"
    finally:
        conn.close()
    assert len(history_ids(server)) == STREAM_HISTORY
    print(f"{kind}: {STREAM_REQUESTS} x {len(body) or 62_000} B, RSS grew {grown_mib:.1f} MiB (bound {bound:.0f} MiB)")
