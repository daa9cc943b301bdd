"""The inspector: history pages, JSON API, HAR, curl, health and metrics.

A Flask blueprint mounted at --ui-prefix. It only reads the store (and clears
it on request); requests to it are never recorded, because the WSGI dispatch in
`create_app` sends the whole prefix here and only the echo handler records.

Every error it produces goes through `api_error` (one JSON shape) or, for a
page that does not exist, the friendly HTML 404 page. A store that fails
(`StoreError`) becomes a 503 in that same JSON shape, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from typing import Any, Iterator

from flask import Blueprint, Response, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from . import __version__
from .curl import curl_command
from .documents import dumps, error_document, exchange_document, request_document
from .handlers import PAGE_CSP
from .har import har_chunks
from .history import Query, Store, StoreError
from .history.base import ID_PATTERN, STATUS_FILTER
from .render import highlight_html, pretty_text, pygments_css

log = logging.getLogger("echo")

bp = Blueprint("inspector", __name__)

# A page of the API list; large enough for a screenful, small enough to stay fast.
DEFAULT_PAGE = 50
# The largest page the API hands out in one answer: 1000 exchanges without
# bodies is about 1 MB of JSON; with bodies it can reach --keep-body x 2 each.
MAX_PAGE = 1000
# Rows the HTML list shows (and its live refresh asks for): a few minutes of a
# busy test run, small enough for the browser to redraw every second.
LIST_ROWS = 200

# Routes that stay open under --ui-auth. Health answers container and
# Kubernetes probes, which carry no credentials; the static assets and the
# pygments stylesheet hold no request data and style the echo's HTML page,
# which is served outside the inspector and so without credentials.
OPEN_ENDPOINTS = frozenset({"inspector.healthz", "inspector.css", "static"})

NOT_FOUND = "no such exchange (unknown id, or pushed out of history)"


def _store() -> Store:
    return current_app.extensions["echo.store"]


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(dumps(doc) + b"\n", status=status, mimetype="application/json")


def api_error(status: int, message: str, **fields: Any) -> Response:
    """The one error shape of the inspector: {"error": "...", ...details}."""
    return json_response(error_document(message, **fields), status)


def _relative_path() -> str:
    """The request path below --ui-prefix ('api/exchanges', 'healthz', '')."""
    prefix = current_app.config["ECHO_SETTINGS"].ui_prefix
    path = request.path
    return path[len(prefix):] if path.startswith(prefix) else ""


def _is_api() -> bool:
    below = _relative_path()
    return below.startswith("api/") or below in ("api", "healthz", "metrics")


def credentials_match(header: str, expected: str) -> bool:
    """HTTP Basic credentials in `header` equal USER:PASS, compared in constant time.

    Both sides are hashed first so that the comparison takes as long for a
    guess of the wrong length as for one of the right length.
    """
    scheme, _, encoded = header.strip().partition(" ")
    given = b""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected.encode("utf-8")).digest())


@bp.before_app_request
def _require_auth() -> Response | None:
    # An app-wide hook, not a blueprint one: the Flask app serves only the
    # inspector prefix, and unknown paths under it must not answer 404 (which
    # would tell a stranger what exists) before the credentials are checked.
    expected = current_app.config["ECHO_SETTINGS"].ui_auth
    if not expected or request.endpoint in OPEN_ENDPOINTS:
        return None
    if credentials_match(request.headers.get("Authorization", ""), expected):
        return None
    response = api_error(401, "authentication required: this inspector needs the user and password of --ui-auth")
    response.headers["WWW-Authenticate"] = 'Basic realm="Echo inspector", charset="UTF-8"'
    return response


@bp.after_app_request
def _page_headers(response: Response) -> Response:
    # App-wide so that 404s, 401s and static files carry them too.
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.app_errorhandler(StoreError)
def _store_failed(exc: StoreError) -> Response:
    log.warning("inspector: history store failed on %s %s: %s", request.method, request.path, exc)
    return api_error(503, "the history store is unavailable; the echo keeps answering", detail=str(exc))


def _bad_param(param: str, value: Any, message: str) -> Response:
    return api_error(400, message, param=param, value=value)


def parse_query(args: Any, default_limit: int = DEFAULT_PAGE) -> Query | Response:
    """The API's query parameters -> a store Query, or a 400 naming the bad one."""
    raw_limit = args.get("limit")
    limit_message = f"limit must be a whole number from 1 to {MAX_PAGE}"
    if raw_limit is None or raw_limit == "":
        limit = default_limit
    else:
        try:
            limit = int(raw_limit)
        except ValueError:
            return _bad_param("limit", raw_limit, limit_message)
        if not 1 <= limit <= MAX_PAGE:
            return _bad_param("limit", raw_limit, limit_message)
    before = args.get("before") or None
    if before is not None and not ID_PATTERN.fullmatch(before):
        return _bad_param("before", before, "before must be an exchange id (28 lowercase hex digits)")
    status = status_class = None
    raw_status = (args.get("status") or "").strip()
    if raw_status:
        match = STATUS_FILTER.fullmatch(raw_status)
        if not match:
            return _bad_param("status", raw_status, "status must be a code like 404 or a class like 4xx (1xx to 5xx)")
        if match.group(1):
            status_class = int(match.group(1))
        else:
            status = int(match.group(2))
    method = (args.get("method") or "").strip() or None
    q = args.get("q") or None
    return Query(limit=limit, before=before, method=method, status=status, status_class=status_class, q=q)


def _exchange(exchange_id: str) -> Any:
    if not ID_PATTERN.fullmatch(exchange_id):
        return None
    return _store().get(exchange_id)


def _wants_bodies(args: Any) -> bool:
    return args.get("bodies", "1").strip().lower() not in ("0", "false", "no", "off")


# ---- JSON API -------------------------------------------------------------

@bp.get("/api/exchanges")
def api_list() -> Response:
    query = parse_query(request.args)
    if isinstance(query, Response):
        return query
    found = _store().list(query)
    bodies = _wants_bodies(request.args)
    # A full page: there may be more, and this is where the next one starts.
    next_id = found[-1].id if len(found) == query.limit else None

    def chunks() -> Iterator[bytes]:
        # One exchange at a time: a page of 1000 with bodies can be 100+ MB as one string.
        yield b'{"exchanges":['
        for i, exchange in enumerate(found):
            yield (b"," if i else b"") + dumps(exchange_document(exchange, bodies=bodies))
        yield b"]" + (b',"next":' + dumps(next_id) if next_id else b"") + b"}\n"

    return Response(chunks(), mimetype="application/json")


@bp.delete("/api/exchanges")
def api_clear() -> Response:
    _store().clear()
    return Response(status=204)


@bp.get("/api/exchanges/<exchange_id>")
def api_one(exchange_id: str) -> Response:
    exchange = _exchange(exchange_id)
    if exchange is None:
        return api_error(404, NOT_FOUND, id=exchange_id)
    return json_response(exchange_document(exchange, bodies=_wants_bodies(request.args)))


@bp.get("/api/exchanges/<exchange_id>/curl")
def api_curl(exchange_id: str) -> Response:
    exchange = _exchange(exchange_id)
    if exchange is None:
        return api_error(404, NOT_FOUND, id=exchange_id)
    return Response(curl_command(exchange.request), mimetype="text/plain")


@bp.get("/api/exchanges.har")
def api_har() -> Response:
    settings = current_app.config["ECHO_SETTINGS"]
    exchanges = _store().list(Query(limit=max(settings.history, 1)))  # a failing store fails here, before streaming
    response = Response(har_chunks(reversed(exchanges)), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="echo-history.har"'
    return response


@bp.get("/healthz")
def healthz() -> Response:
    try:
        health = _store().health()
        ok, backend, detail = health.ok, health.backend, health.detail
    except StoreError as exc:  # a backend that raises instead of reporting is still "down", not a 500
        ok, backend, detail = False, _store().backend, str(exc)
    doc = {
        "status": "ok" if ok else "unavailable",
        "version": __version__,
        "store": {"backend": backend, "ok": ok, "detail": detail},
    }
    return json_response(doc, 200 if ok else 503)


@bp.get("/metrics")
def metrics() -> Response:
    settings = current_app.config["ECHO_SETTINGS"]
    if settings.no_metrics:
        return api_error(404, "metrics are turned off (--no-metrics)")
    recorder = current_app.extensions["echo.recorder"]
    try:
        size = _store().count()
    except StoreError:
        size = -1  # metrics must answer while the store is down; -1 says "unknown"
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
    query = parse_query(request.args, default_limit=LIST_ROWS)
    if isinstance(query, Response):
        query = Query(limit=LIST_ROWS)  # a page shows everything rather than an error for a hand-edited URL
    exchanges = [exchange_document(e, bodies=False) for e in _store().list(query)]
    return render_template("list.html", exchanges=exchanges, args=request.args, rows=LIST_ROWS)


@bp.get("/exchanges/<exchange_id>")
def page_detail(exchange_id: str) -> Any:
    exchange = _exchange(exchange_id)
    if exchange is None:
        return render_template("404.html", what=f"exchange {exchange_id}"), 404
    doc = exchange_document(exchange)
    request_type = exchange.request.header("Content-Type")
    response_type = exchange.response.content_type
    return render_template(
        "detail.html",
        x=doc,
        request_type=request_type,
        response_type=response_type,
        request_body_html=_body_html(doc["request"]["body"], request_type),
        response_body_html=_body_html(doc["response"]["body"], response_type),
        echo_html=highlight_html(dumps(request_document(exchange.request), pretty=True).decode("utf-8"), "application/json"),
        curl=curl_command(exchange.request),
    )


def _body_html(view: dict[str, Any], content_type: str | None) -> Any:
    if view.get("text"):
        return highlight_html(pretty_text(view["text"], content_type), content_type)
    return None


def handle_http_error(exc: HTTPException) -> Any:
    """Inspector errors: JSON on API routes, a friendly page for a page that does not exist."""
    if exc.code == 404 and not _is_api():
        return render_template("404.html", what=request.path), 404
    if exc.code == 404:
        return api_error(404, "no such API route", path=request.path)
    response = api_error(exc.code or 500, exc.description or exc.name)
    # Keep what the exception adds besides its own body type (Allow on a 405).
    response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
    return response
