"""Documents: records -> the JSON shapes Echo sends (echo document, exchange, errors).

One function per shape, so the echo, the API, the pages and HAR agree on every
field. `dumps` guarantees RFC 8259 output: no NaN/Infinity, valid UTF-8.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

import orjson

from ..model.http import decode_text
from ..model.records import Exchange, RequestRecord, ResponseRecord


def iso_time(epoch: float) -> str:
    """2026-11-26T11:38:19.123Z"""
    whole = int(epoch)
    millis = int((epoch - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


# Built once: json.dumps() with options builds a new encoder on every call.
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_PRETTY = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=2, separators=(",", ": "))
_COMPACT_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_PRETTY_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False, indent=2, separators=(",", ": "))


def dumps(doc: Any, pretty: bool = False) -> bytes:
    """Encode as strict JSON; lone surrogates from \\u escapes fall back to ASCII escapes.

    Compact documents go through orjson: encoding is most of the echo's own
    time on a JSON body (26 us against 3.6 us for a 1 KiB webhook's echo), and
    its bytes are the standard encoder's but for the spelling of some floats
    (1e-7, not 1e-07). What it refuses goes to the standard encoder, as before:
    integers over 64 bits, lone surrogates, nesting deeper than 255.
    """
    if not pretty:
        try:
            return orjson.dumps(doc)
        except TypeError:  # orjson.JSONEncodeError
            pass
    try:
        return (_PRETTY if pretty else _COMPACT).encode(doc).encode("utf-8")
    except UnicodeEncodeError:
        return (_PRETTY_ASCII if pretty else _COMPACT_ASCII).encode(doc).encode("ascii")


def multi(pairs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def first_wins(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """A repeated cookie name keeps its first value, as servers read it."""
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def body_view(
    wire: bytes,
    decoded: bytes,
    size: int,
    sha256: str,
    content_type: str | None,
    truncated: bool,
    encoding: str | None = None,
) -> dict[str, Any]:
    """A body as the echo shows it: text when it decodes, base64 when it is not UTF-8."""
    text = decode_text(decoded, content_type) if decoded else ""
    if truncated and text is None:
        # A cut can fall inside a multi-byte character; judge the bytes before it.
        for cut in (1, 2, 3):
            text = decode_text(decoded[:-cut], content_type)
            if text is not None:
                break
    is_utf8 = text is not None and (decoded.isascii() or _is_utf8(decoded, truncated))
    view: dict[str, Any] = {
        "size": size,
        "sha256": sha256,
        "text": text,
        "base64": None if is_utf8 else base64.b64encode(decoded).decode("ascii"),
        "truncated": truncated,
    }
    if encoding:
        view["content_encoding"] = encoding
        view["decoded_size"] = len(decoded)
        # text and base64 show the decoded bytes; the bytes on the wire (as
        # kept, see truncated) stay recoverable beside them.
        view["wire_base64"] = base64.b64encode(wire).decode("ascii")
    return view


def _is_utf8(data: bytes, truncated: bool) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return truncated and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"


def request_document(record: RequestRecord) -> dict[str, Any]:
    """The echo document without `controls`."""
    files: dict[str, list[dict[str, Any]]] = {}
    for info in record.files:
        files.setdefault(info.field, []).append(
            {"filename": info.filename, "content_type": info.content_type, "size": info.size, "sha256": info.sha256}
        )
    return {
        "id": record.id,
        "time": iso_time(record.started),
        "method": record.method,
        "url": record.url,
        "path": record.path,
        # Always present, null outside a bin: clients read them without a key check.
        "bin": record.bin,
        "bin_path": record.bin_path,
        "query_string": record.query_string,
        "http_version": record.http_version,
        "remote_addr": record.remote_addr,
        "args": multi(record.args),
        "headers": dict(record.headers),
        "cookies": first_wins(record.cookies),
        "form": multi(record.form),
        "files": files,
        "json": record.json_value(),
        "body": body_view(
            record.body,
            record.decoded,
            record.body_size,
            record.body_sha256,
            record.header("Content-Type"),
            record.truncated,
            record.content_encoding if record.content is not None else None,
        ),
        "errors": list(record.errors),
    }


def echo_document(record: RequestRecord, controls: Mapping[str, Any]) -> dict[str, Any]:
    doc = request_document(record)
    doc["controls"] = dict(controls)
    return doc


def echo_json(record: RequestRecord, controls: Mapping[str, Any]) -> bytes:
    """The echo answer's bytes; history rebuilds them with this same function."""
    return dumps(echo_document(record, controls)) + b"\n"


def response_body(exchange: Exchange) -> dict[str, Any]:
    response: ResponseRecord = exchange.response
    if response.body is None:
        # The echo document is rebuilt from the kept request instead of being stored twice.
        rebuilt = echo_json(exchange.request, exchange.controls) if response.body_size else b""
        view = body_view(rebuilt, rebuilt, response.body_size, response.body_sha256, response.content_type, False)
        view["truncated"] = exchange.request.truncated
        view["rebuilt"] = True
        return view
    return body_view(
        response.body,
        response.body,
        response.body_size,
        response.body_sha256,
        response.content_type,
        response.truncated,
    )


def exchange_document(exchange: Exchange, bodies: bool = True) -> dict[str, Any]:
    request = request_document(exchange.request)
    response: dict[str, Any] = {
        "status": exchange.response.status,
        "headers": [[name, value] for name, value in exchange.response.headers],
        "controls": dict(exchange.controls),
    }
    if bodies:
        response["body"] = response_body(exchange)
    else:
        request["body"] = {k: v for k, v in request["body"].items() if k not in ("text", "base64", "wire_base64")}
        response["body"] = {"size": exchange.response.body_size, "sha256": exchange.response.body_sha256}
    doc = {
        "id": exchange.id,
        "time": iso_time(exchange.request.started),
        "duration_ms": round(exchange.duration_ms, 3),
        "request": request,
        "response": response,
    }
    if exchange.rule is not None:
        # Only on exchanges a rule answered (section 10): {"name", "id", "step"}.
        doc["rule"] = dict(exchange.rule)
    return doc


def error_document(message: str, **fields: Any) -> dict[str, Any]:
    """The one error shape: {"error": "...", ...details}."""
    return {"error": message, **fields}
