"""The inspector's HTML pages: the live list, one exchange's detail, the pygments stylesheet."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from flask import Response, render_template, request
from markupsafe import Markup

from ...formats.curl import curl_command
from ...formats.documents import dumps, exchange_document, request_document
from ...formats.render import highlight_html, pretty_text, pygments_css
from ...history import Query
from ..services import services
from .common import LIST_ROWS, bp, find_exchange, parse_query

# Offered by the method filter's datalist; any other token can be typed.
COMMON_METHODS = (
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "PURGE",
)
SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def human_size(size: int) -> str:
    """1234 -> '1.2 KiB', rounded half up in whole tenths: static/inspector.js
    does the same integer sums, so live rows read exactly like these."""
    if size < 1024:
        return f"{size} B"
    unit = 0
    while True:
        scale = 1024 ** (unit + 1)
        tenths = (size * 10 + scale // 2) // scale
        if tenths < 10240 or unit == len(SIZE_UNITS) - 1:
            return f"{tenths // 10}.{tenths % 10} {SIZE_UNITS[unit]}"
        unit += 1


def duration(ms: float) -> str:
    """Half up, then one decimal: static/inspector.js computes the same float sums
    ("%.1f" alone rounds 1.25 to 1.2 where JavaScript's toFixed gives 1.3)."""
    return f"{math.floor(ms * 10 + 0.5) / 10:.1f} ms"


bp.add_app_template_filter(human_size, "human_size")
bp.add_app_template_filter(duration, "duration")


@bp.get("/")
def page_list() -> str:
    # A page names a bad parameter and goes on without it rather than answering
    # a hand-edited URL with an error; each round drops one, so this ends.
    # The filter box (`f`) is the exception: a list of everything would look
    # like an answer to the filter, so a bad one shows its error instead.
    args = request.args.copy()
    problems: list[dict[str, Any]] = []
    filter_error: dict[str, Any] | None = None
    while isinstance(query := parse_query(args, default_limit=LIST_ROWS), Response):
        problem = query.get_json()
        if problem["param"] == "f":
            filter_error = problem
        else:
            problems.append(problem)
        args.poplist(problem["param"])
    exchanges: list[dict[str, Any]] = []
    more = stopped = None
    options = services().options
    if filter_error is None:
        # One more than a page says whether there is an older page.
        page = services().store.page(replace(query, limit=query.limit + 1), options.max_scan)
        exchanges = [exchange_document(e, bodies=False) for e in page.exchanges[:query.limit]]
        if len(page.exchanges) > query.limit:
            more = exchanges[-1]["id"]
        elif page.stopped:
            more = stopped = page.stopped
    filters = [(name, value) for name, value in (
        ("method", query.method), ("status", _status_arg(query)), ("q", query.q),
        ("f", query.filter.source if query.filter else None),
        ("limit", str(query.limit) if query.limit != LIST_ROWS else None),
    ) if value]
    prefix = options.prefix
    older = newest = None
    if more:
        older = prefix + "?" + urlencode([*filters, ("before", more)])
    if query.before:
        newest = prefix + ("?" + urlencode(filters) if filters else "")
    return render_template(
        "list.html", exchanges=exchanges, args=args, rows=query.limit, query=query,
        methods=COMMON_METHODS, problems=problems, older=older, newest=newest,
        # A filter naming one bin (the rows' bin links) is that bin's view.
        bin_view=query.filter.bin if query.filter is not None else None,
        filter_text=request.args.get("f", ""), filter_error=filter_error, stopped=stopped, max_scan=options.max_scan,
        today=time.strftime("%Y-%m-%d", time.gmtime()),
    )


def _status_arg(query: Query) -> str | None:
    if query.status_class is not None:
        return f"{query.status_class}xx"
    return None if query.status is None else str(query.status)


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
