"""Capture: one WSGI request -> one `RequestRecord`, parsed once, nothing lost.

A pure step: it reads the request body from ``wsgi.input`` and nothing else; no
Flask globals, no store, no clock beyond the id source. Anything that cannot be
parsed (invalid JSON, broken multipart, bad gzip, undecodable text) becomes a
sentence in ``errors`` while the raw bytes stay in the record.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, unquote_to_bytes

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header
from werkzeug.sansio.http import parse_cookie
from werkzeug.wsgi import get_input_stream

from ..config import MAX_BODY_BYTES, MAX_FORM_PARTS, MAX_JSON_DEPTH, MAX_JSON_VALUES, flag
from ..model.filter import BIN_PATTERN
from ..model.http import codec_name, decode_text, escape_target, is_json_type
from ..model.records import FileInfo, IdSource, Pairs, ParsedJSON, RequestRecord

_READ_CHUNK = 64 * 1024
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Most requests have no body; its digest is one shared string, not one per record.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Header names are built once per distinct name and shared by every record that
# holds them: history keeps one string per name instead of one per header of
# every kept request. Callers choose names, so the cache is bounded (LRU).
HEADER_NAME_CACHE = 1024
# Where waitress joined two Cookie header lines: ", " before a cookie name and "=".
_JOINED_COOKIES = re.compile(r', (?=[!#$%&\'*+\-.^_`|~0-9A-Za-z]+=)')
# WSGI keeps these two without the HTTP_ prefix.
_CONTENT_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


@dataclass(frozen=True, slots=True)
class CaptureLimits:
    max_body: int = MAX_BODY_BYTES
    max_json_depth: int = MAX_JSON_DEPTH
    max_form_parts: int = MAX_FORM_PARTS
    max_json_values: int = MAX_JSON_VALUES


class _JSONRejected(ValueError):
    """A JSON body that is valid to Python but cannot be echoed as RFC 8259 JSON."""


def capture(environ: dict[str, Any], limits: CaptureLimits, ids: IdSource) -> RequestRecord:
    """Read and parse one request. Never raises for anything a client can send."""
    request_id, started = ids.next()
    errors: list[str] = []

    method = environ.get("REQUEST_METHOD", "GET")
    raw_query = environ.get("QUERY_STRING", "").encode("latin-1", "replace")
    path = _utf8(environ.get("PATH_INFO", "").encode("latin-1", "replace"), "path", errors)
    query_string = raw_query.decode("utf-8", "replace")
    headers = _headers(environ, errors)
    named = environ.get(BIN_HEADER_KEY)
    # Most requests are in no bin: one startswith and one lookup decide that, no call.
    bin_name, bin_path = bin_of(path, named) if named is not None or path.startswith(BIN_PATH_PREFIX) else (None, None)
    args = _pairs(raw_query, "query", errors, limits.max_form_parts)
    if len(args) > limits.max_form_parts:
        # 64 KiB of "a&a&..." is 30,000 pairs, 2 MiB as Python objects, kept
        # per exchange in history: the form limit bounds the query too.
        errors.append(
            f"query has more than the limit of {limits.max_form_parts} parameters "
            f"({flag('max_form_parts')}); args cut to the first ones"
        )
        args = args[: limits.max_form_parts]

    body, size, digest, too_large = _read_body(environ, limits.max_body)
    content_type = environ.get("CONTENT_TYPE", "")
    mimetype, options = parse_options_header(content_type) if content_type else ("", {})
    encoding_header = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()

    content: bytes | None = None
    form: Pairs = ()
    files: tuple[FileInfo, ...] = ()
    parsed_json: Any = None
    if too_large:
        errors.append(f"body of {size} bytes exceeds the limit of {limits.max_body} bytes ({flag('max_body')})")
    else:
        content, encoding_error, bomb = _decode_content(body, encoding_header, limits.max_body)
        if bomb:
            too_large = True
            errors.append(
                f"{encoding_header}-decoded body exceeds the limit of {limits.max_body} bytes ({flag('max_body')}); "
                f"decoding stopped at {limits.max_body + 1} bytes, from {size} on the wire"
            )
        elif encoding_error and content is None:
            errors.append(encoding_error)
        else:
            if encoding_error:
                errors.append(encoding_error)
            data = body if content is None else content
            _check_charset(data, mimetype, options, errors)
            if data:
                form, files, parsed_json = _parse_body(data, mimetype, options, limits, errors)

    return RequestRecord(
        id=request_id,
        started=started,
        method=method,
        url=_url(environ),
        path=path,
        query_string=query_string,
        http_version=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        remote_addr=environ.get("REMOTE_ADDR", ""),
        args=args,
        headers=headers,
        cookies=_cookies(environ),
        form=form,
        files=files,
        json=None if parsed_json is None else ParsedJSON(parsed_json),
        body=body,
        body_size=size,
        body_sha256=digest,
        content=content,
        content_encoding=encoding_header or None,
        errors=tuple(errors),
        too_large=too_large,
        bin=bin_name,
        bin_path=bin_path,
    )


# Section 9's bins: /b/{bin}/... on the path, or this header on any path.
BIN_PATH_PREFIX = "/b/"
BIN_HEADER = "X-Echo-Bin"
BIN_HEADER_KEY = "HTTP_X_ECHO_BIN"


def bin_of(path: str, header: str | None) -> tuple[str | None, str | None]:
    """(bin, bin_path) of a request, or (None, None) when it is in no bin.

    A path bin wins over the header here; the echo refuses a request whose
    header names another bin (or no valid one) before answering it. A path
    that starts with /b/ but holds no valid name (/b/, /b/../x, 65 characters)
    is an ordinary path.
    """
    if path.startswith(BIN_PATH_PREFIX):
        name, slash, rest = path[3:].partition("/")
        if BIN_PATTERN.fullmatch(name):
            return name, (slash + rest) or "/"
    if header is not None and BIN_PATTERN.fullmatch(header):
        return header, path
    return None, None


def _cookies(environ: dict[str, Any]) -> Pairs:
    # werkzeug's WSGI-level parse_cookie decodes the header as strict UTF-8 and
    # raises on other bytes; decode it the way every other header is decoded.
    raw = environ.get("HTTP_COOKIE", "")
    if not raw:
        return ()
    if ", " in raw:
        # Two Cookie lines (as HTTP/2-to-1.1 proxies send) reach WSGI joined
        # with ", " by waitress; RFC 9113 8.2.3 joins them with "; ". A comma
        # cannot be in a cookie value (RFC 6265), so ", name=" starts a cookie.
        raw = _JOINED_COOKIES.sub("; ", raw)
    return tuple(parse_cookie(raw.encode("latin-1", "replace").decode("utf-8", "replace")).items(multi=True))


def _utf8(raw: bytes, what: str, errors: list[str]) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        errors.append(f"{what} is not valid UTF-8; invalid bytes shown as U+FFFD")
        return raw.decode("utf-8", "replace")


@functools.lru_cache(maxsize=HEADER_NAME_CACHE)
def _header_name(key: str) -> str:
    """The header's name as shown, from its WSGI key: HTTP_USER_AGENT -> User-Agent."""
    return key[5:].replace("_", "-").title()


def _headers(environ: dict[str, Any], errors: list[str]) -> Pairs:
    pairs = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = _header_name(key)
        elif key in _CONTENT_HEADERS:
            if not value:
                continue
            name = _CONTENT_HEADERS[key]
        else:
            continue
        if not value.isascii():
            raw = value.encode("latin-1", "replace")
            try:
                value = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors.append(f"header {name} is not valid UTF-8; shown as Latin-1")
        pairs.append((name, value))
    return tuple(pairs)


# One urlencoded piece: a run between '&'s. Empty runs are skipped inside the
# regex engine, so "&&&..." costs no Python step per '&'.
_QUERY_PIECE = re.compile(rb"[^&]+")


def _split_query(raw: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
    """application/x-www-form-urlencoded on bytes: '&'-separated, '+' is space, %XX decoded.

    With a limit, at most limit + 1 pairs are split off, so a caller can tell
    "more than the limit" without the body ever becoming millions of objects
    (10 MiB of "a&a&..." is five million pairs, over 700 MiB as Python objects).
    """
    pairs: list[tuple[bytes, bytes]] = []
    for match in _QUERY_PIECE.finditer(raw):
        if limit is not None and len(pairs) > limit:
            break
        key, _, value = match.group().partition(b"=")
        pairs.append((unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def _pairs(raw: bytes, what: str, errors: list[str], limit: int | None = None) -> Pairs:
    if not raw:
        return ()
    if (limit is None or raw.count(b"&") < limit) and raw.isascii() and b"%" not in raw and b"+" not in raw:
        # Nothing to decode (most queries): the same pairs as _split_query's,
        # split as text, without a regex match and four unquotes per pair.
        # Under the limit only: split("&") would make every piece of
        # "a&a&..." an object before any could be dropped.
        pieces = [piece for piece in raw.decode("ascii").split("&") if piece]
        return tuple([(key, value) for key, _, value in map(_partition, pieces)])
    pairs = []
    bad = False
    for key, value in _split_query(raw, limit):
        try:
            pairs.append((key.decode("utf-8"), value.decode("utf-8")))
        except UnicodeDecodeError:
            bad = True
            pairs.append((key.decode("utf-8", "replace"), value.decode("utf-8", "replace")))
    if bad:
        errors.append(f"{what} is not valid UTF-8 after percent-decoding; invalid bytes shown as U+FFFD")
    return tuple(pairs)


def _partition(piece: str) -> tuple[str, str, str]:
    return piece.partition("=")


def _read_body(environ: dict[str, Any], max_body: int) -> tuple[bytes, int, str, bool]:
    """Read the whole body: keep at most max_body bytes, but hash and count all of it."""
    # A server that ends the stream itself (waitress) hands it over as it is,
    # which is what get_input_stream returns then, without its header parsing.
    stream = environ["wsgi.input"] if "wsgi.input_terminated" in environ else get_input_stream(
        environ, safe_fallback=False)
    digest = None  # made at the first chunk: most requests have no body
    kept: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = stream.read(_READ_CHUNK)
        except Exception:  # noqa: BLE001 - a client that vanished mid-body
            break
        if not chunk:
            break
        if digest is None:
            digest = hashlib.sha256()
        digest.update(chunk)
        if size < max_body:
            kept.append(chunk[: max_body - size])
        size += len(chunk)
    return b"".join(kept), size, digest.hexdigest() if digest is not None else EMPTY_SHA256, size > max_body


def _decode_content(body: bytes, encoding: str, max_body: int) -> tuple[bytes | None, str | None, bool]:
    """Undo Content-Encoding. Returns (decoded or None, error, exceeded max_body);
    an error beside decoded bytes is a note about them (trailing bytes ignored)."""
    if not encoding or encoding == "identity" or not body:
        return None, None, False
    codings = [c.strip() for c in encoding.split(",") if c.strip() and c.strip() != "identity"]
    data = body
    note = None
    for coding in reversed(codings):
        wbits = _DECODERS.get(coding)
        if wbits is None:
            return None, f"Content-Encoding {coding!r} is not supported (gzip, deflate); body left as received", False
        try:
            data, over, ignored = _inflate(data, wbits, max_body)
            if over:
                return None, None, True
            if ignored:
                note = f"{ignored} bytes after the last {coding} member are not {coding}; ignored"
        except zlib.error as exc:
            if coding == "deflate":
                # Some senders use raw deflate (no zlib header) for "deflate".
                try:
                    data, over, _ = _inflate(data, -zlib.MAX_WBITS, max_body)
                    if over:
                        return None, None, True
                    continue
                except zlib.error:
                    pass
            return None, f"could not decode {coding} body: {exc}; body left as received", False
    return data, note, False


# Compressed input is fed in pieces this size: a member that ends inside one
# hands back the rest of it (zlib copies it), so many tiny gzip members cost
# at most this much copying each instead of the rest of the body each.
_INFLATE_PIECE = 16 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _inflate(data: bytes, wbits: int, max_body: int) -> tuple[bytes, bool, int]:
    """Inflate every member (gzip allows several, concatenated), within max_body in all.
    Returns (decoded, exceeded max_body, bytes after the last member that are not gzip)."""
    view = memoryview(data)
    parts: list[bytes] = []
    total = 0
    position = 0
    inflater: Any = None
    while position < len(data):
        if inflater is None:
            if parts and data[position:position + 2] != b"\x1f\x8b":
                return b"".join(parts), False, len(data) - position  # trailing bytes, not a member
            inflater = zlib.decompressobj(wbits)
        piece = view[position:position + _INFLATE_PIECE]
        position += len(piece)
        # max_length stops a decompression bomb before it is inflated in
        # memory, counted over every member, so spreading one over many
        # members does not get past it.
        out = inflater.decompress(piece, max_body - total + 1)
        total += len(out)
        if total > max_body:
            return b"", True, 0
        parts.append(out)
        if inflater.eof:
            if wbits != _GZIP_WBITS:
                break  # zlib and raw deflate streams have one member; what follows was never read
            position -= len(inflater.unused_data)  # the next member starts there
            inflater = None
    if inflater is not None and not inflater.eof:
        raise zlib.error("truncated compressed data")
    return b"".join(parts), False, 0


def _check_charset(data: bytes, mimetype: str, options: dict[str, str], errors: list[str]) -> None:
    declared = options.get("charset")
    if declared and codec_name(declared) is None:
        errors.append(f"unknown charset {declared!r}; body shown as UTF-8 or base64")
        return
    if data and (declared or mimetype.startswith("text/") or is_json_type(mimetype)):
        if decode_text(data, f"{mimetype}; charset={declared}" if declared else None) is None:
            errors.append(f"body is not valid {declared or 'UTF-8'}; shown as base64")


def _parse_body(
    data: bytes, mimetype: str, options: dict[str, str], limits: CaptureLimits, errors: list[str]
) -> tuple[Pairs, tuple[FileInfo, ...], Any]:
    form: Pairs = ()
    files: tuple[FileInfo, ...] = ()
    parsed: Any = None
    if mimetype == "application/x-www-form-urlencoded":
        form = _pairs(data, "form body", errors, limits.max_form_parts)
        if len(form) > limits.max_form_parts:
            errors.append(
                f"form has more than the limit of {limits.max_form_parts} fields ({flag('max_form_parts')}); form left empty"
            )
            form = ()
    elif mimetype.startswith("multipart/"):
        form, files = _parse_multipart(data, mimetype, options, limits, errors)
    if is_json_type(mimetype):
        parsed = _parse_json(data, limits, errors, strict=True)
    elif mimetype in ("", "text/plain") and data.lstrip()[:1] in (b"{", b"["):
        # Senders that forget the Content-Type still get their JSON parsed;
        # a body that merely looks like JSON is not an error when it is not.
        parsed = _parse_json(data, limits, errors, strict=False)
    return form, files, parsed


def _memory_stream(*_: Any, **__: Any) -> io.BytesIO:
    # The whole body is already in memory (bounded by --max-body); parts need no temp files.
    return io.BytesIO()


def _parse_multipart(
    data: bytes, mimetype: str, options: dict[str, str], limits: CaptureLimits, errors: list[str]
) -> tuple[Pairs, tuple[FileInfo, ...]]:
    parser = FormDataParser(
        stream_factory=_memory_stream,
        max_form_memory_size=None,
        max_content_length=None,
        max_form_parts=limits.max_form_parts,
        silent=False,
    )
    try:
        _, form, files = parser.parse(io.BytesIO(data), mimetype, len(data), options)
    except ValueError as exc:
        errors.append(f"invalid multipart body: {exc}")
        return (), ()
    except RequestEntityTooLarge as exc:  # werkzeug's answer to too many parts
        errors.append(f"multipart body not parsed: {exc.description} ({flag('max_form_parts')})")
        return (), ()
    infos = []
    for name, storage in files.items(multi=True):
        stream = cast(io.BytesIO, storage.stream)  # _memory_stream made it
        view = stream.getbuffer()  # no copy
        infos.append(FileInfo(name, storage.filename or "", storage.content_type or "", len(view),
                              hashlib.sha256(view).hexdigest()))
        view.release()
    return tuple(form.items(multi=True)), tuple(infos)


def _reject_constant(name: str) -> Any:
    raise _JSONRejected(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JSONRejected(f"number {text[:40]} is too large to echo as JSON")
    return value


# Built once: json.loads() with options builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _parse_json(data: bytes, limits: CaptureLimits, errors: list[str], strict: bool) -> Any:
    max_depth = limits.max_json_depth
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if strict:
            errors.append("invalid JSON: body is not UTF-8")
        return None
    if _json_values_exceed(data, limits.max_json_values):
        errors.append(
            f"JSON has more than the limit of {limits.max_json_values} values ({flag('max_json_values')}); shown in body only"
        )
        return None
    try:
        value = _DECODER.decode(text)
    except _JSONRejected as exc:
        errors.append(f"invalid JSON: {exc}")
        return None
    except RecursionError:
        errors.append(f"JSON nested deeper than {max_depth} levels ({flag('max_json_depth')}); shown in body only")
        return None
    except ValueError as exc:  # JSONDecodeError, and ints over Python's digit limit
        if strict or not isinstance(exc, json.JSONDecodeError):
            errors.append(f"invalid JSON: {exc}")
        return None
    # Depth is at most the number of opening brackets: most bodies skip the walk.
    if data.count(b"[") + data.count(b"{") > max_depth and _depth_exceeds(value, max_depth):
        errors.append(f"JSON nested deeper than {max_depth} levels ({flag('max_json_depth')}); shown in body only")
        return None
    return value


# Outside strings, a JSON value is the document itself, the first element of a
# non-empty array or object, or one after a comma: the count is
# 1 + commas + openings - empty containers, each counted in C by bytes.count.
_JSON_OPENINGS = (b"[", b"{")
_JSON_EMPTY = re.compile(rb"\[[ \t\r\n]*\]|\{[ \t\r\n]*\}")
# The rest of a string after its opening quote, anchored where it starts, so an
# unterminated one is scanned once, not once per later quote.
_JSON_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _json_values_exceed(data: bytes, limit: int) -> bool:
    """Whether the JSON text holds more than `limit` values, decided before parsing it.

    Most bodies are settled by the first line: commas and brackets, strings
    included, bound the count from above. Otherwise strings are skipped one by
    one (a Python step per string, and valid JSON has at most two strings per
    counted value, so a body of strings alone stops the scan early too) and the
    structure between them is counted in C.
    """
    if data.count(b",") + data.count(b"[") + data.count(b"{") < limit:
        return False
    values = 1
    strings = 0
    position = 0
    while True:
        quote = data.find(b'"', position)
        stop = len(data) if quote < 0 else quote
        while position < stop:
            # Counted a piece at a time, each cut after a comma (no empty
            # container holds one), so the count can stop near the limit.
            cut = data.find(b",", position + _READ_CHUNK, stop)
            cut = stop if cut < 0 else cut + 1
            segment = data[position:cut]
            values += segment.count(b",")
            if b"[" in segment or b"{" in segment:
                values += segment.count(b"[") + segment.count(b"{") - _JSON_EMPTY.subn(b"", segment)[1]
            if values > limit:
                return True
            position = cut
        if quote < 0:
            return False
        strings += 1
        end = _JSON_STRING_REST.match(data, quote + 1)
        if end is None or strings > 2 * values + 1:
            # An unterminated string, or more strings than valid JSON can hold
            # around this many values: the parser stops at or before here.
            return False
        position = end.end()


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                return True
            children: Iterator[Any] = iter(item.values() if isinstance(item, dict) else item)
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _url(environ: dict[str, Any]) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        target = _escape_raw(raw.encode("latin-1", "replace"))
        if target.startswith("/"):
            return f"{scheme}://{_escape_raw(host.encode('latin-1', 'replace'))}{target}"
        return target
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=~-._")
    query = environ.get("QUERY_STRING", "")
    return f"{scheme}://{host}{path}" + (f"?{_escape_raw(query.encode('latin-1', 'replace'))}" if query else "")


_escape_raw = escape_target
