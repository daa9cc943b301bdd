"""httpbin's status and redirect family: the status you ask for, and redirect chains.

/status/{codes}, /redirect/{n}, /relative-redirect/{n}, /absolute-redirect/{n},
/redirect-to. Also the small answers the other families of this room share:
an error in Echo's one shape, an over-the-limit error, and a redirect.
"""

from __future__ import annotations

import html
import json
import math
import random
import re
from urllib.parse import urlsplit

from ...config import flag
from ...model.http import HTML_TYPE, JSON_TYPE, TOKEN
from ...model.records import RequestRecord
from ..answer import Answer, Headers
from ..controls import Chooser, ControlError, plan
from .common import body_answer, refused
from .table import ANY_METHOD, RouteLimits, route

# httpbin's methods for /status and /redirect-to: all but OPTIONS (and HEAD, added with GET).
_STATUS_METHODS = ANY_METHOD - {"OPTIONS"}
# The codes /status answers: httpbin 0.10 takes 100-999, but only 100-599
# are HTTP's (RFC 9110 15); and of 1xx only 101, since waitress cannot send
# an interim answer as the final one (SPEC section 8).
STATUS_RANGE = (100, 599)
REDIRECT_LOCATION = "/redirect/1"
# Few ASCII digits: int() also reads "+2_00" and Arabic-Indic digits, and
# refuses over 4300 digits with an error of its own.
_CODE = re.compile(r"\s*([0-9]{1,9})\s*")
_WEIGHT = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]*)?|\.[0-9]+)\s*")
_N = re.compile(r"[0-9]{1,12}")
# Hop-by-hop names Echo's framing list leaves out but PEP 3333 keeps from an
# app (waitress answers 500 for them): one connection's business, not a route's.
_HOP_BY_HOP = frozenset({"proxy-authenticate", "proxy-authorization", "trailers"})

_ACCEPTED_MEDIA_TYPES = ["image/webp", "image/svg+xml", "image/jpeg", "image/png", "image/*"]
_TEAPOT = r'''
    -=[ teapot ]=-

       _...._
     .'  _ _ `.
    | ."` ^ `". _,
    \_;`"---"`|//
      |       ;/
      \_     _/
        `"""`
'''
_TEXT_TYPE = "text/plain; charset=utf-8"


def over_limit(param: str, value: int, limit: int, setting: str) -> Answer:
    """SPEC 8: a size, duration or count over its setting is refused, never clamped."""
    return refused(400, f"{param} {value} is over the limit of {limit} ({flag(setting)})",
                   param=param, value=value, limit=limit, setting=flag(setting))


def header_problem(name: str, value: str) -> str | None:
    """What is wrong with sending this header line, by the checks Echo's `_header` control makes
    (CR/LF/NUL and other controls, framing and hop-by-hop names, X-Echo-*, Set-Cookie's RFC 6265)."""
    if not TOKEN.fullmatch(name):
        # Checked first: the control reads "Name: Value" up to the first ":".
        return f"{name!r} is not a valid header name (an HTTP token: letters, digits and !#$%&'*+.^_`|~-)"
    if name.lower() in _HOP_BY_HOP:
        return f"{name} belongs to one connection (hop-by-hop) and cannot be set by a route"
    decided = plan((("_header", f"{name}: {value}"),), ())
    return decided.message if isinstance(decided, ControlError) else None


def empty_answer(status: int, headers: Headers | None = None) -> Answer:
    """No body: only its length, so nothing is left for a client to sniff."""
    return Answer(status, [("Content-Length", "0"), *(headers or [])], b"")


def redirect_answer(location: str, status: int = 302, headers: Headers | None = None) -> Answer:
    """What Flask's redirect() sends: Location, and a small HTML page linking to it (escaped)."""
    shown = html.escape(location)
    page = (
        "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n"
        f"<p>You should be redirected automatically to the target URL: <a href=\"{shown}\">{shown}</a>."
        " If not, click the link.\n"
    )
    return body_answer(status, page.encode("utf-8"), HTML_TYPE, [("Location", location), *(headers or [])])


def status_answer(code: int) -> Answer:
    """httpbin's status_code(code): the extras some codes carry."""
    if code in (301, 302, 303, 305, 307):
        return empty_answer(code, [("Location", REDIRECT_LOCATION)])
    if code == 401:
        return empty_answer(code, [("WWW-Authenticate", 'Basic realm="Fake Realm"')])
    if code == 402:
        return body_answer(code, b"Fuck you, pay me!", _TEXT_TYPE, [("x-more-info", "http://vimeo.com/22053820")])
    if code == 406:
        doc = {"message": "Client did not request a supported media type.", "accept": _ACCEPTED_MEDIA_TYPES}
        return body_answer(code, json.dumps(doc).encode("utf-8"), JSON_TYPE)
    if code == 407:
        # httpbin adds Proxy-Authenticate, which PEP 3333 reserves to the
        # server (hop-by-hop) and waitress refuses from an app: sent without it.
        return empty_answer(code)
    if code == 418:
        return body_answer(code, _TEAPOT.encode("utf-8"), _TEXT_TYPE, [("x-more-info", "http://tools.ietf.org/html/rfc2324")])
    return empty_answer(code)


def _invalid(reason: str) -> Answer:
    # httpbin's own body for a bad list, so a client matching on it still matches;
    # why it is invalid goes in a header, which a client matching the body never sees.
    return body_answer(400, b"Invalid status code", _TEXT_TYPE, [("X-Echo-Reason", reason[:300])])


def pick_status(codes: str, rng: Chooser = random) -> int | str:
    """httpbin's /status/{codes}: one code, a list picked at random, or code:weight picked by weight.
    Returns the code, or why the list is refused."""
    allowed = f"codes from {STATUS_RANGE[0]} to {STATUS_RANGE[1]}, of 1xx only 101"
    choices: list[int] = []
    weights: list[float] = []
    for item in codes.split(","):
        code_text, sep, weight_text = item.partition(":")
        code_match = _CODE.fullmatch(code_text)
        weight_match = _WEIGHT.fullmatch(weight_text) if sep else None
        if code_match is None or (sep and weight_match is None):
            return f"{item.strip()!r} is not code or code:weight (a non-negative number); {allowed}"
        code = int(code_match.group(1))
        if not STATUS_RANGE[0] <= code <= STATUS_RANGE[1] or (code < 200 and code != 101):
            return f"status {code} is not answered; {allowed}"
        weight = float(weight_match.group(1)) if weight_match else 1.0
        if not math.isfinite(weight):
            return f"weight {weight_text.strip()!r} is not a finite number"
        choices.append(code)
        weights.append(weight)
    if len(choices) == 1:
        return choices[0]
    if sum(weights) <= 0:
        return "the weights add up to 0"
    picked: int = rng.choices(choices, weights=weights, k=1)[0]
    return picked


@route("/status/{codes}", _STATUS_METHODS)
def status(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    picked = pick_status(params["codes"])
    if isinstance(picked, str):
        return _invalid(picked)
    return status_answer(picked)


def _hops(text: str, limits: RouteLimits) -> int | Answer:
    """A chain's length: at least 1 and at most --max-httpbin-n."""
    if not _N.fullmatch(text):
        # httpbin's <int:n> does not match "-1" or "x": its answer is a 404.
        return refused(404, f"no such redirect chain: n must be a whole number, not {text!r}", param="n", value=text)
    n = int(text)
    if n < 1:
        # httpbin asserts n > 0 and answers 500; the caller's mistake is a 400.
        return refused(400, "n must be at least 1", param="n", value=n)
    if n > limits.max_n:
        return over_limit("n", n, limits.max_n, "max_httpbin_n")
    return n


def _base(record: RequestRecord) -> str:
    """scheme://host of the request, from its Host header, as Flask's url_for(_external=True)."""
    parts = urlsplit(record.url)
    return f"{parts.scheme}://{parts.netloc}"


def _arg(record: RequestRecord, name: str) -> str | None:
    return next((value for key, value in record.args if key == name), None)


@route("/redirect/{n}", {"GET"})
def redirect_n(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    n = _hops(params["n"], limits)
    if isinstance(n, Answer):
        return n
    absolute = (_arg(record, "absolute") or "false").lower() == "true"
    base = _base(record) if absolute else ""
    if n == 1:
        return redirect_answer(f"{base}/get")
    return redirect_answer(f"{base}/{'absolute' if absolute else 'relative'}-redirect/{n - 1}")


@route("/relative-redirect/{n}", {"GET"})
def relative_redirect(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    n = _hops(params["n"], limits)
    if isinstance(n, Answer):
        return n
    # httpbin builds this one by hand: an empty HTML answer, not redirect()'s page.
    location = "/get" if n == 1 else f"/relative-redirect/{n - 1}"
    return body_answer(302, b"", HTML_TYPE, [("Location", location)])


@route("/absolute-redirect/{n}", {"GET"})
def absolute_redirect(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    n = _hops(params["n"], limits)
    if isinstance(n, Answer):
        return n
    base = _base(record)
    return redirect_answer(f"{base}/get" if n == 1 else f"{base}/absolute-redirect/{n - 1}")


def _case_insensitive(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    # httpbin: CaseInsensitiveDict(request.args.items()), the first value of each name.
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name not in seen:
            seen.add(name)
            out[name.lower()] = value
    return out


@route("/redirect-to", _STATUS_METHODS)
def redirect_to(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    # The query, then the form (httpbin 0.10 documents the form for POST, PUT
    # and PATCH but reads only the query; both are read here).
    given = {**_case_insensitive(record.form), **_case_insensitive(record.args)}
    url = given.get("url")
    if url is None:
        # httpbin sends "Location: None".
        return refused(400, "url is required: /redirect-to?url=...", param="url", value=None)
    problem = header_problem("Location", url)
    if problem:
        return refused(400, problem, param="url", value=url)
    code = 302
    if "status_code" in given:
        text = given["status_code"]
        if not _N.fullmatch(text.strip()) or not 300 <= int(text) <= 399:
            # httpbin: a non-number is a 500 and a number outside 3xx is ignored for 302.
            return refused(400, "status_code must be a redirect status, 300 to 399", param="status_code", value=text)
        code = int(text)
    # The Location exactly as given (httpbin turns off werkzeug's fixing of it).
    return body_answer(code, b"", HTML_TYPE, [("Location", url)])

