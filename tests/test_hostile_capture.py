"""Hostile request bodies against the real server: parsing is bounded, every page renders, nothing is lost.

Each class of attack found on request capture has its cases here: bodies that
are cheap to send and were costly to parse (millions of form fields, millions
of tiny JSON values), bodies whose charset decodes to text no page can encode,
multi-member gzip, and the wire bytes of a content-coded body. Memory is the
server process's own peak (VmHWM in /proc/<pid>/status), measured around one
request on a fresh server.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from support import ROOT, EchoServer, http_request, send, start_echo

MiB = 1024 * 1024
ANSWER_TIMEOUT = 30.0
# Peak growth allowed for one 10 MiB hostile body. Reading it, keeping it and
# echoing it back costs a few copies of 10 MiB; the attacks cost 500-800 MiB.
PEAK_GROWTH_MIB = 96


def post(server: EchoServer, body: bytes, content_type: bytes, *extra: tuple[bytes, bytes],
         target: bytes = b"/hostile") -> tuple[int, dict[str, str], bytes]:
    return send(server, http_request(b"POST", target, [(b"Content-Type", content_type), *extra], body))


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")
    return json.loads(data, parse_constant=refuse)


def get(server: EchoServer, path: str, accept: bytes = b"*/*") -> tuple[int, bytes]:
    status, _, body = send(server, http_request(b"GET", path.encode(), [(b"Accept", accept)]))
    return status, body


def recorded(server: EchoServer, exchange_id: str) -> dict[str, Any]:
    status, body = get(server, f"/_/api/exchanges/{exchange_id}")
    assert status == 200, body[:300]
    return strict_json(body)


def peak_growth_mib(server: EchoServer, data: bytes) -> tuple[float, float, tuple[int, dict[str, str], bytes]]:
    """(peak RSS growth in MiB, seconds, answer) of one request on a warmed-up server."""
    send(server, http_request(b"POST", b"/warm", [(b"Content-Type", b"application/json")], b'{"warm": [1]}'))
    before = server.status_field("VmHWM")
    began = time.monotonic()
    answer = send(server, data)
    seconds = time.monotonic() - began
    return (server.status_field("VmHWM") - before) / 1024, seconds, answer


@pytest.fixture
def fresh() -> Iterator[EchoServer]:
    """A server of its own: peak memory is per process, so each measurement needs one."""
    server = start_echo("--log", "off")
    yield server
    server.stop()


# ---- 1. urlencoded forms: the parse itself is bounded by --max-form-parts -------

FORM = b"application/x-www-form-urlencoded"


@pytest.mark.parametrize("piece", [b"a", b"a=", b"=a", b"a=b", b"%61=%62", b"+"], ids=repr)
def test_ten_mib_of_form_fields_costs_little_memory(fresh: EchoServer, piece: bytes) -> None:
    body = b"&".join([piece] * (10 * MiB // (len(piece) + 1)))
    grown, seconds, (status, headers, answer) = peak_growth_mib(fresh, http_request(
        b"POST", b"/form", [(b"Content-Type", FORM)], body))
    print(f"form of {body.count(b'&') + 1} fields {piece!r}: peak RSS +{grown:.1f} MiB, {seconds:.2f} s")
    assert status == 200
    document = strict_json(answer)
    assert document["form"] == {}
    assert any("--max-form-parts" in error for error in document["errors"]), document["errors"]
    assert document["body"]["size"] == len(body)
    assert grown < PEAK_GROWTH_MIB, f"peak RSS grew {grown:.1f} MiB"


@pytest.mark.parametrize("body", [b"&" * (10 * MiB), b"&=" * (5 * MiB), b"a" * (10 * MiB)], ids=["amps", "amp-eq", "one"])
def test_degenerate_form_bodies_are_quick(fresh: EchoServer, body: bytes) -> None:
    # Empty pieces are skipped; they must not cost a Python step each either.
    grown, seconds, (status, _, answer) = peak_growth_mib(fresh, http_request(
        b"POST", b"/form", [(b"Content-Type", FORM)], body))
    print(f"degenerate form {body[:4]!r}...: peak RSS +{grown:.1f} MiB, {seconds:.2f} s")
    assert status == 200
    strict_json(answer)
    assert grown < PEAK_GROWTH_MIB and seconds < 10


@pytest.mark.parametrize(("fields", "parsed"), [(5, True), (6, False)])
def test_form_cut_names_the_limit_at_limit_and_limit_plus_one(echo_server: Any, fields: int, parsed: bool) -> None:
    server = echo_server("--log", "off", "--max-form-parts", "5")
    # Empty pieces between fields are not fields: they do not count.
    body = b"&&".join(b"f%d=v" % i for i in range(fields)) + b"&&&"
    status, _, answer = post(server, body, FORM)
    document = strict_json(answer)
    assert status == 200
    assert (document["form"] == {f"f{i}": ["v"] for i in range(fields)}) is parsed
    assert any("--max-form-parts" in error for error in document["errors"]) is not parsed
    assert document["body"]["text"] == body.decode()


def test_four_form_attacks_at_once_stay_bounded(fresh: EchoServer) -> None:
    body = b"&".join([b"a"] * (5 * MiB))
    data = http_request(b"POST", b"/form", [(b"Content-Type", FORM)], body)
    send(fresh, http_request(b"GET", b"/warm"))
    before = fresh.status_field("VmHWM")
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(send(fresh, data)[0])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ANSWER_TIMEOUT * 2)
    grown = (fresh.status_field("VmHWM") - before) / 1024
    print(f"four form attacks at once: peak RSS +{grown:.1f} MiB")
    assert statuses == [200] * 4
    assert grown < 4 * PEAK_GROWTH_MIB, f"peak RSS grew {grown:.1f} MiB"


# ---- 2. JSON: the values parsed are bounded by --max-json-values ----------------

JSON_TYPE = b"application/json"
TEN_MIB_OF_JSON = {
    "empty-arrays": b"[" + b"[]," * (10 * MiB // 3 - 1) + b"[]]",
    "empty-objects": b"[" + b"{}," * (10 * MiB // 3 - 1) + b"{}]",
    "spaced-empties": b"[" + b"[ ]," * (10 * MiB // 4 - 2) + b"[ ]]",
    "zeros": b"[" + b"0," * (5 * MiB - 2) + b"0]",
    "strings": b"[" + b'"",' * (10 * MiB // 3 - 1) + b'""]',
    "objects": b"[" + b'{"":0},' * (10 * MiB // 7 - 1) + b'{"":0}]',
}


@pytest.mark.parametrize("name", list(TEN_MIB_OF_JSON))
@pytest.mark.parametrize("content_type", [JSON_TYPE, b"text/plain"])
def test_ten_mib_of_tiny_json_values_is_refused_cheaply(fresh: EchoServer, name: str, content_type: bytes) -> None:
    body = TEN_MIB_OF_JSON[name]
    assert len(body) <= 10 * MiB
    grown, seconds, (status, headers, answer) = peak_growth_mib(fresh, http_request(
        b"POST", b"/json", [(b"Content-Type", content_type)], body))
    print(f"JSON {name} ({content_type.decode()}): peak RSS +{grown:.1f} MiB, {seconds:.2f} s")
    assert status == 200
    document = strict_json(answer)
    assert document["json"] is None
    assert any("--max-json-values" in error for error in document["errors"]), document["errors"]
    assert document["body"]["size"] == len(body) and document["body"]["text"] == body.decode()
    assert grown < PEAK_GROWTH_MIB and seconds < 5, f"peak RSS grew {grown:.1f} MiB in {seconds:.2f} s"
    assert recorded(fresh, headers["x-echo-id"])["request"]["body"]["size"] == len(body)


# Documents of exactly 5 values, and the same grown by one. Commas, brackets and
# escaped quotes inside strings are not structure; empty containers are one value.
AT_LIMIT = [
    b"[1,2,3,4]",
    b"[[],{},[ ],{ }]",
    b'{"a":1,"b":[2,{}]}',
    b'["a,b,[c,{d", "\\",[", 1, 2]',
    b'[{"k,": "]"}, [[]]]',
]
PAST_LIMIT = [
    b"[1,2,3,4,5]",
    b"[[],{},[ ],{ },[]]",
    b'{"a":1,"b":[2,{}],"c":null}',
    b'["a,b,[c,{d", "\\",[", 1, 2, 3]',
    b'[{"k,": "]"}, [[[[]]]]]',
]


@pytest.fixture(scope="module")
def five_values() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", env={"ECHO_MAX_JSON_VALUES": "5"})
    yield server
    server.stop()


@pytest.mark.parametrize(("body", "parsed"), [(b, True) for b in AT_LIMIT] + [(b, False) for b in PAST_LIMIT])
def test_json_values_at_limit_and_limit_plus_one(five_values: EchoServer, body: bytes, parsed: bool) -> None:
    status, headers, answer = post(five_values, body, JSON_TYPE)
    assert status == 200
    document = strict_json(answer)
    assert (document["json"] == json.loads(body)) is parsed
    named = [error for error in document["errors"] if "--max-json-values" in error]
    assert bool(named) is not parsed, document["errors"]
    assert document["body"]["text"] == body.decode()
    kept = recorded(five_values, headers["x-echo-id"])["request"]
    assert kept["body"]["text"] == body.decode() and (kept["json"] is not None) is parsed


@pytest.mark.parametrize("body", [
    b'"' + b'\\"' * (3 * MiB),  # an unterminated string of escaped quotes
    b'""' * (5 * MiB),  # five million strings and no structure
    b'["' + b"," * (10 * MiB - 4) + b'"]',  # ten million commas, all inside one string
    b"[" * (5 * MiB),  # only openings
])
def test_json_that_only_looks_large_is_quick(fresh: EchoServer, body: bytes) -> None:
    grown, seconds, (status, _, answer) = peak_growth_mib(fresh, http_request(
        b"POST", b"/json", [(b"Content-Type", JSON_TYPE)], body))
    print(f"JSON {body[:6]!r}...: peak RSS +{grown:.1f} MiB, {seconds:.2f} s")
    assert status == 200
    strict_json(answer)
    assert grown < PEAK_GROWTH_MIB and seconds < 5, f"peak RSS grew {grown:.1f} MiB in {seconds:.2f} s"


def test_max_json_values_is_a_documented_setting() -> None:
    shown = subprocess.run([sys.executable, "-m", "echo", "--help"], capture_output=True, text=True, cwd=ROOT,
                           timeout=30)
    assert "--max-json-values" in shown.stdout and "ECHO_MAX_JSON_VALUES" in shown.stdout
    refused = subprocess.run([sys.executable, "-m", "echo", "--max-json-values", "0"], capture_output=True,
                             text=True, cwd=ROOT, timeout=30)
    assert refused.returncode == 2 and "--max-json-values" in refused.stderr and "Traceback" not in refused.stderr


# ---- 3. text no page can encode: every view renders whatever was recorded --------

SURROGATE_BODIES = {
    "utf-7": (b"text/plain; charset=utf-7", b"+2AA-"),
    "utf-7-json": (b"application/json; charset=utf-7", b'["+2AA-"]'),
    "unicode-escape": (b"text/plain; charset=unicode_escape", b"\\ud800 and \\udfff"),
    "raw-unicode-escape": (b"text/plain; charset=raw_unicode_escape", b"\\ud800"),
    "unicode-escape-html": (b"text/html; charset=unicode_escape", b"<p>\\udc80</p>"),
    "unicode-escape-form": (b"application/x-www-form-urlencoded; charset=unicode_escape", b"a=\\ud800"),
    "json-escape": (JSON_TYPE, b'{"\\ud800": "\\udfff"}'),
    "json-escape-plain": (b"text/plain", b'["\\ud800"]'),
    "utf-16-lone": (b"text/plain; charset=utf-16-le", b"\x00\xd8a\x00"),
    "multipart-utf-7": (b"multipart/form-data; boundary=b; charset=utf-7",
                        b'--b\r\nContent-Disposition: form-data; name="+2AA-"\r\n\r\n+2AA-\r\n--b--\r\n'),
}


@pytest.fixture(scope="module")
def logged() -> Iterator[EchoServer]:
    server = start_echo("--log", "json")
    yield server
    server.stop()


def assert_page(status: int, body: bytes, where: str) -> None:
    assert status == 200, f"{where}: {status} {body[:200]!r}"
    body.decode("utf-8")  # every page is valid UTF-8


@pytest.mark.parametrize("name", list(SURROGATE_BODIES))
def test_text_that_decodes_to_lone_surrogates_renders_everywhere(logged: EchoServer, name: str) -> None:
    content_type, body = SURROGATE_BODIES[name]
    logged_before = len(logged.lines())
    status, headers, answer = post(logged, body, content_type, target=f"/s/{name}".encode())
    assert status == 200
    echoed = strict_json(answer)
    exchange_id = headers["x-echo-id"]
    assert echoed["body"]["size"] == len(body)

    html_status, _, html = post(logged, body, content_type, (b"Accept", b"text/html"), target=f"/s/{name}".encode())
    assert_page(html_status, html, "echo HTML page")
    for path in (f"/_/exchanges/{exchange_id}", "/_/", f"/_/api/exchanges/{exchange_id}", "/_/api/exchanges",
                 "/_/api/exchanges.har", f"/_/api/exchanges/{exchange_id}/curl", "/_/api/exchanges?f=body:x"):
        page_status, page = get(logged, path, accept=b"text/html" if not path.startswith("/_/api") else b"*/*")
        assert_page(page_status, page, path)
        if path.startswith("/_/api") and not path.endswith("/curl"):
            strict_json(page)
    time.sleep(0.2)
    new_lines = logged.lines()[logged_before:]
    assert not any("Traceback" in line for line in new_lines), "".join(new_lines)[-2000:]


# ---- 4. gzip of several members: every member is decoded, within --max-body ------

def gzip_members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


@pytest.mark.parametrize(("wire", "codings", "decoded"), [
    (gzip_members(b'{"a":', b'1}'), b"gzip", b'{"a":1}'),
    (gzip_members(b'{"a":', b"", b'[1,', b"2]}"), b"gzip", b'{"a":[1,2]}'),  # an empty member is a member
    (gzip_members(b"[" * 10, b"]" * 10), b"x-gzip", b"[" * 10 + b"]" * 10),
    (gzip.compress(gzip_members(b'{"b":', b"true}")), b"gzip, gzip", b'{"b":true}'),  # members inside a gzip
], ids=["two", "four-one-empty", "x-gzip", "nested"])
def test_every_gzip_member_is_decoded(live_server: EchoServer, wire: bytes, codings: bytes, decoded: bytes) -> None:
    status, headers, answer = post(live_server, wire, JSON_TYPE, (b"Content-Encoding", codings))
    document = strict_json(answer)
    assert status == 200 and document["errors"] == []
    assert document["json"] == json.loads(decoded)
    assert document["body"]["text"] == decoded.decode() and document["body"]["decoded_size"] == len(decoded)
    assert recorded(live_server, headers["x-echo-id"])["request"]["json"] == json.loads(decoded)


def test_bytes_after_the_last_member_are_named(live_server: EchoServer) -> None:
    status, _, answer = post(live_server, gzip_members(b"[1]", b"[2") + b"\0\0\0", b"text/plain",
                             (b"Content-Encoding", b"gzip"))
    document = strict_json(answer)
    assert status == 200 and document["body"]["text"] == "[1][2"
    assert any("3 bytes after the last gzip member" in error for error in document["errors"]), document["errors"]


def test_a_truncated_second_member_is_an_error(live_server: EchoServer) -> None:
    status, _, answer = post(live_server, gzip_members(b"[1]") + gzip.compress(b"[2]")[:-5], JSON_TYPE,
                             (b"Content-Encoding", b"gzip"))
    document = strict_json(answer)
    assert status == 200 and document["json"] is None
    assert any("could not decode gzip" in error for error in document["errors"]), document["errors"]


@pytest.fixture(scope="module")
def small_body() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--max-body", "1000")
    yield server
    server.stop()


@pytest.mark.parametrize(("members", "status"), [(10, 200), (11, 413)])
def test_members_share_one_decoded_limit(small_body: EchoServer, members: int, status: int) -> None:
    # 100 bytes a member: ten members are the limit exactly, eleven one member past it.
    wire = gzip_members(*[b"a" * 100] * (members - 1), b"a" * 99 + (b"b" if status == 413 else b"a"))
    if status == 413:
        wire += gzip.compress(b"c")  # the 1001st byte
    assert len(wire) < 1000
    got, headers, answer = post(small_body, wire, b"text/plain", (b"Content-Encoding", b"gzip"))
    assert got == status
    document = strict_json(answer)
    if status == 200:
        assert document["body"]["decoded_size"] == 1000
    else:
        assert document["setting"] == "--max-body" and document["limit"] == 1000
    assert recorded(small_body, headers["x-echo-id"])["response"]["status"] == status


def test_a_bomb_spread_over_many_members_gets_413(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--max-body", str(MiB))
    member = gzip.compress(bytes(MiB // 8))  # 1 KiB on the wire, 128 KiB decoded
    wire = member * 100  # 100 KiB on the wire, 12.5 MiB decoded
    grown, seconds, (status, _, answer) = peak_growth_mib(server, http_request(
        b"POST", b"/bomb", [(b"Content-Encoding", b"gzip")], wire))
    print(f"bomb over {100} members: 413; peak RSS +{grown:.1f} MiB, {seconds:.2f} s")
    assert status == 413
    assert strict_json(answer)["decoded_size"] == MiB + 1
    assert grown < 32


def test_many_tiny_members_are_bounded(fresh: EchoServer) -> None:
    wire = gzip.compress(b"") * (10 * MiB // 20)  # half a million empty members
    grown, seconds, (status, _, answer) = peak_growth_mib(fresh, http_request(
        b"POST", b"/tiny", [(b"Content-Encoding", b"gzip")], wire))
    print(f"{len(wire) // 20} empty gzip members: peak RSS +{grown:.1f} MiB, {seconds:.2f} s")
    assert status == 200 and strict_json(answer)["body"]["decoded_size"] == 0
    assert grown < PEAK_GROWTH_MIB and seconds < 10


# ---- 5. a decompression bomb's 413 names the decoded size, and the wire size as such

@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_bomb_413_reports_decoded_and_wire_size(small_body: EchoServer, coding: str) -> None:
    plain = b"z" * 5000
    wire = gzip.compress(plain) if coding == "gzip" else zlib.compress(plain)
    status, headers, answer = post(small_body, wire, b"text/plain", (b"Content-Encoding", coding.encode()))
    assert status == 413
    document = strict_json(answer)
    assert document["limit"] == 1000 and document["decoded_size"] == 1001 and document["decoded_size"] > document["limit"]
    assert document["wire_size"] == len(wire) and "size" not in document
    assert coding in document["error"] and document["setting"] == "--max-body"
    kept = recorded(small_body, headers["x-echo-id"])["request"]
    assert any("stopped at 1001 bytes" in error for error in kept["errors"]), kept["errors"]


def test_wire_413_still_reports_the_wire_size(small_body: EchoServer) -> None:
    status, _, answer = post(small_body, b"x" * 1001, b"text/plain")
    document = strict_json(answer)
    assert status == 413 and document["size"] == 1001 and "decoded_size" not in document


# ---- 6. the bytes on the wire stay recoverable when a content-coding was undone ---

CODED = {
    "gzip-json": (b"gzip", gzip.compress(b'{"wire": true}'), JSON_TYPE),
    "deflate-text": (b"deflate", zlib.compress(b"plain text"), b"text/plain"),
    "raw-deflate": (b"deflate", zlib.compress(b"raw")[2:-4], b"text/plain"),
    "gzip-binary": (b"gzip", gzip.compress(bytes(range(256))), b"application/octet-stream"),
    "gzip-members": (b"gzip", gzip_members(b"a=1&", b"b=2"), FORM),
    "gzip-gzip": (b"gzip, gzip", gzip.compress(gzip.compress(b"twice")), b"text/plain"),
}


@pytest.fixture(scope="module", params=["memory", "redis"])
def stores(request: Any) -> Iterator[EchoServer]:
    flags = ["--log", "off", "--keep-body", "64"]
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        flags += ["--store", redis.url, "--store-prefix", f"hostile{time.monotonic_ns()}"]
    server = start_echo(*flags)
    yield server
    server.stop()


@pytest.mark.parametrize("name", list(CODED))
def test_wire_bytes_of_a_decoded_body_are_kept(stores: EchoServer, name: str) -> None:
    coding, wire, content_type = CODED[name]
    status, headers, answer = post(stores, wire, content_type, (b"Content-Encoding", coding))
    assert status == 200
    echoed = strict_json(answer)["body"]
    assert base64.b64decode(echoed["wire_base64"]) == wire
    assert echoed["size"] == len(wire) and echoed["content_encoding"] == coding.decode()
    kept = recorded(stores, headers["x-echo-id"])["request"]["body"]
    # History keeps --keep-body (64) bytes of the wire, flagged as cut when it cut them.
    assert base64.b64decode(kept["wire_base64"]) == wire[:64]
    assert kept["truncated"] is (len(wire) > 64)
    status, listing = get(stores, "/_/api/exchanges?limit=5")
    assert any(e["request"]["body"].get("wire_base64") == kept["wire_base64"]
               for e in strict_json(listing)["exchanges"])


def test_an_unencoded_body_has_no_wire_field(live_server: EchoServer) -> None:
    _, _, answer = post(live_server, b"as sent", b"text/plain")
    assert "wire_base64" not in strict_json(answer)["body"]


# ---- two Cookie lines on one request ------------------------------------------

@pytest.mark.parametrize(("lines", "cookies"), [
    ([b"a=1", b"b=2"], {"a": "1", "b": "2"}),
    ([b"a=1; b=2", b"c=3"], {"a": "1", "b": "2", "c": "3"}),
    ([b"a=1", b"b=2", b"c=3"], {"a": "1", "b": "2", "c": "3"}),
    ([b'd="Mon, 01 Jan 2024"'], {"d": "Mon, 01 Jan 2024"}),  # a comma inside one quoted value stays
])
def test_repeated_cookie_lines_are_all_parsed(live_server: EchoServer, lines: list[bytes], cookies: dict[str, str]) -> None:
    status, _, answer = send(live_server, http_request(b"GET", b"/cookies", [(b"Cookie", line) for line in lines]))
    document = strict_json(answer)
    assert status == 200 and document["cookies"] == cookies, document
