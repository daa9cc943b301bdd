"""The pure capture step: WSGI environ -> RequestRecord, without a server or Flask globals."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import zlib
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder

from echo.capture.request import HEADER_NAME_CACHE, CaptureLimits, _header_name, capture
from echo.formats.documents import dumps, echo_document, request_document
from echo.model.records import IdSource

LIMITS = CaptureLimits(max_body=1024, max_json_depth=8, max_form_parts=5)


def record_of(limits: CaptureLimits = LIMITS, **kwargs: Any) -> Any:
    environ = EnvironBuilder(**kwargs).get_environ()
    return capture(environ, limits, IdSource())


def doc_of(limits: CaptureLimits = LIMITS, **kwargs: Any) -> dict[str, Any]:
    doc = request_document(record_of(limits, **kwargs))
    # Whatever arrived, the document is strict JSON that survives a round trip.
    assert json.loads(dumps(doc)) == doc
    return doc


def test_args_keep_every_value_in_order() -> None:
    doc = doc_of(path="/orders/7", query_string="x=2&x=1&y=&z=%20a+b")
    assert doc["args"] == {"x": ["2", "1"], "y": [""], "z": [" a b"]}
    assert doc["query_string"] == "x=2&x=1&y=&z=%20a+b"
    assert doc["path"] == "/orders/7"


def test_path_is_decoded_utf8_and_url_keeps_the_raw_target() -> None:
    environ = EnvironBuilder(path="/caf%C3%A9/x").get_environ()
    environ["REQUEST_URI"] = "/caf%C3%A9/x?q=%E2%9C%93"
    environ["QUERY_STRING"] = "q=%E2%9C%93"
    doc = request_document(capture(environ, LIMITS, IdSource()))
    assert doc["path"] == "/café/x"
    assert doc["url"] == "http://localhost/caf%C3%A9/x?q=%E2%9C%93"
    assert doc["args"] == {"q": ["✓"]}


def test_invalid_utf8_in_path_and_query_is_named_not_raised() -> None:
    environ = EnvironBuilder(path="/").get_environ()
    environ["PATH_INFO"] = b"/\xff\xfe".decode("latin-1")
    environ["QUERY_STRING"] = "a=%FF"
    doc = request_document(capture(environ, LIMITS, IdSource()))
    assert doc["path"] == "/\ufffd\ufffd"
    assert doc["args"] == {"a": ["\ufffd"]}
    assert any("path is not valid UTF-8" in e for e in doc["errors"])
    assert any("query is not valid UTF-8" in e for e in doc["errors"])


def test_json_body_is_parsed_and_body_is_exact() -> None:
    raw = b'{"a": [1, 2.5, "\\u00e9"], "b": null}'
    doc = doc_of(method="POST", data=raw, content_type="application/json")
    assert doc["json"] == {"a": [1, 2.5, "é"], "b": None}
    assert doc["body"]["size"] == len(raw)
    assert doc["body"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert doc["body"]["text"] == raw.decode()
    assert doc["body"]["base64"] is None
    assert doc["errors"] == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a":', "invalid JSON"),
        (b"NaN", "NaN is not valid JSON"),
        (b"[Infinity]", "Infinity is not valid JSON"),
        (b"[1e999]", "too large to echo"),
        (b"1" * 5000, "invalid JSON"),  # over Python's int digit limit
        (b"[" * 9 + b"]" * 9, "nested deeper than 8"),
        (b"[" * 100_000, "nested deeper than 8"),  # deeper than the interpreter's recursion limit
    ],
)
def test_json_that_cannot_be_echoed_is_named_and_kept_in_body(body: bytes, reason: str) -> None:
    limits = CaptureLimits(max_body=200_000, max_json_depth=8, max_json_values=200_000)
    doc = doc_of(limits, method="POST", data=body, content_type="application/json")
    assert doc["json"] is None
    assert any(reason in e for e in doc["errors"]), doc["errors"]
    assert doc["body"]["text"] == body.decode()


def test_json_at_the_depth_limit_is_echoed() -> None:
    body = b"[" * 8 + b"]" * 8
    doc = doc_of(method="POST", data=body, content_type="application/json")
    assert doc["json"] == json.loads(body)
    assert doc["errors"] == []


def test_json_with_bom_and_top_level_scalar() -> None:
    assert doc_of(method="POST", data=b"\xef\xbb\xbf{\"a\":1}", content_type="application/json")["json"] == {"a": 1}
    assert doc_of(method="POST", data=b"42", content_type="application/json")["json"] == 42


def test_lone_surrogate_escape_still_gives_strict_json() -> None:
    doc = doc_of(method="POST", data=b'["\\ud800"]', content_type="application/json")
    assert doc["json"] == ["\ud800"]
    encoded = dumps(doc)
    encoded.decode("utf-8")  # valid UTF-8 on the wire
    assert json.loads(encoded)["json"] == ["\ud800"]


def test_json_without_content_type_is_parsed_quietly() -> None:
    doc = doc_of(method="POST", data=b'{"k": "v"}', content_type="")
    assert doc["json"] == {"k": "v"}
    doc = doc_of(method="POST", data=b"{not json", content_type="text/plain")
    assert doc["json"] is None and doc["errors"] == []


def test_urlencoded_form_keeps_every_value() -> None:
    doc = doc_of(method="POST", data=b"name=Ada&name=Grace&x=%26%3D", content_type="application/x-www-form-urlencoded")
    assert doc["form"] == {"name": ["Ada", "Grace"], "x": ["&="]}


def test_form_over_the_part_limit_is_named() -> None:
    ok = "&".join(f"f{i}=1" for i in range(5))
    over = "&".join(f"f{i}=1" for i in range(6))
    assert len(doc_of(method="POST", data=ok, content_type="application/x-www-form-urlencoded")["form"]) == 5
    doc = doc_of(method="POST", data=over, content_type="application/x-www-form-urlencoded")
    assert doc["form"] == {} and any("--max-form-parts" in e for e in doc["errors"])


def test_multipart_files_keep_several_under_one_field() -> None:
    png = bytes(range(256)) * 3
    doc = doc_of(
        CaptureLimits(max_body=100_000),
        method="POST",
        data={
            "name": "Ada",
            "avatar": [(io.BytesIO(png), "a.png", "image/png"), (io.BytesIO(b"second"), "b.txt", "text/plain")],
        },
    )
    assert doc["form"] == {"name": ["Ada"]}
    assert doc["files"] == {
        "avatar": [
            {"filename": "a.png", "content_type": "image/png", "size": len(png), "sha256": hashlib.sha256(png).hexdigest()},
            {"filename": "b.txt", "content_type": "text/plain", "size": 6, "sha256": hashlib.sha256(b"second").hexdigest()},
        ]
    }


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1", "multipart/form-data; boundary=xx", "invalid multipart"),
        (b"garbage", "multipart/form-data", "invalid multipart"),
    ],
)
def test_broken_multipart_is_named(body: bytes, content_type: str, reason: str) -> None:
    doc = doc_of(method="POST", data=body, content_type=content_type)
    assert any(reason in e for e in doc["errors"])
    assert doc["body"]["size"] == len(body)


def test_binary_body_is_base64_and_byte_exact() -> None:
    raw = bytes(range(256))
    doc = doc_of(method="POST", data=raw, content_type="application/octet-stream")
    assert doc["body"]["text"] is None
    assert base64.b64decode(doc["body"]["base64"]) == raw


def test_declared_charset_is_used_and_a_wrong_one_named() -> None:
    latin = "café".encode("latin-1")
    doc = doc_of(method="POST", data=latin, content_type="text/plain; charset=iso-8859-1")
    assert doc["body"]["text"] == "café"
    assert base64.b64decode(doc["body"]["base64"]) == latin  # not UTF-8: bytes shown too
    doc = doc_of(method="POST", data=latin, content_type="text/plain; charset=utf-8")
    assert doc["body"]["text"] is None and any("not valid utf-8" in e.lower() for e in doc["errors"])
    doc = doc_of(method="POST", data=b"x", content_type="text/plain; charset=klingon")
    assert any("unknown charset" in e for e in doc["errors"])


@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw"])
def test_content_encoding_is_undone_for_parsing(coding: str) -> None:
    plain = b'{"compressed": true}'
    if coding == "gzip":
        wire = gzip.compress(plain)
    elif coding == "deflate":
        wire = zlib.compress(plain)
    else:
        compressor = zlib.compressobj(wbits=-15)
        wire = compressor.compress(plain) + compressor.flush()
    header = "deflate" if coding.startswith("deflate") else coding
    doc = doc_of(method="POST", data=wire, content_type="application/json", headers={"Content-Encoding": header})
    assert doc["json"] == {"compressed": True}
    assert doc["body"]["size"] == len(wire)
    assert doc["body"]["sha256"] == hashlib.sha256(wire).hexdigest()
    assert doc["body"]["text"] == plain.decode()
    assert doc["body"]["decoded_size"] == len(plain)


def test_bad_and_unknown_encodings_are_named() -> None:
    doc = doc_of(method="POST", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert any("could not decode gzip" in e for e in doc["errors"])
    doc = doc_of(method="POST", data=b"whatever", headers={"Content-Encoding": "br"})
    assert any("'br' is not supported" in e for e in doc["errors"])


@pytest.mark.parametrize(("size", "too_large"), [(1024, False), (1025, True)])
def test_body_limit_at_limit_and_limit_plus_one(size: int, too_large: bool) -> None:
    record = record_of(method="POST", data=b"a" * size)
    assert record.too_large is too_large
    assert record.body_size == size


@pytest.mark.parametrize(("size", "too_large"), [(1024, False), (1025, True)])
def test_decoded_size_is_bounded_too(size: int, too_large: bool) -> None:
    record = record_of(method="POST", data=gzip.compress(b"\0" * size), headers={"Content-Encoding": "gzip"})
    assert record.too_large is too_large


def test_gzip_bomb_is_refused_without_inflating() -> None:
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    record = record_of(method="POST", data=bomb, headers={"Content-Encoding": "gzip"})
    assert record.too_large
    assert record.content is None


def test_headers_and_cookies() -> None:
    doc = doc_of(headers={"X-Trace": "abc", "Cookie": "sid=abc; theme=dark"})
    assert doc["headers"]["X-Trace"] == "abc"
    assert doc["cookies"] == {"sid": "abc", "theme": "dark"}


def test_non_utf8_header_is_shown_as_latin1_and_named() -> None:
    environ = EnvironBuilder().get_environ()
    environ["HTTP_X_NAME"] = "caf\xe9"  # the byte 0xE9 as WSGI hands it over
    doc = request_document(capture(environ, LIMITS, IdSource()))
    assert doc["headers"]["X-Name"] == "café"
    assert any("X-Name is not valid UTF-8" in e for e in doc["errors"])


def test_utf8_header_is_decoded() -> None:
    environ = EnvironBuilder().get_environ()
    environ["HTTP_X_NAME"] = "café".encode().decode("latin-1")
    assert request_document(capture(environ, LIMITS, IdSource()))["headers"]["X-Name"] == "café"


def test_header_names_are_shared_between_records_and_the_cache_is_bounded() -> None:
    first = record_of(headers={"X-Trace": "a"})
    second = record_of(headers={"X-Trace": "b"})
    name_of = {name: name for name, _ in first.headers}
    # History keeps one string per distinct name, not one per header per exchange.
    assert all(name is name_of[name] for name, _ in second.headers)
    for n in range(HEADER_NAME_CACHE + 50):  # callers choose names: the cache must not grow with them
        record_of(headers={f"X-Junk-{n}": "1"})
    assert _header_name.cache_info().currsize == HEADER_NAME_CACHE
    assert dict(record_of(headers={"X-New-One": "1"}).headers)["X-New-One"] == "1"


def test_empty_body() -> None:
    doc = doc_of(method="POST")
    assert doc["body"] == {
        "size": 0,
        "sha256": hashlib.sha256(b"").hexdigest(),
        "text": "",
        "base64": None,
        "truncated": False,
    }
    assert doc["json"] is None and doc["form"] == {}


def test_ids_are_unique_and_sort_in_arrival_order() -> None:
    first, second = IdSource(), IdSource()
    ids = [source.next()[0] for _ in range(500) for source in (first, second)]
    assert len(set(ids)) == len(ids)
    one_process = [first.next()[0] for _ in range(1000)]
    assert one_process == sorted(one_process)


def test_echo_document_has_every_contract_field() -> None:
    record = record_of(method="POST", path="/p", query_string="a=1", data=b"x")
    doc = echo_document(record, {"status": 200, "headers": [], "cookies": [], "delay": 0})
    assert list(doc) == [
        "id", "time", "method", "url", "path", "bin", "bin_path", "query_string", "http_version", "remote_addr",
        "args", "headers", "cookies", "form", "files", "json", "body", "errors", "controls",
    ]
    assert doc["time"].endswith("Z") and len(doc["time"]) == 24
