"""Property tests of the two pure steps, capture and controls, over generated input.

`capture` gets WSGI environs built by werkzeug's EnvironBuilder (or written by
hand where EnvironBuilder would tidy the input) from arbitrary bytes, header
values and query strings; `plan` gets arbitrary control strings. Whatever
arrives, neither raises, what was sent comes back exactly (args, form, body
bytes, JSON values), and the echo document is strict RFC 8259 JSON that
`json.loads` turns back into the same document.

Hypothesis runs derandomized with no example database, so CI sees the same
examples on every run and nothing is written into the work tree.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import hashlib
import io
import json
import math
import random
import re
import zlib
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from echo.answer.controls import CONTROL_HEADERS, FORBIDDEN_HEADERS, ControlError, ControlLimits, ResponsePlan, plan
from echo.capture.request import CaptureLimits, capture
from echo.formats.documents import dumps, echo_document
from echo.model.http import wire
from echo.model.records import IdSource, RequestRecord

# Enough examples to walk the interesting corners of each strategy, few enough
# that the whole file runs in seconds on a CI machine.
EXAMPLES = 200
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LIMITS = CaptureLimits()
IDS = IdSource()
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Text as WSGI carries it: every character is one byte of the wire (latin-1).
latin1 = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=40)
# Text a client means (no lone surrogates: those cannot be UTF-8 encoded to be sent).
unicode_text = st.text(max_size=40)
pairs = st.lists(st.tuples(unicode_text, unicode_text), max_size=12)
header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True)

# Charsets whose Python codecs are text encodings, plus names no codec has;
# codecs that raise other errors (idna, punycode, undefined) have a test below.
TEXT_CHARSETS = ["utf-8", "UTF-8", "latin-1", "iso-8859-1", "ascii", "utf-16", "utf-16-be", "utf-32",
                 "cp1252", "shift_jis", "koi8-r", "utf-7", "x-no-such-charset", "", "base64", "rot13"]
MEDIA_TYPES = ["", "text/plain", "application/json", "application/octet-stream", "text/html",
               "application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=b",
               "application/problem+json", "image/png"]


def strict_loads(data: bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as RFC 8259 does."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name} in the echo")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def environ_for(**kwargs: Any) -> dict[str, Any]:
    return EnvironBuilder(**kwargs).get_environ()


def captured(environ: dict[str, Any], limits: CaptureLimits = LIMITS) -> tuple[RequestRecord, dict[str, Any]]:
    """Capture, then check the document is strict JSON that round-trips; return both."""
    record = capture(environ, limits, IDS)
    assert isinstance(record, RequestRecord)
    document = echo_document(record, {})
    encoded = dumps(document)
    assert strict_loads(encoded) == document
    assert strict_loads(dumps(document, pretty=True)) == document
    return record, document


def body_bytes(view: dict[str, Any], charset: str) -> bytes:
    """The body as a client reads it back: base64 when given, else the text in its charset."""
    if view["base64"] is not None:
        return base64.b64decode(view["base64"], validate=True)
    assert view["text"] is not None
    return view["text"].encode(charset)


def multi(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


# ---- capture ----------------------------------------------------------------

@BOUNDED
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND", "X-Y"]),
    path=latin1,
    query=latin1,
    headers=st.lists(st.tuples(header_names, latin1), max_size=6),
    media_type=st.sampled_from(MEDIA_TYPES),
    charset=st.none() | st.sampled_from(TEXT_CHARSETS),
    encoding=st.sampled_from(["", "gzip", "deflate", "x-gzip", "br", "gzip, deflate", "identity", "GZIP", ",,"]),
    body=st.binary(max_size=300),
)
def test_capture_never_raises_on_arbitrary_environ(
    method: str, path: str, query: str, headers: list[tuple[str, str]], media_type: str,
    charset: str | None, encoding: str, body: bytes,
) -> None:
    content_type = media_type + (f"; charset={charset}" if charset is not None else "")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": "/" + path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": content_type,
    }
    if encoding:
        environ["HTTP_CONTENT_ENCODING"] = encoding
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    record, document = captured(environ)
    assert document["body"]["size"] == len(body)
    assert document["body"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert all(isinstance(e, str) for e in record.errors)


@BOUNDED
@given(args=pairs)
def test_query_args_round_trip(args: list[tuple[str, str]]) -> None:
    record, document = captured(environ_for(path="/q", query_string=urlencode(args)))
    assert list(record.args) == args
    assert document["args"] == multi(args)
    assert not record.errors


@BOUNDED
@given(raw=st.binary(max_size=120))
def test_percent_encoded_query_bytes_decode_or_are_named(raw: bytes) -> None:
    query = "".join(f"%{b:02X}" for b in raw)
    record, document = captured(environ_for(path="/q", query_string=f"k={query}"))
    try:
        expected = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert document["args"] == {"k": [raw.decode("utf-8", "replace")]}
        assert any("not valid UTF-8" in e for e in record.errors)
    else:
        assert document["args"] == {"k": [expected]}


@BOUNDED
@given(form=pairs)
def test_urlencoded_form_round_trips(form: list[tuple[str, str]]) -> None:
    environ = environ_for(
        path="/f", method="POST", data=urlencode(form).encode("ascii"),
        content_type="application/x-www-form-urlencoded",
    )
    record, document = captured(environ)
    assert list(record.form) == form
    assert document["form"] == multi(form)


@BOUNDED
@given(
    fields=st.lists(
        st.tuples(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), unicode_text), min_size=1, max_size=8
    ),
    upload=st.binary(max_size=200),
)
def test_multipart_fields_and_files_round_trip(fields: list[tuple[str, str]], upload: bytes) -> None:
    boundary = "----echo-boundary-7d1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        for name, value in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + upload + b"\r\n"
    )
    data = b"".join(parts) + f"--{boundary}--\r\n".encode()
    environ = environ_for(path="/m", method="POST", data=data, content_type=f"multipart/form-data; boundary={boundary}")
    record, document = captured(environ)
    # Values are exact (a CR or LF inside a field included); the document keeps
    # each name's values in order, as a list.
    assert document["form"] == multi(fields)
    assert document["files"]["file"] == [{
        "filename": "a.bin", "content_type": "application/octet-stream",
        "size": len(upload), "sha256": hashlib.sha256(upload).hexdigest(),
    }]
    assert body_bytes(document["body"], "utf-8") == data


@BOUNDED
@given(
    body=st.binary(max_size=400),
    content_type=st.sampled_from([
        None, "application/octet-stream", "text/plain", "text/plain; charset=utf-8", "application/json",
        "text/plain; charset=latin-1", "text/csv; charset=ISO-8859-1", "image/png",
    ]),
)
def test_body_bytes_come_back_exactly(body: bytes, content_type: str | None) -> None:
    environ = environ_for(path="/b", method="POST", data=body, content_type=content_type)
    record, document = captured(environ)
    declared = re.search(r"charset=([\w-]+)", content_type or "")
    charset = codecs.lookup(declared.group(1)).name if declared else "utf-8"
    view = document["body"]
    assert view["size"] == len(body)
    assert view["sha256"] == hashlib.sha256(body).hexdigest()
    assert view["truncated"] is False
    assert body_bytes(view, charset) == body


@BOUNDED
@given(body=st.binary(max_size=400), coding=st.sampled_from(["gzip", "deflate", "x-gzip"]))
def test_encoded_body_is_decoded_exactly_and_wire_size_kept(body: bytes, coding: str) -> None:
    wire_bytes = gzip.compress(body) if "gzip" in coding else zlib.compress(body)
    environ = environ_for(
        path="/z", method="POST", data=wire_bytes, content_type="application/octet-stream",
        headers={"Content-Encoding": coding},
    )
    record, document = captured(environ)
    view = document["body"]
    assert view["size"] == len(wire_bytes)
    assert view["sha256"] == hashlib.sha256(wire_bytes).hexdigest()
    assert view["decoded_size"] == len(body)
    assert body_bytes(view, "utf-8") == body


json_scalars = (
    st.none() | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=12)  # lone surrogates included
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet=st.characters(codec=None), max_size=6), children, max_size=4),
    max_leaves=20,
)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


@BOUNDED
@given(value=json_values, bom=st.booleans(), media_type=st.sampled_from(["application/json", "application/vnd.x+json"]))
@example(value=1e999, bom=False, media_type="application/json")
@example(value="\ud800", bom=True, media_type="application/json")
@example(value=[[[[[[]]]]]] * 3, bom=False, media_type="application/json")
def test_json_bodies_round_trip_or_are_named(value: Any, bom: bool, media_type: str) -> None:
    # json.dumps writes NaN/Infinity literals (what careless senders emit) and
    # \ud800-style escapes for lone surrogates.
    text = json.dumps(value)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("ascii")
    record, document = captured(environ_for(path="/j", method="POST", data=data, content_type=media_type))
    if _has_non_finite(value):
        assert document["json"] is None
        assert any("invalid JSON" in e for e in record.errors)
    else:
        assert document["json"] == value
        assert not record.errors
    assert body_bytes(document["body"], "utf-8") == data


def _deep(levels: int) -> Any:
    value: Any = [1]
    for _ in range(levels):
        value = {"k": value}
    return value


@BOUNDED
@given(value=json_values.filter(lambda v: not _has_non_finite(v)))
@example(value=[2**64, -(2**63) - 1, 10**30, "\ud800", 1e-7, 1e16, -0.0, 5e-324])
@example(value=_deep(300))  # deeper than orjson goes
def test_dumps_writes_strict_json_that_reads_back_exactly(value: Any) -> None:
    # Values orjson refuses (ints over 64 bits, lone surrogates, deep nesting)
    # must still be encoded, by the standard encoder, and nothing may change type
    # or sign on the way: 1 stays an int, -0.0 stays negative.
    again = strict_loads(dumps(value))
    assert again == value
    assert json.dumps(again) == json.dumps(value)


@pytest.mark.parametrize("literal", [
    b"1e999", b"-1e999", b"[1E400]", b'{"n": 1' + b"0" * 5000 + b"}", b"1" + b"0" * 5000, b"-" + b"9" * 4301,
    b"NaN", b"[Infinity]", b"-Infinity", b'{"a": NaN}',
])
def test_json_numbers_that_cannot_be_echoed_are_named(literal: bytes) -> None:
    record, document = captured(environ_for(path="/n", method="POST", data=literal, content_type="application/json"))
    assert document["json"] is None
    assert any("invalid JSON" in e for e in record.errors)
    assert document["body"]["text"] == literal.decode("ascii")


@pytest.mark.parametrize("literal", [b"1" + b"0" * 4299, b"-" + b"9" * 4300, b"1e308", b"-0.0", b"5e-324"])
def test_json_numbers_near_the_limits_are_echoed(literal: bytes) -> None:
    record, document = captured(environ_for(path="/n", method="POST", data=literal, content_type="application/json"))
    assert document["json"] == json.loads(literal)
    assert not record.errors


@BOUNDED
@given(depth=st.integers(min_value=1, max_value=400), kind=st.sampled_from(["[", '{"a":']))
def test_json_nesting_is_echoed_up_to_the_limit_and_named_past_it(depth: int, kind: str) -> None:
    closer = "]" if kind == "[" else "}"
    data = (kind * depth + ("1" if kind != "[" else "") + closer * depth).encode()
    limits = CaptureLimits(max_json_depth=100)
    record, document = captured(environ_for(path="/d", method="POST", data=data, content_type="application/json"), limits)
    if depth <= 100:
        assert document["json"] is not None
    else:
        assert document["json"] is None
        assert any("--max-json-depth" in e for e in record.errors)


@BOUNDED
@given(value=latin1)
@example(value="a=\xff; b=%ff")
@example(value="sid=\xed\xa0\x80")
def test_capture_never_raises_on_any_cookie_header(value: str) -> None:
    environ = environ_for(path="/c")
    environ["HTTP_COOKIE"] = value
    captured(environ)


@BOUNDED
@given(
    charset=st.sampled_from(["idna", "punycode", "undefined", "utf-8", "x-nope"]) | latin1,
    body=st.binary(max_size=200),
)
@example(charset="undefined", body=b"abc")
@example(charset="idna", body=b"a" * 70)
def test_capture_never_raises_for_any_declared_charset(charset: str, body: bytes) -> None:
    environ = environ_for(path="/cs", method="POST", data=body)
    environ["CONTENT_TYPE"] = f"text/plain; charset={charset}"
    captured(environ)


def test_rfc2231_charset_with_nul_is_named_not_raised() -> None:
    environ = environ_for(path="/cs", method="POST", data=b"abc")
    environ["CONTENT_TYPE"] = "text/plain; charset*=UTF-8''%00"
    record, _ = captured(environ)
    assert any("charset" in e for e in record.errors)


# ---- controls ---------------------------------------------------------------

control_names = st.sampled_from(sorted(CONTROL_HEADERS)) | st.sampled_from(["_other", "x", ""])
cookie_attr = st.tuples(
    st.sampled_from(["Path", "Max-Age", "Expires", "Domain", "SameSite", "Secure", "HttpOnly", "Partitioned", "X"]),
    st.text(max_size=20),
).map(lambda kv: f"{kv[0]}={kv[1]}")
# Strings shaped like each control, so the generator reaches past the first check.
shaped = {
    "_status": st.lists(
        st.tuples(st.integers(0, 1000), st.none() | st.integers(0, 10**6)), min_size=1, max_size=4
    ).map(lambda items: ",".join(f"{c}" + (f":{w}" if w is not None else "") for c, w in items)),
    "_header": st.tuples(st.text(max_size=12), st.text(max_size=30)).map(lambda nv: f"{nv[0]}: {nv[1]}"),
    "_cookie": st.tuples(st.text(max_size=8), st.text(max_size=12), st.lists(cookie_attr, max_size=3)).map(
        lambda c: "; ".join([f"{c[0]}={c[1]}", *c[2]])
    ),
    "_delete_cookie": st.tuples(st.text(max_size=8), st.lists(cookie_attr, max_size=2)).map(
        lambda c: "; ".join([c[0], *c[1]])
    ),
    "_delay": st.floats(min_value=-1, max_value=20).map(str) | st.text(max_size=8),
    "_content_type": st.text(max_size=30).map(lambda s: "text/plain; " + s) | st.text(max_size=20),
}


def control_args(text: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    free = st.tuples(control_names, text)
    fitted = st.sampled_from(sorted(shaped)).flatmap(lambda name: st.tuples(st.just(name), shaped[name]))
    return st.lists(free | fitted, max_size=6)


def check_plan(args: list[tuple[str, str]], headers: list[tuple[str, str]]) -> ResponsePlan | ControlError:
    limits = ControlLimits(max_delay=5.0)
    decided = plan(tuple(args), tuple(headers), limits, random.Random(7))
    assert isinstance(decided, (ResponsePlan, ControlError))
    if isinstance(decided, ControlError):
        assert decided.param in CONTROL_HEADERS
        assert decided.message
        return decided
    assert 200 <= decided.status <= 599
    assert 0 <= decided.delay <= limits.max_delay
    for name, value in decided.headers:
        assert TOKEN.fullmatch(name), name
        assert name.lower() not in FORBIDDEN_HEADERS
        assert not CTL.search(value), value
        wire(value).encode("latin-1")  # what the handler puts on the wire must be sendable
    for cookie in decided.cookies:
        assert not CTL.search(cookie), cookie
        wire(cookie).encode("latin-1")
    if decided.content_type is not None:
        assert not CTL.search(decided.content_type)
        wire(decided.content_type).encode("latin-1")
    assert dumps(dict(decided.summary()))  # the `controls` member is always encodable
    return decided


@BOUNDED
@given(args=control_args(unicode_text), headers=st.lists(st.tuples(
    st.sampled_from(sorted(CONTROL_HEADERS.values())) | header_names, latin1), max_size=4))
def test_plan_never_raises_on_what_the_wire_can_carry(args: list[tuple[str, str]], headers: list[tuple[str, str]]) -> None:
    # Query values are UTF-8-decoded with replacement and header values are
    # latin-1, so neither holds a lone surrogate.
    check_plan(args, headers)


@BOUNDED
@given(args=control_args(st.text(alphabet=st.characters(codec=None), max_size=40)))
@example(args=[("_body", "\ud800")])
@example(args=[("_header", "X-A: \udfff")])
@example(args=[("_status", "2" * 5000)])
@example(args=[("_status", "200:" + "9" * 400 + ",503:1")])
def test_plan_never_raises_on_any_string(args: list[tuple[str, str]]) -> None:
    check_plan(args, [])


@BOUNDED
@given(args=control_args(unicode_text))
@example(args=[("_cookie", "a=b; Max-Age=\u0666\u0660")])
@example(args=[("_cookie", "a=b; Expires=Thu, 01 Jan 1970 00:00:00 GMT \u00e9")])
def test_accepted_cookies_are_ascii_as_rfc_6265_requires(args: list[tuple[str, str]]) -> None:
    decided = check_plan(args, [])
    if isinstance(decided, ResponsePlan):
        assert all(cookie.isascii() for cookie in decided.cookies)
