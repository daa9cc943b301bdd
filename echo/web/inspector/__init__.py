"""The inspector: a Flask blueprint mounted at --ui-prefix.

`api` (JSON API and exports), `pages` (HTML), `ops` (health, metrics) and
`auth` (--ui-auth) register their routes on the one blueprint of `common`.
It only reads the store (and clears it on request); requests to it are never
recorded, because the WSGI dispatch sends the whole prefix here and only the
echo handler records.

Every error it produces goes through `api_error` (one JSON shape) or, for a
page that does not exist, the friendly HTML 404 page. A store that fails
(`StoreError`) becomes a 503, never a 500: that same JSON shape on the API, a
friendly HTML page in the same style as the 404 for pages a browser opens.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template, request
from werkzeug.exceptions import HTTPException

from ...history import StoreError
from . import api, auth, ops, pages, rules, waits  # noqa: F401 - each registers its routes on bp
from .common import api_error, bp, is_api

__all__ = ["bp", "handle_http_error"]

log = logging.getLogger("echo")


@bp.app_errorhandler(StoreError)
def _store_failed(exc: StoreError) -> Any:
    log.warning("inspector: history store failed on %s %s: %s", request.method, request.path, exc)
    if not is_api():
        return render_template("unavailable.html", detail=str(exc)), 503
    return api_error(503, "the history store is unavailable; the echo keeps answering", detail=str(exc))


def handle_http_error(exc: HTTPException) -> Any:
    """Inspector errors: JSON on API routes, a friendly page for a page that does not exist."""
    if exc.code == 404 and not is_api():
        return render_template("404.html", what=request.path), 404
    if exc.code == 404:
        return api_error(404, "no such API route", path=request.path)
    response = api_error(exc.code or 500, exc.description or exc.name)
    # Keep what the exception adds besides its own body type (Allow on a 405).
    response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
    return response
