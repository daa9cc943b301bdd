"""httpbin's cookie family: what the client's cookies are, and setting and deleting them.

/cookies, /cookies/set?name=value, /cookies/set/{name}/{value}, /cookies/delete?name.
Every Set-Cookie passes the RFC 6265 checks Echo's `_cookie` control makes:
httpbin (werkzeug) quotes a value with a space or ";" and sends a name with a
space as it is, which breaks the header for many clients; here both are a 400.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ...model.http import TOKEN
from ...model.records import Pairs, RequestRecord
from ..answer import Answer
from ..controls import ControlError, plan
from .common import json_answer, refused
from .status import redirect_answer
from .table import RouteLimits, route

# Cookies httpbin's hosting added (analytics), left out of /cookies unless ?show_env.
ENV_COOKIES = frozenset({
    "_gauges_unique", "_gauges_unique_year", "_gauges_unique_month", "_gauges_unique_day",
    "_gauges_unique_hour", "__utmz", "__utma", "__utmb",
})
_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
_FORBIDDEN_VALUE = (
    "the cookie value holds a character RFC 6265 forbids (space, DQUOTE, comma, semicolon, backslash or non-ASCII)"
)


def _first_of_each(pairs: Pairs) -> dict[str, str]:
    # httpbin reads dict(request.args.items()): the first value of each name.
    out: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


def cookie_problem(name: str, value: str) -> str | None:
    """Why `name=value` cannot be a Set-Cookie, or None."""
    if not TOKEN.fullmatch(name):
        return f"{name!r} is not a valid cookie name (RFC 6265: an HTTP token)"
    # ";" would start an attribute and edge spaces would be trimmed by the
    # control's parser: refused here, before the pair reaches it.
    if ";" in value or value != value.strip():
        return _FORBIDDEN_VALUE
    decided = plan((("_cookie", f"{name}={value}"),), ())
    return decided.message if isinstance(decided, ControlError) else None


def _attributes(record: RequestRecord) -> str:
    # httpbin adds Secure when it was reached over https.
    return "; Path=/" + ("; Secure" if urlsplit(record.url).scheme == "https" else "")


def _set(record: RequestRecord, cookies: dict[str, str], params: dict[str, str] | None = None) -> Answer:
    lines = []
    for name, value in cookies.items():
        problem = cookie_problem(name, value)
        if problem:
            if params is not None:  # from the path: name which part is at fault
                at_fault = "name" if not TOKEN.fullmatch(name) else "value"
                return refused(400, problem, param=at_fault, value=params[at_fault])
            return refused(400, problem, param=name, value=value)
        lines.append(("Set-Cookie", f"{name}={value}{_attributes(record)}"))
    return redirect_answer("/cookies", headers=lines)


@route("/cookies", {"GET"})
def cookies(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    show_env = any(name == "show_env" for name, _ in record.args)
    kept = {name: value for name, value in _first_of_each(record.cookies).items()
            if show_env or name not in ENV_COOKIES}
    return json_answer({"cookies": kept})


@route("/cookies/set", {"GET"})
def set_cookies(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _set(record, _first_of_each(record.args))


@route("/cookies/set/{name}/{value}", {"GET"})
def set_cookie(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _set(record, {params["name"]: params["value"]}, params)


@route("/cookies/delete", {"GET"})
def delete_cookies(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    lines = []
    for name in _first_of_each(record.args):
        if not TOKEN.fullmatch(name):
            return refused(400, f"{name!r} is not a valid cookie name (RFC 6265: an HTTP token)", param=name, value=name)
        # werkzeug's delete_cookie: empty, expired in 1970, Max-Age=0, on the same Path.
        lines.append(("Set-Cookie", f"{name}=; Expires={_EPOCH}; Max-Age=0{_attributes(record)}"))
    return redirect_answer("/cookies", headers=lines)
