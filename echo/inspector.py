"""The inspector: history pages, JSON API, HAR, curl, health and metrics.

A Flask blueprint mounted at --ui-prefix. It only reads the store (and clears
it on request); requests to it are never recorded. Every error it produces goes
through `api_error` (JSON) or the friendly HTML 404 page.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from . import __version__
from .curl import curl_command
from .documents import dumps, error_document, exchange_document, request_document, response_body
from .handlers import PAGE_CSP
from .har import har_document
from .history import Query, Store
from .history.base import ID_PATTERN, STATUS_FILTER
from .render import highlight_html, pretty_text, pygments_css

bp = Blueprint("inspector", __name__)

# A page of the API list; large enough for a screenful, small enough to stay fast.
DEFAULT_PAGE = 50
MAX_PAGE = 1000


def _store() -> Store:
    return current_app.extensions["echo.store"]


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(dumps(doc) + b"\n", status=status, mimetype="application/json")


def api_error(status: int, message: str, **fields: Any) -> Response:
    return json_response(error_document(message, **fields), status)


def _is_api() -> bool:
    return "/api/" in request.path or request.path.endswith(("healthz", "metrics", ".har"))


@bp.before_request
def _require_auth() -> Response | None:
    expected = current_app.config["ECHO_SETTINGS"].ui_auth
    if not expected or request.endpoint == "inspector.healthz":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    given = b""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            given = b""
    if hmac.compare_digest(given, expected.encode("utf-8")):
        return None
    response = api_error(401, "authentication required")
    response.headers["WWW-Authenticate"] = 'Basic realm="Echo inspector", charset="UTF-8"'
    return response


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _query(args: Any) -> Query | Response:
    try:
        limit = int(args.get("limit", DEFAULT_PAGE))
    except ValueError:
        return api_error(400, f"limit must be a whole number from 1 to {MAX_PAGE}", param="limit", value=args.get("limit"))
    if not 1 <= limit <= MAX_PAGE:
        return api_error(400, f"limit must be a whole number from 1 to {MAX_PAGE}", param="limit", value=args.get("limit"))
    before = args.get("before") or None
    if before is not None and not ID_PATTERN.fullmatch(before):
        return api_error(400, "before must be an exchange id", param="before", value=before)
    status = status_class = None
    raw_status = args.get("status") or None
    if raw_status is not None:
        match = STATUS_FILTER.fullmatch(raw_status.strip())
        if not match:
            return api_error(400, "status must be a code like 404 or a class like 4xx", param="status", value=raw_status)
        if match.group(1):
            status_class = int(match.group(1))
        else:
            status = int(match.group(2))
    method = (args.get("method") or "").strip() or None
    q = args.get("q") or None
    return Query(limit=limit, before=before, method=method, status=status, status_class=status_class, q=q)


def _exchange_or_404(exchange_id: str) -> Any:
    if not ID_PATTERN.fullmatch(exchange_id):
        return None
    return _store().get(exchange_id)


# ---- JSON API -------------------------------------------------------------

@bp.get("/api/exchanges")
def api_list() -> Response:
    query = _query(request.args)
    if isinstance(query, Response):
        return query
    bodies = request.args.get("bodies", "1") not in ("0", "false", "no")
    found = _store().list(query)
    doc: dict[str, Any] = {"exchanges": [exchange_document(e, bodies=bodies) for e in found]}
    if len(found) == query.limit:
        doc["next"] = found[-1].id
    return json_response(doc)


@bp.delete("/api/exchanges")
def api_clear() -> Response:
    _store().clear()
    return Response(status=204)


@bp.get("/api/exchanges/<exchange_id>")
def api_one(exchange_id: str) -> Response:
    exchange = _exchange_or_404(exchange_id)
    if exchange is None:
        return api_error(404, "no such exchange (unknown id, or pushed out of history)", id=exchange_id)
    return json_response(exchange_document(exchange))


@bp.get("/api/exchanges/<exchange_id>/curl")
def api_curl(exchange_id: str) -> Response:
    exchange = _exchange_or_404(exchange_id)
    if exchange is None:
        return api_error(404, "no such exchange (unknown id, or pushed out of history)", id=exchange_id)
    return Response(curl_command(exchange.request), mimetype="text/plain")


@bp.get("/api/exchanges.har")
def api_har() -> Response:
    settings = current_app.config["ECHO_SETTINGS"]
    exchanges = _store().list(Query(limit=max(settings.history, 1)))
    response = json_response(har_document(reversed(exchanges)))
    response.headers["Content-Disposition"] = 'attachment; filename="echo-history.har"'
    return response


@bp.get("/healthz")
def healthz() -> Response:
    health = _store().health()
    doc = {
        "status": "ok" if health.ok else "unavailable",
        "version": __version__,
        "store": {"backend": health.backend, "ok": health.ok, "detail": health.detail},
    }
    return json_response(doc, 200 if health.ok else 503)


@bp.get("/metrics")
def metrics() -> Response:
    settings = current_app.config["ECHO_SETTINGS"]
    if settings.no_metrics:
        return api_error(404, "metrics are turned off (--no-metrics)")
    recorder = current_app.extensions["echo.recorder"]
    try:
        size = _store().count()
    except Exception:  # noqa: BLE001 - a failing store is reported, not raised
        size = -1
    text = current_app.extensions["echo.metrics"].render(size, recorder.errors, recorder.dropped, __version__)
    return Response(text, mimetype="text/plain; version=0.0.4")


@bp.get("/pygments.css")
def css() -> Response:
    response = Response(pygments_css(), mimetype="text/css")
    response.headers["Cache-Control"] = "max-age=3600"
    return response


# ---- pages ----------------------------------------------------------------

@bp.get("/")
def page_list() -> str:
    query = _query(request.args)
    if isinstance(query, Response):
        query = Query()
    exchanges = [exchange_document(e, bodies=False) for e in _store().list(query)]
    return render_template("list.html", exchanges=exchanges, args=request.args)


@bp.get("/exchanges/<exchange_id>")
def page_detail(exchange_id: str) -> Any:
    exchange = _exchange_or_404(exchange_id)
    if exchange is None:
        return render_template("404.html", what=f"exchange {exchange_id}"), 404
    doc = exchange_document(exchange)
    req_type = exchange.request.header("Content-Type")
    request_body = doc["request"]["body"]
    response_view = response_body(exchange)
    return render_template(
        "detail.html",
        x=doc,
        request_body_html=_body_html(request_body, req_type),
        response_body_html=_body_html(response_view, exchange.response.content_type),
        echo_html=highlight_html(dumps(request_document(exchange.request), pretty=True).decode("utf-8"), "application/json"),
        curl=curl_command(exchange.request),
    )


def _body_html(view: dict[str, Any], content_type: str | None) -> Any:
    if view.get("text"):
        return highlight_html(pretty_text(view["text"], content_type), content_type)
    return None


def handle_http_error(exc: HTTPException) -> Any:
    """Inspector errors: JSON on API routes, a friendly page elsewhere."""
    if _is_api() or exc.code != 404:
        return api_error(exc.code or 500, exc.description or exc.name)
    return render_template("404.html", what=request.path), 404
