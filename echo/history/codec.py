"""The wire format of one exchange in a shared store: JSON, bytes as base64.

A Redis store is read by every replica, including ones running another Echo
version during a rolling upgrade, so the format is explicit and versioned: one
JSON object per exchange with every field of `Exchange`, `RequestRecord`,
`ResponseRecord` and `FileInfo` by name. Bytes (bodies, which may be any
binary) travel as base64; header, arg, cookie and form pairs as two-element
lists in arrival order; `json` as the JSON value it already is. Decoding gives
back records equal, field for field, to the ones encoded.

Two versions of the same document: version 2 is written by orjson (UTF-8, a
few times faster both ways, which is what a page of 50 from Redis or SQLite
spends its time on); what orjson cannot write exactly (integers over 64 bits,
lone surrogates) is written as version 1 by the standard library, as ASCII.
The version is the document's first key, so a reader picks its parser from
the first bytes: orjson never reads a version 1 document, whose big integers
it would turn into floats.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import orjson

from ..model.records import JSON_FROM_BODY, Exchange, FileInfo, Pairs, RequestRecord, ResponseRecord

# Bumped whenever a field changes meaning; a reader refuses what it cannot read
# rather than showing an exchange with fields silently missing.
FORMAT_VERSION = 2
# The standard library's exact ASCII form, for what orjson cannot write.
EXACT_VERSION = 1
_FAST_PREFIX = b'{"v":2,'

_REQUEST_PAIRS = ("args", "headers", "cookies", "form")


class CodecError(ValueError):
    """Stored bytes that are not an exchange this version can read."""


def exchange_to_bytes(exchange: Exchange) -> bytes:
    """One exchange as compact JSON: orjson's UTF-8 where it is exact, else
    ASCII with non-ASCII text escaped (so any str, even a lone surrogate, encodes)."""
    request, response = exchange.request, exchange.response
    kept_json = None if request.kept_json is JSON_FROM_BODY else request.kept_json
    controls = dict(exchange.controls)
    rule = None if exchange.rule is None else dict(exchange.rule)
    doc = {
        "v": FORMAT_VERSION,
        "request": {
            "id": request.id,
            "started": request.started,
            "method": request.method,
            "url": request.url,
            "path": request.path,
            "query_string": request.query_string,
            "http_version": request.http_version,
            "remote_addr": request.remote_addr,
            # Pairs are tuples of two: both encoders write them as two-element lists.
            "args": request.args,
            "headers": request.headers,
            "cookies": request.cookies,
            "form": request.form,
            "files": [
                {"field": f.field, "filename": f.filename, "content_type": f.content_type,
                 "size": f.size, "sha256": f.sha256}
                for f in request.files
            ],
            # A large JSON body is kept as its bytes only and parsed again on read.
            "json": kept_json,
            "json_from_body": request.kept_json is JSON_FROM_BODY,
            "body": _bytes_out(request.body),
            "body_size": request.body_size,
            "body_sha256": request.body_sha256,
            "content": _bytes_out(request.content),
            "content_encoding": request.content_encoding,
            "errors": request.errors,
            "truncated": request.truncated,
            "too_large": request.too_large,
            "bin": request.bin,
            "bin_path": request.bin_path,
        },
        "response": {
            "status": response.status,
            "headers": response.headers,
            "body": _bytes_out(response.body),
            "body_size": response.body_size,
            "body_sha256": response.body_sha256,
            "content_type": response.content_type,
            "truncated": response.truncated,
        },
        "controls": controls,
        "duration_ms": exchange.duration_ms,
        "rule": rule,
    }
    # orjson writes NaN and infinities as null: such a document is written exactly by json.
    if _finite((request.started, exchange.duration_ms, controls, kept_json, rule)):
        try:
            return orjson.dumps(doc)
        except TypeError:  # orjson.JSONEncodeError: an int over 64 bits, a lone surrogate, deep nesting
            pass
    doc["v"] = EXACT_VERSION
    try:
        return json.dumps(doc, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"exchange {request.id} cannot be stored: {exc}") from None


def _finite(value: Any) -> bool:
    """No float in `value` is NaN or infinite (what orjson would write as null).

    A loop, not recursion: it runs for every exchange a shared store writes."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True


def exchange_from_bytes(data: bytes) -> Exchange:
    """The exchange `exchange_to_bytes` wrote; CodecError for anything else."""
    try:
        doc = orjson.loads(data) if data.startswith(_FAST_PREFIX) else json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") not in (FORMAT_VERSION, EXACT_VERSION):
            version = doc.get("v") if isinstance(doc, dict) else None
            raise CodecError(
                f"stored exchange has format {version!r}, this version reads {EXACT_VERSION} and {FORMAT_VERSION}")
        req = dict(doc["request"])
        for name in _REQUEST_PAIRS:
            req[name] = _pairs_in(req[name])
        req["files"] = tuple(FileInfo(**f) for f in req["files"])
        req["body"] = _bytes_in(req["body"])
        req["content"] = _bytes_in(req["content"])
        req["errors"] = tuple(req["errors"])
        if req.pop("json_from_body", False):
            req["json"] = JSON_FROM_BODY
        resp = dict(doc["response"])
        resp["headers"] = _pairs_in(resp["headers"])
        resp["body"] = _bytes_in(resp["body"])
        return Exchange(
            request=RequestRecord(**req),
            response=ResponseRecord(**resp),
            controls=doc["controls"],
            duration_ms=doc["duration_ms"],
            # Written by versions before bins and rules: absent means none.
            rule=doc.get("rule"),
        )
    except CodecError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, binascii.Error) as exc:
        # orjson.JSONDecodeError is a ValueError.
        raise CodecError(f"stored exchange is unreadable: {exc!r}") from None


def _pairs_in(items: Any) -> Pairs:
    return tuple((name, value) for name, value in items)


def _bytes_out(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _bytes_in(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)
