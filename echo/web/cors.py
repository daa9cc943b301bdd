"""CORS for the echo: the headers a request with `Origin` gets, and preflight answers.

Any origin is allowed, with credentials, because Echo exists to be called from
whatever page a developer is debugging; `--no-cors` turns it off.
"""

from __future__ import annotations

from typing import Any

Headers = list[tuple[str, str]]

# Response headers a browser already exposes to scripts without being told.
SAFELISTED = frozenset(
    {"cache-control", "content-language", "content-length", "content-type", "expires", "last-modified", "pragma",
     "set-cookie"}
)


def is_preflight(method: str, environ: dict[str, Any]) -> bool:
    return method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ


def preflight_headers(environ: dict[str, Any]) -> Headers:
    """A 204 preflight answer's headers: allow the requested method and headers."""
    headers: Headers = [
        ("Access-Control-Allow-Methods", environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]),
        ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]
    requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
    if requested:
        headers.append(("Access-Control-Allow-Headers", requested))
    return headers


def cors_headers(origin: str, headers: Headers) -> Headers:
    """What an answer with `headers` adds for a request from `origin`."""
    exposed = sorted({
        name for name, _ in headers
        if name.lower() not in SAFELISTED and not name.lower().startswith("access-control-") and name != "Vary"
    })
    added = [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
    ]
    if exposed:
        added.append(("Access-Control-Expose-Headers", ", ".join(exposed)))
    if not any(name == "Vary" for name, _ in headers):
        added.append(("Vary", "Origin"))
    return added
