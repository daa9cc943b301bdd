"""The inspector's HTML pages: the live list, one exchange's detail, the pygments stylesheet."""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, request
from markupsafe import Markup

from ...formats.curl import curl_command
from ...formats.documents import dumps, exchange_document, request_document
from ...formats.render import highlight_html, pretty_text, pygments_css
from ...history import Query
from ..services import services
from .common import LIST_ROWS, bp, find_exchange, parse_query


@bp.get("/")
def page_list() -> str:
    query = parse_query(request.args, default_limit=LIST_ROWS)
    if isinstance(query, Response):
        query = Query(limit=LIST_ROWS)  # a page shows everything rather than an error for a hand-edited URL
    exchanges = [exchange_document(e, bodies=False) for e in services().store.list(query)]
    return render_template("list.html", exchanges=exchanges, args=request.args, rows=LIST_ROWS)


@bp.get("/exchanges/<exchange_id>")
def page_detail(exchange_id: str) -> Any:
    exchange = find_exchange(exchange_id)
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


@bp.get("/pygments.css")
def css() -> Response:
    response = Response(pygments_css(), mimetype="text/css")
    response.headers["Cache-Control"] = "max-age=3600"
    return response


def _body_html(view: dict[str, Any], content_type: str | None) -> Markup | None:
    if view.get("text"):
        return highlight_html(pretty_text(view["text"], content_type), content_type)
    return None
