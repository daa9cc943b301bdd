"""The curl command: run for real with `bash -c` against the live server.

Each case sends a request byte for byte over a socket, takes the recorded
exchange's curl command from the API, runs it in bash, and compares the new
exchange with the original: method, path, query, headers, cookies and the
SHA-256 of the body. Quotes, `$`, backticks, backslashes, NUL bytes and
bodies that start with '@' must all arrive unchanged.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from contextlib import closing
from http.client import HTTPConnection
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from echo.formats.curl import INLINE_ARG_MAX, printf_command, quote

from support import need, raw_request

# Headers that describe the connection or framing rather than the request: a
# replay may frame the same body differently (Content-Length for chunked).
FRAMING = {"connection", "content-length", "transfer-encoding", "expect"}


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    need("curl", shutil.which("curl") is not None, "curl")
    need("bash", shutil.which("bash") is not None, "bash")


def get(port: int, path: str) -> Any:
    with closing(HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    return response.status, body


def newest(port: int) -> dict[str, Any]:
    status, body = get(port, "/_/api/exchanges?limit=1")
    assert status == 200
    return json.loads(body)["exchanges"][0]


def send_raw(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"",
             version: str = "HTTP/1.1") -> dict[str, Any]:
    """Send exactly these bytes and return the exchange history recorded for them."""
    lines = [f"{method} {target} {version}", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers) and body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    answer = raw_request(port, head + body)
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return newest(port)


def replay(port: int, exchange: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    status, command = get(port, f"/_/api/exchanges/{exchange['id']}/curl")
    assert status == 200
    text = command.decode("utf-8")
    result = subprocess.run(["bash", "-c", text], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    again = newest(port)
    assert again["id"] != exchange["id"], "the command did not reach the server"
    return text, again


def same_request(a: dict[str, Any], b: dict[str, Any]) -> None:
    ra, rb = a["request"], b["request"]
    for key in ("method", "path", "query_string", "args", "cookies", "form", "files", "http_version"):
        assert ra[key] == rb[key], key

    def headers(r: dict[str, Any]) -> dict[str, str]:
        return {k: v for k, v in r["headers"].items() if k.lower() not in FRAMING}

    assert headers(ra) == headers(rb)
    assert ra["body"]["sha256"] == rb["body"]["sha256"]
    assert ra["body"]["size"] == rb["body"]["size"]


TRICKY = "it's \"quoted\" $HOME ${PATH} $(id) `id` \\ \\n \\\\ !event %s %% ; | & > <"
MULTIPART = (
    b"--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAda $HOME 'x'\r\n"
    b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
    b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\xff'`$\r\n--XyZ--\r\n"
)
UA = ("User-Agent", "client/1.0")

CASES: list[tuple[str, str, str, list[tuple[str, str]], bytes]] = [
    ("plain get", "GET", "/plain?x=1&x=2", [UA, ("Accept", "*/*")], b""),
    ("no user-agent or accept", "GET", "/bare", [], b""),
    ("quotes and dollars everywhere", "POST", "/q/it's/\"x\"/`id`/$HOME/\\?a='$HOME'&b=`id`&c=\\&d=\"&e={}[]",
     [UA, ("Content-Type", "application/json"), ("X-Tricky", TRICKY)],
     json.dumps({"s": TRICKY, "n": [1, 2]}).encode()),
    ("binary body with NUL", "PUT", "/bin", [UA, ("Content-Type", "application/octet-stream")],
     bytes(range(256)) * 3 + b"\x00\x001\\0%s%%"),
    ("body starting with @", "POST", "/at", [UA, ("Content-Type", "text/plain")], b"@/etc/passwd"),
    ("body that is only @-", "POST", "/at2", [UA, ("Content-Type", "text/plain")], b"@-"),
    ("body starting with a dash", "POST", "/dash", [UA, ("Content-Type", "application/octet-stream")],
     b"--boundary\x00-v"),
    ("multipart with CRLF", "POST", "/form", [UA, ("Content-Type", "multipart/form-data; boundary=XyZ")], MULTIPART),
    ("urlencoded form", "POST", "/urlencoded", [UA, ("Content-Type", "application/x-www-form-urlencoded")],
     b"a=1&b=%27%24HOME%27&c=x+y"),
    ("large text body", "POST", "/large", [UA, ("Content-Type", "text/plain")], ("caf\u00e9 '$x' \n" * 3000).encode()),
    ("empty header value", "GET", "/empty", [UA, ("X-Empty", "")], b""),
    ("tab in a header", "GET", "/tab", [UA, ("X-Tab", "a\tb")], b""),
    ("utf-8 everywhere", "POST", "/caf%C3%A9?q=%E2%98%95", [UA, ("X-Name", "caf\u00e9 \u2615"),
                                                           ("Content-Type", "text/plain; charset=utf-8")],
     "\u2615 caf\u00e9 \U0001F600".encode()),
    ("cookies", "GET", "/c", [UA, ("Cookie", "a=1; b='$x'; c=\"q\"")], b""),
    ("head", "HEAD", "/head?x=1", [UA], b""),
    ("options", "OPTIONS", "/opt", [UA], b""),
    ("unknown method with a body", "PROPFIND", "/dav", [UA, ("Content-Type", "application/xml"), ("Depth", "1")],
     b"<?xml version='1.0'?><propfind xmlns='DAV:'><allprop/></propfind>"),
    ("delete without a body", "DELETE", "/things/1", [UA], b""),
    ("put with an empty body", "PUT", "/empty-put", [UA, ("Content-Length", "0")], b""),
    ("get with a body", "GET", "/get-body", [UA, ("Content-Type", "text/plain")], b"a body on a GET"),
    ("gzip body", "POST", "/gz", [UA, ("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
     gzip.compress(b'{"zipped": "\'$HOME\'"}', mtime=0)),
    ("carriage returns in text", "POST", "/cr", [UA, ("Content-Type", "text/plain")], b"line 1\r\nline 2\rend"),
]


@pytest.mark.parametrize(("name", "method", "target", "headers", "body"), CASES, ids=[c[0] for c in CASES])
def test_the_command_sends_the_same_request(live_server: Any, name: str, method: str, target: str,
                                            headers: list[tuple[str, str]], body: bytes) -> None:
    port = live_server.port
    original = send_raw(port, method, target, headers, body)
    assert original["request"]["method"] == method and not original["request"]["body"]["truncated"]
    _, again = replay(port, original)
    same_request(original, again)


@pytest.mark.parametrize(
    ("body", "how"),
    [
        (b"a" * (INLINE_ARG_MAX - 2), "--data-raw"),  # quoted: exactly the limit
        (b"a" * (INLINE_ARG_MAX - 1), "printf"),  # one past it
        (b"'" * 16383, "--data-raw"),  # each ' is written as 4 characters: 65534
        (b"'" * 16384, "printf"),  # 65538, and a single argument may not pass 128 KiB at all
    ],
    ids=["limit", "limit+1", "quotes at the limit", "quotes past the limit"],
)
def test_large_bodies_are_piped_in(live_server: Any, body: bytes, how: str) -> None:
    port = live_server.port
    original = send_raw(port, "POST", "/big", [UA, ("Content-Type", "text/plain")], body)
    assert not original["request"]["body"]["truncated"]
    command, again = replay(port, original)
    assert command.startswith(how) if how == "printf" else (how in command and not command.startswith("printf"))
    same_request(original, again)


def test_http_1_0_is_replayed_as_http_1_0(live_server: Any) -> None:
    port = live_server.port
    original = send_raw(port, "GET", "/old", [UA], version="HTTP/1.0")
    assert original["request"]["http_version"] == "HTTP/1.0"
    command, again = replay(port, original)
    assert "--http1.0" in command
    same_request(original, again)


def test_a_body_starting_with_at_is_never_read_as_a_file(live_server: Any) -> None:
    original = send_raw(live_server.port, "POST", "/at", [UA], b"@/etc/hostname")
    command, again = replay(live_server.port, original)
    assert "--data-binary '@" not in command and " -d @" not in command
    assert again["request"]["body"]["text"] == "@/etc/hostname"


def test_chunked_bodies_are_replayed_with_the_same_bytes(live_server: Any) -> None:
    port = live_server.port
    chunked = b"5\r\nhello\r\n6\r\n $HOME\r\n0\r\n\r\n"
    original = send_raw(port, "POST", "/chunked", [UA, ("Transfer-Encoding", "chunked")], chunked)
    assert original["request"]["body"]["text"] == "hello $HOME"
    _, again = replay(port, original)
    same_request(original, again)


# ---- what the command says when it cannot be exact ------------------------------------

def test_redacted_and_cut_requests_say_so_and_still_run(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--redact", "Authorization", "--keep-body", "8")
    port = server.port
    original = send_raw(port, "POST", "/secret", [UA, ("Authorization", "Bearer abc"),
                                                  ("Content-Type", "text/plain")], b"0123456789")
    command, again = replay(port, original)
    lines = command.splitlines()
    assert lines[0] == "# Authorization was redacted in history; put the real value back before running this"
    assert lines[1].startswith("# the body was cut to 8 of 10 bytes in history")
    assert "Bearer abc" not in command
    assert again["request"]["headers"]["Authorization"] == "[redacted]"
    assert again["request"]["body"]["text"] == "01234567"  # what was kept is what is sent


# ---- the quoting itself, for any text -----------------------------------------------------

def bash_words(words: list[str]) -> list[str]:
    script = "printf '%s\\0' " + " ".join(quote(word) for word in words)
    out = subprocess.run(["bash", "-c", script], capture_output=True, timeout=10, check=True).stdout
    return out.decode("utf-8").split("\0")[:-1]


NO_NUL = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(NO_NUL, min_size=1, max_size=8))
def test_quote_is_one_bash_word_holding_exactly_the_text(words: list[str]) -> None:
    assert bash_words(words) == words


@pytest.mark.parametrize("word", ["", "'", "''", "\\'", "$'x'", "a\nb", "\t", "\x1b[31m", "\x7f", "!!", "~", "*", "-n"])
def test_quote_edge_cases(word: str) -> None:
    assert bash_words([word]) == [word]


def printed(data: bytes) -> bytes:
    return subprocess.run(["bash", "-c", printf_command(data)], capture_output=True, timeout=10, check=True).stdout


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_printf_command_prints_exactly_the_bytes(data: bytes) -> None:
    assert printed(data) == data


@pytest.mark.parametrize("data", [b"-", b"--", b"-v x", b"--help", b"%", b"%s%d", rb"\\0", rb"\x41", rb"\0001", rb"\c", b"\x00-"])
def test_printf_command_edge_cases(data: bytes) -> None:
    assert printed(data) == data
