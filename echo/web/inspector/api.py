"""The inspector's JSON API: list, one exchange, clear, curl and HAR exports."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request

from ...formats.curl import curl_command
from ...formats.documents import dumps, exchange_document
from ...formats.har import har_chunks
from ...model.filter import BIN_PATTERN
from ..services import services
from .common import NOT_FOUND, api_error, bad_param, bp, find_exchange, json_response, parse_query, wants_bodies


@bp.get("/api/exchanges")
def api_list() -> Response:
    query = parse_query(request.args)
    if isinstance(query, Response):
        return query
    page = services().store.page(query, services().options.max_scan)
    found = page.exchanges
    bodies = wants_bodies(request.args)
    # A full page: there may be more, and this is where the next one starts.
    # A scan cut short by --max-scan: what it found, and where to go on from.
    next_id = found[-1].id if len(found) == query.limit else page.stopped
    tail = b',"partial":true,"scanned":' + dumps(page.scanned) if page.stopped and len(found) < query.limit else b""

    def chunks() -> Iterator[bytes]:
        # One exchange at a time: a page of 1000 with bodies can be 100+ MB as one string.
        yield b'{"exchanges":['
        for i, exchange in enumerate(found):
            yield (b"," if i else b"") + dumps(exchange_document(exchange, bodies=bodies))
        yield b"]" + (b',"next":' + dumps(next_id) if next_id else b"") + tail + b"}\n"

    return Response(chunks(), mimetype="application/json")


@bp.delete("/api/exchanges")
def api_clear() -> Response:
    name = request.args.get("bin")
    if name is not None and not BIN_PATTERN.fullmatch(name):
        # An empty or bad name clears nothing: a typo must not empty everyone's history.
        return bad_param("bin", name, "bin must be a bin name: 1 to 64 of A-Z a-z 0-9 _ -")
    services().store.clear(name)
    return Response(status=204)


@bp.get("/api/exchanges/<exchange_id>")
def api_one(exchange_id: str) -> Response:
    exchange = find_exchange(exchange_id)
    if exchange is None:
        return api_error(404, NOT_FOUND, id=exchange_id)
    return json_response(exchange_document(exchange, bodies=wants_bodies(request.args)))


@bp.get("/api/exchanges/<exchange_id>/curl")
def api_curl(exchange_id: str) -> Response:
    exchange = find_exchange(exchange_id)
    if exchange is None:
        return api_error(404, NOT_FOUND, id=exchange_id)
    return Response(curl_command(exchange.request), mimetype="text/plain")


@bp.get("/api/exchanges.har")
def api_har() -> Response:
    found = services()
    # The list's parameters (f, method, status, q, before, limit), checked
    # before anything streams; by default the whole history. An export walks
    # the history once, so --max-scan (which bounds the repeated list and
    # page requests) does not cut it short.
    query = parse_query(request.args, default_limit=max(found.options.history, 1))
    if isinstance(query, Response):
        return query
    exchanges = found.store.list(query)  # a failing store fails here, before streaming
    response = Response(har_chunks(reversed(exchanges)), mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="echo-history.har"'
    return response
