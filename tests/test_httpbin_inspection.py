"""httpbin mode, request inspection family: /get, /post, /anything, /headers, /ip, /user-agent.

Against the real server with --httpbin: httpbin 0.10's keys and value shapes
(a name once is a string, repeated a list), 405 with Allow for a method a
route does not take, Echo's controls not applied, every exchange recorded,
and every other path still the echo.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from support import EchoServer, call, start_echo


@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin")
    yield server
    server.stop()


def get_json(server: EchoServer, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    status, answer_headers, raw = call(server.port, method, path, body, headers)
    return status, answer_headers, json.loads(raw) if raw else None


@pytest.mark.parametrize(("query", "args"), [
    ("", {}),
    ("a=1", {"a": "1"}),
    ("a=1&a=2&b=", {"a": ["1", "2"], "b": ""}),
    ("caf%C3%A9=%E2%9C%93", {"café": "✓"}),
])
def test_get_shows_args_as_httpbin_does(httpbin: EchoServer, query: str, args: dict[str, Any]) -> None:
    status, headers, doc = get_json(httpbin, "GET", "/get" + (f"?{query}" if query else ""))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert set(doc) == {"args", "headers", "origin", "url"}
    assert doc["args"] == args
    assert doc["origin"] == "127.0.0.1"
    assert doc["url"].endswith("/get" + (f"?{query}" if query else ""))
    assert headers["X-Echo-Id"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_body_routes_show_json_data_and_form(httpbin: EchoServer, method: str) -> None:
    path = "/" + method.lower()
    status, _, doc = get_json(httpbin, method, path, b'{"a": [1, 2]}', {"Content-Type": "application/json"})
    assert status == 200
    assert set(doc) == {"args", "data", "files", "form", "headers", "json", "origin", "url"}
    assert (doc["json"], doc["data"], doc["form"], doc["files"]) == ({"a": [1, 2]}, '{"a": [1, 2]}', {}, {})
    status, _, doc = get_json(httpbin, method, path, b"x=1&x=2&y=3",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert (doc["form"], doc["data"], doc["json"]) == ({"x": ["1", "2"], "y": "3"}, "", None)


def test_binary_data_is_a_data_url(httpbin: EchoServer) -> None:
    _, _, doc = get_json(httpbin, "POST", "/post", b"\xff\x00", {"Content-Type": "application/octet-stream"})
    assert doc["data"] == "data:application/octet-stream;base64,/wA="


def test_every_file_of_a_repeated_field_is_kept(httpbin: EchoServer) -> None:
    boundary = uuid.uuid4().hex
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="{name}"\r\n'
        f"Content-Type: text/plain\r\n\r\n{text}\r\n".encode()
        for name, text in (("a.txt", "first"), ("b.txt", "second"))
    ) + f'--{boundary}\r\nContent-Disposition: form-data; name="k"\r\n\r\nv\r\n--{boundary}--\r\n'.encode()
    _, _, doc = get_json(httpbin, "POST", "/post", parts, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert doc["files"] == {"f": ["first", "second"]}  # httpbin keeps the first only: a known bug
    assert doc["form"] == {"k": "v"}


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE"])
def test_anything_takes_any_method_and_path(httpbin: EchoServer, method: str) -> None:
    status, _, doc = get_json(httpbin, method, "/anything/deep/path?q=1")
    assert status == 200
    assert doc["method"] == method and doc["args"] == {"q": "1"}
    assert doc["url"].endswith("/anything/deep/path?q=1")


def test_headers_ip_and_user_agent(httpbin: EchoServer) -> None:
    _, _, doc = get_json(httpbin, "GET", "/headers", headers={"X-Custom": "yes", "User-Agent": "agent/1"})
    assert doc["headers"]["X-Custom"] == "yes" and doc["headers"]["User-Agent"] == "agent/1"
    _, _, doc = get_json(httpbin, "GET", "/headers", headers={"X-Forwarded-For": "1.2.3.4"})
    assert "X-Forwarded-For" not in doc["headers"]  # httpbin hides its hosting's headers without ?show_env
    _, _, doc = get_json(httpbin, "GET", "/headers?show_env=1", headers={"X-Forwarded-For": "1.2.3.4"})
    assert doc["headers"]["X-Forwarded-For"] == "1.2.3.4"
    assert get_json(httpbin, "GET", "/ip")[2] == {"origin": "127.0.0.1"}
    assert get_json(httpbin, "GET", "/user-agent", headers={"User-Agent": "agent/2"})[2] == {"user-agent": "agent/2"}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/get", "GET, HEAD"),
    ("GET", "/post", "POST"),
    ("DELETE", "/ip", "GET, HEAD"),
])
def test_a_method_the_route_does_not_take_gets_405_with_allow(httpbin: EchoServer, method: str, path: str,
                                                              allow: str) -> None:
    status, headers, doc = get_json(httpbin, method, path)
    assert status == 405 and headers["Allow"] == allow
    assert doc["allowed"] == allow.split(", ") and path in doc["error"]


def test_head_answers_like_get_without_a_body(httpbin: EchoServer) -> None:
    status, headers, raw = call(httpbin.port, "HEAD", "/get")
    assert status == 200 and raw == b"" and int(headers["Content-Length"]) > 0


def test_controls_do_not_apply_on_routes_but_do_elsewhere(httpbin: EchoServer) -> None:
    status, _, doc = get_json(httpbin, "GET", "/get?_status=503")
    assert status == 200 and doc["args"] == {"_status": "503"}
    status, _, doc = get_json(httpbin, "GET", "/not-a-route?_status=503")
    assert status == 503 and doc["path"] == "/not-a-route"  # the echo document, with Echo's controls


def test_httpbin_exchanges_are_recorded(httpbin: EchoServer) -> None:
    _, headers, _ = get_json(httpbin, "POST", "/anything/recorded", b"hello", {"Content-Type": "text/plain"})
    status, _, kept = get_json(httpbin, "GET", f"/_/api/exchanges/{headers['X-Echo-Id']}")
    assert status == 200
    assert kept["request"]["path"] == "/anything/recorded" and kept["request"]["body"]["text"] == "hello"
    assert json.loads(kept["response"]["body"]["text"])["data"] == "hello"


def test_without_httpbin_mode_its_paths_are_echoed(live_server: EchoServer) -> None:
    status, _, doc = get_json(live_server, "GET", "/get?a=1")
    assert status == 200 and doc["path"] == "/get" and doc["args"] == {"a": ["1"]}


def test_the_route_table_has_one_row_per_pattern() -> None:
    from echo.answer.routes import ROUTES

    patterns = [row.pattern for row in ROUTES]
    assert len(patterns) == len(set(patterns))
    # Rows are found by their first segment, so it must be literal text.
    assert all("{" not in pattern[1:].split("/", 1)[0] for pattern in patterns), patterns
