"""Security headers on everything the Flask side serves (pages, API, static, errors)."""

from __future__ import annotations

from flask import Flask, Response

from ..model.http import PAGE_CSP


def add_page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def install(app: Flask) -> None:
    # App-wide, not on the blueprint, so that 404s, 401s and static files carry them too.
    app.after_request(add_page_headers)
