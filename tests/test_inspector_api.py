"""The inspector's JSON API, pages and guards, against the real server.

Routes of SPEC section 5: the exchange list (limit, before, method, status, q,
bodies), one exchange, DELETE, health, friendly 404s, the page headers (CSP,
no inline script or style, nothing from another origin), --ui-auth, a
non-default --ui-prefix, and the 503 a failing store becomes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import closing
from html.parser import HTMLParser
from http.client import HTTPConnection
from typing import Any

import pytest

from echo import create_app

from support import FailingStore

Headers = dict[str, str]


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: Headers | None = None) -> tuple[int, Any, bytes]:
    """One request on its own connection: (status, response headers, body)."""
    with closing(HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()


def api(port: int, path: str, headers: Headers | None = None) -> Any:
    status, _, body = call(port, "GET", "/_/api/" + path, headers=headers)
    assert status == 200, body
    return json.loads(body)


def clear(port: int) -> None:
    status, _, _ = call(port, "DELETE", "/_/api/exchanges")
    assert status == 204


def echo(port: int, method: str = "GET", path: str = "/", body: bytes | None = None,
         headers: Headers | None = None) -> str:
    """Send one echo request; return its id."""
    status, response_headers, _ = call(port, method, path, body, headers)
    assert status < 600
    return response_headers["X-Echo-Id"]


@pytest.fixture
def server(live_server: Any) -> Iterator[Any]:
    """The shared real server with an empty history."""
    clear(live_server.port)
    yield live_server


# ---- the list ---------------------------------------------------------------

def test_list_is_newest_first_and_shaped_like_one_exchange(server: Any) -> None:
    port = server.port
    ids = [echo(port, "POST", f"/orders/{i}?x=1&x=2", b'{"n": %d}' % i, {"Content-Type": "application/json"})
           for i in range(3)]
    listed = api(port, "exchanges")["exchanges"]
    assert [x["id"] for x in listed] == ids[::-1]
    first = listed[0]
    assert set(first) == {"id", "time", "duration_ms", "request", "response"}
    assert first["request"]["path"] == "/orders/2"
    assert first["request"]["args"] == {"x": ["1", "2"]}
    assert first["request"]["json"] == {"n": 2}
    assert "controls" not in first["request"]
    assert set(first["response"]) == {"status", "headers", "body", "controls"}
    assert first["response"]["status"] == 200
    assert ["X-Echo-Id", ids[2]] in first["response"]["headers"]
    assert first == api(port, f"exchanges/{ids[2]}")


def test_response_headers_are_pairs_with_repeats_kept(server: Any) -> None:
    exchange_id = echo(server.port, path="/h?_header=X-Twice:%20a&_header=X-Twice:%20b")
    headers = api(server.port, f"exchanges/{exchange_id}")["response"]["headers"]
    assert [pair for pair in headers if pair[0] == "X-Twice"] == [["X-Twice", "a"], ["X-Twice", "b"]]


@pytest.mark.parametrize(
    ("limit", "status", "shown"),
    [("", 200, 50), ("1", 200, 1), ("50", 200, 50), ("1000", 200, 51),
     ("0", 400, None), ("1001", 400, None), ("-1", 400, None), ("abc", 400, None), ("1.5", 400, None)],
)
def test_limit_defaults_to_50_and_allows_1_to_1000(server: Any, limit: str, status: int, shown: int | None) -> None:
    port = server.port
    for i in range(51 if status == 200 else 0):
        echo(port, path=f"/many/{i}")
    code, _, body = call(port, "GET", f"/_/api/exchanges?limit={limit}" if limit else "/_/api/exchanges")
    doc = json.loads(body)
    assert code == status
    if status == 200:
        assert len(doc["exchanges"]) == shown
    else:
        assert doc == {"error": "limit must be a whole number from 1 to 1000", "param": "limit", "value": limit}


def test_before_pages_through_everything_once(server: Any) -> None:
    port = server.port
    sent = [echo(port, path=f"/page/{i}") for i in range(7)]
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        doc = api(port, f"exchanges?limit=3&bodies=0{cursor}")
        seen += [x["id"] for x in doc["exchanges"]]
        if "next" not in doc:
            break
        cursor = f"&before={doc['next']}"
    assert seen == sent[::-1]


def test_a_partial_page_has_no_next(server: Any) -> None:
    echo(server.port, path="/one")
    assert "next" not in api(server.port, "exchanges?limit=2")
    assert "next" in api(server.port, "exchanges?limit=1")


@pytest.mark.parametrize("before", ["abc", "0" * 27, "0" * 29, "G" * 28, "'; DROP"])
def test_before_must_be_an_id(server: Any, before: str) -> None:
    status, _, body = call(server.port, "GET", f"/_/api/exchanges?before={before.replace(' ', '%20')}")
    assert status == 400
    assert json.loads(body)["param"] == "before"


@pytest.fixture
def mixed(server: Any) -> dict[str, str]:
    port = server.port
    return {
        "get": echo(port, "GET", "/users/ada?tab=Profile"),
        "post404": echo(port, "POST", "/orders?_status=404", b"x"),
        "put201": echo(port, "PUT", "/orders/7?_status=201", b"y"),
        "delete503": echo(port, "DELETE", "/Things/1?_status=503"),
        "propfind": echo(port, "PROPFIND", "/dav/file"),
        "bad": echo(port, "GET", "/bad?_status=abc"),  # invalid control: recorded as its 400
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("method=POST", ["post404"]),
        ("method=post", ["post404"]),
        ("method=PROPFIND", ["propfind"]),
        ("status=404", ["post404"]),
        ("status=4xx", ["bad", "post404"]),
        ("status=4XX", ["bad", "post404"]),
        ("status=2xx", ["propfind", "put201", "get"]),
        ("status=201", ["put201"]),
        ("status=5xx", ["delete503"]),
        ("q=orders", ["put201", "post404"]),
        ("q=THINGS", ["delete503"]),
        ("q=tab%3Dprofile", ["get"]),  # text in the query string too, any case
        ("method=GET&status=4xx", ["bad"]),
        ("method=GET&q=users&status=2xx", ["get"]),
        ("method=PATCH", []),
        ("q=nowhere", []),
    ],
)
def test_filters(mixed: dict[str, str], live_server: Any, query: str, expected: list[str]) -> None:
    listed = [x["id"] for x in api(live_server.port, f"exchanges?{query}")["exchanges"]]
    assert listed == [mixed[name] for name in expected]


@pytest.mark.parametrize("status", ["600", "6xx", "40", "4x", "abc", "99", "0xx", "4040"])
def test_bad_status_filter_is_a_400(server: Any, status: str) -> None:
    code, _, body = call(server.port, "GET", f"/_/api/exchanges?status={status}")
    assert code == 400
    doc = json.loads(body)
    assert doc["param"] == "status" and doc["value"] == status
    assert "4xx" in doc["error"]


def test_bodies_0_leaves_body_text_out(server: Any) -> None:
    echo(server.port, "POST", "/b", b"hello")
    full = api(server.port, "exchanges")["exchanges"][0]
    bare = api(server.port, "exchanges?bodies=0")["exchanges"][0]
    assert full["request"]["body"]["text"] == "hello"
    assert "text" not in bare["request"]["body"] and "base64" not in bare["request"]["body"]
    assert bare["request"]["body"]["size"] == 5
    assert bare["response"]["body"] == {"size": full["response"]["body"]["size"],
                                        "sha256": full["response"]["body"]["sha256"]}


# ---- one exchange, curl, delete ----------------------------------------------

@pytest.mark.parametrize("route", ["exchanges/{id}", "exchanges/{id}/curl"])
@pytest.mark.parametrize("unknown", ["0" * 28, "f" * 28, "nope", "0" * 29])
def test_unknown_ids_are_json_404s(server: Any, route: str, unknown: str) -> None:
    status, headers, body = call(server.port, "GET", "/_/api/" + route.format(id=unknown))
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert "no such exchange" in json.loads(body)["error"]


def test_curl_route_is_plain_text(server: Any) -> None:
    exchange_id = echo(server.port, "POST", "/c", b"body")
    status, headers, body = call(server.port, "GET", f"/_/api/exchanges/{exchange_id}/curl")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert body.decode().startswith("curl ") and "--data-raw 'body'" in body.decode()


def test_delete_clears_the_history(server: Any) -> None:
    exchange_id = echo(server.port)
    status, _, body = call(server.port, "DELETE", "/_/api/exchanges")
    assert (status, body) == (204, b"")
    assert api(server.port, "exchanges")["exchanges"] == []
    assert call(server.port, "GET", f"/_/api/exchanges/{exchange_id}")[0] == 404


def test_a_wrong_method_is_a_json_405_with_allow(server: Any) -> None:
    status, headers, body = call(server.port, "POST", "/_/api/exchanges")
    assert status == 405
    assert "DELETE" in headers["Allow"] and "GET" in headers["Allow"]
    assert "error" in json.loads(body)


# ---- health, 404s, what is not recorded --------------------------------------

def test_healthz(server: Any) -> None:
    status, headers, body = call(server.port, "GET", "/_/healthz")
    doc = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert doc["status"] == "ok"
    assert doc["store"]["backend"] == "memory" and doc["store"]["ok"] is True


def test_unknown_pages_get_a_friendly_html_404(server: Any) -> None:
    for path in ("/_/nothing-here", "/_/exchanges/" + "0" * 28, "/_/exchanges/nope"):
        status, headers, body = call(server.port, "GET", path, headers={"Accept": "text/html"})
        assert status == 404, path
        assert headers["Content-Type"].startswith("text/html")
        assert b"Not found" in body and b"Back to the history" in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_unknown_api_routes_get_a_json_404(server: Any) -> None:
    status, headers, body = call(server.port, "GET", "/_/api/nothing")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "no such API route"


def test_the_bare_prefix_redirects_to_the_list(server: Any) -> None:
    status, headers, _ = call(server.port, "GET", "/_")
    assert status == 308 and headers["Location"].endswith("/_/")


def test_inspector_requests_are_not_recorded(server: Any) -> None:
    port = server.port
    for method, path in [("GET", "/_/"), ("GET", "/_/api/exchanges"), ("GET", "/_/healthz"), ("GET", "/_/metrics"),
                         ("GET", "/_/static/inspector.css"), ("GET", "/_/pygments.css"), ("GET", "/_"),
                         ("GET", "/_/nothing"), ("GET", "/_/api/exchanges.har")]:
        call(port, method, path)
    assert api(port, "exchanges")["exchanges"] == []


# ---- pages: escaping and CSP ---------------------------------------------------

class PageAudit(HTMLParser):
    """Collects what a strict CSP page must not have."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.scripts: list[str] = []
        self.style_elements = 0
        self.bad_attributes: list[str] = []
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script":
            if "src" in names:
                self.scripts.append(names["src"])
            else:
                self.inline_scripts += 1
        if tag == "style":
            self.style_elements += 1
        for name in names:
            if name == "style" or name.startswith("on"):
                self.bad_attributes.append(f"<{tag} {name}>")
        for name in ("src", "href", "action"):
            if name in names:
                self.urls.append(names[name])


def audit(body: bytes) -> PageAudit:
    parser = PageAudit()
    parser.feed(body.decode("utf-8"))
    return parser


def test_pages_are_strict_csp_and_same_origin(server: Any) -> None:
    port = server.port
    exchange_id = echo(port, "POST", "/p?x=1", b'{"a": [1, 2]}', {"Content-Type": "application/json"})
    pages = {
        "list": call(port, "GET", "/_/"),
        "detail": call(port, "GET", f"/_/exchanges/{exchange_id}"),
        "404": call(port, "GET", "/_/nothing"),
        "echo": call(port, "GET", "/e?x=1", headers={"Accept": "text/html"}),
    }
    for name, (_, headers, body) in pages.items():
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp, name
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        page = audit(body)
        assert page.inline_scripts == 0 and page.style_elements == 0, name
        assert page.bad_attributes == [], name
        for url in page.urls + page.scripts:
            assert not re.match(r"(?i)^(https?:)?//", url), f"{name} loads {url} from another origin"
    assert audit(pages["list"][2]).scripts == ["/_/static/inspector.js"]
    assert audit(pages["echo"][2]).scripts == []


def test_static_assets_and_pygments_css_are_served(server: Any) -> None:
    port = server.port
    for path, kind in [("/_/static/inspector.css", "text/css"), ("/_/static/inspector.js", "javascript"),
                       ("/_/static/favicon.svg", "image/svg+xml"), ("/_/pygments.css", "text/css")]:
        status, headers, body = call(port, "GET", path)
        assert status == 200 and kind in headers["Content-Type"], path
        assert body
    _, _, css = call(port, "GET", "/_/pygments.css")
    assert b"prefers-color-scheme: dark" in css and b".hl .s2" in css


PAYLOAD = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=1\">"


def test_request_data_is_escaped_in_the_pages(server: Any) -> None:
    port = server.port
    quoted = PAYLOAD.replace(" ", "%20").replace('"', "%22").replace("<", "%3C").replace(">", "%3E")
    exchange_id = echo(port, "POST", f"/x/{quoted}?q={quoted}", PAYLOAD.encode(), {
        "Content-Type": "text/html", "X-Evil": PAYLOAD, "Cookie": "c=<script>window.pwned=1</script>",
    })
    for path in ("/_/", f"/_/exchanges/{exchange_id}"):
        _, _, body = call(port, "GET", path)
        page = audit(body)
        assert page.inline_scripts == 0 and page.bad_attributes == [], path
        assert b"<script>window" not in body and b"<img src=x" not in body
        assert b"&lt;script&gt;window.pwned=1&lt;/script&gt;" in body, path  # shown, as text


# ---- --ui-auth -----------------------------------------------------------------

def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def guarded() -> Iterator[Any]:
    from conftest import start_echo

    server = start_echo("--log", "off", "--ui-auth", "ada:s3cr:et")
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        (basic("ada", "wrong"), 401),
        (basic("bob", "s3cr:et"), 401),
        (basic("ada", "s3cr:e"), 401),  # one character short
        (basic("ada", "s3cr:ett"), 401),  # one character long
        ("Basic !!!not-base64", 401),
        ("Bearer " + base64.b64encode(b"ada:s3cr:et").decode(), 401),
        (basic("ada", "s3cr:et"), 200),
        ("basic " + base64.b64encode(b"ada:s3cr:et").decode(), 200),  # the scheme is case-insensitive
    ],
)
def test_ui_auth_guards_every_inspector_route(guarded: Any, authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/_/", "/_/api/exchanges", "/_/api/exchanges.har", "/_/metrics", "/_/exchanges/" + "0" * 28):
        code, response_headers, body = call(guarded.port, "GET", path, headers=headers)
        expected = 404 if status == 200 and path.startswith("/_/exchanges/") else status
        assert code == expected, path
        if code == 401:
            assert response_headers["WWW-Authenticate"].startswith("Basic realm=")
            assert "authentication required" in json.loads(body)["error"]
    code, _, _ = call(guarded.port, "DELETE", "/_/api/exchanges", headers=headers)
    assert code == (204 if status == 200 else 401)


def test_ui_auth_hides_unknown_inspector_paths_too(guarded: Any) -> None:
    assert call(guarded.port, "GET", "/_/no/such/page")[0] == 401


def test_ui_auth_leaves_the_echo_health_and_assets_open(guarded: Any) -> None:
    port = guarded.port
    status, _, body = call(port, "POST", "/open?x=1", b"hi")
    assert status == 200 and json.loads(body)["body"]["text"] == "hi"
    assert call(port, "GET", "/_/healthz")[0] == 200
    for path in ("/_/static/inspector.css", "/_/static/inspector.js", "/_/pygments.css"):
        assert call(port, "GET", path)[0] == 200, path
    listed = api(port, "exchanges", headers={"Authorization": basic("ada", "s3cr:et")})["exchanges"]
    assert [x["request"]["path"] for x in listed[:1]] == ["/open"]


# ---- another prefix --------------------------------------------------------------

def test_a_custom_ui_prefix_moves_the_inspector(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--ui-prefix", "/inspect/")
    port = server.port
    status, _, body = call(port, "GET", "/_/api/exchanges")  # now an ordinary echo path
    assert status == 200 and json.loads(body)["path"] == "/_/api/exchanges"
    status, _, body = call(port, "GET", "/inspect/api/exchanges")
    assert status == 200
    assert [x["request"]["path"] for x in json.loads(body)["exchanges"]] == ["/_/api/exchanges"]
    _, _, page = call(port, "GET", "/inspect/")
    assert b'src="/inspect/static/inspector.js"' in page and b'data-prefix="/inspect/"' in page


# ---- a failing store ----------------------------------------------------------------



@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/_/api/exchanges"), ("GET", "/_/api/exchanges/" + "0" * 28), ("GET", "/_/api/exchanges/" + "0" * 28 + "/curl"),
    ("DELETE", "/_/api/exchanges"), ("GET", "/_/api/exchanges.har"),
])  # pages answer an HTML 503 page instead: tests/test_pages.py
def test_a_failing_store_is_a_503_json_error(method: str, path: str) -> None:
    app = create_app({"log": "off"}, environ={})
    app.extensions["echo"].store = FailingStore()
    response = app.test_client().open(path, method=method)
    assert response.status_code == 503
    assert response.get_json() == {
        "error": "the history store is unavailable; the echo keeps answering", "detail": "connection refused",
    }


def test_health_and_metrics_answer_while_the_store_fails() -> None:
    app = create_app({"log": "off"}, environ={})
    app.extensions["echo"].store = FailingStore()
    client = app.test_client()
    health = client.get("/_/healthz")
    assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
    assert client.get("/_/metrics").status_code == 200


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_lone_surrogate_escapes_render_as_the_escapes_they_were(server: Any, content_type: str) -> None:
    # '"\ud800"' is valid JSON text for a string no UTF-8 page can hold as a character.
    exchange_id = echo(server.port, "POST", "/s", b'{"k": ["\\ud800", "caf\\u00e9"]}', {"Content-Type": content_type})
    status, _, page = call(server.port, "GET", f"/_/exchanges/{exchange_id}")
    assert status == 200
    assert b"\\ud800" in page and "café".encode() in page
