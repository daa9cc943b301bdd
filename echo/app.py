"""The one place where settings become parts: the store, the recorder and its
sinks, the echo handler and the inspector blueprint are built and wired here.

`create_app(config)` layers defaults, then ``ECHO_*`` environment, then
`config`; it is the only reader of `Settings` besides the command line, and
hands every lower floor plain limit objects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, redirect
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from .answer.controls import ControlLimits
from .answer.held import HeldBudget
from .answer.routes import RouteLimits
from .answer.rules import RuleBook, RuleLimits, RulesFileError
from .capture.request import CaptureLimits
from .config import Settings, flag, load_settings
from .formats.render import highlight_html
from .history import StoreOptions, make_store
from .model.records import RequestRecord
from .observe.arrivals import Arrivals
from .observe.logs import AccessLog
from .observe.metrics import Metrics
from .observe.recorder import Recorder
from .version import __version__
from .web import security
from .web.dispatch import EchoDispatch
from .web.echo import EchoHandler
from .web.inspector import bp, handle_http_error
from .web.services import EXTENSION, InspectorOptions, Services, services

log = logging.getLogger("echo")


def static_folder() -> str:
    """static/ as installed inside the package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    installed = here / "static"
    return str(installed if installed.is_dir() else here.parent / "static")


def capture_limits(settings: Settings) -> CaptureLimits:
    return CaptureLimits(settings.max_body, settings.max_json_depth, settings.max_form_parts, settings.max_json_values)


def store_options(settings: Settings) -> StoreOptions:
    return StoreOptions(
        url=settings.store,
        limit=settings.history,
        prefix=settings.store_prefix,
        timeout=settings.store_timeout,
        ttl=settings.history_ttl,
        buffer=settings.store_buffer,
        buffer_bytes=settings.store_buffer_bytes,
    )


def create_app(config: Mapping[str, Any] | Settings | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    """Build the WSGI app: defaults, then ECHO_* environment, then `config`."""
    if isinstance(config, Settings):
        settings = config
    else:
        settings = load_settings(os.environ if environ is None else environ, config)
    prefix = settings.ui_prefix
    app = Flask("echo", static_folder=static_folder(), static_url_path=prefix + "static")
    app.json.sort_keys = False  # type: ignore[attr-defined]

    store = make_store(store_options(settings))
    metrics = Metrics()
    sinks: list[Any] = [metrics]
    if settings.log != "off":
        sinks.append(AccessLog(settings.log, redact=settings.redact))
    arrivals = Arrivals()
    recorder = Recorder(
        store, settings.history, settings.keep_body, settings.redact, tuple(sinks), ui_auth=settings.ui_auth,
        arrivals=arrivals,
    )
    found = Services(
        store=store,
        recorder=recorder,
        metrics=metrics,
        held=HeldBudget(settings.held_limit),
        options=InspectorOptions(
            prefix=prefix, ui_auth=settings.ui_auth, history=settings.history, metrics=not settings.no_metrics,
            max_wait=settings.max_wait,
            max_scan=settings.max_scan,
        ),
        waiters=HeldBudget(settings.waiter_limit),
        arrivals=arrivals,
    )
    app.extensions[EXTENSION] = found

    rules = RuleBook(
        RuleLimits(max_delay=settings.max_delay, max_body=settings.max_body),
        counters=store.counters(),
        path=settings.rules or None,
        max_api_rules=settings.max_rules,
    )
    try:
        rules.load_file()
    except RulesFileError:
        store.close()
        raise
    found.rules = rules

    app.register_blueprint(bp, url_prefix=prefix.rstrip("/"))
    app.register_error_handler(HTTPException, handle_http_error)
    security.install(app)

    def bare_prefix() -> Response:
        return redirect(prefix, 308)

    app.add_url_rule(prefix.rstrip("/"), "bare_prefix", bare_prefix)
    app.jinja_env.globals.update(prefix=prefix, version=__version__)

    page = app.jinja_env.get_template("echo.html")

    def render_echo_html(record: RequestRecord, controls: Mapping[str, Any], pretty: bytes) -> bytes:
        html = page.render(
            record=record,
            document=Markup(highlight_html(pretty.decode("utf-8"), "application/json")),
            static=prefix + "static/",
        )
        return html.encode("utf-8")

    echo = EchoHandler(
        capture_limits=capture_limits(settings),
        control_limits=ControlLimits(max_delay=settings.max_delay),
        cors=not settings.no_cors,
        recorder=recorder,
        render_html=render_echo_html,
        held=found.held,
        route_limits=RouteLimits(
            max_body=settings.max_body, max_delay=settings.max_delay, max_n=settings.max_httpbin_n
        ) if settings.httpbin else None,
        rules=rules,
    )
    found.echo = echo
    app.wsgi_app = EchoDispatch(app.wsgi_app, echo, prefix)  # type: ignore[method-assign]
    return app


def reload_rules(app: Flask) -> bool:
    """Re-read --rules (on SIGHUP): the new rules, or the old ones kept, one log line and a metric."""
    found = services(app)
    rules = found.rules
    if rules is None or rules.path is None:
        log.info("rules: SIGHUP ignored: no %s file", flag("rules"))
        return False
    try:
        count = rules.load_file()
    except RulesFileError as exc:
        found.metrics.rules_reloaded(False)
        log.error("rules: reload failed, keeping the %d rules loaded before: %s", len(
            [rule for rule in rules.rules if rule.source == "file"]), exc)
        return False
    found.metrics.rules_reloaded(True)
    log.info("rules: reloaded %s: %d rules", rules.path, count)
    return True
