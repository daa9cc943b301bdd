"""HAR: the history as an HTTP Archive 1.2 document browsers' dev tools import."""

from __future__ import annotations

from typing import Any, Iterable

from . import __version__
from .documents import iso_time, request_document, response_body
from .handlers import status_line
from .records import Exchange


def _pairs(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _content(view: dict[str, Any], mime: str) -> dict[str, Any]:
    content: dict[str, Any] = {"size": view.get("decoded_size", view["size"]), "mimeType": mime}
    if view.get("text") is not None:
        content["text"] = view["text"]
    elif view.get("base64") is not None:
        content["text"] = view["base64"]
        content["encoding"] = "base64"
    return content


def har_entry(exchange: Exchange) -> dict[str, Any]:
    req = exchange.request
    doc = request_document(req)
    mime = req.header("Content-Type") or ""
    request: dict[str, Any] = {
        "method": req.method,
        "url": req.url,
        "httpVersion": req.http_version,
        "cookies": _pairs(req.cookies),
        "headers": _pairs(req.headers),
        "queryString": _pairs(req.args),
        "headersSize": -1,
        "bodySize": req.body_size,
    }
    if req.body_size:
        post: dict[str, Any] = {"mimeType": mime}
        body = doc["body"]
        if body["text"] is not None:
            post["text"] = body["text"]
        else:
            # HAR 1.2 has no encoding field on postData; base64 text is the common convention.
            post["text"] = body["base64"]
            post["comment"] = "base64-encoded body"
        if req.form:
            post["params"] = _pairs(req.form)
        request["postData"] = post
    resp = exchange.response
    view = response_body(exchange)
    location = next((v for n, v in resp.headers if n.lower() == "location"), "")
    return {
        "startedDateTime": iso_time(req.started),
        "time": round(exchange.duration_ms, 3),
        "request": request,
        "response": {
            "status": resp.status,
            "statusText": status_line(resp.status).split(" ", 1)[1],
            "httpVersion": req.http_version,
            "cookies": [],
            "headers": _pairs(resp.headers),
            "content": _content(view, resp.content_type),
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": resp.body_size,
        },
        "cache": {},
        "timings": {"send": 0, "wait": round(exchange.duration_ms, 3), "receive": 0},
        "_id": exchange.id,
    }


def har_document(exchanges: Iterable[Exchange]) -> dict[str, Any]:
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "Echo", "version": __version__},
            "pages": [],
            "entries": [har_entry(e) for e in exchanges],
        }
    }
