"""Packing: an exchange as the in-process store keeps it, in as few objects as it can.

Every object history holds is memory that the next requests' short-lived
objects share and that evicting the oldest exchange walks through: a kept GET
as records is about 20 small objects, and keeping them cost the echo more than
keeping one bytes object with the same facts (bench/README.md). So the memory
store keeps an exchange's id, text and numbers as one orjson array in a fixed
order (about a microsecond to write) behind a two-byte head. Reading unpacks
records equal, field for field, to the ones packed.

An exchange with no body to keep, no parsed JSON of its own and controls that
are empty or shared is that bytes object alone: the head says which of the
few shared values it had (most GETs). One with bodies but nothing else to
keep by reference (most POSTs) is a plain tuple of the bytes and its bodies
(`Bodies`): built without running Python code (a dataclass's `__init__` is
Python), and made of bytes and None alone, so the garbage collector stops
tracking it and a long history adds nothing to its full collections. Any
other keeps its parsed JSON and controls by reference too, in a `Packed`
beside the bytes.

The bytes are always a copy of orjson's output: orjson 3.13 returns a bytes
object whose allocation stays at its 8 KiB working buffer whatever its length
(`sys.getsizeof` does not show it), which made a kept GET 8 KB of memory.

What orjson cannot write exactly (integers over 64 bits, lone surrogates,
floats that are not finite) is kept as the records themselves.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import orjson

from ..model.records import JSON_FROM_BODY, Exchange, FileInfo, Pairs, ParsedJSON, RequestRecord, ResponseRecord


@dataclass(slots=True, eq=False)
class Packed:
    """An exchange with something to keep by reference beside its packed fields."""

    fields: bytes  # the head and the orjson array, as `pack` writes and `unpack` reads
    body: bytes
    content: bytes | None
    response_body: bytes | None
    json: Any
    controls: Mapping[str, Any]


# The packed bytes (head and fields), the request body, the decoded content
# and the response body; the head says the JSON and the controls as for bytes alone.
Bodies = tuple[bytes, bytes, bytes | None, bytes | None]

Kept = bytes | Bodies | Packed | Exchange

# The head's first byte: what an exchange kept as bytes alone (all three) or
# as `Bodies` (the first alone) had in the places a `Packed` keeps by reference.
_JSON_FROM_BODY = 1  # json was JSON_FROM_BODY (else None)
_CONTENT_EMPTY = 2  # content was b"" (else None)
_RESPONSE_NONE = 4  # the response body was None (else b"")
# The head's second byte: 0 for controls that were an empty dict (a new one on
# every read, since a dict can be changed), else 1 + the index of a read-only
# mapping in _SHARED_CONTROLS, given back as that same object.
_EMPTY_DICT = 0
# Read-only controls seen, by identity: the echo's "no controls" summary is
# one object shared by every request without controls. Bounded: a mapping
# not among the first ones is kept by reference instead.
_SHARED_CONTROLS: list[Mapping[str, Any]] = []
_SHARED_INDEX: dict[int, int] = {}
_SHARED_LIMIT = 255
_SHARED_LOCK = threading.Lock()
_isfinite = math.isfinite
# Every two-byte head, by flags and controls code: looked up, not built, per exchange.
_HEADS = tuple(tuple(bytes((flags, code)) for code in range(_SHARED_LIMIT + 1)) for flags in range(8))


def shared_index(controls: Mapping[str, Any]) -> int | None:
    """The index of a read-only mapping among the shared controls (`_SHARED_CONTROLS`),
    registered at its first sight; None for any other mapping, or once the table is full."""
    if type(controls) is not MappingProxyType:
        return None
    index = _SHARED_INDEX.get(id(controls))
    if index is None:
        with _SHARED_LOCK:
            index = _SHARED_INDEX.get(id(controls))
            if index is None:
                if len(_SHARED_CONTROLS) >= _SHARED_LIMIT:
                    return None
                # Held here for good, so its id is never another object's.
                index = len(_SHARED_CONTROLS)
                _SHARED_CONTROLS.append(controls)
                _SHARED_INDEX[id(controls)] = index
    return index


def _controls_code(controls: Mapping[str, Any]) -> int | None:
    """The head's controls byte, or None when they must be kept by reference."""
    if type(controls) is dict and not controls:
        return _EMPTY_DICT
    index = shared_index(controls)
    return None if index is None else index + 1


def _files(files: tuple[FileInfo, ...]) -> list[tuple[str, str, str, int, str]]:
    return [(f.field, f.filename, f.content_type, f.size, f.sha256) for f in files]


def pack(exchange: Exchange) -> Kept:
    """The exchange packed, or the exchange itself when packing would not be exact.

    This runs on the request thread for every exchange history keeps, so it
    spells out what a helper would do: each call here is about 1% of the
    recording's price."""
    request, response = exchange.request, exchange.response
    # orjson writes NaN and infinities as null: keep such an exchange as it is.
    if not (_isfinite(request.started) and _isfinite(exchange.duration_ms)):
        return exchange
    try:
        fields = orjson.dumps((
            request.id, request.started, request.method, request.url, request.path, request.query_string,
            request.http_version, request.remote_addr, request.args, request.headers, request.cookies,
            request.form, _files(request.files) if request.files else (),
            request.body_size, request.body_sha256, request.content_encoding, request.errors,
            request.truncated, request.too_large,
            response.status, response.headers, response.body_size, response.body_sha256,
            response.content_type, response.truncated,
            exchange.duration_ms, request.bin, request.bin_path, exchange.rule,
        ))
    except TypeError:  # orjson.JSONEncodeError: an int over 64 bits, a lone surrogate
        return exchange
    json, content, response_body = request.json, request.content, response.body
    if isinstance(json, ParsedJSON):  # RequestRecord.kept_json, without the property's call
        json = JSON_FROM_BODY
    controls = _SHARED_INDEX.get(id(exchange.controls))  # a shared mapping seen before, most often
    controls = _controls_code(exchange.controls) if controls is None else controls + 1
    if controls is not None and (json is None or json is JSON_FROM_BODY):
        flags = _JSON_FROM_BODY if json is not None else 0
        if not request.body and not content and not response_body:
            flags |= (_CONTENT_EMPTY if content is not None else 0) | (_RESPONSE_NONE if response_body is None else 0)
            return _HEADS[flags][controls] + fields  # the concatenation is the exact-size copy
        return (_HEADS[flags][controls] + fields, request.body, content, response_body)
    return Packed(b"\0\0" + fields, request.body, content, response_body, json, exchange.controls)


def unpack(kept: Kept) -> Exchange:
    if isinstance(kept, Exchange):
        return kept
    content: bytes | None
    response_body: bytes | None
    json: Any
    controls: Mapping[str, Any]
    if isinstance(kept, Packed):
        fields = memoryview(kept.fields)[2:]
        body, content, response_body = kept.body, kept.content, kept.response_body
        json, controls = kept.json, kept.controls
    else:
        if isinstance(kept, bytes):  # no bodies: the head says which empty ones
            head, body = kept, b""
            content = b"" if kept[0] & _CONTENT_EMPTY else None
            response_body = None if kept[0] & _RESPONSE_NONE else b""
        else:
            head, body, content, response_body = kept
        flags, code = head[0], head[1]
        fields = memoryview(head)[2:]
        json = JSON_FROM_BODY if flags & _JSON_FROM_BODY else None
        controls = {} if code == _EMPTY_DICT else _SHARED_CONTROLS[code - 1]
    (exchange_id, started, method, url, path, query_string, http_version, remote_addr, args, headers, cookies,
     form, files, body_size, body_sha256, content_encoding, errors, truncated, too_large,
     status, response_headers, response_size, response_sha256, content_type, response_truncated,
     duration_ms, bin_name, bin_path, rule) = orjson.loads(fields)
    request = RequestRecord(
        id=exchange_id, started=started, method=method, url=url, path=path, query_string=query_string,
        http_version=http_version, remote_addr=remote_addr, args=_pairs(args), headers=_pairs(headers),
        cookies=_pairs(cookies), form=_pairs(form), files=tuple(FileInfo(*info) for info in files),
        json=json, body=body, body_size=body_size, body_sha256=body_sha256, content=content,
        content_encoding=content_encoding, errors=tuple(errors), truncated=truncated, too_large=too_large,
        bin=bin_name, bin_path=bin_path,
    )
    response = ResponseRecord(
        status=status, headers=_pairs(response_headers), body=response_body, body_size=response_size,
        body_sha256=response_sha256, content_type=content_type, truncated=response_truncated,
    )
    return Exchange(request=request, response=response, controls=controls, duration_ms=duration_ms, rule=rule)


def may_hold(kept: bytes | Bodies | Packed, hints: tuple[bytes, ...]) -> bool:
    """False when the packed text lacks one of a filter's hints (`Filter.hints`): then
    the filter cannot hold and the exchange need not be unpacked (about 40 us) to say so.

    `fields` is orjson's JSON of every field the hints are about, non-ASCII
    written as it is; lowercased as `str.lower()` does, which for ASCII text is
    `bytes.lower()` and needs no decoding.
    """
    # Past the two-byte head, which is flags, not text.
    text = (kept if isinstance(kept, bytes) else kept[0] if isinstance(kept, tuple) else kept.fields)[2:]
    text = text.lower() if text.isascii() else text.decode("utf-8").lower().encode("utf-8")
    for hint in hints:  # a loop, not all(...): this runs for every kept exchange a page scans
        if hint not in text:
            return False
    return True


def _pairs(items: list[list[str]]) -> Pairs:
    return tuple(map(tuple, items))  # type: ignore[arg-type]
