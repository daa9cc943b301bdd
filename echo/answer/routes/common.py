"""What every httpbin family shares: httpbin's JSON answers and its view of a request.

httpbin's documents differ from Echo's on purpose: a name that occurs once has
a string value and a repeated one a list (`args`, `form`, `files`), `data` is
the body as text (or a `data:` URL when it is binary), and `files` holds each
file's content. They are built here from the captured record, so a route
never parses the request a second time except for multipart file contents,
which the record keeps as digests only.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import orjson
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from ...formats.documents import dumps, error_document
from ...model.http import JSON_TYPE, SANDBOX_CSP, content_type_options
from ...model.records import Pairs, RequestRecord
from ..answer import Answer, Headers

# Headers httpbin leaves out of `headers` unless ?show_env is given: what its
# hosting added. Kept for fidelity.
ENV_HEADERS = frozenset(name.lower() for name in (
    "X-Varnish", "X-Request-Start", "X-Heroku-Queue-Depth", "X-Real-Ip", "X-Forwarded-Proto",
    "X-Forwarded-Protocol", "X-Forwarded-Ssl", "X-Heroku-Queue-Wait-Time", "X-Forwarded-For",
    "X-Heroku-Dynos-In-Use", "X-Forwarded-Port", "X-Request-Id", "Via", "Total-Route-Time", "Connect-Time",
))
_JSONIFY = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE
# The most multipart parts parsed for `files`: the same bound as capture's default.
MAX_PARTS = 1000


def semiflatten(pairs: Pairs | list[tuple[str, Any]]) -> dict[str, Any]:
    """httpbin's shape: a name's value alone when it occurs once, a list of them when repeated."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    return out


def json_safe(data: bytes, content_type: str = "application/octet-stream") -> str:
    """The bytes as text, or as a `data:` URL (RFC 2397) when they are not UTF-8, as httpbin does."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def headers_of(record: RequestRecord, show_env: bool = False) -> dict[str, str]:
    """The request headers as httpbin shows them: one value per name, repeats joined by ","."""
    out: dict[str, str] = {}
    for name, value in record.headers:
        if not show_env and name.lower() in ENV_HEADERS:
            continue
        key = "-".join(part.capitalize() for part in name.split("-"))
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def origin_of(record: RequestRecord) -> str:
    return record.header("X-Forwarded-For") or record.remote_addr


def _is_form(record: RequestRecord) -> bool:
    mimetype = content_type_options(record.header("Content-Type") or "")[0]
    return mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")


def files_of(record: RequestRecord) -> dict[str, Any]:
    """Each uploaded file's content (text or a data: URL); every file of a repeated field is kept."""
    mimetype, options = content_type_options(record.header("Content-Type") or "")
    if mimetype != "multipart/form-data" or not record.files:
        return {}
    parser = FormDataParser(max_form_memory_size=None, max_content_length=None, max_form_parts=MAX_PARTS, silent=False)
    try:
        _, _, files = parser.parse(io.BytesIO(record.decoded), mimetype, len(record.decoded), options)
    except (ValueError, RequestEntityTooLarge):
        return {}  # capture already named what is wrong in the exchange's errors
    return semiflatten([
        (name, json_safe(storage.read(), storage.content_type or "application/octet-stream"))
        for name, storage in files.items(multi=True)
    ])


def request_dict(record: RequestRecord, *keys: str) -> dict[str, Any]:
    """httpbin's `get_dict(*keys)`: the named parts of the request, in httpbin's shapes.

    Only the parts asked for are built: /get never reads the body."""
    parts: dict[str, Callable[[], Any]] = {
        "url": lambda: record.url,
        "args": lambda: semiflatten(record.args),
        "form": lambda: semiflatten(record.form),
        "data": lambda: json_safe(_data(record)),
        "origin": lambda: origin_of(record),
        "headers": lambda: headers_of(record, any(name == "show_env" for name, _ in record.args)),
        "files": lambda: files_of(record),
        "json": lambda: _json_or_none(_data(record)),
        "method": lambda: record.method,
    }
    return {key: parts[key]() for key in keys}


def _data(record: RequestRecord) -> bytes:
    # httpbin's request.data: empty when werkzeug parsed the body as a form.
    return b"" if _is_form(record) else record.decoded


def _json_or_none(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


def body_answer(status: int, body: bytes, content_type: str, headers: Headers | None = None) -> Answer:
    """An answer whose body the route chose: framed, sandboxed and unsniffed like every Echo answer."""
    return Answer(status, [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", SANDBOX_CSP),
        *(headers or []),
    ], body)


def refused(status: int, message: str, **fields: Any) -> Answer:
    """Echo's one error shape, {"error", ...}, from a route."""
    return body_answer(status, dumps(error_document(message, **fields)) + b"\n", JSON_TYPE)


def json_answer(doc: Any, status: int = 200, headers: Headers | None = None) -> Answer:
    """httpbin's jsonify: indented JSON with sorted keys and a final newline.

    orjson writes it (the standard encoder took a quarter of a /get's time);
    what orjson refuses (integers over 64 bits, lone surrogates) goes to the
    standard encoder, as in the echo."""
    try:
        body = orjson.dumps(doc, option=_JSONIFY)
    except TypeError:  # orjson.JSONEncodeError
        body = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return body_answer(status, body, JSON_TYPE, headers)
