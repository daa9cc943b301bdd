"""Reading a route's numbers, and refusing the ones it cannot take, in one shape.

httpbin reads path numbers with Flask's `<int:n>` (anything else is a 404),
query numbers with a bare `int()` / `float()` (anything else is a 500), and
clamps what is too large without a word. Echo names what is wrong instead: a
path part that is not a number is a 404 naming it, a bad query value a 400
naming it, and a value over a limit the 400 of SPEC section 8,
`{"error", "param", "value", "limit", "setting"}`. A handler raises `Refused`
and the `refusing` wrapper turns it into the answer, so the happy path of each
handler reads straight through.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from ...config import flag
from ...model.records import RequestRecord
from ..answer import Answer
from .common import refused
from .table import Handler, RouteLimits

# Flask's IntegerConverter: unsigned ASCII digits only.
_DIGITS = re.compile(r"[0-9]+")


class Refused(Exception):
    """The answer a route gives instead of its usual one."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def refusing(handler: Handler) -> Handler:
    """Wrap a handler so that a `Refused` it raises becomes its answer."""

    @functools.wraps(handler)
    def run(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
        try:
            return handler(record, params, limits)
        except Refused as refused:
            return refused.answer

    return run


def bad(message: str, param: str, value: Any, status: int = 400) -> Refused:
    return Refused(refused(status, message, param=param, value=value))


def over_limit(param: str, value: float, limit: float, setting: str) -> Refused:
    return Refused(refused(400, f"{param} is over the limit of {limit:g}",
                           param=param, value=value, limit=limit, setting=flag(setting)))


def path_int(params: dict[str, str], name: str) -> int:
    """A `<int:name>` path part; not a whole number: 404 naming it (httpbin: a plain 404)."""
    raw = params[name]
    if not _DIGITS.fullmatch(raw):
        raise bad(f"{name} must be a whole number", name, raw, 404)
    return int(raw)


def query(record: RequestRecord, name: str) -> str | None:
    """A query argument by name, case-insensitively as httpbin reads it; the first one wins."""
    lowered = name.lower()
    return next((value for key, value in record.args if key.lower() == lowered), None)


def query_int(record: RequestRecord, name: str, default: int) -> int:
    raw = query(record, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad(f"{name} must be a whole number", name, raw) from None


def query_float(record: RequestRecord, name: str, default: float) -> float:
    raw = query(record, name)
    return default if raw is None else seconds(raw, name)


def seconds(raw: str, name: str) -> float:
    """A duration: a finite number of seconds, not negative (httpbin fails on those with a 500)."""
    try:
        value = float(raw)
    except ValueError:
        raise bad(f"{name} must be a number of seconds", name, raw) from None
    if not math.isfinite(value) or value < 0:
        raise bad(f"{name} must be a number of seconds, not negative", name, raw)
    return value


def at_most(param: str, value: float, limit: float, setting: str) -> None:
    if value > limit:
        raise over_limit(param, value, limit, setting)
