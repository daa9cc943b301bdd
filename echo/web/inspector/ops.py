"""Operations routes: liveness for probes, health for monitoring, Prometheus metrics.

`livez` is 200 whenever the process serves requests: the echo works without
its history store, so a Redis outage must neither restart pods (liveness) nor
take every pod out of its Service at once (readiness). `healthz` adds the
store's state and says 503 while it is unreachable, for monitoring and alerts:
"degraded" with the count of exchanges buffered for a store behind the
write-behind queue (they are written when it is back), "unavailable" for one
written directly.
"""

from __future__ import annotations

from flask import Response

from ...config import flag
from ...history import StoreError
from ...version import __version__
from ..services import services
from .common import api_error, bp, json_response


@bp.get("/livez")
def livez() -> Response:
    # Answered by a worker thread like any request, so a wedged server fails it;
    # it touches nothing else (no store call), so nothing outside the process does.
    return json_response({"status": "ok", "version": __version__}, 200)


@bp.get("/healthz")
def healthz() -> Response:
    store = services().store
    buffered: int | None = None
    try:
        health = store.health()
        ok, backend, detail, buffered = health.ok, health.backend, health.detail, health.buffered
    except StoreError as exc:  # a backend that raises instead of reporting is still "down", not a 500
        ok, backend, detail = False, store.backend, str(exc)
    doc: dict[str, object] = {
        "status": "ok" if ok else "unavailable" if buffered is None else "degraded",
        "version": __version__,
    }
    if buffered is not None:
        doc["buffered"] = buffered
    doc["store"] = {"backend": backend, "ok": ok, "detail": detail}
    return json_response(doc, 200 if ok else 503)


@bp.get("/metrics")
def metrics() -> Response:
    found = services()
    if not found.options.metrics:
        return api_error(404, f"metrics are turned off ({flag('no_metrics')})")
    try:
        size = found.store.count()
    except StoreError:
        size = -1  # metrics must answer while the store is down; -1 says "unknown"
    writes = found.recorder.write_stats()
    text = found.metrics.render(size, writes.errors, writes.dropped, __version__, buffered=writes.buffered)
    return Response(text, mimetype="text/plain; version=0.0.4")
