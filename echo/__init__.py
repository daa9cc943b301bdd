"""Echo: an HTTP request/response inspector and echo server.

`create_app(config)` is the one place where settings, the history store, the
echo handler and the inspector blueprint are wired together. Nothing runs at
import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

__version__ = "0.1.0"


def static_folder() -> str:
    """static/ as installed inside the package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "static"
    return str(installed if installed.is_dir() else here.parent / "static")


class EchoDispatch:
    """WSGI entry: the inspector prefix goes to Flask, every other path to the echo."""

    def __init__(self, flask_wsgi: Any, echo: Any, prefix: str) -> None:
        self.flask_wsgi = flask_wsgi
        self.echo = echo
        self.prefix = prefix
        self.bare = prefix.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix) or path == self.bare:
            return self.flask_wsgi(environ, start_response)
        return self.echo(environ, start_response)


def create_app(config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """Build the WSGI app: defaults, then ECHO_* environment, then `config`."""
    from flask import Flask, redirect
    from markupsafe import Markup
    from werkzeug.exceptions import HTTPException

    from .config import Settings, load_settings
    from .handlers import EchoHandler
    from .history import make_store
    from .inspector import bp, handle_http_error
    from .logs import AccessLog
    from .metrics import Metrics
    from .observer import Recorder
    from .render import highlight_html

    if isinstance(config, Settings):
        settings = config
    else:
        settings = load_settings(os.environ if environ is None else environ, config)
    prefix = settings.ui_prefix
    app = Flask(__name__, static_folder=static_folder(), static_url_path=prefix + "static")
    app.config["ECHO_SETTINGS"] = settings
    app.json.sort_keys = False  # type: ignore[attr-defined]

    store = make_store(settings)
    metrics = Metrics()
    sinks: list[Any] = [metrics]
    if settings.log != "off":
        sinks.append(AccessLog(settings.log, redact=settings.redact))
    recorder = Recorder(store, settings.history, settings.keep_body, settings.redact, tuple(sinks))
    app.extensions["echo.store"] = store
    app.extensions["echo.metrics"] = metrics
    app.extensions["echo.recorder"] = recorder

    app.register_blueprint(bp, url_prefix=prefix.rstrip("/"))
    app.register_error_handler(HTTPException, handle_http_error)
    app.add_url_rule(prefix.rstrip("/"), "bare_prefix", lambda: redirect(prefix, 308))
    app.jinja_env.globals.update(prefix=prefix, version=__version__)

    page = app.jinja_env.get_template("echo.html")

    def render_echo_html(record: Any, controls: Any, pretty: bytes) -> bytes:
        html = page.render(
            record=record,
            document=Markup(highlight_html(pretty.decode("utf-8"), "application/json")),
            static=prefix + "static/",
        )
        return html.encode("utf-8")

    echo = EchoHandler(settings, recorder, render_echo_html)
    app.extensions["echo.handler"] = echo
    app.extensions["echo.held"] = echo.held  # the CLI ends every hold when it stops
    app.wsgi_app = EchoDispatch(app.wsgi_app, echo, prefix)  # type: ignore[method-assign]
    return app
