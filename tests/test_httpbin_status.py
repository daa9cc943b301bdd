"""httpbin mode, status and redirect family, and /response-headers.

Against the real server with --httpbin (and --max-httpbin-n 3, so a chain's
limit and limit+1 are cheap): httpbin 0.10's statuses, extra headers and
bodies, its Location values (relative where httpbin's are), and Echo's 400s
where httpbin answers bad input with a 500 or a broken header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from support import EchoServer, call, raw_request, split_response, start_echo

LIMIT = 3


@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin", "--max-httpbin-n", str(LIMIT))
    yield server
    server.stop()


def base(server: EchoServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(("code", "headers", "body"), [
    (200, {}, b""),
    (201, {}, b""),
    (299, {}, b""),
    (301, {"Location": "/redirect/1"}, b""),
    (302, {"Location": "/redirect/1"}, b""),
    (303, {"Location": "/redirect/1"}, b""),
    (305, {"Location": "/redirect/1"}, b""),
    (307, {"Location": "/redirect/1"}, b""),
    (308, {"Location": None}, b""),  # httpbin sends no Location for 300, 304, 306, 308
    (401, {"WWW-Authenticate": 'Basic realm="Fake Realm"'}, b""),
    (402, {"x-more-info": "http://vimeo.com/22053820"}, b"Fuck you, pay me!"),
    (407, {"Proxy-Authenticate": None}, b""),  # hop-by-hop: PEP 3333 keeps it from an app
    (418, {"x-more-info": "http://tools.ietf.org/html/rfc2324"}, None),
    (500, {}, b""),
    (599, {}, b""),
])
def test_status_answers_the_code_with_httpbins_extras(httpbin: EchoServer, code: int, headers: dict[str, Any],
                                                      body: bytes | None) -> None:
    status, answer_headers, raw = call(httpbin.port, "GET", f"/status/{code}")
    assert status == code
    for name, value in headers.items():
        assert answer_headers[name] == value
    if body is None:
        assert b"-=[ teapot ]=-" in raw and raw.startswith(b"\n")
    else:
        assert raw == body


def test_status_406_is_httpbins_json_message(httpbin: EchoServer) -> None:
    status, headers, raw = call(httpbin.port, "GET", "/status/406")
    assert status == 406 and headers["Content-Type"] == "application/json"
    assert json.loads(raw) == {"message": "Client did not request a supported media type.",
                               "accept": ["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"]}


@pytest.mark.parametrize("code", [204, 304])
def test_bodyless_codes_are_sent_without_a_body(httpbin: EchoServer, code: int) -> None:
    raw = raw_request(httpbin.port, f"GET /status/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status, headers, body = split_response(raw)
    assert status == code and body == b""
    assert not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "HEAD"])
def test_status_takes_httpbins_methods(httpbin: EchoServer, method: str) -> None:
    assert call(httpbin.port, method, "/status/202")[0] == 202


def test_status_refuses_options_as_httpbin_does(httpbin: EchoServer) -> None:
    status, headers, _ = call(httpbin.port, "OPTIONS", "/status/200")
    assert status == 405 and "OPTIONS" not in headers["Allow"]


def test_a_weight_of_zero_is_never_picked(httpbin: EchoServer) -> None:
    assert {call(httpbin.port, "GET", "/status/200:0,418:1.5,500:0")[0] for _ in range(20)} == {418}


def test_a_plain_list_picks_every_code(httpbin: EchoServer) -> None:
    # 1 in 2**39 to fail by chance.
    assert {call(httpbin.port, "GET", "/status/201,202")[0] for _ in range(40)} == {201, 202}


@pytest.mark.parametrize(("codes", "reason"), [
    ("abc", "'abc' is not code or code:weight"),
    ("200,", "'' is not code or code:weight"),
    ("200:x,201", "'200:x' is not code or code:weight"),
    ("200:-1,201", "'200:-1' is not code or code:weight"),  # httpbin: 500
    ("200:1:2,201", "'200:1:2' is not code or code:weight"),  # httpbin: 500
    ("200:0,201:0", "the weights add up to 0"),  # httpbin: 500
    ("+200", "'+200' is not code or code:weight"),  # int() reads it; digits only here
    ("1234567890", "is not code or code:weight"),
    ("99", "status 99 is not answered"),
    ("600", "status 600 is not answered"),  # httpbin sends 600-999 too; HTTP's codes end at 599
    ("100", "status 100 is not answered"),  # SPEC 8: an interim code cannot be the final answer
    ("102", "status 102 is not answered"),
    ("103", "status 103 is not answered"),
    ("199", "status 199 is not answered"),
    ("200,100", "status 100 is not answered"),
])
def test_bad_codes_get_httpbins_400_with_the_reason(httpbin: EchoServer, codes: str, reason: str) -> None:
    status, headers, raw = call(httpbin.port, "GET", f"/status/{codes}")
    assert (status, raw) == (400, b"Invalid status code")
    assert reason in headers["X-Echo-Reason"]


def test_101_is_sent_as_httpbin_does_and_the_connection_closes(httpbin: EchoServer) -> None:
    # httpbin sends 101 without switching protocols; waitress sends the head
    # and closes, so the connection ends there with nothing after the head.
    request = b"GET /status/101 HTTP/1.1\r\nHost: x\r\n\r\nGET /get HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = raw_request(httpbin.port, request, timeout=5)
    assert raw.startswith(b"HTTP/1.1 101 ")
    status, headers, body = split_response(raw)
    assert status == 101 and body == b""
    assert ("Connection", "close") in headers


@pytest.mark.parametrize(("path", "location"), [
    ("/redirect/1", "/get"),
    ("/redirect/3", "/relative-redirect/2"),
    ("/relative-redirect/1", "/get"),
    ("/relative-redirect/3", "/relative-redirect/2"),
])
def test_relative_chains_point_where_httpbins_do(httpbin: EchoServer, path: str, location: str) -> None:
    status, headers, _ = call(httpbin.port, "GET", path)
    assert status == 302 and headers["Location"] == location


@pytest.mark.parametrize(("path", "location"), [
    ("/redirect/1?absolute=true", "http://example.test:8080/get"),
    ("/redirect/3?absolute=TRUE", "http://example.test:8080/absolute-redirect/2"),
    ("/absolute-redirect/1", "http://example.test:8080/get"),
    ("/absolute-redirect/2", "http://example.test:8080/absolute-redirect/1"),
])
def test_absolute_chains_are_built_from_the_host_header(httpbin: EchoServer, path: str, location: str) -> None:
    status, headers, body = call(httpbin.port, "GET", path, headers={"Host": "example.test:8080"})
    assert status == 302 and headers["Location"] == location
    assert f'<a href="{location}">'.encode() in body and headers["Content-Type"] == "text/html; charset=utf-8"


def test_the_redirect_page_escapes_the_host(httpbin: EchoServer) -> None:
    _, headers, body = call(httpbin.port, "GET", "/absolute-redirect/1", headers={"Host": 'a"><script>x'})
    assert b"<script>" not in body and b"&quot;&gt;&lt;script&gt;" in body
    assert headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.parametrize("kind", ["redirect", "relative-redirect", "absolute-redirect"])
def test_a_chain_at_the_limit_is_followed_to_get(httpbin: EchoServer, kind: str) -> None:
    answer = requests.get(f"{base(httpbin)}/{kind}/{LIMIT}", timeout=10)
    assert answer.status_code == 200 and answer.url.endswith("/get")
    assert len(answer.history) == LIMIT


@pytest.mark.parametrize("kind", ["redirect", "relative-redirect", "absolute-redirect"])
def test_a_chain_over_the_limit_is_refused(httpbin: EchoServer, kind: str) -> None:
    status, _, raw = call(httpbin.port, "GET", f"/{kind}/{LIMIT + 1}")
    assert status == 400
    assert json.loads(raw) == {"error": f"n {LIMIT + 1} is over the limit of {LIMIT} (--max-httpbin-n)",
                               "param": "n", "value": LIMIT + 1, "limit": LIMIT, "setting": "--max-httpbin-n"}


@pytest.mark.parametrize(("n", "status"), [("0", 400), ("-1", 404), ("x", 404), ("1.5", 404)])
def test_a_chain_shorter_than_one_is_refused(httpbin: EchoServer, n: str, status: int) -> None:
    # httpbin: 0 fails its assert (500); "-1" and "x" match no route (404).
    got, _, raw = call(httpbin.port, "GET", f"/redirect/{n}")
    assert got == status and json.loads(raw)["param"] == "n"


@pytest.mark.parametrize(("query", "status", "location"), [
    ("url=http://example.test/x", 302, "http://example.test/x"),
    ("url=/relative%3Fa%3D1", 302, "/relative?a=1"),
    ("url=/x&status_code=301", 301, "/x"),
    ("url=/x&status_code=307", 307, "/x"),
    ("url=/x&status_code=308", 308, "/x"),
    ("URL=/x&Status_Code=303", 303, "/x"),  # httpbin reads its args case-insensitively
    ("url=/first&url=/second", 302, "/first"),
    ("url=caf%C3%A9", 302, "café"),
])
def test_redirect_to_sends_the_url_as_given(httpbin: EchoServer, query: str, status: int, location: str) -> None:
    got, headers, raw = call(httpbin.port, "GET", f"/redirect-to?{query}")
    assert got == status and raw == b""
    assert headers["Location"].encode("latin-1").decode("utf-8") == location


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE"])
def test_redirect_to_takes_any_method_and_a_form(httpbin: EchoServer, method: str) -> None:
    status, headers, _ = call(httpbin.port, method, "/redirect-to", b"url=/from-form&status_code=307",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 307 and headers["Location"] == "/from-form"
    status, headers, _ = call(httpbin.port, method, "/redirect-to?url=/from-query", b"url=/from-form",
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 302 and headers["Location"] == "/from-query"  # the query first


@pytest.mark.parametrize(("query", "param"), [
    ("", "url"),  # httpbin: "Location: None"
    ("url=/x%0D%0ASet-Cookie:%20a=b", "url"),
    ("url=/x%00", "url"),
    ("url=/x&status_code=abc", "status_code"),  # httpbin: 500
    ("url=/x&status_code=200", "status_code"),  # httpbin: ignored, 302
    ("url=/x&status_code=400", "status_code"),
    ("url=/x&status_code=299", "status_code"),
])
def test_redirect_to_refuses_bad_input_naming_it(httpbin: EchoServer, query: str, param: str) -> None:
    status, headers, raw = call(httpbin.port, "GET", f"/redirect-to?{query}")
    assert status == 400 and "Location" not in headers and "Set-Cookie" not in headers
    assert json.loads(raw)["param"] == param


# /response-headers


def response_headers(server: EchoServer, query: str, method: str = "GET") -> tuple[int, Any, Any]:
    status, headers, raw = call(server.port, method, f"/response-headers?{query}")
    return status, headers, json.loads(raw)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_arg_becomes_a_header_and_the_body_lists_them(httpbin: EchoServer, method: str) -> None:
    status, headers, doc = response_headers(httpbin, "X-One=1&X-Many=a&X-Many=b", method)
    assert status == 200
    assert headers["X-One"] == "1" and headers.get_all("X-Many") == ["a", "b"]
    assert doc == {"Content-Length": headers["Content-Length"], "Content-Type": "application/json",
                   "X-Many": ["a", "b"], "X-One": "1"}


@pytest.mark.parametrize("query", ["", "a=1", "x=" + "y" * 90, "x=" + "y" * 985])
def test_the_listed_content_length_is_the_bodys_own(httpbin: EchoServer, query: str) -> None:
    # The fixed point: the body holds its own length, whose digits change the length.
    status, headers, raw = call(httpbin.port, "GET", f"/response-headers?{query}")
    assert status == 200 and json.loads(raw)["Content-Length"] == str(len(raw)) == headers["Content-Length"]


def test_the_empty_query_is_httpbins_body(httpbin: EchoServer) -> None:
    _, _, raw = call(httpbin.port, "GET", "/response-headers")
    assert raw == b'{\n  "Content-Length": "67",\n  "Content-Type": "application/json"\n}\n'


def test_a_callers_content_type_replaces_the_json_one(httpbin: EchoServer) -> None:
    status, headers, raw = call(httpbin.port, "GET", "/response-headers?Content-Type=text/plain")
    assert status == 200 and headers.get_all("Content-Type") == ["text/plain"]
    assert json.loads(raw)["Content-Type"] == "text/plain"
    assert headers["Content-Security-Policy"] == "sandbox" and headers["X-Content-Type-Options"] == "nosniff"


def test_names_in_two_cases_are_listed_as_httpbin_lists_them(httpbin: EchoServer) -> None:
    _, _, doc = response_headers(httpbin, "A=1&a=2")
    assert doc["A"] == doc["a"] == ["1", "2"]


@pytest.mark.parametrize(("query", "param"), [
    ("X-Bad=a%0D%0AInjected:%20yes", "X-Bad"),
    ("X-Bad=a%0Ab", "X-Bad"),
    ("X-Bad=a%00b", "X-Bad"),
    ("Content-Length=3", "Content-Length"),
    ("Transfer-Encoding=chunked", "Transfer-Encoding"),
    ("Connection=close", "Connection"),
    ("X-Echo-Id=forged", "X-Echo-Id"),
    ("x-echo-status=500", "x-echo-status"),
    ("Bad%20Name=1", "Bad Name"),
    ("a:b=1", "a:b"),
    ("Set-Cookie=a%20b=c", "Set-Cookie"),
    ("X-Ok=1&Upgrade=h2c", "Upgrade"),
    ("Proxy-Authenticate=Basic", "Proxy-Authenticate"),  # waitress would answer 500
    ("Proxy-Authorization=x", "Proxy-Authorization"),
    ("Trailers=x", "Trailers"),
])
def test_a_header_that_would_break_the_answer_is_refused_naming_it(httpbin: EchoServer, query: str, param: str) -> None:
    status, headers, raw = call(httpbin.port, "GET", f"/response-headers?{query}")
    assert status == 400 and "Injected" not in headers and "X-Ok" not in headers
    doc = json.loads(raw)
    assert doc["param"] == param and param in doc["error"]


def test_set_cookie_and_unicode_values_are_sent(httpbin: EchoServer) -> None:
    status, headers, doc = response_headers(httpbin, "Set-Cookie=a=1;%20Path=/&X-Text=caf%C3%A9")
    assert status == 200 and headers["Set-Cookie"] == "a=1; Path=/"
    assert headers["X-Text"].encode("latin-1").decode("utf-8") == "café" and doc["X-Text"] == "café"


def test_response_headers_refuses_other_methods(httpbin: EchoServer) -> None:
    status, headers, _ = call(httpbin.port, "PUT", "/response-headers?a=1")
    assert status == 405 and headers["Allow"] == "GET, HEAD, POST"
