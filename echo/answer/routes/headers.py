"""httpbin's /response-headers: every query arg becomes a response header, and the body lists them.

The body is httpbin's: each header of the answer by name (a list when it
occurs more than once), Content-Length included, which is why it is found
as a fixed point: the length is written until the body holding it stops
changing. Every arg passes the checks of Echo's `_header` control.
"""

from __future__ import annotations

import json

from ...model.http import JSON_TYPE
from ...model.records import RequestRecord
from ..answer import Answer, Headers
from .common import body_answer, refused
from .status import header_problem
from .table import RouteLimits, route


def _listed(headers: Headers) -> dict[str, str | list[str]]:
    # httpbin: for each name as spelled, every value of that name in any case.
    out: dict[str, str | list[str]] = {}
    for name, _ in headers:
        values = [value for other, value in headers if other.lower() == name.lower()]
        out[name] = values[0] if len(values) == 1 else values
    return out


def _jsonify(doc: object) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


@route("/response-headers", {"GET", "POST"})
def response_headers(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    given: Headers = []
    for name, value in record.args:
        problem = header_problem(name, value)
        if problem:
            return refused(400, f"{name}: {problem}", param=name, value=value)
        given.append((name, value))
    # A caller's Content-Type replaces the JSON one (httpbin sends both, and a
    # client then cannot know which it has).
    content_type = next((value for name, value in given if name.lower() == "content-type"), JSON_TYPE)
    extra = [(name, value) for name, value in given if name.lower() != "content-type"]
    body = b""
    for _ in range(10):  # the length has at most a few more digits each round
        listed = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        then, body = body, _jsonify(_listed(listed))
        if then == body:
            break
    return body_answer(200, body, content_type, extra)
