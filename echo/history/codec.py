"""The wire format of one exchange in a shared store.

A Redis store is read by every replica, including ones running another Echo
version during a rolling upgrade, and an SQLite file outlives the process
that wrote it, so the format is explicit and versioned. Decoding gives back
records equal, field for field, to the ones encoded.

Version 3, what this Echo writes: one orjson array of every field of
`Exchange`, `RequestRecord`, `ResponseRecord` and `FileInfo` in a fixed
order (`_FIELDS_3`), first the version, last the lengths of the request
body, the decoded content and the response body; then a newline; then those
bytes as they are. JSON never holds a raw newline (orjson escapes control
characters), so the first one ends it. No base64 and no field names: about a
quarter of version 2's encoding time and a third less to store.

Versions 2 and 1, still read: one JSON object with every field by name and
bytes as base64; 2 written by orjson, 1 by the standard library as ASCII.
What orjson cannot write exactly (integers over 64 bits, lone surrogates,
floats that are not finite, which it would write as null) is still written as
version 1. A reader picks its parser from the first bytes, so orjson never
reads a version 1 document, whose big integers it would turn into floats.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

from ..model.records import JSON_FROM_BODY, Exchange, FileInfo, Pairs, ParsedJSON, RequestRecord, ResponseRecord
from .packed import shared_index

# Bumped whenever a field changes meaning; a reader refuses what it cannot read
# rather than showing an exchange with fields silently missing.
FORMAT_VERSION = 3
# The keyed orjson document of the version before, read but no longer written.
KEYED_VERSION = 2
# The standard library's exact ASCII form, for what orjson cannot write.
EXACT_VERSION = 1
_PREFIX_3 = b"[3,"
_PREFIX_2 = b'{"v":2,'
# The array of version 3, in order (the version first, three lengths last).
_FIELDS_3 = (
    "v", "id", "started", "method", "url", "path", "query_string", "http_version", "remote_addr",
    "args", "headers", "cookies", "form", "files", "json", "json_from_body", "body_size", "body_sha256",
    "content_encoding", "errors", "truncated", "too_large",
    "status", "response_headers", "response_size", "response_sha256", "content_type", "response_truncated",
    "controls", "duration_ms", "bin", "bin_path", "rule", "body_length", "content_length", "response_length",
)

_REQUEST_PAIRS = ("args", "headers", "cookies", "form")
# Of each shared read-only controls mapping (`packed.shared_index`): its copy
# and whether it is finite.
_SHARED_COPIES: dict[int, tuple[dict[str, Any], bool]] = {}


class CodecError(ValueError):
    """Stored bytes that are not an exchange this version can read."""


def exchange_to_bytes(exchange: Exchange) -> bytes:
    """One exchange as version 3 where orjson is exact, else as version 1:
    ASCII with non-ASCII text escaped (so any str, even a lone surrogate, encodes)."""
    request, response = exchange.request, exchange.response
    # RequestRecord.kept_json without the property's call: this runs for every exchange written.
    kept_json = request.json
    from_body = kept_json is JSON_FROM_BODY or isinstance(kept_json, ParsedJSON)
    if from_body:
        kept_json = None
    controls, finite = _controls(exchange.controls)
    rule = None if exchange.rule is None else dict(exchange.rule)
    # orjson writes NaN and infinities as null: such an exchange is written exactly by json.
    if (math.isfinite(request.started) and math.isfinite(exchange.duration_ms) and finite
            and (kept_json is None or _finite(kept_json)) and (rule is None or _finite_values(rule))):
        body, content, response_body = request.body, request.content, response.body
        try:
            head = orjson.dumps((
                FORMAT_VERSION, request.id, request.started, request.method, request.url, request.path,
                request.query_string, request.http_version, request.remote_addr, request.args, request.headers,
                request.cookies, request.form,
                [(f.field, f.filename, f.content_type, f.size, f.sha256) for f in request.files]
                if request.files else (),
                kept_json, from_body, request.body_size, request.body_sha256, request.content_encoding,
                request.errors, request.truncated, request.too_large,
                response.status, response.headers, response.body_size, response.body_sha256,
                response.content_type, response.truncated,
                controls, exchange.duration_ms, request.bin, request.bin_path, rule,
                len(body), -1 if content is None else len(content), -1 if response_body is None else len(response_body),
            ))
        except TypeError:  # orjson.JSONEncodeError: an int over 64 bits, a lone surrogate, deep nesting
            pass
        else:
            if not (body or content or response_body):
                return head + b"\n"  # most GETs: no bodies to join
            return b"".join((head, b"\n", body, content or b"", response_body or b""))
    return _exact(exchange, kept_json, controls, rule)


def _controls(controls: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The controls as a dict orjson writes (it takes no mapping proxy), and
    whether they are finite.

    A read-only mapping shared by many exchanges (the echo's "no controls"
    summary, most of them) is copied and checked once: packing's table of
    shared controls holds it, so its index stays its own, and its copy is
    never written to. Any other mapping is copied each time."""
    index = shared_index(controls)
    if index is not None:
        known = _SHARED_COPIES.get(index)
        if known is None:
            copy = dict(controls)
            known = _SHARED_COPIES.setdefault(index, (copy, _finite_values(copy)))
        return known
    copy = dict(controls)  # of a dict, a copy as fast as `.copy()`
    return copy, _finite_values(copy)


def _exact(exchange: Exchange, kept_json: Any, controls: dict[str, Any], rule: dict[str, Any] | None) -> bytes:
    """Version 1: the keyed document, by the standard library, as ASCII."""
    request, response = exchange.request, exchange.response
    doc = {
        "v": EXACT_VERSION,
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
    try:
        return json.dumps(doc, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"exchange {request.id} cannot be stored: {exc}") from None


# Types `_finite` passes over without a look inside.
_NEVER_NAN = frozenset((str, int, bool, type(None)))


def _finite_values(mapping: dict[str, Any]) -> bool:
    """`_finite` for a flat mapping of scalars and empty containers (controls, a rule)
    without the walk: most exchanges' controls are the four values of "none"."""
    for value in mapping.values():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return False
        elif value and kind not in _NEVER_NAN and not _finite(value):  # an empty container holds no float
            return False
    return True


def _finite(value: Any) -> bool:
    """No float in `value` is NaN or infinite (what orjson would write as null).

    A loop, not recursion, deciding the common types by `type()` first: it
    runs for every exchange a shared store writes."""
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind in _NEVER_NAN:
            continue
        if kind is float or isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            extend(item.values())
        elif isinstance(item, (list, tuple)):
            extend(item)
    return True


def exchange_from_bytes(data: bytes) -> Exchange:
    """The exchange `exchange_to_bytes` wrote; CodecError for anything else."""
    try:
        if data.startswith(_PREFIX_3):
            return _from_3(data)
        doc = orjson.loads(data) if data.startswith(_PREFIX_2) else json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") not in (KEYED_VERSION, EXACT_VERSION):
            version = doc.get("v") if isinstance(doc, dict) else doc[0] if isinstance(doc, list) and doc else None
            raise CodecError(f"stored exchange has format {version!r}, this version reads "
                             f"{EXACT_VERSION}, {KEYED_VERSION} and {FORMAT_VERSION}")
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


def _from_3(data: bytes) -> Exchange:
    end = data.index(b"\n")  # ValueError when there is none
    fields = orjson.loads(data[:end])
    if not isinstance(fields, list) or len(fields) != len(_FIELDS_3):
        raise CodecError(f"stored exchange of format {FORMAT_VERSION} has {len(fields)} fields, "
                         f"not {len(_FIELDS_3)}" if isinstance(fields, list) else "stored exchange is not an array")
    (_, exchange_id, started, method, url, path, query_string, http_version, remote_addr, args, headers, cookies,
     form, files, kept_json, from_body, body_size, body_sha256, content_encoding, errors, truncated, too_large,
     status, response_headers, response_size, response_sha256, content_type, response_truncated,
     controls, duration_ms, bin_name, bin_path, rule, body_length, content_length, response_length) = fields
    lengths = (body_length, content_length, response_length)
    if (not all(type(n) is int for n in lengths) or body_length < 0 or min(lengths) < -1
            or end + 1 + body_length + max(content_length, 0) + max(response_length, 0) != len(data)):
        raise CodecError(f"stored exchange of format {FORMAT_VERSION} has bodies of lengths {lengths} "
                         f"in {len(data) - end - 1} bytes")
    at = end + 1
    body = data[at:at + body_length]
    at += body_length
    content = None if content_length < 0 else data[at:at + content_length]
    at += max(content_length, 0)
    response_body = None if response_length < 0 else data[at:at + response_length]
    request = RequestRecord(
        id=exchange_id, started=started, method=method, url=url, path=path, query_string=query_string,
        http_version=http_version, remote_addr=remote_addr, args=_pairs_in(args), headers=_pairs_in(headers),
        cookies=_pairs_in(cookies), form=_pairs_in(form), files=tuple(FileInfo(*info) for info in files),
        json=JSON_FROM_BODY if from_body else kept_json, body=body, body_size=body_size, body_sha256=body_sha256,
        content=content, content_encoding=content_encoding, errors=tuple(errors), truncated=truncated,
        too_large=too_large, bin=bin_name, bin_path=bin_path,
    )
    response = ResponseRecord(
        status=status, headers=_pairs_in(response_headers), body=response_body, body_size=response_size,
        body_sha256=response_sha256, content_type=content_type, truncated=response_truncated,
    )
    if not isinstance(controls, dict) or not (rule is None or isinstance(rule, dict)):
        raise CodecError(f"stored exchange of format {FORMAT_VERSION} has controls or a rule that is not an object")
    return Exchange(request=request, response=response, controls=controls, duration_ms=duration_ms, rule=rule)


def _pairs_in(items: Any) -> Pairs:
    return tuple((name, value) for name, value in items)


def _bytes_out(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _bytes_in(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)
