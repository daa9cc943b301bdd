"""HAR: the history as an HTTP Archive 1.2 document that browsers' dev tools import.

Every field HAR 1.2 requires is present with its type (see the test's schema
table). Where HAR has no place for something Echo knows, the value goes in a
field starting with an underscore (HAR's rule for custom fields) or in a
`comment`. History's redaction and --keep-body cut apply here as everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from ..config import flag
from ..model.http import status_line
from ..model.records import Exchange
from ..version import __version__
from .documents import dumps, iso_time, request_document, response_body

log = logging.getLogger("echo")

HAR_VERSION = "1.2"
# HAR's word for "not known"; Echo does not see the raw header block's size.
UNKNOWN_SIZE = -1


def _pairs(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers if key.lower() == lowered), None)


def set_cookie(value: str) -> dict[str, Any] | None:
    """One Set-Cookie header value -> a HAR cookie, or None when it holds no name=value."""
    first, *attributes = value.split(";")
    name, sep, cookie_value = first.partition("=")
    if not sep or not name.strip():
        return None  # e.g. a redacted header
    cookie: dict[str, Any] = {"name": name.strip(), "value": cookie_value.strip()}
    for attribute in attributes:
        key, _, raw = attribute.partition("=")
        key, raw = key.strip().lower(), raw.strip()
        if key == "path":
            cookie["path"] = raw
        elif key == "domain":
            cookie["domain"] = raw
        elif key == "expires":
            try:
                cookie["expires"] = parsedate_to_datetime(raw).astimezone(timezone.utc).isoformat()
            except (TypeError, ValueError, OverflowError):
                # An unparseable date, or one past what a datetime holds (the year
                # 9999 at -1200 is 10000 in UTC), is left out rather than exported invalid.
                pass
        elif key == "httponly":
            cookie["httpOnly"] = True
        elif key == "secure":
            cookie["secure"] = True
    return cookie


def _response_cookies(headers: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    cookies = (set_cookie(value) for name, value in headers if name.lower() == "set-cookie")
    return [cookie for cookie in cookies if cookie is not None]


def _content(view: dict[str, Any], mime: str) -> dict[str, Any]:
    content: dict[str, Any] = {"size": view.get("decoded_size", view["size"]), "mimeType": mime}
    if view.get("text") is not None:
        content["text"] = view["text"]
    elif view.get("base64") is not None:
        content["text"] = view["base64"]
        content["encoding"] = "base64"
    if view.get("truncated"):
        content["comment"] = f"cut to the first bytes kept in history ({flag('keep_body')}) of {view['size']}"
    return content


def _post_data(exchange: Exchange, body: dict[str, Any]) -> dict[str, Any]:
    req = exchange.request
    post: dict[str, Any] = {"mimeType": req.header("Content-Type") or "", "params": []}
    comments = []
    if body["text"] is not None:
        post["text"] = body["text"]
    else:
        # HAR 1.2 has no encoding field on postData; base64 text is the convention tools follow.
        post["text"] = body["base64"] or ""
        comments.append("base64-encoded body")
    if body["truncated"]:
        comments.append(f"cut to the first bytes kept in history ({flag('keep_body')}) of {req.body_size}")
    if comments:
        post["comment"] = "; ".join(comments)
    params: list[dict[str, Any]] = _pairs(req.form)
    params += [{"name": f.field, "fileName": f.filename, "contentType": f.content_type} for f in req.files]
    post["params"] = params
    return post


def har_entry(exchange: Exchange) -> dict[str, Any]:
    req = exchange.request
    doc = request_document(req)
    request: dict[str, Any] = {
        "method": req.method,
        "url": req.url,
        "httpVersion": req.http_version,
        "cookies": _pairs(req.cookies),
        "headers": _pairs(req.headers),
        "queryString": _pairs(req.args),
        "headersSize": UNKNOWN_SIZE,
        "bodySize": req.body_size,
    }
    if req.body_size or req.header("Content-Length") is not None:
        request["postData"] = _post_data(exchange, doc["body"])
    resp = exchange.response
    duration = round(max(exchange.duration_ms, 0.0), 3)
    entry: dict[str, Any] = {
        "startedDateTime": iso_time(req.started),
        "time": duration,
        "request": request,
        "response": {
            "status": resp.status,
            "statusText": status_line(resp.status).split(" ", 1)[1],
            "httpVersion": req.http_version,
            "cookies": _response_cookies(resp.headers),
            "headers": _pairs(resp.headers),
            "content": _content(response_body(exchange), resp.content_type or "x-unknown"),
            "redirectURL": _header(resp.headers, "Location") or "",
            "headersSize": UNKNOWN_SIZE,
            "bodySize": resp.body_size,
        },
        "cache": {},
        # Echo measures from the request being read to the answer being built; that
        # is the server's "wait". Sending and receiving happen in waitress, unseen.
        "timings": {"blocked": -1, "dns": -1, "connect": -1, "ssl": -1, "send": 0, "wait": duration, "receive": 0},
        "_id": exchange.id,
        "_remoteAddr": req.remote_addr,
    }
    if req.bin is not None:
        # HAR's custom fields start with "_"; entries outside a bin stay as before.
        entry["_bin"] = req.bin
        entry["_binPath"] = req.bin_path
    return entry


def _log_header() -> dict[str, Any]:
    return {
        "version": HAR_VERSION,
        "creator": {"name": "Echo", "version": __version__},
        "pages": [],
        "comment": f"exported {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
    }


def har_document(exchanges: Iterable[Exchange]) -> dict[str, Any]:
    """A HAR log of `exchanges`, in the order given (oldest first reads naturally)."""
    return {"log": {**_log_header(), "entries": [har_entry(e) for e in exchanges]}}


def har_chunks(exchanges: Iterable[Exchange]) -> Iterator[bytes]:
    """`har_document` as JSON, one entry at a time.

    A full history with bodies is 1000 x up to twice --keep-body: encoded
    whole, that is a 100+ MB string per download. Encoding entry by entry
    keeps one entry in memory beyond what the store already holds.
    """
    yield b'{"log":' + dumps(_log_header())[:-1] + b',"entries":['  # the header object, left open
    for i, exchange in enumerate(exchanges):
        yield (b"," if i else b"") + _entry_json(exchange)
    yield b"]}}\n"


def _entry_json(exchange: Exchange) -> bytes:
    """One entry; a stand-in naming the exchange when it cannot be rendered.

    The 200 and the first bytes are already sent when an entry is rendered:
    an exception here would cut the file short under a success status, and
    one bad record would break every export until it left history.
    """
    try:
        return dumps(har_entry(exchange))
    except Exception:  # noqa: BLE001 - mid-stream there is no status left to report a failure with
        log.exception("HAR export could not render exchange %s", exchange.id)
        return dumps(_stand_in(exchange))


def _stand_in(exchange: Exchange) -> dict[str, Any]:
    empty = {"cookies": [], "headers": [], "headersSize": UNKNOWN_SIZE, "bodySize": UNKNOWN_SIZE, "httpVersion": ""}
    return {
        "startedDateTime": "1970-01-01T00:00:00.000Z",
        "time": 0,
        "request": {**empty, "method": "", "url": "", "queryString": []},
        "response": {**empty, "status": 0, "statusText": "", "redirectURL": "",
                     "content": {"size": 0, "mimeType": "x-unknown"}},
        "cache": {},
        "timings": {"send": 0, "wait": 0, "receive": 0},
        "comment": "this exchange could not be exported; see the server log",
        "_id": str(exchange.id),
    }
