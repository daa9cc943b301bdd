"""httpbin mode: one route table, path pattern -> handler, one module per family.

`--httpbin` answers psf/httpbin's routes as httpbin 0.10 does (SPEC section 8).
Every family module adds its rows to `ROUTES` with the `route` decorator;
`find(method, path)` picks the row, and the echo handler sends the `Answer`
the row's handler returns. Handlers are pure: they get the captured request,
the path's parameters and the limits, and return an answer (a `delay` on it
is waited out by the web floor under the --max-held budget); capture and
recording stay where they are, so every httpbin exchange is in the history.
"""

from __future__ import annotations

# Each family module adds its rows to the table when imported.
from . import (
    auth,  # noqa: F401
    caching,  # noqa: F401
    cookies,  # noqa: F401
    data,  # noqa: F401
    encodings,  # noqa: F401
    formats,  # noqa: F401
    headers,  # noqa: F401
    inspection,  # noqa: F401
    status,  # noqa: F401
)
from .table import ROUTES, Found, Route, RouteLimits, find, route

__all__ = ["ROUTES", "Found", "Route", "RouteLimits", "find", "route"]
