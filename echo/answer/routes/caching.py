"""httpbin's caching family: /cache, /cache/{n}, /etag/{etag}.

The 200s are /get's document with the caching headers httpbin adds; the
conditional answers (304, 412) have no body, as httpbin's have none.
"""

from __future__ import annotations

import re
import uuid
from email.utils import formatdate

from ...model.records import RequestRecord
from ..answer import Answer
from .arguments import bad, path_int, refusing
from .common import body_answer, json_answer, request_dict
from .table import RouteLimits, route

# httpbin's parse_multi_value_header: each comma-separated part, weak prefix and quotes dropped.
_ENTITY_TAG = re.compile(r'\s*(W/)?"?([^"]*)"?\s*')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _get(record: RequestRecord, headers: list[tuple[str, str]]) -> Answer:
    return json_answer(request_dict(record, "url", "args", "headers", "origin"), headers=headers)


@route("/cache", {"GET"})
def cache(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    # httpbin's test: a non-empty If-Modified-Since, or an If-None-Match at all.
    if record.header("If-Modified-Since") or record.header("If-None-Match") is not None:
        return Answer(304)
    return _get(record, [("Last-Modified", formatdate(usegmt=True)), ("ETag", uuid.uuid4().hex)])


@route("/cache/{value}", {"GET"})
@refusing
def cache_control(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _get(record, [("Cache-Control", f"public, max-age={path_int(params, 'value')}")])


def entity_tags(header: str | None) -> list[str]:
    tags = []
    for part in (header or "").split(","):
        match = _ENTITY_TAG.search(part)
        if match is not None:
            tags.append(match.group(2))
    return tags if header else []


@route("/etag/{etag}", {"GET"})
@refusing
def etag(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    tag = params["etag"]
    if _CONTROL.search(tag):
        # It goes back in a header line: %0D%0A in the path must not end that line.
        raise bad("etag must not hold control characters", "etag", tag)
    if_none_match = entity_tags(record.header("If-None-Match"))
    if_match = entity_tags(record.header("If-Match"))
    if if_none_match:
        if tag in if_none_match or "*" in if_none_match:
            return Answer(304, [("ETag", tag)])
    elif if_match and tag not in if_match and "*" not in if_match:
        return body_answer(412, b"", "text/html; charset=utf-8")
    return _get(record, [("ETag", tag)])
