"""httpbin's request inspection family: what the client sent, in httpbin's shapes.

/get, /post, /put, /patch, /delete, /anything[/...], /headers, /ip, /user-agent.
"""

from __future__ import annotations

from ...model.records import RequestRecord
from ..answer import Answer
from .common import headers_of, json_answer, origin_of, request_dict
from .table import RouteLimits, route

_BODY_KEYS = ("url", "args", "form", "data", "origin", "headers", "files", "json")


@route("/get", {"GET"})
def get(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer(request_dict(record, "url", "args", "headers", "origin"))


def _with_body(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer(request_dict(record, *_BODY_KEYS))


for _method in ("post", "put", "patch", "delete"):
    route(f"/{_method}", {_method.upper()})(_with_body)


@route("/anything")
@route("/anything/{rest:path}")
def anything(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer(request_dict(record, *_BODY_KEYS, "method"))


@route("/headers", {"GET"})
def headers(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    show_env = any(name == "show_env" for name, _ in record.args)
    return json_answer({"headers": headers_of(record, show_env)})


@route("/ip", {"GET"})
def ip(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer({"origin": origin_of(record)})


@route("/user-agent", {"GET"})
def user_agent(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return json_answer({"user-agent": record.header("User-Agent")})
