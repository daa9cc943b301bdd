"""httpbin mode, cookie family: /cookies, /cookies/set, /cookies/set/{name}/{value}, /cookies/delete.

Against the real server with --httpbin: httpbin 0.10's document and its
Set-Cookie lines and redirects, a real client's cookie jar (requests)
following them, and a 400 naming the arg where httpbin would send a
Set-Cookie that RFC 6265 forbids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from support import EchoServer, call, start_echo


@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin")
    yield server
    server.stop()


def base(server: EchoServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(("cookie", "query", "cookies"), [
    ("", "", {}),
    ("a=1; b=2", "", {"a": "1", "b": "2"}),
    ("a=1; a=2", "", {"a": "1"}),  # the first of a name, as werkzeug's request.cookies
    ('q="quoted"', "", {"q": "quoted"}),
    ("_gauges_unique=1; __utma=2; k=v", "", {"k": "v"}),  # httpbin's hosting's cookies are hidden
    ("_gauges_unique=1; __utma=2; k=v", "?show_env=1", {"_gauges_unique": "1", "__utma": "2", "k": "v"}),
])
def test_cookies_shows_the_requests_cookies(httpbin: EchoServer, cookie: str, query: str,
                                            cookies: dict[str, str]) -> None:
    status, headers, raw = call(httpbin.port, "GET", f"/cookies{query}", headers={"Cookie": cookie} if cookie else {})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(raw) == {"cookies": cookies}


def test_set_by_query_sets_each_and_redirects_to_cookies(httpbin: EchoServer) -> None:
    status, headers, body = call(httpbin.port, "GET", "/cookies/set?a=1&b=two&a=3")
    assert status == 302 and headers["Location"] == "/cookies"
    assert headers.get_all("Set-Cookie") == ["a=1; Path=/", "b=two; Path=/"]  # the first of a name, as httpbin
    assert b'<a href="/cookies">/cookies</a>' in body


def test_set_by_path_sets_one(httpbin: EchoServer) -> None:
    status, headers, _ = call(httpbin.port, "GET", "/cookies/set/session/abc123")
    assert status == 302 and headers["Location"] == "/cookies"
    assert headers.get_all("Set-Cookie") == ["session=abc123; Path=/"]


def test_delete_expires_each_and_redirects(httpbin: EchoServer) -> None:
    status, headers, _ = call(httpbin.port, "GET", "/cookies/delete?a&b=ignored")
    assert status == 302 and headers["Location"] == "/cookies"
    assert headers.get_all("Set-Cookie") == [
        "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
        "b=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",
    ]


def test_a_client_jar_follows_set_and_delete(httpbin: EchoServer) -> None:
    session = requests.Session()
    answer = session.get(f"{base(httpbin)}/cookies/set?k=v&n=1", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"cookies": {"k": "v", "n": "1"}}
    answer = session.get(f"{base(httpbin)}/cookies/set/p/q", timeout=10)
    assert answer.json() == {"cookies": {"k": "v", "n": "1", "p": "q"}}
    answer = session.get(f"{base(httpbin)}/cookies/delete?k&p", timeout=10)
    assert answer.json() == {"cookies": {"n": "1"}}


@pytest.mark.parametrize(("path", "param", "value"), [
    ("/cookies/set?a=b%20c", "a", "b c"),  # werkzeug quotes it: "b c"
    ("/cookies/set?a=x;y", "a", "x;y"),
    ("/cookies/set?a=x%3B%20Domain=evil.test", "a", "x; Domain=evil.test"),
    ("/cookies/set?a=%22q%22x", "a", '"q"x'),
    ("/cookies/set?a=x,y", "a", "x,y"),
    ("/cookies/set?a=x%5Cy", "a", "x\\y"),
    ("/cookies/set?a=caf%C3%A9", "a", "café"),
    ("/cookies/set?a=%0D%0AX:%20y", "a", "\r\nX: y"),
    ("/cookies/set?a=%20x", "a", " x"),
    ("/cookies/set?=v", "", "v"),
    ("/cookies/set?a%20b=c", "a b", "c"),
    ("/cookies/set?ok=1&a;b=c", "a;b", "c"),
    ("/cookies/set/a%20b/c", "name", "a b"),  # werkzeug sends "a b=c"
    ("/cookies/set/a=b/c", "name", "a=b"),
    ("/cookies/set/a/b%3Bc", "value", "b;c"),
    ("/cookies/set/a/b%00c", "value", "b\x00c"),
    ("/cookies/delete?a%20b", "a b", "a b"),
    ("/cookies/delete?a%0Ab", "a\nb", "a\nb"),
])
def test_a_cookie_rfc_6265_forbids_is_refused_naming_it(httpbin: EchoServer, path: str, param: str,
                                                         value: str) -> None:
    status, headers, raw = call(httpbin.port, "GET", path)
    assert status == 400 and "Set-Cookie" not in headers and "Location" not in headers
    doc = json.loads(raw)
    assert (doc["param"], doc["value"]) == (param, value) and doc["error"]


@pytest.mark.parametrize("path", ["/cookies", "/cookies/set?a=1", "/cookies/set/a/b", "/cookies/delete?a"])
def test_cookie_routes_take_get_only(httpbin: EchoServer, path: str) -> None:
    status, headers, _ = call(httpbin.port, "POST", path)
    assert status == 405 and headers["Allow"] == "GET, HEAD"
