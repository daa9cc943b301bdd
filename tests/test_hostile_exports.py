"""Hostile requests against the exports: "copy as curl" and the HAR file.

The curl cases send a request byte for byte to the real server, run the
command the inspector gives for it with bash in an empty temporary directory,
and check that the request arrived again identical (method, path and query,
headers, body bytes) and that the directory is still empty: nothing in a
target, a header or a body may become a curl option, a config file, an output
file or a file to upload, and nothing may run in the shell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
from contextlib import closing
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

import pytest

from echo.formats import curl
from echo.formats.har import har_chunks, set_cookie
from echo.model.records import Exchange, RequestRecord, ResponseRecord

from support import need, raw_request

FRAMING = {"connection", "content-length", "transfer-encoding", "expect"}
UA = ("User-Agent", "hostile/1.0")
# A curl config file: if curl ever read the body as its config, it would write
# `written` in the working directory and upload /etc/hostname.
CONFIG_BODY = b'output = "written"\nupload-file = "/etc/hostname"\nverbose\n\x00'


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    need("curl", shutil.which("curl") is not None, "curl")
    need("bash", shutil.which("bash") is not None, "bash")


def get(port: int, path: str) -> tuple[int, bytes]:
    with closing(HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()


def newest(port: int) -> dict[str, Any]:
    status, body = get(port, "/_/api/exchanges?limit=1")
    assert status == 200
    return json.loads(body)["exchanges"][0]


def send_raw(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> dict[str, Any]:
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{n}: {v}" for n, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    answer = raw_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return newest(port)


def run_in(directory: Path, command: str) -> subprocess.CompletedProcess[bytes]:
    # HOME points at the empty directory too, so no ~/.curlrc takes part.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(directory)}
    return subprocess.run(["bash", "-c", command], capture_output=True, timeout=30, cwd=directory, env=env)


def replay(port: int, exchange: dict[str, Any], directory: Path) -> tuple[str, dict[str, Any]]:
    status, command = get(port, f"/_/api/exchanges/{exchange['id']}/curl")
    assert status == 200
    text = command.decode("utf-8")
    result = run_in(directory, text)
    assert result.returncode == 0, (text, result.stderr.decode(errors="replace"))
    assert list(directory.iterdir()) == [], f"the command wrote files: {list(directory.iterdir())}\n{text}"
    again = newest(port)
    assert again["id"] != exchange["id"], "the command did not reach the server"
    return text, again


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    ra, rb = a["request"], b["request"]
    for key in ("method", "path", "query_string", "args", "cookies", "http_version"):
        assert ra[key] == rb[key], key

    def headers(r: dict[str, Any]) -> dict[str, str]:
        return {k: v for k, v in r["headers"].items() if k.lower() not in FRAMING}

    assert headers(ra) == headers(rb)
    assert (ra["body"]["size"], ra["body"]["sha256"]) == (rb["body"]["size"], rb["body"]["sha256"])


# (name, method, target, headers, body); "{tmp}" in a target is the temporary directory.
CURL_CASES: list[tuple[str, str, str, list[tuple[str, str]], bytes]] = [
    ("target -K/dev/stdin with a curl config body", "POST", "-K/dev/stdin", [UA], CONFIG_BODY),
    ("target --config=/dev/stdin", "POST", "--config=/dev/stdin", [UA], CONFIG_BODY),
    ("target -o relative", "GET", "-owritten", [UA], b""),
    ("target -o absolute", "GET", "-o{tmp}/written", [UA], b""),
    ("target @/etc/passwd", "GET", "@/etc/passwd", [UA], b""),
    ("target --next", "GET", "--next", [UA], b""),
    ("target -:", "GET", "-:", [UA], b""),
    ("target $(touch)", "GET", "$(touch%20written)", [UA], b""),
    ("target backticks", "GET", "`touch%20written`", [UA], b""),
    ("target *", "OPTIONS", "*", [UA], b""),
    ("target without a slash, with a query", "GET", "a/b?c=-K&d=@x", [UA], b""),
    ("target only a query", "GET", "?-K=/dev/stdin", [UA], b""),
    ("absolute target naming another host", "GET", "http://evil.example:81/x?y=1", [UA], b""),
    ("absolute target with userinfo", "GET", "http://127.0.0.1:1@evil.example/-K/dev/stdin", [UA], b""),
    ("scheme-relative target", "GET", "//evil.example/x", [UA], b""),
    ("header named -K", "GET", "/h", [UA, ("-K", "/dev/stdin")], b""),
    ("header named -o", "GET", "/h", [UA, ("-o", "written")], b""),
    ("header value @file", "GET", "/h", [UA, ("X-At", "@/etc/passwd")], b""),
    ("header value --next", "GET", "/h", [UA, ("X-Next", "--next -owritten")], b""),
    ("header value -:", "GET", "/h", [UA, ("X-Dash", "-:")], b""),
    ("header value $(touch)", "GET", "/h", [UA, ("X-Sub", "$(touch written)")], b""),
    ("header value backticks", "GET", "/h", [UA, ("X-Tick", "`touch written`")], b""),
    ("cookie header with options", "GET", "/h", [UA, ("Cookie", "a=-K/dev/stdin; b=@/etc/passwd")], b""),
    ("body @/etc/passwd", "POST", "/b", [UA, ("Content-Type", "text/plain")], b"@/etc/passwd"),
    ("body @- with NUL", "POST", "/b", [UA], b"@-\x00"),
    ("body @/etc/passwd with NUL", "POST", "/b", [UA], b"\x00@/etc/passwd"),
    ("body -K/dev/stdin", "POST", "/b", [UA], b"-K/dev/stdin"),
    ("body --next", "POST", "/b", [UA], b"--next\n-owritten\n"),
    ("body shell", "POST", "/b", [UA], b"$(touch written)\n`touch written`\n'; touch written; '\n"),
    ("body curl config with NUL", "PUT", "/b", [UA], CONFIG_BODY),
    ("body newlines and CR", "POST", "/b", [UA], b"a\r\n-K\r\n/dev/stdin\n\r"),
    ("method -K", "-K", "/m", [UA], b""),
]


@pytest.mark.parametrize(("name", "method", "target", "headers", "body"), CURL_CASES, ids=[c[0] for c in CURL_CASES])
def test_copy_as_curl_treats_every_part_as_data(live_server: Any, tmp_path: Path, name: str, method: str,
                                                 target: str, headers: list[tuple[str, str]], body: bytes) -> None:
    target = target.replace("{tmp}", url_quote(str(tmp_path)))
    original = send_raw(live_server.port, method, target, headers, body)
    assert original["request"]["method"] == method
    command, again = replay(live_server.port, original, tmp_path)
    assert_same(original, again)
    assert f"'{target}'" not in command.split("--request-target")[0], "the target is outside --request-target"


def test_the_reported_exploit_writes_nothing(live_server: Any, tmp_path: Path) -> None:
    # The red-team case itself: before the fix the target was a bare argument
    # and curl read the body as its configuration.
    body = f'output = "{tmp_path}/pwned"\nurl = "http://127.0.0.1:{live_server.port}/x"\n'.encode() + b"\x00"
    original = send_raw(live_server.port, "POST", "-K/dev/stdin", [], body)
    _, again = replay(live_server.port, original, tmp_path)
    assert again["request"]["path"] == "-K/dev/stdin"
    assert hashlib.sha256(body).hexdigest() == again["request"]["body"]["sha256"]


def _record(url: str, headers: tuple[tuple[str, str], ...], path: str = "/") -> RequestRecord:
    return RequestRecord(id="0", started=0.0, method="GET", url=url, path=path, query_string="",
                         http_version="HTTP/1.1", remote_addr="127.0.0.1", args=(), headers=headers, cookies=(),
                         form=(), files=(), json=None, body=b"", body_size=0, body_sha256="", content=None,
                         content_encoding=None, errors=(), too_large=False)


# Host headers that must never reach the URL: each would send curl elsewhere.
BAD_HOSTS = ["evil.example@127.0.0.1", "127.0.0.1:1@evil.example", "evil.example/x", "a b", "evil.example#",
             "evil.example?", "-K/dev/stdin", "@/etc/passwd", "", "127.0.0.1:99999999"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_that_is_not_host_port_never_goes_into_the_url(host: str) -> None:
    url, target, notes = curl.destination(_record(f"http://{url_quote(host, safe='@/:#? ')}/p", (("Host", host),)))
    assert url.startswith(f"http://{curl.FALLBACK_AUTHORITY}/") and notes
    command = curl.curl_command(_record(f"http://{host}/p", (("Host", host),)))
    assert f"--url 'http://{curl.FALLBACK_AUTHORITY}/" in command
    assert "\n# the Host header" in "\n" + command


@pytest.mark.parametrize(
    ("url", "host", "expected"),
    [
        ("http://127.0.0.1:8080/x?y=1", "127.0.0.1:8080", ("http://127.0.0.1:8080/x?y=1", None)),
        ("http://[::1]:8080/x", "[::1]:8080", ("http://[::1]:8080/x", None)),
        ("http://echo.example/x", "echo.example", ("http://echo.example/x", None)),
        ("http://evil.example/x", "127.0.0.1:8080", ("http://127.0.0.1:8080/", "http://evil.example/x")),
        ("-K/dev/stdin", "127.0.0.1:8080", ("http://127.0.0.1:8080/", "-K/dev/stdin")),
        ("*", "127.0.0.1:8080", ("http://127.0.0.1:8080/", "*")),
        ("http://127.0.0.1:8080/x", None, ("http://127.0.0.1:8080/x", None)),  # HTTP/1.0, no Host
    ],
)
def test_the_destination_is_the_host_header_and_the_target_as_sent(url: str, host: str | None,
                                                                   expected: tuple[str, str | None]) -> None:
    headers = (("Host", host),) if host is not None else ()
    assert curl.destination(_record(url, headers))[:2] == expected


# ---- HAR ------------------------------------------------------------------------------

FAR_EXPIRES = [
    "Fri, 31 Dec 9999 23:59:59 -1200",  # the year 10000 in UTC: datetime cannot hold it
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Fri, 31 Dec 10000 23:59:59 GMT",
    "Fri, 31 Dec 99999999999 23:59:59 GMT",
    "Fri, 31 Dec 99999999999999999999999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 +2359",
]


@pytest.mark.parametrize("expires", FAR_EXPIRES)
def test_set_cookie_never_raises_for_a_date(expires: str) -> None:
    cookie = set_cookie(f"a=b; Expires={expires}; Path=/")
    assert cookie is not None and cookie["name"] == "a" and cookie["path"] == "/"
    json.dumps(cookie)


def _har(port: int) -> dict[str, Any]:
    status, body = get(port, "/_/api/exchanges.har")
    assert status == 200
    assert body.endswith(b"]}}\n"), body[-200:]
    return json.loads(body)


@pytest.mark.parametrize("expires", FAR_EXPIRES)
@pytest.mark.parametrize("param", ["_cookie", "_delete_cookie", "_header"])
def test_a_far_expires_never_breaks_an_export(echo_server: Any, param: str, expires: str) -> None:
    server = echo_server("--log", "off")
    port = server.port
    value = {"_cookie": f"a=b; Expires={expires}", "_delete_cookie": f"a; Expires={expires}",
             "_header": f"Set-Cookie: a=b; Expires={expires}"}[param]
    status, _ = get(port, f"/x?{param}={url_quote(value)}")
    get(port, "/after")
    har = _har(port)
    assert [e["request"]["url"].rsplit("/", 1)[1].split("?")[0] for e in har["log"]["entries"]] == ["x", "after"]
    exchange_id = har["log"]["entries"][0]["_id"]
    for path in (f"/_/api/exchanges/{exchange_id}", f"/_/api/exchanges/{exchange_id}/curl",
                 f"/_/exchanges/{exchange_id}", "/_/api/exchanges", "/_/"):
        assert get(port, path)[0] == 200, path
    assert status in (200, 400)


def _exchange(url: str, started: float = 0.0) -> Exchange:
    return Exchange(request=dataclasses.replace(_record(url, (("Host", "h"),)), started=started),
                    response=ResponseRecord(status=200, headers=(), body=b"", body_size=0, body_sha256="",
                                            content_type=""),
                    controls={}, duration_ms=1.0)


def test_one_entry_that_cannot_be_rendered_does_not_cut_the_stream() -> None:
    # A record no echo makes today (a start time gmtime cannot format), standing
    # in for any value a future field might fail on: the export stays whole.
    doc = json.loads(b"".join(har_chunks([_exchange("http://h/x", started=1e300), _exchange("http://h/y")])))
    entries = doc["log"]["entries"]
    assert len(entries) == 2
    assert entries[1]["request"]["url"] == "http://h/y"
    assert "could not be exported" in entries[0]["comment"]


# ---- every recorded value, every export -----------------------------------------------

HOSTILE_REQUESTS: list[bytes] = [
    b"GET -K/dev/stdin HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: evil.example@127.0.0.1\r\n\r\n",
    b"GET http://evil.example/x HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET /%ED%A0%80%FF?%ED%A0%80=%C2%85 HTTP/1.1\r\nHost: h\r\n\r\n",  # a UTF-8 surrogate, a bad byte, C1
    b"GET /h HTTP/1.1\r\nHost: h\r\nX-Latin: \x85\xff\xed\xa0\x80\r\nCookie: a=\xc2\x85; b=\x9f\r\n\r\n",
    b"GET /c?_cookie=a%3Db%3B%20Expires%3DFri%2C%2031%20Dec%209999%2023%3A59%3A59%20GMT HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /c?_cookie=a%3Db%3B%20Expires%3DFri%2C%2031%20Dec%209999%2023%3A59%3A59%20-1200 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /c?_header=Set-Cookie%3A%20a%3Db%3B%20Expires%3DFri%2C%2031%20Dec%209999%2023%3A59%3A59%20-1200 HTTP/1.1\r\n"
    b"Host: h\r\n\r\n",
    b"GET /c HTTP/1.1\r\nHost: h\r\nX-Echo-Cookie: a=b; Expires=Fri, 31 Dec 99999999999 23:59:59 GMT\r\n\r\n",
    b"POST /b?_status=205 HTTP/1.1\r\nHost: h\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n\x00<script>",
    b"GET /x?_header=X-A%3A%20%C2%85&_body=%ED%A0%80 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /x?_header=X-Echo-Id%3A%20forged HTTP/1.1\r\nHost: h\r\n\r\n",
]


def test_every_hostile_record_renders_in_every_export(echo_server: Any) -> None:
    server = echo_server("--log", "off")
    port = server.port
    for request in HOSTILE_REQUESTS:
        answer = raw_request(port, request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
        assert answer.startswith(b"HTTP/1.1 ") and not answer.startswith(b"HTTP/1.1 500"), (request, answer[:300])
    har = _har(port)
    assert len(har["log"]["entries"]) == len(HOSTILE_REQUESTS)
    assert not any("could not be exported" in e.get("comment", "") for e in har["log"]["entries"])
    status, body = get(port, "/_/api/exchanges?limit=1000")
    assert status == 200
    for exchange in json.loads(body)["exchanges"]:
        for path in (f"/_/api/exchanges/{exchange['id']}", f"/_/api/exchanges/{exchange['id']}/curl",
                     f"/_/exchanges/{exchange['id']}"):
            assert get(port, path)[0] == 200, path
    assert get(port, "/_/")[0] == 200
