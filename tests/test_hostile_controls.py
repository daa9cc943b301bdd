"""Hostile controls: what a caller may not make Echo send, and how it is refused.

Table-driven: `plan()` for the fast ok/bad table, then the real server for what
only the wire shows (the 400 is recorded, a 205's framing, one X-Echo-Id).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from echo.answer.controls import ControlError, ResponsePlan, plan

from support import call, raw_request, split_response

HUGE_YEARS = [
    "Fri, 31 Dec 9999 23:59:59 -1200",  # fine as given, the year 10000 in UTC
    "Fri, 31 Dec 10000 23:59:59 GMT",
    "Fri, 31 Dec 99999999999 23:59:59 GMT",  # OverflowError in the parser
    "Fri, 31 Dec 99999999999999999999999 23:59:59 GMT",
    "Fri, 31 Dec " + "9" * 4000 + " 23:59:59 GMT",
]
C1 = ["\x80", "\x85", "\x9f", "\u0085"]

# (param, value) that must be refused with a 400 naming the param.
BAD: list[tuple[str, str]] = [
    *[("_cookie", f"a=b; Expires={e}") for e in HUGE_YEARS],
    *[("_delete_cookie", f"a; Expires={e}") for e in HUGE_YEARS],
    *[("_header", f"Set-Cookie: a=b; Expires={e}") for e in HUGE_YEARS],
    # C1 controls anywhere in a header, a cookie or a content type
    *[("_header", f"X-A: a{c}b") for c in C1],
    ("_header", "X-A: \x85"),
    ("_header", "X-\x85: a"),
    ("_content_type", "text/plain; a=\x85"),
    ("_cookie", "a=b; Path=/\x85"),
    # Set-Cookie through _header: the same RFC 6265 checks as _cookie
    ("_header", "Set-Cookie: a=b c"),
    ("_header", "Set-Cookie: a=\"b"),
    ("_header", "Set-Cookie: a=b,c"),
    ("_header", "Set-Cookie: =b"),
    ("_header", "Set-Cookie: a b=c"),
    ("_header", "Set-Cookie: nothing"),
    ("_header", "Set-Cookie: a=caf\u00e9"),
    ("_header", "Set-Cookie: a=b; Bogus=1"),
    ("_header", "Set-Cookie: a=b; Max-Age=soon"),
    ("_header", "Set-Cookie: a=b; SameSite=Sometimes"),
    ("_header", "Set-Cookie: a=b; Path=x"),
    ("_header", "Set-Cookie: a=b; Domain=-bad-"),
    ("_header", "Set-Cookie: a=b; Secure=1"),
    ("_header", "Set-Cookie: a=b; Expires=tomorrow"),
    ("_header", "set-cookie: a=b; Expires=Fri, 31 Dec 9999 23:59:59 -1200"),
    # Echo's own headers
    ("_header", "X-Echo-Id: forged"),
    ("_header", "x-echo-id: forged"),
    ("_header", "X-ECHO-ID:"),
    ("_header", "X-Echo-Status: 500"),
    ("_header", "X-Echo-Anything-Else: 1"),
]

# (param, value, what the plan holds): the neighbours that stay allowed.
OK: list[tuple[str, str, Any]] = [
    ("_cookie", "a=b; Expires=Fri, 31 Dec 9999 23:59:59 GMT", "a=b; Expires=Fri, 31 Dec 9999 23:59:59 GMT"),
    ("_cookie", "a=b; Expires=Fri, 31 Dec 9999 11:59:59 -1200", "a=b; Expires=Fri, 31 Dec 9999 11:59:59 -1200"),
    ("_delete_cookie", "a; Expires=Fri, 31 Dec 9999 23:59:59 GMT",
     "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"),
    ("_header", "Set-Cookie: a=b; Path=/; HttpOnly; SameSite=Lax", ("Set-Cookie", "a=b; Path=/; HttpOnly; SameSite=Lax")),
    ("_header", "SET-COOKIE: sid=1; Max-Age=60", ("SET-COOKIE", "sid=1; Max-Age=60")),
    ("_header", "Set-Cookie: a=b; Expires=Fri, 31 Dec 9999 23:59:59 GMT",
     ("Set-Cookie", "a=b; Expires=Fri, 31 Dec 9999 23:59:59 GMT")),
    ("_header", "X-A: \u00a0caf\u00e9 \u2615", ("X-A", "\u00a0caf\u00e9 \u2615")),  # U+00A0 is past C1
    ("_header", "X-A: a\u007eb", ("X-A", "a~b")),
    ("_header", "X-A: a\tb", ("X-A", "a\tb")),
    ("_header", "X-Echo: 1", ("X-Echo", "1")),  # not Echo's namespace, which is X-Echo-*
    ("_header", "X-Echoes: 1", ("X-Echoes", "1")),
    ("_header", "X-Request-Echo-Id: 1", ("X-Request-Echo-Id", "1")),
]


@pytest.mark.parametrize(("param", "value"), BAD, ids=[f"{p}={v[:50]!r}" for p, v in BAD])
def test_bad_controls_are_refused_naming_the_param(param: str, value: str) -> None:
    decided = plan(((param, value),), ())
    assert isinstance(decided, ControlError), decided
    assert (decided.param, decided.value) == (param, value)
    assert decided.message


@pytest.mark.parametrize(("param", "value", "expected"), OK, ids=[f"{p}={v[:50]!r}" for p, v, _ in OK])
def test_neighbouring_controls_stay_allowed(param: str, value: str, expected: Any) -> None:
    decided = plan(((param, value),), ())
    assert isinstance(decided, ResponsePlan), decided
    if param == "_header":
        assert decided.headers == (expected,)
    else:
        assert decided.cookies == (expected,)


def test_the_x_echo_id_refusal_says_why() -> None:
    decided = plan((("_header", "X-Echo-Id: forged"),), ())
    assert isinstance(decided, ControlError)
    assert "X-Echo-Id is set by Echo" in decided.message


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Echo-Cookie", "a=b; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT"),
        ("X-Echo-Cookie", "a=b; Expires=Fri, 31 Dec 9999 23:59:59 -1200"),
        ("X-Echo-Delete-Cookie", "a; Expires=Fri, 31 Dec 99999999999999999999999 23:59:59 GMT"),
        ("X-Echo-Header", "Set-Cookie: a=b; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT"),
        ("X-Echo-Header", "X-Echo-Id: forged"),
    ],
)
def test_the_header_forms_are_refused_too(header: str, value: str) -> None:
    decided = plan((), ((header, value),))
    assert isinstance(decided, ControlError)
    assert decided.value == value


# ---- on the wire ----------------------------------------------------------------------

def newest(port: int) -> dict[str, Any]:
    status, _, body = call(port, "GET", "/_/api/exchanges?limit=1")
    assert status == 200
    return json.loads(body)["exchanges"][0]


WIRE_BAD = [
    ("query", "_cookie", "a=b; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT"),
    ("query", "_cookie", "a=b; Expires=Fri, 31 Dec 9999 23:59:59 -1200"),
    ("query", "_delete_cookie", "a; Expires=Fri, 31 Dec 99999999999999999999999 23:59:59 GMT"),
    ("query", "_header", "Set-Cookie: a=b; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT"),
    ("query", "_header", "X-A: a\u0085b"),
    ("query", "_header", "X-Echo-Id: forged"),
    ("header", "_cookie", "a=b; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT"),
    ("header", "_delete_cookie", "a; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT"),
    ("header", "_header", "X-Echo-Id: forged"),
]
HEADER_OF = {"_cookie": "X-Echo-Cookie", "_delete_cookie": "X-Echo-Delete-Cookie", "_header": "X-Echo-Header"}


@pytest.mark.parametrize(("where", "param", "value"), WIRE_BAD, ids=[f"{w}-{p}-{v[:40]}" for w, p, v in WIRE_BAD])
def test_a_refused_control_is_a_recorded_400(live_server: Any, where: str, param: str, value: str) -> None:
    port = live_server.port
    if where == "query":
        status, headers, body = call(port, "GET", f"/refused?{param}={quote(value)}")
    else:
        status, headers, body = call(port, "GET", "/refused", headers={HEADER_OF[param]: value})
    assert status == 400, body
    doc = json.loads(body)
    assert (doc["param"], doc["value"]) == (param, value) and doc["error"]
    assert b"Traceback" not in body
    assert headers.get_all("X-Echo-Id") and len(headers.get_all("X-Echo-Id")) == 1
    recorded = newest(port)
    assert recorded["id"] == headers["X-Echo-Id"]
    assert recorded["response"]["status"] == 400


@pytest.mark.parametrize(
    "query",
    ["_status=205", "_status=205&_body=not%20sent", "_status=205&_format=html", "_status=205&_header=X-A:%201"],
)
def test_205_has_no_body_on_the_wire(live_server: Any, query: str) -> None:
    port = live_server.port
    # Two requests on one connection: if the first answer carried body bytes or
    # were framed wrong, the second answer would not start where it should.
    one = f"GET /reset?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    two = b"GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    raw = raw_request(port, one + two)
    first, _, rest = raw.partition(b"\r\n\r\n")
    status, headers, _ = split_response(first + b"\r\n\r\n")
    assert status == 205
    names = {name.lower(): value for name, value in headers}
    assert "transfer-encoding" not in names
    assert names.get("content-length", "0") == "0"
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]
    recorded = newest(port)
    assert recorded["request"]["path"] == "/after"


def test_204_and_304_still_have_no_content_length(live_server: Any) -> None:
    for code in (204, 304):
        raw = raw_request(live_server.port, f"GET /x?_status={code} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
        status, headers, body = split_response(raw)
        assert (status, body) == (code, b"")
        assert "content-length" not in {name.lower() for name, _ in headers}


def test_an_answer_carries_exactly_one_x_echo_id(live_server: Any) -> None:
    status, headers, _ = call(live_server.port, "GET", "/x?_header=X-Echo-Id:%20forged&_header=X-Other:%201")
    assert status == 400
    assert headers.get_all("X-Echo-Id") == [newest(live_server.port)["id"]]
    assert headers.get("X-Other") is None


@pytest.mark.parametrize("name", ["Proxy-Authenticate", "Proxy-Authorization", "Trailers"])
def test_hop_by_hop_headers_a_wsgi_app_may_not_set_are_a_400_not_a_500(live_server: Any, name: str) -> None:
    status, _, body = call(live_server.port, "GET", f"/hop?_header={name}:%20x")
    assert status == 400, body
    assert json.loads(body)["param"] == "_header"
