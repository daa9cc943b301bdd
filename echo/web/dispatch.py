"""WSGI entry: the inspector prefix goes to Flask, every other path to the echo."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class EchoDispatch:
    def __init__(self, flask_wsgi: WSGIApp, echo: WSGIApp, prefix: str) -> None:
        self.flask_wsgi = flask_wsgi
        self.echo = echo
        self.prefix = prefix
        self.bare = prefix.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix) or path == self.bare:
            return self.flask_wsgi(environ, start_response)
        return self.echo(environ, start_response)
