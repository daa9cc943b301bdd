"""Packing: an exchange as the in-process store keeps it, in a few objects.

Every object history holds is memory that the next requests' short-lived
objects share and that evicting the oldest exchange walks through: a kept GET
as records is about 20 small objects, and keeping them cost the echo more than
keeping one bytes object with the same facts (bench/README.md). So the memory
store keeps an exchange's text and numbers as one orjson array in a fixed
order (about a microsecond to write), its bodies as the bytes they are, and
its parsed JSON and controls by reference (most exchanges share the same
ones). Reading unpacks records equal, field for field, to the ones packed.

What orjson cannot write exactly (integers over 64 bits, lone surrogates,
floats that are not finite) is kept as the records themselves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..model.records import Exchange, FileInfo, Pairs, RequestRecord, ResponseRecord


@dataclass(slots=True, eq=False)
class Packed:
    id: str
    fields: bytes  # orjson array, in the order `pack` writes and `unpack` reads
    body: bytes
    content: bytes | None
    response_body: bytes | None
    json: Any
    controls: Mapping[str, Any]


def pack(exchange: Exchange) -> Packed | Exchange:
    """The exchange packed, or the exchange itself when packing would not be exact."""
    request, response = exchange.request, exchange.response
    # orjson writes NaN and infinities as null: keep such an exchange as it is.
    if not (math.isfinite(request.started) and math.isfinite(exchange.duration_ms)):
        return exchange
    try:
        fields = orjson.dumps((
            request.started, request.method, request.url, request.path, request.query_string,
            request.http_version, request.remote_addr, request.args, request.headers, request.cookies,
            request.form, [(f.field, f.filename, f.content_type, f.size, f.sha256) for f in request.files],
            request.body_size, request.body_sha256, request.content_encoding, request.errors,
            request.truncated, request.too_large,
            response.status, response.headers, response.body_size, response.body_sha256,
            response.content_type, response.truncated,
            exchange.duration_ms, request.bin, request.bin_path, exchange.rule,
        ))
    except TypeError:  # orjson.JSONEncodeError: an int over 64 bits, a lone surrogate
        return exchange
    return Packed(request.id, fields, request.body, request.content, response.body, request.kept_json, exchange.controls)


def unpack(kept: Packed | Exchange) -> Exchange:
    if isinstance(kept, Exchange):
        return kept
    (started, method, url, path, query_string, http_version, remote_addr, args, headers, cookies, form, files,
     body_size, body_sha256, content_encoding, errors, truncated, too_large,
     status, response_headers, response_size, response_sha256, content_type, response_truncated,
     duration_ms, bin_name, bin_path, rule) = orjson.loads(kept.fields)
    request = RequestRecord(
        id=kept.id, started=started, method=method, url=url, path=path, query_string=query_string,
        http_version=http_version, remote_addr=remote_addr, args=_pairs(args), headers=_pairs(headers),
        cookies=_pairs(cookies), form=_pairs(form), files=tuple(FileInfo(*info) for info in files),
        json=kept.json, body=kept.body, body_size=body_size, body_sha256=body_sha256, content=kept.content,
        content_encoding=content_encoding, errors=tuple(errors), truncated=truncated, too_large=too_large,
        bin=bin_name, bin_path=bin_path,
    )
    response = ResponseRecord(
        status=status, headers=_pairs(response_headers), body=kept.response_body, body_size=response_size,
        body_sha256=response_sha256, content_type=content_type, truncated=response_truncated,
    )
    return Exchange(request=request, response=response, controls=kept.controls, duration_ms=duration_ms, rule=rule)


def may_hold(kept: Packed, hints: tuple[bytes, ...]) -> bool:
    """False when the packed text lacks one of a filter's hints (`Filter.hints`): then
    the filter cannot hold and the exchange need not be unpacked (about 40 us) to say so.

    `fields` is orjson's JSON of every field the hints are about, non-ASCII
    written as it is; lowercased as `str.lower()` does, which for ASCII text is
    `bytes.lower()` and needs no decoding.
    """
    text = kept.fields
    text = text.lower() if text.isascii() else text.decode("utf-8").lower().encode("utf-8")
    for hint in hints:  # a loop, not all(...): this runs for every kept exchange a page scans
        if hint not in text:
            return False
    return True


def _pairs(items: list[list[str]]) -> Pairs:
    return tuple(map(tuple, items))  # type: ignore[arg-type]
