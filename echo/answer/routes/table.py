"""The route table of httpbin mode: rows, their patterns, and finding the row for a path."""


from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...model.records import RequestRecord
from ..answer import Answer

# Every method a route may allow when it names none (httpbin's /anything and friends).
ANY_METHOD = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"})


@dataclass(frozen=True)
class RouteLimits:
    """What bounds a route's work, as plain values (the app fills them from the settings)."""

    max_body: int = 10 * 1024 * 1024  # /bytes, /stream-bytes, /range, /drip sizes
    max_delay: float = 10.0  # /delay and /drip durations
    max_n: int = 100  # /stream/{n} lines and redirect chains


Handler = Callable[[RequestRecord, dict[str, str], RouteLimits], Answer]


@dataclass(frozen=True)
class Route:
    """One row: a path pattern ("/status/{codes}", "/anything{rest:path}"), its methods, its handler."""

    pattern: str
    methods: frozenset[str]
    handler: Handler
    regex: re.Pattern[str]


ROUTES: list[Route] = []

_PARAM = re.compile(r"\{(\w+)(?::(path))?\}")


def _compile(pattern: str) -> re.Pattern[str]:
    out, last = [], 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[last:match.start()]))
        out.append(f"(?P<{match.group(1)}>{'.*' if match.group(2) else '[^/]+'})")
        last = match.end()
    out.append(re.escape(pattern[last:]))
    return re.compile("".join(out))


def route(pattern: str, methods: frozenset[str] | set[str] | None = None) -> Callable[[Handler], Handler]:
    """Add a row to the table: `@route("/get", {"GET"})`. HEAD is allowed wherever GET is."""
    allowed = frozenset(methods) if methods is not None else ANY_METHOD
    if "GET" in allowed:
        allowed |= {"HEAD"}

    def register(handler: Handler) -> Handler:
        row = Route(pattern, allowed, handler, _compile(pattern))
        ROUTES.append(row)
        _BY_SEGMENT.setdefault(_first_segment(pattern), []).append(row)
        return handler

    return register


@dataclass(frozen=True)
class Found:
    route: Route
    params: dict[str, str]


# Rows by the first segment of their pattern ("/status/{codes}" -> "status"),
# so that finding a row tries the few that can match, not all fifty; every
# pattern starts with a literal segment (a test keeps it so).
_BY_SEGMENT: dict[str, list[Route]] = {}


def _first_segment(path: str) -> str:
    return path[1:].split("/", 1)[0]


def find(path: str) -> Found | None:
    """The first row whose pattern matches the whole path (methods are checked by the caller)."""
    for row in _BY_SEGMENT.get(_first_segment(path), ()):
        match = row.regex.fullmatch(path)
        if match:
            return Found(row, match.groupdict())
    return None
