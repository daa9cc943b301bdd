"""httpbin mode, dynamic data and encodings: /bytes, /stream, /stream-bytes, /delay, /drip, /range, /gzip, /deflate, /brotli.

Against the real server with --httpbin and small limits, so each bound is
tested at its limit and one past it: seeded bytes equal httpbin's (Python's
random seeded, randint(0, 255) per byte), streamed answers really stream (a
raw socket sees the first drip before the last is sent, /stream is chunked),
and the history keeps the size and SHA-256 of what was actually sent.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import EchoServer, call, dechunk, http_request, need, split_response, start_echo

MAX_BODY = 200_000
MAX_DELAY = 2
MAX_N = 7


@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin", "--max-body", str(MAX_BODY), "--max-delay", str(MAX_DELAY),
                        "--max-httpbin-n", str(MAX_N))
    yield server
    server.stop()


def get_json(server: EchoServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    status, answer_headers, raw = call(server.port, "GET", path, None, headers)
    return status, answer_headers, json.loads(raw)


def randint_bytes(seed: int, size: int) -> bytes:
    """httpbin's bytes for a seed: random.seed(seed), then randint(0, 255) per byte."""
    rng = random.Random(seed)
    return bytes(rng.randint(0, 255) for _ in range(size))


# --- /bytes and /stream-bytes ---------------------------------------------------

@pytest.mark.parametrize(("seed", "size"), [(0, 1), (5, 20), (-3, 1000), (10**20, 70_000), (42, MAX_BODY)])
def test_seeded_bytes_are_httpbins(httpbin: EchoServer, seed: int, size: int) -> None:
    status, headers, body = call(httpbin.port, "GET", f"/bytes/{size}?seed={seed}")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert body == randint_bytes(seed, size)
    assert headers["Content-Security-Policy"] == "sandbox" and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("size", "chunk_size"), [(20, 3), (70_000, 1000), (1000, 1), (10, 0)])
def test_seeded_stream_bytes_are_httpbins_in_chunks_of_chunk_size(httpbin: EchoServer, size: int,
                                                                  chunk_size: int) -> None:
    raw = _raw(httpbin, f"/stream-bytes/{size}?seed=9&chunk_size={chunk_size}")
    status, headers, body = split_response(raw)
    assert status == 200 and ("Transfer-Encoding", "chunked") in headers
    assert dechunk(body) == randint_bytes(9, size)
    sizes = _chunk_sizes(body)
    assert set(sizes[:-1]) == {max(1, chunk_size)}  # httpbin: chunk_size at least 1


def test_unseeded_bytes_differ_each_time(httpbin: EchoServer) -> None:
    first, second = (call(httpbin.port, "GET", "/bytes/64")[2] for _ in range(2))
    assert len(first) == len(second) == 64 and first != second
    assert len(call(httpbin.port, "GET", "/stream-bytes/3000?chunk_size=1000")[2]) == 3000


@pytest.mark.parametrize("route", ["/bytes", "/stream-bytes", "/range"])
def test_sizes_are_bounded_by_max_body_at_limit_and_limit_plus_one(httpbin: EchoServer, route: str) -> None:
    status, _, body = call(httpbin.port, "GET", f"{route}/{MAX_BODY}")
    assert status == 200 and len(body) == MAX_BODY
    status, _, doc = get_json(httpbin, f"{route}/{MAX_BODY + 1}")
    assert status == 400
    param = "numbytes" if route == "/range" else "n"
    assert doc == {"error": f"{param} is over the limit of {MAX_BODY}", "param": param, "value": MAX_BODY + 1,
                   "limit": MAX_BODY, "setting": "--max-body"}


@pytest.mark.parametrize(("path", "status", "param"), [
    ("/bytes/abc", 404, "n"),
    ("/bytes/-1", 404, "n"),
    ("/bytes/1.5", 404, "n"),
    ("/bytes/5?seed=x", 400, "seed"),
    ("/stream-bytes/5?chunk_size=big", 400, "chunk_size"),
    ("/stream/x", 404, "n"),
    ("/range/ten", 404, "numbytes"),
    ("/range/10?duration=soon", 400, "duration"),
    ("/delay/x", 400, "delay"),
    ("/delay/-1", 400, "delay"),
    ("/delay/nan", 400, "delay"),
    ("/delay/inf", 400, "delay"),
    ("/drip?numbytes=two", 400, "numbytes"),
    ("/drip?duration=-1", 400, "duration"),
    ("/drip?code=99&duration=0", 400, "code"),
    ("/drip?code=600&duration=0", 400, "code"),
])
def test_bad_numbers_are_named(httpbin: EchoServer, path: str, status: int, param: str) -> None:
    got, _, doc = get_json(httpbin, path)
    assert (got, doc["param"]) == (status, param) and doc["error"]


# --- /stream ----------------------------------------------------------------------

def test_stream_is_chunked_json_lines_of_get_plus_id(httpbin: EchoServer) -> None:
    status, headers, body = split_response(_raw(httpbin, "/stream/3?a=1&a=2"))
    names = [name.lower() for name, _ in headers]
    assert status == 200 and ("Transfer-Encoding", "chunked") in headers and "content-length" not in names
    assert len(_chunk_sizes(body)) == 3  # one chunk per line, sent as made
    lines = dechunk(body).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2]
    first = json.loads(lines[0])
    assert list(first) == ["url", "args", "headers", "origin", "id"]  # httpbin's order, json.dumps spacing
    assert first["args"] == {"a": ["1", "2"]} and lines[0].startswith('{"url": "http://127.0.0.1/stream/3?a=1&a=2", "args"')


def test_stream_lines_are_bounded_by_max_httpbin_n(httpbin: EchoServer) -> None:
    _, _, body = call(httpbin.port, "GET", f"/stream/{MAX_N}")
    assert len(body.splitlines()) == MAX_N
    status, _, doc = get_json(httpbin, f"/stream/{MAX_N + 1}")
    assert status == 400 and (doc["param"], doc["limit"], doc["setting"]) == ("n", MAX_N, "--max-httpbin-n")
    assert call(httpbin.port, "GET", "/stream/0")[2] == b""


# --- /delay and /drip -------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_delay_waits_then_answers_httpbins_document(httpbin: EchoServer, method: str) -> None:
    began = time.monotonic()
    status, _, raw = call(httpbin.port, method, "/delay/0.3?x=1", b"hi" if method != "GET" else None)
    assert status == 200 and time.monotonic() - began >= 0.3
    doc = json.loads(raw)
    assert set(doc) == {"url", "args", "form", "data", "origin", "headers", "files"} and doc["args"] == {"x": "1"}


def test_delay_is_bounded_by_max_delay_at_limit_and_limit_plus_one(httpbin: EchoServer) -> None:
    began = time.monotonic()
    assert get_json(httpbin, f"/delay/{MAX_DELAY}")[0] == 200
    assert time.monotonic() - began >= MAX_DELAY
    began = time.monotonic()
    status, _, doc = get_json(httpbin, f"/delay/{MAX_DELAY + 1}")
    assert time.monotonic() - began < 1  # refused at once, not clamped to the limit and waited (httpbin: 10 s)
    assert status == 400 and doc == {"error": f"delay is over the limit of {MAX_DELAY}", "param": "delay",
                                     "value": MAX_DELAY + 1, "limit": MAX_DELAY, "setting": "--max-delay"}


def test_drip_streams_its_first_byte_before_its_last(httpbin: EchoServer) -> None:
    with socket.create_connection(("127.0.0.1", httpbin.port), timeout=10) as sock:
        sock.sendall(http_request(b"GET", b"/drip?duration=2&numbytes=4"))
        began = time.monotonic()
        got = b""
        while b"*" not in got.partition(b"\r\n\r\n")[2]:
            got += sock.recv(65536)
        first = time.monotonic() - began
        while chunk := sock.recv(65536):
            got += chunk
        last = time.monotonic() - began
    status, headers, body = split_response(got)
    assert status == 200 and body == b"****" and ("Content-Length", "4") in headers
    assert first < 0.5 and last >= 1.4  # bytes at 0, 0.5, 1 and 1.5 s


@pytest.mark.parametrize(("query", "status", "body"), [
    ("duration=0&numbytes=5", 200, b"*****"),
    ("duration=0&numbytes=5&code=404", 404, b"*****"),
    ("duration=0&numbytes=0", 400, b"number of bytes must be positive"),
    ("duration=0.2&numbytes=3&delay=0.2", 200, b"***"),
    (f"duration=0&numbytes={MAX_BODY}", 200, b"*" * MAX_BODY),
])
def test_drip_answers(httpbin: EchoServer, query: str, status: int, body: bytes) -> None:
    got, headers, raw = call(httpbin.port, "GET", f"/drip?{query}")
    assert (got, raw) == (status, body)


@pytest.mark.parametrize(("query", "param", "limit", "setting"), [
    (f"duration=0&numbytes={MAX_BODY + 1}", "numbytes", MAX_BODY, "--max-body"),
    (f"duration={MAX_DELAY}&delay=1&numbytes=1", "duration+delay", MAX_DELAY, "--max-delay"),
    (f"duration=0&delay={MAX_DELAY + 1}&numbytes=1", "duration+delay", MAX_DELAY, "--max-delay"),
])
def test_drip_limits_at_limit_plus_one(httpbin: EchoServer, query: str, param: str, limit: int, setting: str) -> None:
    status, _, doc = get_json(httpbin, f"/drip?{query}")
    assert status == 400 and (doc["param"], doc["limit"], doc["setting"]) == (param, limit, setting)


def test_drip_at_the_delay_limit_is_answered(httpbin: EchoServer) -> None:
    began = time.monotonic()
    status, _, body = call(httpbin.port, "GET", f"/drip?duration={MAX_DELAY - 1}&delay=1&numbytes=2")
    # delay, then a byte, the pause of duration/2, the last byte
    assert (status, body) == (200, b"**") and time.monotonic() - began >= 1 + (MAX_DELAY - 1) / 2


# --- /range -------------------------------------------------------------------------

@pytest.mark.parametrize(("range_header", "status", "body", "content_range"), [
    (None, 200, b"abcdefghijklmnopqrstuvwxyzabcd", "bytes 0-29/30"),
    ("bytes=5-9", 206, b"fghij", "bytes 5-9/30"),
    ("bytes=-5", 206, b"zabcd", "bytes 25-29/30"),
    ("bytes=25-", 206, b"zabcd", "bytes 25-29/30"),
    ("bytes=0-29", 200, b"abcdefghijklmnopqrstuvwxyzabcd", "bytes 0-29/30"),
    ("bytes=-50", 200, b"abcdefghijklmnopqrstuvwxyzabcd", "bytes 0-29/30"),
    ("items=1-2", 200, b"abcdefghijklmnopqrstuvwxyzabcd", "bytes 0-29/30"),  # httpbin: unreadable is the whole
    ("bytes=25-40", 416, b"", "bytes */30"),
    ("bytes=30-", 416, b"", "bytes */30"),
    ("bytes=9-5", 416, b"", "bytes */30"),
])
def test_range_answers_as_httpbin(httpbin: EchoServer, range_header: str | None, status: int, body: bytes,
                                  content_range: str) -> None:
    got, headers, raw = call(httpbin.port, "GET", "/range/30", headers={"Range": range_header} if range_header else {})
    assert (got, raw) == (status, body)
    assert headers["Content-Range"] == content_range and headers["Content-Length"] == str(len(body))
    assert headers["ETag"] == "range30" and headers["Accept-Ranges"] == "bytes"


def test_range_zero_is_httpbins_404_and_chunks_and_duration_apply(httpbin: EchoServer) -> None:
    status, headers, raw = call(httpbin.port, "GET", "/range/0")
    assert status == 404 and raw == f"number of bytes must be in the range (0, {MAX_BODY}]".encode()
    assert headers["ETag"] == "range0"
    _, headers, body = split_response(_raw(httpbin, "/range/100?chunk_size=7", [(b"Range", b"bytes=3-50")]))
    assert body == bytes(ord("a") + i % 26 for i in range(3, 51))
    began = time.monotonic()
    assert call(httpbin.port, "GET", "/range/10?duration=0.5&chunk_size=2")[2] == b"abcdefghij"
    assert time.monotonic() - began >= 0.4  # a pause after each of the first four chunks


def test_range_duration_is_bounded_by_max_delay(httpbin: EchoServer) -> None:
    assert call(httpbin.port, "GET", f"/range/2?duration={MAX_DELAY}")[0] == 200
    status, _, doc = get_json(httpbin, f"/range/2?duration={MAX_DELAY + 1}")
    assert status == 400 and (doc["param"], doc["setting"]) == ("duration", "--max-delay")


# --- what the history keeps of a streamed answer ---------------------------------------------

@pytest.mark.parametrize("path", ["/stream-bytes/5000?seed=1&chunk_size=100", "/stream/3",
                                  "/drip?duration=0.2&numbytes=300", "/range/1000?chunk_size=64"])
def test_history_has_size_and_sha256_of_what_was_streamed(httpbin: EchoServer, path: str) -> None:
    status, headers, body = call(httpbin.port, "GET", path)
    assert status == 200
    # A streamed exchange is recorded when the server closes the body, just after the last byte went out.
    deadline = time.monotonic() + 5
    while (found := get_json(httpbin, f"/_/api/exchanges/{headers['X-Echo-Id']}"))[0] == 404:
        assert time.monotonic() < deadline, "the exchange was not recorded"
        time.sleep(0.05)
    kept = found[2]
    assert kept["response"]["body"]["size"] == len(body)
    assert kept["response"]["body"]["sha256"] == hashlib.sha256(body).hexdigest()


# --- /gzip, /deflate, /brotli ----------------------------------------------------------

@pytest.mark.parametrize(("path", "encoding", "decode", "flag"), [
    ("/gzip", "gzip", gzip.decompress, "gzipped"),
    ("/deflate", "deflate", zlib.decompress, "deflated"),
])
def test_compressed_answers_are_really_compressed(httpbin: EchoServer, path: str, encoding: str,
                                                  decode: Any, flag: str) -> None:
    status, headers, raw = call(httpbin.port, "GET", path, headers={"X-Custom": "yes", "Accept-Encoding": "identity"})
    assert status == 200 and headers["Content-Encoding"] == encoding and int(headers["Content-Length"]) == len(raw)
    doc = json.loads(decode(raw))
    assert doc == {"headers": doc["headers"], "method": "GET", "origin": "127.0.0.1", flag: True}
    assert doc["headers"]["X-Custom"] == "yes"


def test_brotli_is_compressed_when_the_package_is_installed(httpbin: EchoServer) -> None:
    found = importlib.util.find_spec("brotli") is not None
    need("the brotli package", found, "brotli", "pip install brotli (it is in the test extra)")
    import brotli  # type: ignore[import-not-found, unused-ignore]

    status, headers, raw = call(httpbin.port, "GET", "/brotli")
    assert status == 200 and headers["Content-Encoding"] == "br"
    doc = json.loads(brotli.decompress(raw))
    assert doc["brotli"] is True and doc["method"] == "GET"


def test_brotli_without_the_package_is_501_naming_it(tmp_path: Path) -> None:
    # A real server for which `import brotli` fails, installed or not.
    (tmp_path / "brotli.py").write_text("raise ImportError('no brotli here')\n")
    server = start_echo("--log", "off", "--httpbin", env={"PYTHONPATH": str(tmp_path)})
    try:
        status, headers, raw = call(server.port, "GET", "/brotli")
        assert call(server.port, "GET", "/gzip")[0] == 200
    finally:
        server.stop()
    doc = json.loads(raw)
    assert status == 501 and "Content-Encoding" not in headers
    assert doc["package"] == "brotli" and "brotli" in doc["error"]


# --- the seeded bytes' shortcut, against randint itself ----------------------------------------

@pytest.mark.parametrize(("seed", "size", "chunk_size"), [(0, 0, 1), (1, 1, 1), (7, 300_000, 65_536),
                                                          (123, 140_000, 10_240), (2**70, 5000, 3)])
def test_seeded_chunks_equal_randint(seed: int, size: int, chunk_size: int) -> None:
    from echo.answer.routes import data

    assert data._SIFT_MATCHES
    chunks = list(data.seeded_chunks(seed, size, chunk_size))
    assert b"".join(chunks) == randint_bytes(seed, size)
    assert all(len(chunk) == chunk_size for chunk in chunks[:-1])


def _raw(server: EchoServer, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    from support import raw_request

    return raw_request(server.port, http_request(b"GET", path.encode(), headers))


def _chunk_sizes(body: bytes) -> list[int]:
    sizes = []
    while True:
        line, _, body = body.partition(b"\r\n")
        size = int(line, 16)
        if size == 0:
            return sizes
        sizes.append(size)
        body = body[size + 2:]
