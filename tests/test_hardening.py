"""Hostile input at the wire: nothing a client sends gets a 5xx, a traceback or a dropped connection.

Requests are written as raw bytes (conftest.raw_request) so that what HTTP
client libraries refuse to send (invalid UTF-8, NUL, `..` segments, lying
headers) reaches the real waitress server as written. Each case checks the
answer is complete and well-formed, that the exchange's inspector views still
render, and that the server log gained no traceback. Every limit is then tried
at the limit and one past it.
"""

from __future__ import annotations

import gzip
import json
import struct
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from support import EchoServer, http_request, send, start_echo

# Generous bound for any one answer; a hung worker shows up as this timeout.
ANSWER_TIMEOUT = 15.0
# How long to wait for the server's own log line that marks "everything before
# this request has been written".
LOG_WAIT_SECONDS = 10.0

# 1 GiB of zeros, gzipped. Built from one deflate block that ends in a full
# flush (so it can be repeated byte for byte) instead of compressing a GiB.
BOMB_CHUNK = 4 * 1024 * 1024
BOMB_CHUNKS = 256
BOMB_SIZE = BOMB_CHUNK * BOMB_CHUNKS  # 1 GiB
BOMB_CRC32 = 0x5B64C2B0  # zlib.crc32(bytes(1 << 30)), computed once: it takes seconds
MiB = 1024 * 1024


def gzip_bomb() -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflater.compress(bytes(BOMB_CHUNK)) + deflater.flush(zlib.Z_FULL_FLUSH)
    tail = deflater.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * BOMB_CHUNKS + tail + struct.pack("<II", BOMB_CRC32, BOMB_SIZE & 0xFFFFFFFF)


def zlib_bomb() -> bytes:
    """The same GiB of zeros in the zlib format that Content-Encoding: deflate names."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflater.compress(bytes(BOMB_CHUNK)) + deflater.flush(zlib.Z_FULL_FLUSH)
    tail = deflater.flush()
    adler = ((BOMB_SIZE % 65521) << 16) | 1  # Adler-32 of n zeros: a stays 1, b is n mod 65521
    return b"\x78\xda" + block * BOMB_CHUNKS + tail + struct.pack(">I", adler)


def strict_json(body: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def get(server: EchoServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=ANSWER_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def log_after(server: EchoServer, mark: int) -> list[str]:
    """Server output since `mark`, once a sentinel request's access-log line shows it is all written."""
    sentinel = uuid.uuid4().hex
    status, _, _ = send(server, http_request(b"GET", f"/log-sentinel/{sentinel}".encode()))
    assert status == 200
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while time.monotonic() < deadline:
        lines = server.lines()[mark:]
        if any(sentinel in line for line in lines):
            return lines
        time.sleep(0.02)
    raise AssertionError("the sentinel request never reached the access log")


def assert_views_render(server: EchoServer, exchange_id: str) -> None:
    """The exchange's inspector page, API document and curl command all answer without a 5xx."""
    for path in (f"/_/exchanges/{exchange_id}", f"/_/api/exchanges/{exchange_id}",
                 f"/_/api/exchanges/{exchange_id}/curl"):
        status, body = get(server, path)
        assert status == 200, (path, status, body[:300])
    status, body = get(server, f"/_/api/exchanges/{exchange_id}")
    strict_json(body)


@pytest.fixture(scope="module")
def server() -> Iterator[EchoServer]:
    """A real server with default limits and the text access log on, so its log can be read."""
    running = start_echo("--log", "text")
    yield running
    running.stop()


# ---- hostile requests to the echo -----------------------------------------

DEEP = 100_000
FORM_1001 = b"&".join(b"f%d=%d" % (i, i) for i in range(1001))

# (name, method, target, headers, body). Each is answered 200 or 400 with strict JSON.
HOSTILE: list[Any] = [
    ("percent-encoded invalid UTF-8 in path", b"GET", b"/%ff%fe/%c3%28", [], None),
    ("percent-encoded surrogate in path", b"GET", b"/%ed%a0%80", [], None),
    ("NUL and CR LF in path", b"GET", b"/a%00b%0d%0aInjected:%20x", [], None),
    ("dot segments in echo path", b"GET", b"/../../etc/passwd", [], None),
    ("percent-encoded dot segments", b"GET", b"/%2e%2e/%2e%2e/etc/passwd", [], None),
    ("backslashes in path", b"GET", b"/..\\..\\windows\\win.ini", [], None),
    ("invalid UTF-8 in query", b"GET", b"/q?a=%ff&%fe=1&%c3=%28", [], None),
    ("hundreds of query parameters", b"GET", b"/q?" + b"&".join(b"p%d=%d" % (i, i) for i in range(600)), [], None),
    ("query of separators only", b"GET", b"/q?&&&==&=&", [], None),
    ("absolute-form target", b"GET", b"http://elsewhere.invalid/x?y=1", [], None),
    ("asterisk target", b"OPTIONS", b"*", [], None),
    ("invalid UTF-8 header value", b"GET", b"/h", [(b"X-Bytes", b"\xff\xfe\xc3\x28")], None),
    ("UTF-8 header value", b"GET", b"/h", [(b"X-Text", "\u00e9\u20ac".encode())], None),
    ("8 KB header", b"GET", b"/h", [(b"X-Big", b"a" * 8192)], None),
    ("four hundred headers", b"GET", b"/h", [(b"X-H%d" % i, b"v") for i in range(400)], None),
    ("obs-folded header", b"GET", b"/h", [(b"X-Fold", b"a\r\n  b")], None),
    ("garbage Accept", b"GET", b"/h", [(b"Accept", b"text/html;q=abc, application/json;q=nan, */*;q=\xff")], None),
    ("invalid UTF-8 Origin", b"GET", b"/h", [(b"Origin", b"http://\xff")], None),
    ("invalid UTF-8 Host", b"GET", b"/h", [(b"Host", b"\xff.invalid")], None),
    ("X-Forwarded-For junk", b"GET", b"/h", [(b"X-Forwarded-For", b"\xff, ::::, 999.1.1.1")], None),
    ("odd but UTF-8 cookies", b"GET", b"/c", [(b"Cookie", b'a="\\\\x"; ;;; =; c; d=\xc3\xa9')], None),
    ("two thousand cookies", b"GET", b"/c", [(b"Cookie", b"; ".join(b"c%d=%d" % (i, i) for i in range(2000)))], None),
    ("lying JSON content type", b"POST", b"/b", [(b"Content-Type", b"application/json")], b"\xff\xfe{not json"),
    ("lying UTF-16 charset", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset=utf-16")], b"abc"),
    ("unknown charset", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset=x-no-such")], b"abc"),
    ("non-text codec as charset", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset=base64")], b"YWJj"),
    ("empty charset", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset=")], b"abc"),
    ("invalid UTF-8 content type", b"POST", b"/b", [(b"Content-Type", b"\xff/\xfe; charset=\xff")], b"abc"),
    ("HTML body", b"POST", b"/b", [(b"Content-Type", b"text/html")], b"<script>alert(1)</script>"),
    ("multipart without boundary", b"POST", b"/m", [(b"Content-Type", b"multipart/form-data")], b"--x\r\n"),
    ("multipart with a broken part", b"POST", b"/m", [(b"Content-Type", b"multipart/form-data; boundary=x")],
     b"--x\r\nno headers here\r\n"),
    ("truncated multipart", b"POST", b"/m", [(b"Content-Type", b"multipart/form-data; boundary=x")],
     b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nhello'),
    ("multipart with invalid UTF-8 names", b"POST", b"/m", [(b"Content-Type", b"multipart/form-data; boundary=x")],
     b'--x\r\nContent-Disposition: form-data; name="\xff"; filename="\xfe"\r\nContent-Type: \xff\r\n\r\nhi\xff\r\n--x--\r\n'),
    ("multipart with a 5000-byte boundary", b"POST", b"/m",
     [(b"Content-Type", b"multipart/form-data; boundary=" + b"x" * 5000)], b"--x\r\n"),
    ("1001 urlencoded fields", b"POST", b"/f", [(b"Content-Type", b"application/x-www-form-urlencoded")], FORM_1001),
    ("invalid UTF-8 form", b"POST", b"/f", [(b"Content-Type", b"application/x-www-form-urlencoded")], b"%ff=%fe&&=&a"),
    ("not gzip", b"POST", b"/z", [(b"Content-Encoding", b"gzip")], b"plain text"),
    ("truncated gzip", b"POST", b"/z", [(b"Content-Encoding", b"gzip")], gzip.compress(b"hello")[:-6]),
    ("gzip with trailing garbage", b"POST", b"/z", [(b"Content-Encoding", b"gzip")], gzip.compress(b"hi") + b"junk"),
    ("raw deflate", b"POST", b"/z", [(b"Content-Encoding", b"deflate")], zlib.compress(b"hello")[2:-4]),
    ("unknown encoding", b"POST", b"/z", [(b"Content-Encoding", b"br")], b"abc"),
    ("invalid UTF-8 encoding name", b"POST", b"/z", [(b"Content-Encoding", b"\xff, gzip")], b"abc"),
    ("encoding list of commas", b"POST", b"/z", [(b"Content-Encoding", b",,, ,")], b"abc"),
    ("JSON nested 100000 deep", b"POST", b"/j", [(b"Content-Type", b"application/json")], b"[" * DEEP + b"]" * DEEP),
    ("JSON objects nested deep", b"POST", b"/j", [(b"Content-Type", b"application/json")],
     b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("untyped deep JSON", b"POST", b"/j", [], b"[" * DEEP),
    ("JSON 1e999", b"POST", b"/j", [(b"Content-Type", b"application/json")], b"[1e999, -1e999]"),
    ("JSON 10**5000", b"POST", b"/j", [(b"Content-Type", b"application/json")], b"1" + b"0" * 5000),
    ("JSON NaN and Infinity", b"POST", b"/j", [(b"Content-Type", b"application/json")], b"[NaN, Infinity, -Infinity]"),
    ("JSON with BOM", b"POST", b"/j", [(b"Content-Type", b"application/json")], b'\xef\xbb\xbf{"a": 1}'),
    ("JSON top-level scalar", b"POST", b"/j", [(b"Content-Type", b"application/json")], b'"just a string"'),
    ("JSON in UTF-16", b"POST", b"/j", [(b"Content-Type", b"application/json")], '{"a": 1}'.encode("utf-16")),
    ("controls with invalid UTF-8", b"GET", b"/c?_status=%ff&_header=%ff:%fe", [], None),
    ("control header with invalid UTF-8", b"GET", b"/c", [(b"X-Echo-Header", b"X-A: \xff\xfe")], None),
    ("delay of 1e999", b"GET", b"/c?_delay=1e999", [], None),
    ("header injection attempt", b"GET", b"/c?_header=X-A:%20a%0d%0aSet-Cookie:%20owned=1", [], None),
    ("framing header attempt", b"GET", b"/c?_header=Content-Length:%200", [], None),
    ("caller body of invalid UTF-8 bytes", b"GET", b"/c", [(b"X-Echo-Body", b"\xff\xfe")], None),
    ("preflight with junk", b"OPTIONS", b"/p",
     [(b"Origin", b"http://a"), (b"Access-Control-Request-Method", b"\xff"), (b"Access-Control-Request-Headers", b"\xff")],
     None),
    ("browser asking for HTML with a hostile body", b"POST", b"/h?<script>=1",
     [(b"Accept", b"text/html"), (b"Content-Type", b"application/json")], b'{"<script>": "\\u2028</script>"}'),
    ("Cookie header that is not UTF-8", b"GET", b"/c", [(b"Cookie", b"a=\xff; b=\xed\xa0\x80")], None),
    ("charset=undefined", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset=undefined")], b"abc"),
    ("charset=idna with a bad punycode label", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset=idna")],
     b"xn--a"),
    ("RFC 2231 charset holding NUL", b"POST", b"/b", [(b"Content-Type", b"text/plain; charset*=UTF-8''%00")], b"abc"),
    ("status of 5000 digits", b"GET", b"/c?_status=" + b"2" * 5000, [], None),
    ("status weight too large for a float", b"GET", b"/c?_status=200:" + b"9" * 400 + b",503:1", [], None),
]


@pytest.mark.parametrize(("name", "method", "target", "headers", "body"),
                         [pytest.param(*case, id=case[0]) for case in HOSTILE])
def test_hostile_request_is_answered_cleanly(server: EchoServer, name: str, method: bytes, target: bytes,
                                             headers: list[tuple[bytes, bytes]], body: bytes | None) -> None:
    mark = len(server.lines())
    status, answer_headers, answer = send(server, http_request(method, target, headers, body))
    assert status in (200, 204, 400), (name, status, answer[:300])
    exchange_id = answer_headers["x-echo-id"]
    if status != 204:
        if answer_headers["content-type"].startswith("application/json"):
            document = strict_json(answer)
            assert "error" in document or document["id"] == exchange_id
        elif answer_headers["content-type"].startswith("text/html"):
            assert b"<script>alert" not in answer and b'"<script>"' not in answer
    if answer:
        assert answer_headers["x-content-type-options"] == "nosniff"
    assert_views_render(server, exchange_id)
    log = log_after(server, mark)
    assert not any("Traceback" in line for line in log), "".join(log)


SURROGATE_BODIES = [b'["\\ud800"]', b'{"\\udfff": ["\\ud800", "\\u0000"]}']


@pytest.mark.parametrize("body", SURROGATE_BODIES)
@pytest.mark.parametrize("content_type", [b"application/json", b"text/plain"])
def test_lone_surrogate_escapes_are_echoed_as_strict_json(server: EchoServer, body: bytes, content_type: bytes) -> None:
    status, _, answer = send(server, http_request(b"POST", b"/s", [(b"Content-Type", content_type)], body))
    assert status == 200
    assert strict_json(answer)["json"] == json.loads(body)


@pytest.mark.parametrize("body", SURROGATE_BODIES)
@pytest.mark.parametrize("content_type", [b"application/json", b"text/plain"])
def test_lone_surrogate_escapes_do_not_break_the_detail_page(server: EchoServer, body: bytes,
                                                             content_type: bytes) -> None:
    # application/json: the request body view; text/plain: the echo JSON sent back.
    _, headers, _ = send(server, http_request(b"POST", b"/s", [(b"Content-Type", content_type)], body))
    status, page = get(server, f"/_/exchanges/{headers['x-echo-id']}")
    assert status == 200, page[:200]


def test_raw_non_ascii_request_target_is_refused_by_waitress_not_crashed(server: EchoServer) -> None:
    # A request target must be ASCII (RFC 9112); waitress answers 400 before the
    # app runs. Percent-encoded bytes (above) are what clients send and are echoed.
    for target in (b"/\xff\xfe", b"/?a=\xff"):
        status, headers, body = send(server, http_request(b"GET", target))
        assert status == 400 and b"Bad URI" in body
    status, _, _ = send(server, http_request(b"GET", b"/still-answering"))
    assert status == 200


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n", 400),
    ("duplicate Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n"
     b"Connection: close\r\n\r\nabcd", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n", 400),
    ("NUL in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n", 400),
    ("bare CR in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\nConnection: close\r\n\r\n", 400),
    ("space in a header name", b"GET / HTTP/1.1\r\nHost: x\r\nX A: a\r\nConnection: close\r\n\r\n", 400),
    ("invalid method byte", b"G\xffT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    ("unsupported transfer coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
     b"Connection: close\r\n\r\nabc", 501),
])
def test_malformed_framing_is_refused_by_waitress_and_the_server_goes_on(server: EchoServer, name: str, data: bytes,
                                                                        expected: int) -> None:
    # Framing errors never reach the app: waitress answers them itself, in plain text.
    mark = len(server.lines())
    status, _, _ = send(server, data)
    assert status == expected, name
    log = log_after(server, mark)
    assert not any("Traceback" in line for line in log)


def test_newlines_in_the_path_cannot_forge_access_log_lines(server: EchoServer) -> None:
    mark = len(server.lines())
    forged = "2026-01-01T00:00:00.000Z 10.0.0.1 GET /admin 200 0.1ms 0B forged"
    target = b"/x%0d%0a" + forged.replace(" ", "%20").encode() + b"%1b[2J"
    status, _, _ = send(server, http_request(b"GET", target))
    assert status == 200
    log = log_after(server, mark)
    assert not any(line.startswith("2026-01-01T00:00:00.000Z") for line in log), log
    assert not any("\x1b" in line for line in log)


# ---- the inspector and static files ----------------------------------------

SECRETS = (b"[metadata]", b"def create_app", b"root:x:0:0", b"[tool:pytest]")
TRAVERSALS = [
    "/_/static/../../setup.cfg",
    "/_/static/%2e%2e/%2e%2e/setup.cfg",
    "/_/static/%2E%2E%2F%2E%2E%2Fsetup.cfg",
    "/_/static/..%2f..%2fsetup.cfg",
    "/_/static/..%5c..%5csetup.cfg",
    "/_/static/..\\..\\setup.cfg",
    "/_/static/../../echo/__init__.py",
    "/_/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/_/static//etc/passwd",
    "/_/static/%2fetc%2fpasswd",
    "/_/static/inspector.css%00.js",
    "/_/static/%ff%fe",
    "/_/static/....//....//setup.cfg",
    "/_/static/%252e%252e/%252e%252e/setup.cfg",
    "/_/../setup.cfg",
    "/_/%2e%2e/setup.cfg",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_static_route_never_serves_a_file_outside_static(server: EchoServer, target: str) -> None:
    status, headers, body = send(server, http_request(b"GET", target.encode("latin-1")))
    if status == 308:
        # werkzeug merges repeated slashes with a redirect; where it points is
        # asked for too: it must not be a file either.
        location = headers["location"].split("127.0.0.1", 1)[-1]
        status, headers, body = send(server, http_request(b"GET", location.encode("latin-1")))
    assert status < 500
    assert not any(secret in body for secret in SECRETS), (target, status, body[:200])
    if target.startswith("/_/static/") and "//" not in target and "%2f" not in target:
        assert status in (400, 404), (target, status)


def test_static_route_serves_its_own_files(server: EchoServer) -> None:
    status, headers, body = send(server, http_request(b"GET", b"/_/static/inspector.css"))
    assert status == 200 and headers["content-type"].startswith("text/css") and body


HOSTILE_IDS = [
    "..", "../../etc/passwd", "%2e%2e%2f%2e%2e%2fsetup.cfg", "..%5c..%5c", "%00", "a%00b", "%ff%fe",
    "<script>alert(1)</script>", "%3Cscript%3Ealert(1)%3C%2Fscript%3E", "0" * 27, "0" * 29, "G" * 28,
    "x" * 10_000, "%E2%80%AE", "'%20OR%20'1'='1", "*", "${jndi:ldap://x}",
]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("route", ["/_/exchanges/{}", "/_/api/exchanges/{}", "/_/api/exchanges/{}/curl"])
def test_hostile_exchange_ids_get_a_clean_404(server: EchoServer, route: str, hostile: str) -> None:
    mark = len(server.lines())
    status, headers, body = send(server, http_request(b"GET", route.format(hostile).encode("latin-1")))
    assert status == 404, (route, hostile, status)
    if "/api/" in route:
        assert "error" in strict_json(body)
    else:
        assert headers["content-type"].startswith("text/html")
        assert b"<script>alert" not in body
    assert not any(secret in body for secret in SECRETS)
    log = log_after(server, mark)
    assert not any("Traceback" in line for line in log)


@pytest.mark.parametrize("query", [
    "before=%ff", "before=../../x", "limit=%00", "limit=-1", "limit=1001", "limit=99999999999999999999999",
    "status=%ff", "status=6xx", "method=%ff%00", "q=%ff", "q=" + "a" * 5000, "bodies=%ff",
])
def test_hostile_list_queries_get_a_clean_answer(server: EchoServer, query: str) -> None:
    for route in ("/_/api/exchanges", "/_/", "/_/api/exchanges.har"):
        status, headers, body = send(server, http_request(b"GET", f"{route}?{query}".encode()))
        assert status in (200, 400), (route, query, status)
        if route != "/_/":
            strict_json(body)


# ---- limits, at the limit and one past it -----------------------------------

LIMIT_BODY = 1000
LIMIT_KEEP = 100
LIMIT_HISTORY = 5
LIMIT_DELAY = 0.25
LIMIT_DEPTH = 5
LIMIT_PARTS = 3
LIMIT_HEADER = 2048


@pytest.fixture(scope="module")
def limited() -> Iterator[EchoServer]:
    running = start_echo(
        "--log", "off", "--max-body", str(LIMIT_BODY), "--keep-body", str(LIMIT_KEEP),
        "--history", str(LIMIT_HISTORY), "--max-delay", str(LIMIT_DELAY), "--max-json-depth", str(LIMIT_DEPTH),
        "--max-form-parts", str(LIMIT_PARTS), "--max-header", str(LIMIT_HEADER),
    )
    yield running
    running.stop()


def recorded(server: EchoServer, exchange_id: str) -> dict[str, Any]:
    status, body = get(server, f"/_/api/exchanges/{exchange_id}")
    assert status == 200
    return strict_json(body)


@pytest.mark.parametrize(("size", "status"), [(LIMIT_BODY, 200), (LIMIT_BODY + 1, 413)])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_limit(limited: EchoServer, size: int, status: int, framing: str) -> None:
    body = b"a" * size
    if framing == "length":
        data = http_request(b"POST", b"/limit", [], body)
    else:
        data = (b"POST /limit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                + f"{size:x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    got, headers, answer = send(limited, data)
    assert got == status
    document = strict_json(answer)
    if status == 413:
        assert document["limit"] == LIMIT_BODY and document["size"] == size and document["setting"] == "--max-body"
    else:
        assert document["body"]["size"] == size
    assert recorded(limited, headers["x-echo-id"])["response"]["status"] == status


@pytest.mark.parametrize(("size", "status"), [(LIMIT_BODY, 200), (LIMIT_BODY + 1, 413)])
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_decoded_body_limit(limited: EchoServer, size: int, status: int, coding: str) -> None:
    encoded = gzip.compress(b"a" * size) if coding == "gzip" else zlib.compress(b"a" * size)
    assert len(encoded) < LIMIT_BODY  # only the decoded size can be over
    got, _, answer = send(limited, http_request(b"POST", b"/limit", [(b"Content-Encoding", coding.encode())], encoded))
    assert got == status
    document = strict_json(answer)
    if status == 200:
        assert document["body"]["decoded_size"] == size


def head_of(size: int) -> bytes:
    """A GET whose request line plus headers, blank line included, is exactly `size` bytes."""
    start = b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize(("size", "status"), [
    (LIMIT_HEADER - 1, 200),
    (LIMIT_HEADER, 200),
    (LIMIT_HEADER + 1, 431),
])
def test_header_limit(limited: EchoServer, size: int, status: int) -> None:
    data = head_of(size)
    assert len(data) == size
    got, _, _ = send(limited, data)
    assert got == status


@pytest.mark.parametrize(("delay", "status"), [
    ("0", 200), (str(LIMIT_DELAY), 200), ("0.251", 400), ("-0.1", 400), ("nan", 400), ("inf", 400), ("1e999", 400),
])
@pytest.mark.parametrize("carrier", ["query", "header"])
def test_delay_limit(limited: EchoServer, delay: str, status: int, carrier: str) -> None:
    if carrier == "query":
        data = http_request(b"GET", b"/delay?_delay=" + delay.encode())
    else:
        data = http_request(b"GET", b"/delay", [(b"X-Echo-Delay", delay.encode())])
    got, _, answer = send(limited, data)
    assert got == status
    document = strict_json(answer)
    if status == 400:
        assert document["param"] == "_delay" and "--max-delay" in document["error"]
    else:
        assert document["controls"]["delay"] == float(delay)


@pytest.mark.parametrize(("sent", "kept"), [(LIMIT_HISTORY, LIMIT_HISTORY), (LIMIT_HISTORY + 1, LIMIT_HISTORY)])
def test_history_limit(limited: EchoServer, sent: int, kept: int) -> None:
    assert send(limited, http_request(b"DELETE", b"/_/api/exchanges"))[0] == 204
    ids = [send(limited, http_request(b"GET", f"/h/{n}".encode()))[1]["x-echo-id"] for n in range(sent)]
    status, body = get(limited, "/_/api/exchanges?limit=1000&bodies=0")
    listed = [e["id"] for e in strict_json(body)["exchanges"]]
    assert listed == list(reversed(ids))[:kept]  # newest first; the oldest went first


@pytest.mark.parametrize(("size", "truncated"), [(LIMIT_KEEP, False), (LIMIT_KEEP + 1, True)])
def test_kept_body_limit(limited: EchoServer, size: int, truncated: bool) -> None:
    body = b"k" * size
    _, headers, _ = send(limited, http_request(b"POST", b"/keep", [(b"Content-Type", b"text/plain")], body))
    view = recorded(limited, headers["x-echo-id"])["request"]["body"]
    assert view["size"] == size and view["truncated"] is truncated
    assert view["text"] == "k" * min(size, LIMIT_KEEP)


@pytest.mark.parametrize(("depth", "echoed"), [(LIMIT_DEPTH, True), (LIMIT_DEPTH + 1, False)])
def test_json_depth_limit(limited: EchoServer, depth: int, echoed: bool) -> None:
    body = b"[" * depth + b"]" * depth
    _, _, answer = send(limited, http_request(b"POST", b"/depth", [(b"Content-Type", b"application/json")], body))
    document = strict_json(answer)
    assert (document["json"] is not None) is echoed
    assert any("--max-json-depth" in e for e in document["errors"]) is not echoed


@pytest.mark.parametrize(("parts", "parsed"), [(LIMIT_PARTS, True), (LIMIT_PARTS + 1, False)])
@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_form_parts_limit(limited: EchoServer, parts: int, parsed: bool, kind: str) -> None:
    if kind == "urlencoded":
        content_type = b"application/x-www-form-urlencoded"
        body = b"&".join(b"f%d=v" % i for i in range(parts))
    else:
        content_type = b"multipart/form-data; boundary=b"
        body = b"".join(b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
                        for i in range(parts)) + b"--b--\r\n"
    status, _, answer = send(limited, http_request(b"POST", b"/form", [(b"Content-Type", content_type)], body))
    assert status == 200
    document = strict_json(answer)
    assert (len(document["form"]) == parts) is parsed
    assert any("--max-form-parts" in e for e in document["errors"]) is not parsed


@pytest.mark.parametrize(("count", "cut"), [
    (LIMIT_PARTS, False),
    (LIMIT_PARTS + 1, True),
])
def test_query_parameter_limit(limited: EchoServer, count: int, cut: bool) -> None:
    query = "&".join(f"q{i}={i}" for i in range(count))
    _, _, answer = send(limited, http_request(b"GET", f"/args?{query}".encode()))
    document = strict_json(answer)
    assert document["args"] == {f"q{i}": [str(i)] for i in range(min(count, LIMIT_PARTS))}
    assert any("--max-form-parts" in e for e in document["errors"]) is cut


# ---- decompression bombs ------------------------------------------------------

def test_gzip_bomb_is_refused_without_inflating_it(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--max-body", str(MiB))
    bomb = gzip_bomb()
    assert len(bomb) < MiB  # under the limit on the wire: only decoding can catch it
    before = server.status_field("VmRSS")
    status, headers, answer = send(server, http_request(
        b"POST", b"/bomb", [(b"Content-Encoding", b"gzip"), (b"Content-Type", b"application/json")], bomb))
    grown_mib = (server.status_field("VmRSS") - before) / 1024
    print(f"gzip bomb: {len(bomb)} B on the wire, {BOMB_SIZE} B inflated; 413; RSS grew {grown_mib:.1f} MiB")
    assert status == 413
    document = strict_json(answer)
    assert document["setting"] == "--max-body" and document["wire_size"] == len(bomb)
    # Inflating would have cost a GiB; reading the body and a max_body-sized
    # buffer cost a few MiB.
    assert grown_mib < 32, f"RSS grew {grown_mib:.1f} MiB"
    assert recorded(server, headers["x-echo-id"])["response"]["status"] == 413


@pytest.mark.parametrize(("coding", "inner"), [(b"gzip, gzip", "gzip"), (b"deflate, gzip", "deflate")])
def test_nested_encoding_bomb_is_refused(echo_server: Any, coding: bytes, inner: str) -> None:
    server = echo_server("--log", "off", "--max-body", str(MiB))
    # The last coding listed was applied last, so it is undone first: the
    # outer gzip inflates to about 1 MiB, the inner layer to 1 GiB.
    outer = gzip.compress(gzip_bomb() if inner == "gzip" else zlib_bomb(), 9)
    assert len(outer) < 64 * 1024
    status, _, answer = send(server, http_request(b"POST", b"/bomb", [(b"Content-Encoding", coding)], outer))
    assert status == 413
    assert strict_json(answer)["setting"] == "--max-body"
