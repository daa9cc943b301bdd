"""Test factories shipped with the package: records with every field filled in.

`make_request(...)`, `make_response(...)` and `make_exchange(...)` build typed
records from a few keyword overrides, so tests (ours, and those of code built
on Echo) never spell out two dozen fields by hand, and a field added to a
record is added here once.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl

from .records import Exchange, RequestRecord, ResponseRecord

# 2026-01-01T00:00:00Z: a fixed time, so documents made from factories compare equal.
FACTORY_TIME = 1_767_225_600.0
FACTORY_ID = f"{int(FACTORY_TIME * 1_000_000):016x}{'0' * 8}0000"


def make_request(
    *, method: str = "GET", path: str = "/items", query: str = "", body: bytes = b"", **fields: Any
) -> RequestRecord:
    """A request to http://127.0.0.1:8080{path}?{query} with `body`; any field can be overridden."""
    values: dict[str, Any] = {
        "id": FACTORY_ID,
        "started": FACTORY_TIME,
        "method": method,
        "url": f"http://127.0.0.1:8080{path}" + (f"?{query}" if query else ""),
        "path": path,
        "query_string": query,
        "http_version": "HTTP/1.1",
        "remote_addr": "127.0.0.1",
        "args": tuple(parse_qsl(query, keep_blank_values=True)),
        "headers": (("Host", "127.0.0.1:8080"), ("User-Agent", "test")),
        "cookies": (),
        "form": (),
        "files": (),
        "json": None,
        "body": body,
        "body_size": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "content": None,
        "content_encoding": None,
        "errors": (),
    }
    values.update(fields)
    return RequestRecord(**values)


def make_response(*, status: int = 200, body: bytes | None = None, **fields: Any) -> ResponseRecord:
    """An answer with `status`; `body=None` means the echo document (rebuilt on read)."""
    values: dict[str, Any] = {
        "status": status,
        "headers": (("Content-Type", "application/json"),),
        "body": body,
        "body_size": len(body) if body is not None else 17,
        "body_sha256": hashlib.sha256(body or b"").hexdigest(),
        "content_type": "application/json",
    }
    values.update(fields)
    return ResponseRecord(**values)


def make_exchange(
    request: RequestRecord | None = None,
    response: ResponseRecord | None = None,
    *,
    controls: dict[str, Any] | None = None,
    duration_ms: float = 1.5,
    rule: dict[str, Any] | None = None,
    **request_fields: Any,
) -> Exchange:
    """An exchange of `request` (or one made from `request_fields`) and `response`."""
    request = request or make_request(**request_fields)
    response = response or make_response(headers=(("Content-Type", "application/json"), ("X-Echo-Id", request.id)))
    if controls is None:
        controls = {"status": response.status, "headers": [], "cookies": [], "delay": 0}
    return Exchange(request=request, response=response, controls=controls, duration_ms=duration_ms, rule=rule)
