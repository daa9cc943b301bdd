"""The echo against the real waitress server, at the wire: methods, framing, limits, CORS, controls."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.cookiejar
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from support import EchoServer, raw_request, split_response


def request(server: EchoServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def exchange(server: EchoServer, exchange_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.url}/_/api/exchanges/{exchange_id}") as response:
        return json.load(response)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PURGE", "X-CUSTOM"])
def test_any_method_any_path_is_echoed(live_server: EchoServer, method: str) -> None:
    status, headers, body = request(live_server, method, "/any/where?x=1&x=2", b"hi")
    doc = json.loads(body)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Echo-Id"] == doc["id"]
    assert doc["method"] == method and doc["path"] == "/any/where"
    assert doc["args"] == {"x": ["1", "2"]}
    assert doc["url"] == f"http://127.0.0.1:{live_server.port}/any/where?x=1&x=2"
    assert doc["http_version"] == "HTTP/1.1" and doc["remote_addr"] == "127.0.0.1"


def test_chunked_body_is_read_whole(live_server: EchoServer) -> None:
    raw = (
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    status, _, body = split_response(raw_request(live_server.port, raw))
    doc = json.loads(body)
    assert status == 200
    assert doc["body"]["text"] == "hello world" and doc["body"]["size"] == 11


def test_head_answers_like_get_without_a_body(live_server: EchoServer) -> None:
    raw = raw_request(live_server.port, b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = split_response(raw)
    assert status == 200 and body == b""
    names = dict((k.lower(), v) for k, v in headers)
    assert names["content-type"] == "application/json" and "x-echo-id" in names
    assert int(names["content-length"]) > 100  # the length GET would have sent


def test_binary_body_round_trips_byte_exact(live_server: EchoServer) -> None:
    payload = bytes(range(256)) * 64
    status, _, body = request(live_server, "POST", "/bin", payload, {"Content-Type": "application/octet-stream"})
    doc = json.loads(body)
    assert base64.b64decode(doc["body"]["base64"]) == payload
    assert doc["body"]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_gzip_body_is_decoded(live_server: EchoServer) -> None:
    wire = gzip.compress(b'{"zipped": 1}')
    _, _, body = request(live_server, "POST", "/gz", wire, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    doc = json.loads(body)
    assert doc["json"] == {"zipped": 1} and doc["body"]["size"] == len(wire)


def test_malformed_bodies_get_200_with_the_reason(live_server: EchoServer) -> None:
    cases = [
        (b'{"a":', {"Content-Type": "application/json"}, "invalid JSON"),
        (b"--b\r\nbroken", {"Content-Type": "multipart/form-data; boundary=b"}, "invalid multipart"),
        (b"not gzip", {"Content-Encoding": "gzip"}, "could not decode gzip"),
        (b"\xff\xfe", {"Content-Type": "text/plain; charset=utf-8"}, "not valid utf-8"),
    ]
    for payload, headers, reason in cases:
        status, _, body = request(live_server, "POST", "/bad", payload, headers)
        doc = json.loads(body)
        assert status == 200
        assert any(reason.lower() in e.lower() for e in doc["errors"]), (reason, doc["errors"])


@pytest.mark.parametrize(("size", "status"), [(1000, 200), (1001, 413)])
def test_body_limit_at_limit_and_limit_plus_one(echo_server: Any, size: int, status: int) -> None:
    server = echo_server("--max-body", "1000", "--log", "off")
    got, headers, body = request(server, "POST", "/big", b"a" * size)
    assert got == status
    if status == 413:
        doc = json.loads(body)
        assert doc["limit"] == 1000 and doc["size"] == size and "larger than the limit" in doc["error"]
        recorded = exchange(server, headers["X-Echo-Id"])
        assert recorded["response"]["status"] == 413


def test_chunked_body_over_the_limit_gets_413(echo_server: Any) -> None:
    server = echo_server("--max-body", "10", "--log", "off")
    raw = (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"b\r\nhello world\r\n0\r\n\r\n")
    status, _, body = split_response(raw_request(server.port, raw))
    assert status == 413 and json.loads(body)["size"] == 11


def test_gzip_bomb_gets_413(echo_server: Any) -> None:
    server = echo_server("--max-body", "100000", "--log", "off")
    bomb = gzip.compress(b"\0" * 20_000_000)
    status, _, body = request(server, "POST", "/bomb", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "--max-body" in json.loads(body)["setting"]


def test_cors_simple_request(live_server: EchoServer) -> None:
    status, headers, _ = request(live_server, "GET", "/c?_header=X-Custom:%201", headers={"Origin": "http://app.test"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    exposed = [h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")]
    assert "X-Echo-Id" in exposed and "X-Custom" in exposed


def test_cors_preflight_is_answered_and_recorded(live_server: EchoServer) -> None:
    status, headers, body = request(live_server, "OPTIONS", "/c?_status=500", headers={
        "Origin": "http://app.test",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type, x-token",
    })
    assert status == 204 and body == b""
    assert headers["Access-Control-Allow-Methods"] == "PUT"
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-token"
    assert headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert exchange(live_server, headers["X-Echo-Id"])["response"]["status"] == 204


def test_no_cors_turns_it_off(echo_server: Any) -> None:
    server = echo_server("--no-cors", "--log", "off")
    status, headers, body = request(server, "OPTIONS", "/c", headers={
        "Origin": "http://app.test", "Access-Control-Request-Method": "PUT"})
    assert status == 200 and json.loads(body)["method"] == "OPTIONS"
    assert "Access-Control-Allow-Origin" not in headers


def test_browser_accept_gets_html_and_format_forces_either(live_server: EchoServer) -> None:
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    status, headers, body = request(live_server, "GET", "/page?<b>=1", headers={"Accept": browser_accept})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert b"<b>=1" not in body and b"&lt;b&gt;" in body
    _, headers, body = request(live_server, "GET", "/page?_format=json", headers={"Accept": browser_accept})
    assert headers["Content-Type"] == "application/json" and json.loads(body)["path"] == "/page"
    _, headers, _ = request(live_server, "GET", "/page?_format=html")
    assert headers["Content-Type"].startswith("text/html")
    _, headers, _ = request(live_server, "GET", "/page", headers={"Accept": "*/*"})
    assert headers["Content-Type"] == "application/json"


def test_every_answer_carries_x_echo_id(live_server: EchoServer) -> None:
    for path in ("/ok", "/bad?_status=abc", "/none?_status=204"):
        _, headers, _ = request(live_server, "GET", path)
        assert len(headers["X-Echo-Id"]) == 28


# ---- controls on the wire ---------------------------------------------------

def test_repeated_headers_and_cookies_are_separate_lines(live_server: EchoServer) -> None:
    raw = raw_request(live_server.port, (
        b"GET /h?_header=X-Multi:%20one&_header=X-Multi:%20two"
        b"&_cookie=sid%3Dabc%3B%20Path%3D%2F%3B%20Max-Age%3D60%3B%20HttpOnly%3B%20Secure%3B%20SameSite%3DLax"
        b"&_delete_cookie=old HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    status, headers, body = split_response(raw)
    assert status == 200
    assert [v for k, v in headers if k == "X-Multi"] == ["one", "two"]
    cookies = [v for k, v in headers if k.lower() == "set-cookie"]
    assert cookies == [
        "sid=abc; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax",
        "old=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
    ]
    assert json.loads(body)["controls"]["cookies"] == cookies


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_statuses_have_no_body(live_server: EchoServer, code: int) -> None:
    raw = raw_request(live_server.port, f"GET /n?_status={code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status, headers, body = split_response(raw)
    assert status == code and body == b""
    assert not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers)


def test_redirect_is_followed_by_a_client(live_server: EchoServer) -> None:
    with urllib.request.urlopen(f"{live_server.url}/from?_status=301&_header=Location:/landed?ok=1") as response:
        doc = json.load(response)
    assert doc["path"] == "/landed" and doc["args"] == {"ok": ["1"]}


def test_cookie_jar_sees_cookies_set_and_deleted(live_server: EchoServer) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{live_server.url}/set?_cookie=flavour%3Doat%3B%20Path%3D%2F").read()
    assert {c.name: c.value for c in jar} == {"flavour": "oat"}
    doc = json.load(opener.open(f"{live_server.url}/see"))
    assert doc["cookies"] == {"flavour": "oat"}
    opener.open(f"{live_server.url}/del?_delete_cookie=flavour").read()
    assert list(jar) == []


def test_caller_body_is_sandboxed(live_server: EchoServer) -> None:
    status, headers, body = request(live_server, "GET", "/b?_body=%3Cscript%3Ealert(1)%3C/script%3E&_content_type=text/html")
    assert status == 200 and body == b"<script>alert(1)</script>"
    assert headers["Content-Type"] == "text/html"
    assert headers["Content-Security-Policy"] == "sandbox"
    assert headers["X-Content-Type-Options"] == "nosniff"
    _, headers, body = request(live_server, "GET", "/b?_body=plain")
    assert headers["Content-Type"] == "text/plain; charset=utf-8" and body == b"plain"


def test_header_controls_work_for_fixed_urls(live_server: EchoServer) -> None:
    status, headers, body = request(live_server, "POST", "/hook", b"{}", {
        "X-Echo-Status": "202", "X-Echo-Header": "X-From-Header: yes", "Content-Type": "application/json"})
    assert status == 202 and headers["X-From-Header"] == "yes"
    assert json.loads(body)["controls"]["status"] == 202


def test_invalid_control_is_400_naming_it_and_recorded(live_server: EchoServer) -> None:
    status, headers, body = request(live_server, "GET", "/x?_header=Content-Length:%205")
    doc = json.loads(body)
    assert status == 400
    assert doc["param"] == "_header" and doc["value"] == "Content-Length: 5"
    assert "cannot be set" in doc["error"]
    recorded = exchange(live_server, headers["X-Echo-Id"])
    assert recorded["response"]["status"] == 400
    assert recorded["request"]["args"] == {"_header": ["Content-Length: 5"]}


def test_header_injection_never_reaches_the_wire(live_server: EchoServer) -> None:
    raw = raw_request(live_server.port, b"GET /x?_header=X-A:%201%0d%0aX-Evil:%201 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, _ = split_response(raw)
    assert status == 400 and not any(k == "X-Evil" for k, _ in headers)


def test_delay_holds_neither_history_nor_other_requests(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--threads", "4")
    finished: list[str] = []

    def slow() -> None:
        request(server, "GET", "/slow?_delay=2")
        finished.append("slow")

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        status, _, _ = request(server, "GET", "/fast")
        finished.append("fast")
        with urllib.request.urlopen(f"{server.url}/_/api/exchanges?bodies=0") as response:
            listed = [x["request"]["path"] for x in json.load(response)["exchanges"]]
        assert status == 200 and "/fast" in listed
        assert finished == ["fast"]  # the fast request did not wait behind the delayed one
    finally:
        thread.join(10)
    assert finished == ["fast", "slow"]
    with urllib.request.urlopen(f"{server.url}/_/api/exchanges?q=slow&bodies=0") as response:
        (slow_exchange,) = json.load(response)["exchanges"]
    assert slow_exchange["response"]["controls"]["delay"] == 2.0


def test_empty_post(live_server: EchoServer) -> None:
    _, _, body = request(live_server, "POST", "/empty", b"", {"Content-Length": "0"})
    doc = json.loads(body)
    assert doc["body"]["size"] == 0 and doc["body"]["text"] == "" and doc["errors"] == []


def test_inspector_requests_are_not_echoed(live_server: EchoServer) -> None:
    try:
        urllib.request.urlopen(f"{live_server.url}/_/api/exchanges/nope")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404 and json.load(exc)["error"]
        exc.close()
    else:
        pytest.fail("expected 404")
