"""Controls: query parameters / ``X-Echo-*`` headers -> a validated response plan.

A pure step: `plan(args, headers, limits)` returns a `ResponsePlan` or the first
`ControlError`, naming the parameter, the value and what is allowed. Nothing a
caller sends can smuggle a header line, a framing header, a malformed cookie or
an unbounded delay past it: invalid input is rejected, never clamped.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Protocol

from ..config import MAX_DELAY_SECONDS, flag
from ..model.http import FRAMING_HEADERS, TOKEN, TOKEN_CHARS
from ..model.records import Pairs

DEFAULT_BODY_TYPE = "text/plain; charset=utf-8"

# Headers that frame the message or belong to one connection: a caller setting
# them would desynchronise the client (response splitting, smuggling).
FORBIDDEN_HEADERS = FRAMING_HEADERS
# Echo's own namespace: X-Echo-Id is set on every answer, X-Echo-Status and the
# rest are control headers. A caller's copy would forge or double Echo's.
RESERVED_PREFIX = "x-echo-"
STATUS_RANGE = (200, 599)

# Controls (C0 but tab, DEL, and C1: U+0085 is a line break to many readers),
# and lone surrogates: no encoding can put those on the wire.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
_COOKIE_VALUE = re.compile(r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*|"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"')
_ATTR_VALUE = re.compile(r"[\x20-\x3a\x3c-\x7e]*")  # any CHAR but CTLs and ";"
_DOMAIN = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
# ASCII digits only, and few: int() refuses over 4300 digits and random.choices
# cannot weigh an int too large for a float.
_STATUS_ITEM = re.compile(r"\s*([0-9]{1,9})\s*(?::\s*([0-9]{1,9})\s*)?")
# X-Echo-Header / X-Echo-Cookie sent twice arrive joined by ", "; split only
# where the next piece starts a new "Name:" or "name=".
_SPLIT_HEADERS = re.compile(f",\\s*(?=[{TOKEN_CHARS}]+\\s*:)")
_SPLIT_COOKIES = re.compile(f",\\s*(?=[{TOKEN_CHARS}]+=)")
_MEDIA_TYPE = re.compile(f"[{TOKEN_CHARS}]+/[{TOKEN_CHARS}]+(\\s*;.*)?")

_VALUELESS_ATTRS = {"secure": "Secure", "httponly": "HttpOnly", "partitioned": "Partitioned"}
_VALUED_ATTRS = {"expires": "Expires", "max-age": "Max-Age", "domain": "Domain", "path": "Path", "samesite": "SameSite"}
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}
_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"


# The summary of a plan without controls (see ResponsePlan.summary).
# Read-only, since every exchange without controls shares it.
_NO_CONTROLS: Mapping[str, Any] = MappingProxyType({"status": 200, "headers": (), "cookies": (), "delay": 0.0})


class Chooser(Protocol):
    """What `random` offers and a test can replace: a weighted pick."""

    def choices(
        self,
        population: Sequence[int],
        weights: Sequence[float] | None = None,
        *,
        cum_weights: Sequence[float] | None = None,
        k: int = 1,
    ) -> list[int]: ...


@dataclass(frozen=True)
class ControlLimits:
    max_delay: float = MAX_DELAY_SECONDS


@dataclass(frozen=True)
class ControlError:
    """Why a control was refused; becomes a 400 `{"error", "param", "value"}`."""

    param: str
    value: str
    message: str


@dataclass(frozen=True)
class ResponsePlan:
    """How to answer, once every control is validated."""

    status: int = 200
    headers: Pairs = ()
    cookies: tuple[str, ...] = ()  # Set-Cookie values
    delay: float = 0.0
    body: bytes | None = None  # the caller's body instead of the echo document
    content_type: str | None = None
    format: str | None = None  # "json" or "html" when forced
    given: frozenset[str] = field(default_factory=frozenset)

    def summary(self) -> Mapping[str, Any]:
        """The `controls` member of the echo document: what was applied.

        Read-only: a request without controls gets the one shared default,
        since history keeps a summary per exchange and most are this one."""
        if (self.status == 200 and not self.headers and not self.cookies and not self.delay
                and self.body is None and not self.content_type and not self.format):
            return _NO_CONTROLS
        summary: dict[str, Any] = {
            "status": self.status,
            "headers": [{"name": n, "value": v} for n, v in self.headers],
            "cookies": list(self.cookies),
            "delay": self.delay,
        }
        if self.body is not None:
            summary["body"] = {"size": len(self.body), "content_type": self.content_type or DEFAULT_BODY_TYPE}
        elif self.content_type:
            summary["content_type"] = self.content_type
        if self.format:
            summary["format"] = self.format
        return summary


DEFAULT_PLAN = ResponsePlan()


class Refused(Exception):
    """A value one of the checks below refuses; `message` says what is wrong and what is allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_Refused = Refused


def plan(
    args: Pairs, headers: Pairs, limits: ControlLimits = ControlLimits(), rng: Chooser = random
) -> ResponsePlan | ControlError:
    """Validate every control in args (first) and X-Echo-* headers (second)."""
    given = _collect(args, headers)
    if not given:
        return DEFAULT_PLAN
    values: dict[str, Any] = {}
    for param, raws in given.items():
        control = CONTROLS[param]
        if len(raws) > 1 and not control.repeatable:
            return ControlError(param, raws[1], f"{param} may be given once; it was given {len(raws)} times")
        for raw in raws:
            try:
                parsed = control.parse(raw, limits, rng)
            except _Refused as exc:
                return ControlError(param, raw, exc.message)
            if control.repeatable:
                values.setdefault(param, []).append(parsed)
            else:
                values[param] = parsed
    body = values.get("_body")
    return ResponsePlan(
        status=values.get("_status", 200),
        headers=tuple(values.get("_header", ())),
        cookies=tuple(values.get("_cookie", ())) + tuple(values.get("_delete_cookie", ())),
        delay=values.get("_delay", 0.0),
        body=body.encode("utf-8") if body is not None else None,
        content_type=values.get("_content_type"),
        format=values.get("_format"),
        given=frozenset(given),
    )


def _collect(args: Pairs, headers: Pairs) -> dict[str, list[str]]:
    from_query: dict[str, list[str]] = {}
    for name, value in args:
        if name in CONTROLS:
            from_query.setdefault(name, []).append(value)
    from_headers: dict[str, list[str]] = {}
    if headers:
        for name, value in headers:
            control = _BY_HEADER.get(name.lower())
            if control is None or control.param in from_query:
                continue
            pieces = control.split.split(value) if control.split else [value]
            from_headers.setdefault(control.param, []).extend(pieces)
    return {**from_headers, **from_query}


def _status(raw: str, limits: ControlLimits, rng: Chooser) -> int:
    codes, weights = status_choices(raw)
    if len(codes) == 1:
        return codes[0]
    return rng.choices(codes, weights=weights, k=1)[0]


def status_choices(raw: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The codes of a `_status` value and their weights; `Refused` when it is not one.
    Rules keep these and pick per request, as `_status` does."""
    allowed = (
        f"allowed: one status from {STATUS_RANGE[0]} to {STATUS_RANGE[1]}, "
        "a list to pick from at random (200,503), or weighted (200:9,503:1)"
    )
    codes: list[int] = []
    weights: list[int] = []
    for item in raw.split(","):
        match = _STATUS_ITEM.fullmatch(item)
        if not match:
            raise _Refused(f"{item.strip()!r} is not a status; {allowed}")
        code = int(match.group(1))
        if not STATUS_RANGE[0] <= code <= STATUS_RANGE[1]:
            raise _Refused(f"status {code} is out of range; {allowed}")
        codes.append(code)
        weights.append(int(match.group(2)) if match.group(2) is not None else 1)
    if len(codes) > 1 and sum(weights) <= 0:
        raise _Refused(f"the weights add up to 0; {allowed}")
    return tuple(codes), tuple(weights)


def _check_text(value: str, what: str) -> None:
    if _CTL.search(value):
        raise _Refused(
            f"{what} holds a control character (CR, LF, NUL or another C0 or C1 control, U+0080-U+009F) "
            "or a lone surrogate; they are not allowed"
        )


def _header(raw: str, limits: ControlLimits, rng: Chooser) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep:
        raise _Refused("expected 'Name: Value'")
    name = name.strip()
    _check_text(raw, "the header")
    if not TOKEN.fullmatch(name):
        raise _Refused(f"{name!r} is not a valid header name (an HTTP token: letters, digits and !#$%&'*+.^_`|~-)")
    if name.lower() in FORBIDDEN_HEADERS:
        raise _Refused(
            f"{name} frames the message or the connection and cannot be set; forbidden: "
            "Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Proxy-Connection"
        )
    if name.lower().startswith(RESERVED_PREFIX):
        raise _Refused(f"{name} is set by Echo; X-Echo-* headers cannot be added to an answer")
    value = value.strip(" \t")
    if name.lower() == "set-cookie":
        # The same RFC 6265 checks as _cookie: a Set-Cookie is a cookie whichever control sent it.
        try:
            _cookie(value, limits, rng)
        except _Refused as exc:
            raise _Refused(f"Set-Cookie: {exc.message}") from None
    return name, value


def _check_cookie_text(raw: str) -> None:
    _check_text(raw, "the cookie")
    if not raw.isascii():
        raise _Refused("the cookie holds a non-ASCII character, which RFC 6265 forbids")


def _cookie_pair(raw: str) -> tuple[str, str, list[str]]:
    _check_cookie_text(raw)
    pair, *attrs = raw.split(";")
    name, sep, value = pair.partition("=")
    name, value = name.strip(), value.strip()
    if not sep:
        raise _Refused("expected 'name=value' optionally followed by '; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax'")
    if not TOKEN.fullmatch(name):
        raise _Refused(f"{name!r} is not a valid cookie name (RFC 6265: an HTTP token)")
    if not _COOKIE_VALUE.fullmatch(value):
        raise _Refused(
            "the cookie value holds a character RFC 6265 forbids (space, DQUOTE, comma, semicolon, backslash or non-ASCII)"
        )
    return name, value, attrs


def _cookie_attrs(attrs: list[str]) -> list[str]:
    out = []
    for attr in attrs:
        key, sep, value = attr.strip().partition("=")
        key, value = key.strip(), value.strip()
        lowered = key.lower()
        if not key:
            continue
        if lowered in _VALUELESS_ATTRS:
            if sep:
                raise _Refused(f"cookie attribute {_VALUELESS_ATTRS[lowered]} takes no value")
            out.append(_VALUELESS_ATTRS[lowered])
            continue
        if lowered not in _VALUED_ATTRS:
            raise _Refused(
                f"unknown cookie attribute {key!r}; allowed: Expires, Max-Age, Domain, Path, Secure, HttpOnly, SameSite, Partitioned"
            )
        canonical = _VALUED_ATTRS[lowered]
        if lowered == "max-age" and not re.fullmatch(r"-?\d{1,12}", value):
            raise _Refused(f"Max-Age must be a whole number of seconds, not {value!r}")
        if lowered == "expires":
            try:
                # In UTC too: every export (HAR) shows the instant, and a datetime
                # ends with the year 9999 (9999-12-31 at -1200 is past it).
                parsedate_to_datetime(value).astimezone(timezone.utc)
            except (TypeError, ValueError, IndexError, OverflowError):
                raise _Refused(
                    f"Expires must be an HTTP date like {_EPOCH!r}, up to the year 9999 in UTC, not {value!r}"
                ) from None
        if lowered == "domain" and not _DOMAIN.fullmatch(value):
            raise _Refused(f"Domain must be a host name, not {value!r}")
        if lowered == "path" and not (value.startswith("/") and _ATTR_VALUE.fullmatch(value)):
            raise _Refused(f"Path must start with / and hold no control characters or ';', not {value!r}")
        if lowered == "samesite":
            if value.lower() not in _SAMESITE:
                raise _Refused(f"SameSite must be Strict, Lax or None, not {value!r}")
            value = _SAMESITE[value.lower()]
        out.append(f"{canonical}={value}")
    return out


def _cookie(raw: str, limits: ControlLimits, rng: Chooser) -> str:
    name, value, attrs = _cookie_pair(raw)
    return "; ".join([f"{name}={value}", *_cookie_attrs(attrs)])


def _delete_cookie(raw: str, limits: ControlLimits, rng: Chooser) -> str:
    _check_cookie_text(raw)
    first, *attrs = raw.split(";")
    name = first.partition("=")[0].strip()  # "sid" and "sid=" both name the cookie
    if not TOKEN.fullmatch(name):
        raise _Refused(f"{name!r} is not a valid cookie name (RFC 6265: an HTTP token)")
    # Only the attributes that select which cookie to expire are kept.
    kept = [a for a in _cookie_attrs(attrs) if a.split("=")[0] in ("Path", "Domain", "Secure", "SameSite", "Partitioned")]
    if not any(a.startswith("Path=") for a in kept):
        kept.insert(0, "Path=/")
    return "; ".join([f"{name}=", f"Expires={_EPOCH}", "Max-Age=0", *kept])


def _delay(raw: str, limits: ControlLimits, rng: Chooser) -> float:
    text = raw.strip()
    allowed = f"a number of seconds from 0 to {limits.max_delay:g} ({flag('max_delay')})"
    if not _DELAY.fullmatch(text):
        raise _Refused(f"delay must be {allowed}")
    value = float(text)
    if not math.isfinite(value) or value > limits.max_delay:
        raise _Refused(f"delay {text} is over the limit; allowed: {allowed}")
    return value


def _body(raw: str, limits: ControlLimits, rng: Chooser) -> str:
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("the body holds a lone surrogate, which UTF-8 cannot encode") from None
    return raw


def _content_type(raw: str, limits: ControlLimits, rng: Chooser) -> str:
    _check_text(raw, "the content type")
    value = raw.strip()
    if not _MEDIA_TYPE.fullmatch(value):
        raise _Refused("expected a media type like text/html or application/json; charset=utf-8")
    return value


def _format(raw: str, limits: ControlLimits, rng: Chooser) -> str:
    value = raw.strip().lower()
    if value not in ("json", "html"):
        raise _Refused("allowed: json or html")
    return value


@dataclass(frozen=True)
class Control:
    """One control: its query parameter, the request header that carries it when
    the URL is fixed, its parser, and whether it may be given more than once."""

    param: str
    header: str
    parse: Callable[[str, ControlLimits, Chooser], Any]
    repeatable: bool = False
    # X-Echo-* header lines sent twice arrive joined by ", "; where they come apart.
    split: re.Pattern[str] | None = None


# One row per control; a new control is one more row.
CONTROLS: dict[str, Control] = {control.param: control for control in (
    Control("_status", "X-Echo-Status", _status),
    Control("_header", "X-Echo-Header", _header, repeatable=True, split=_SPLIT_HEADERS),
    Control("_cookie", "X-Echo-Cookie", _cookie, repeatable=True, split=_SPLIT_COOKIES),
    Control("_delete_cookie", "X-Echo-Delete-Cookie", _delete_cookie, repeatable=True, split=_SPLIT_COOKIES),
    Control("_delay", "X-Echo-Delay", _delay),
    Control("_body", "X-Echo-Body", _body),
    Control("_content_type", "X-Echo-Content-Type", _content_type),
    Control("_format", "X-Echo-Format", _format),
)}
# Each control's request header, and the control of each (lowercase) header.
CONTROL_HEADERS: dict[str, str] = {control.param: control.header for control in CONTROLS.values()}
_BY_HEADER = {control.header.lower(): control for control in CONTROLS.values()}


# ---- the same checks for answers written elsewhere (rules) ---------------------
# Each raises `Refused` with the message a control would get, so a rule's header
# or cookie is held to exactly the rules a caller's is.


def check_header(name: str, value: str) -> tuple[str, str]:
    """A response header a caller may set: a token name, no CR/LF/NUL, no framing or X-Echo-* header."""
    if not TOKEN.fullmatch(name):
        _check_text(name, "the header name")
        raise _Refused(f"{name!r} is not a valid header name (an HTTP token: letters, digits and !#$%&'*+.^_`|~-)")
    return _header(f"{name}: {value}", ControlLimits(), random)


def check_header_value(value: str, what: str = "the header value") -> None:
    """A header value as a template rendered it: no control character may reach the wire."""
    _check_text(value, what)


def check_cookie(raw: str) -> str:
    """A Set-Cookie value RFC 6265 allows, normalised as `_cookie` does."""
    return _cookie(raw, ControlLimits(), random)
