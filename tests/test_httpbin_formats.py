"""httpbin mode, response formats and caching: /html, /json, /xml, /robots.txt, /deny, /encoding/utf8, /uuid,
/base64, /links, /image, /forms/post, /cache, /cache/{n}, /etag/{etag}.

Against the real server with --httpbin: httpbin 0.10's bodies, types, statuses
and headers; every body keeps Echo's sandbox CSP and nosniff; /links is
bounded by --max-httpbin-n (tested at the limit and one past it).
"""

from __future__ import annotations

import configparser
import json
import re
import uuid
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from support import ROOT, EchoServer, call, start_echo

MAX_N = 7


@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin", "--max-httpbin-n", str(MAX_N))
    yield server
    server.stop()


def get(server: EchoServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    return call(server.port, "GET", path, None, headers)


@pytest.mark.parametrize(("path", "content_type", "starts", "contains"), [
    ("/html", "text/html; charset=utf-8", b"<!DOCTYPE html>", b"<h1>Herman Melville - Moby-Dick</h1>"),
    ("/xml", "application/xml", b"<?xml version='1.0' encoding='us-ascii'?>", b"<slideshow"),
    ("/robots.txt", "text/plain", b"User-agent: *\nDisallow: /deny\n", b""),
    ("/deny", "text/plain", b"\n          .-''''''-.", b"YOU SHOULDN'T BE HERE"),
    ("/encoding/utf8", "text/html; charset=utf-8", b"<h1>Unicode Demo</h1>", "∮ E⋅da = Q".encode()),
    ("/forms/post", "text/html; charset=utf-8", b"<!DOCTYPE html>", b'<form method="post" action="/post">'),
    ("/image/png", "image/png", b"\x89PNG\r\n\x1a\n", b""),
    ("/image/jpeg", "image/jpeg", b"\xff\xd8\xff", b""),
    ("/image/webp", "image/webp", b"RIFF", b"WEBP"),
    ("/image/svg", "image/svg+xml", b"<svg", b"</svg>"),
])
def test_fixed_documents_are_httpbins(httpbin: EchoServer, path: str, content_type: str, starts: bytes,
                                      contains: bytes) -> None:
    status, headers, body = get(httpbin, path)
    assert status == 200 and headers["Content-Type"] == content_type
    assert body.startswith(starts) and contains in body and int(headers["Content-Length"]) == len(body)
    assert headers["Content-Security-Policy"] == "sandbox" and headers["X-Content-Type-Options"] == "nosniff"


def test_json_is_httpbins_slideshow(httpbin: EchoServer) -> None:
    status, headers, body = get(httpbin, "/json")
    assert status == 200 and headers["Content-Type"] == "application/json" and body.endswith(b"}\n")
    show = json.loads(body)["slideshow"]
    assert (show["title"], show["author"], show["date"]) == ("Sample Slide Show", "Yours Truly", "date of publication")
    assert show["slides"][1]["items"] == ["Why <em>WonderWidgets</em> are great", "Who <em>buys</em> WonderWidgets"]


def test_uuid_is_a_fresh_uuid4(httpbin: EchoServer) -> None:
    first, second = (json.loads(get(httpbin, "/uuid")[2])["uuid"] for _ in range(2))
    assert first != second and uuid.UUID(first).version == 4


@pytest.mark.parametrize(("value", "body"), [
    ("SFRUUEJJTiBpcyBhd2Vzb21l", b"HTTPBIN is awesome"),
    ("_w==", b"Incorrect Base64 data try: SFRUUEJJTiBpcyBhd2Vzb21l"),  # decodes, but not to UTF-8
    ("aGVsbG8", b"Incorrect Base64 data try: SFRUUEJJTiBpcyBhd2Vzb21l"),  # padding missing
    ("PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", b"<script>alert(1)</script>"),
    ("!!", b""),  # like httpbin: characters outside the alphabet are skipped
])
def test_base64_decodes_url_safe_base64_as_plain_text(httpbin: EchoServer, value: str, body: bytes) -> None:
    status, headers, got = get(httpbin, f"/base64/{value}")
    assert (status, got) == (200, body)
    # The caller's text: never served as HTML (httpbin says text/html), and sandboxed anyway.
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Security-Policy"] == "sandbox" and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("path", "links", "current"), [
    ("/links/3/1", ["/links/3/0", "/links/3/2"], "1"),
    ("/links/0/0", [], "0"),  # httpbin: at least one link
    (f"/links/{MAX_N}/9", [f"/links/{MAX_N}/{i}" for i in range(MAX_N)], None),
])
def test_links_pages(httpbin: EchoServer, path: str, links: list[str], current: str | None) -> None:
    status, headers, body = get(httpbin, path)
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert page.startswith("<html><head><title>Links</title></head><body>") and page.endswith("</body></html>")
    assert [part.split("'")[0] for part in page.split("<a href='")[1:]] == links
    if current is not None:  # the current page's number, not a link
        assert re.search(rf"(<body>|</a> ){current} ", page)


def test_links_without_offset_redirects_to_offset_zero(httpbin: EchoServer) -> None:
    status, headers, body = get(httpbin, "/links/4")
    assert status == 302 and headers["Location"] == "/links/4/0" and b'href="/links/4/0"' in body


@pytest.mark.parametrize("path", [f"/links/{MAX_N + 1}/0", f"/links/{MAX_N + 1}"])
def test_links_are_bounded_by_max_httpbin_n(httpbin: EchoServer, path: str) -> None:
    status, _, body = get(httpbin, path)
    assert status == 400
    assert json.loads(body) == {"error": f"n is over the limit of {MAX_N}", "param": "n", "value": MAX_N + 1,
                                "limit": MAX_N, "setting": "--max-httpbin-n"}


@pytest.mark.parametrize(("path", "param"), [("/links/x/0", "n"), ("/links/3/-1", "offset"), ("/cache/soon", "value")])
def test_path_numbers_that_are_not_numbers_are_404_naming_them(httpbin: EchoServer, path: str, param: str) -> None:
    status, _, body = get(httpbin, path)
    assert status == 404 and json.loads(body)["param"] == param


@pytest.mark.parametrize(("accept", "content_type"), [
    (None, "image/png"),
    ("image/webp,image/png", "image/webp"),
    ("image/svg+xml", "image/svg+xml"),
    ("IMAGE/JPEG", "image/jpeg"),
    ("image/png", "image/png"),
    ("image/*", "image/png"),
])
def test_image_by_accept(httpbin: EchoServer, accept: str | None, content_type: str) -> None:
    status, headers, _ = get(httpbin, "/image", {"Accept": accept} if accept else None)
    assert status == 200 and headers["Content-Type"] == content_type


@pytest.mark.parametrize("accept", ["text/html", ""])
def test_image_without_an_image_type_is_httpbins_406(httpbin: EchoServer, accept: str) -> None:
    status, headers, body = get(httpbin, "/image", {"Accept": accept})
    assert status == 406 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"message": "Client did not request a supported media type.",
                                "accept": ["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"]}


# --- /cache, /cache/{n}, /etag/{etag} --------------------------------------------------

def test_cache_without_conditions_is_get_with_last_modified_and_etag(httpbin: EchoServer) -> None:
    status, headers, body = get(httpbin, "/cache?a=1")
    assert status == 200 and set(json.loads(body)) == {"args", "headers", "origin", "url"}
    assert parsedate_to_datetime(headers["Last-Modified"]).tzinfo is not None
    assert len(headers["ETag"]) == 32 and int(headers["ETag"], 16) >= 0  # httpbin: a bare uuid4 hex


@pytest.mark.parametrize("condition", [{"If-Modified-Since": "Wed, 21 Oct 2015 07:28:00 GMT"},
                                       {"If-None-Match": "x"}, {"If-None-Match": ""}])
def test_cache_with_a_condition_is_304(httpbin: EchoServer, condition: dict[str, str]) -> None:
    status, headers, body = get(httpbin, "/cache", condition)
    assert (status, body) == (304, b"") and "Content-Length" not in headers


@pytest.mark.parametrize("seconds", [0, 60, 31536000])
def test_cache_n_sets_cache_control(httpbin: EchoServer, seconds: int) -> None:
    status, headers, body = get(httpbin, f"/cache/{seconds}")
    assert status == 200 and headers["Cache-Control"] == f"public, max-age={seconds}" and json.loads(body)["url"]


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 200),
    ({"If-None-Match": '"abc"'}, 304),
    ({"If-None-Match": 'W/"zz", "abc"'}, 304),
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"zz"'}, 200),
    ({"If-Match": '"abc"'}, 200),
    ({"If-Match": "*"}, 200),
    ({"If-Match": '"zz"'}, 412),
    ({"If-None-Match": '"zz"', "If-Match": '"zz"'}, 200),  # httpbin reads If-Match only without If-None-Match
])
def test_etag(httpbin: EchoServer, headers: dict[str, str], status: int) -> None:
    got, answer, body = get(httpbin, "/etag/abc", headers)
    assert got == status
    if status == 200:
        assert answer["ETag"] == "abc" and set(json.loads(body)) == {"args", "headers", "origin", "url"}
    elif status == 304:
        assert answer["ETag"] == "abc" and body == b""
    else:
        assert body == b"" and "ETag" not in answer


def test_etag_with_a_line_break_is_refused_not_sent_as_a_header(httpbin: EchoServer) -> None:
    status, headers, body = get(httpbin, "/etag/a%0D%0AX-Evil:%201")
    assert status == 400 and "X-Evil" not in headers and json.loads(body)["param"] == "etag"


@pytest.mark.parametrize(("method", "path"), [("POST", "/html"), ("POST", "/cache"), ("DELETE", "/etag/x"),
                                              ("PUT", "/image/png")])
def test_get_only_routes_answer_405_with_allow(httpbin: EchoServer, method: str, path: str) -> None:
    status, headers, _ = call(httpbin.port, method, path)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_installed_package_lists_every_package_and_the_assets() -> None:
    # The route table is a package of its own: an install without it cannot start at all.
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    listed = set(setup["options"]["packages"].split())
    found = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "echo").rglob("__init__.py")}
    assert found <= listed
    assert setup["options.package_data"]["echo.answer.routes"] == "assets/*"
    assert (Path(ROOT) / "echo/answer/routes/assets/LICENSE.MIT").is_file()
