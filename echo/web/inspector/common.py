"""What every inspector module shares: the blueprint, JSON answers, the one error shape,
the API's query parameters and exchange look-up."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from werkzeug.datastructures import MultiDict

from ...formats.documents import dumps, error_document
from ...history import DEFAULT_PAGE, Query
from ...history.base import STATUS_FILTER
from ...model.filter import Filter, FilterError, parse
from ...model.http import is_token
from ...model.records import ID_LENGTH, ID_PATTERN, Exchange
from ..services import services

bp = Blueprint("inspector", __name__)

# The largest page the API hands out in one answer: 1000 exchanges without
# bodies is about 1 MB of JSON; with bodies it can reach --keep-body x 2 each.
MAX_PAGE = 1000
# Rows the HTML list shows (and its live refresh asks for, read from the page):
# a few minutes of a busy test run, small enough for the browser to redraw every second.
LIST_ROWS = 200

# Echo records any method token (PROPFIND, PURGE, ...), so the filter takes any.
METHOD_MESSAGE = "method must be an HTTP method (a token of letters, digits and !#$%&'*+-.^_`|~)"

NOT_FOUND = "no such exchange (unknown id, or pushed out of history)"


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(dumps(doc) + b"\n", status=status, mimetype="application/json")


def api_error(status: int, message: str, **fields: Any) -> Response:
    """The one error shape of the inspector: {"error": "...", ...details}."""
    return json_response(error_document(message, **fields), status)


def bad_param(param: str, value: Any, message: str) -> Response:
    return api_error(400, message, param=param, value=value)


def relative_path() -> str:
    """The request path below --ui-prefix ('api/exchanges', 'healthz', '')."""
    prefix = services().options.prefix
    path = request.path
    return path[len(prefix):] if path.startswith(prefix) else ""


def is_api() -> bool:
    below = relative_path()
    return below.startswith("api/") or below in ("api", "livez", "healthz", "metrics")


def parse_query(args: MultiDict[str, str], default_limit: int = DEFAULT_PAGE) -> Query | Response:
    """The API's query parameters -> a store Query, or a 400 naming the bad one."""
    raw_limit = args.get("limit")
    limit_message = f"limit must be a whole number from 1 to {MAX_PAGE}"
    if raw_limit is None or raw_limit == "":
        limit = default_limit
    else:
        try:
            limit = int(raw_limit)
        except ValueError:
            return bad_param("limit", raw_limit, limit_message)
        if not 1 <= limit <= MAX_PAGE:
            return bad_param("limit", raw_limit, limit_message)
    before = args.get("before") or None
    if before is not None and not ID_PATTERN.fullmatch(before):
        return bad_param("before", before, f"before must be an exchange id ({ID_LENGTH} lowercase hex digits)")
    status = status_class = None
    raw_status = (args.get("status") or "").strip()
    if raw_status:
        match = STATUS_FILTER.fullmatch(raw_status)
        if not match:
            return bad_param("status", raw_status, "status must be a code like 404 or a class like 4xx (1xx to 5xx)")
        if match.group(1):
            status_class = int(match.group(1))
        else:
            status = int(match.group(2))
    method = (args.get("method") or "").strip().upper() or None
    if method is not None and not is_token(method):
        return bad_param("method", method, METHOD_MESSAGE)
    q = args.get("q") or None
    found = parse_filter(args)
    if isinstance(found, Response):
        return found
    return Query(limit=limit, before=before, method=method, status=status, status_class=status_class, q=q,
                 filter=found)


def parse_filter(args: MultiDict[str, str]) -> Filter | None | Response:
    """The `f` parameter parsed (None when absent or blank), or a 400 that points at the fault."""
    text = args.get("f", "")
    if not text.strip():
        return None
    try:
        return parse(text)
    except FilterError as exc:
        return api_error(400, f"bad filter: {exc.message}", param="f", value=text, position=exc.position)


def find_exchange(exchange_id: str) -> Exchange | None:
    if not ID_PATTERN.fullmatch(exchange_id):
        return None
    return services().store.get(exchange_id)


def wants_bodies(args: MultiDict[str, str]) -> bool:
    return args.get("bodies", "1").strip().lower() not in ("0", "false", "no", "off")
