"""The command line: flags from the settings table, then waitress. Nothing else.

`echo-server` and `python -m echo` both land in `main`. A bad flag or variable
is one line on stderr and exit 2; SIGTERM and Ctrl-C stop the server cleanly.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from waitress import wasyncore

from .config import SETTINGS, ConfigError, Settings, load_settings
from .version import __version__
from .web.serving import drain, install

# waitress refuses bodies past this on its own (plain 413, not recorded); up to
# it the echo reads, counts and records an over-limit body before its JSON 413.
WAITRESS_BODY_FACTOR = 4
# After SIGTERM every request already received is answered (delays cut short)
# for at most this long, then threads still busy get the rest of the budget:
# the contract is a stop within 5 s.
DRAIN_SECONDS = 3.0
SHUTDOWN_GRACE_SECONDS = 0.5
# File descriptors beyond --connection-limit: listening sockets, the wake-up
# pipe, the store's connections, temporary files of large bodies, logs.
DESCRIPTOR_HEADROOM = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="echo-server",
        description="Echo: answers every request with a JSON document of what arrived, "
        "and keeps a browsable history at the inspector prefix.",
        epilog="Every flag also reads its ECHO_* environment variable; the flag wins.",
    )
    for setting in SETTINGS:
        default = setting.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        if default is None:
            shown = "auto"  # worked out from other settings (see the help text)
        text = f"{setting.help} [env {setting.env}; default {shown!r}]"
        if setting.metavar is None:
            parser.add_argument(setting.flag, dest=setting.name, action="store_const", const=True, default=None,
                                help=text)
        else:
            parser.add_argument(setting.flag, dest=setting.name, metavar=setting.metavar, default=None, help=text)
    parser.add_argument("--version", action="version", version=f"echo-server {__version__}")
    return parser


def parse(argv: Sequence[str] | None, environ: dict[str, str]) -> Settings:
    args = build_parser().parse_args(argv)
    return load_settings(environ, {k: v for k, v in vars(args).items() if v is not None})


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("echo", "waitress"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # waitress warns "Task queue depth is N" for every request that waits for a
    # free thread: thousands of lines under load, each costing a write. Queueing
    # is normal for a load-test target, so only errors from it are shown.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _listen_urls(server: Any, settings: Settings) -> tuple[str, str]:
    port = getattr(server, "effective_port", None)
    host = getattr(server, "effective_host", settings.host)
    if port is None:
        host, port = server.effective_listen[0][:2]
    if ":" in str(host):
        host = f"[{host}]"
    base = f"http://{host}:{port}"
    return f"{base}/", f"{base}{settings.ui_prefix}"


def _fit_descriptors(connections: int) -> str | None:
    """Raise the open-file limit to fit --connection-limit; the reason when it cannot be."""
    need = connections + DESCRIPTOR_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    if hard != resource.RLIM_INFINITY and hard < need:
        return (f"--connection-limit {connections} needs {need} open files, and this process may open "
                f"at most {hard} (ulimit -n): lower --connection-limit or raise the limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    environ = dict(os.environ)
    try:
        settings = parse(argv, environ)
    except ConfigError as exc:
        print(f"echo-server: error: {exc}", file=sys.stderr)
        return 2
    problem = _fit_descriptors(settings.connection_limit)
    if problem:
        print(f"echo-server: error: {problem}", file=sys.stderr)
        return 2
    _configure_logging()

    from waitress.server import create_server

    from .app import create_app
    from .web.services import services

    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"echo-server: error: {exc}", file=sys.stderr)
        return 2
    store = services(app).store
    health = store.health()
    if not health.ok:
        if not settings.start_without_store:
            print(f"echo-server: error: history store is unreachable: {health.detail} "
                  "(--start-without-store to start anyway)", file=sys.stderr)
            return 1
        logging.getLogger("echo").error("starting without the history store: %s", health.detail)

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "threads": settings.threads,
        "ident": "Echo",
        # waitress answers 431 once the head *reaches* its limit; --max-header
        # is the largest head accepted, so the limit is one byte more.
        "max_request_header_size": settings.max_header + 1,
        "max_request_body_size": max(settings.max_body * WAITRESS_BODY_FACTOR, settings.max_body + 1024 * 1024),
        # Keep X-Forwarded-* visible in the echo unless a proxy is trusted.
        "clear_untrusted_proxy_headers": False,
        "asyncore_use_poll": True,
        "channel_timeout": settings.channel_timeout,
        # waitress looks for idle connections only this often; a quarter of the
        # timeout closes one within 1.25 x --channel-timeout.
        "cleanup_interval": max(1, min(30, settings.channel_timeout // 4)),
    }
    if settings.trusted_proxy:
        options["trusted_proxy"] = settings.trusted_proxy
        options["trusted_proxy_headers"] = "x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port"
    try:
        server = create_server(app, **options)
    except OSError as exc:
        print(f"echo-server: error: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    # Everything built so far (Flask, werkzeug, pygments, waitress, the app)
    # lives as long as the process. History keeps every exchange long enough to
    # reach the collector's oldest generation, so full collections come often;
    # frozen, these ~35,000 start-up objects are no longer walked by each one.
    gc.freeze()

    stopping = threading.Event()
    stopped_at: list[float] = []

    def stop(signum: int, frame: Any) -> None:
        # Only a flag: an exception raised here surfaces wherever the main thread
        # happens to be, and inside a waitress channel handler it is swallowed
        # ("uncaptured python exception, closing channel") and serving goes on.
        if not stopped_at:
            stopped_at.append(time.monotonic())
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # TcpWSGIServer keeps its sockets in _map, MultiSocketServer (several listen addresses) in map.
    sockets = getattr(server, "map", None) or server._map  # type: ignore[union-attr]
    install(sockets, settings.max_header, settings.connection_limit)
    held = services(app).held
    try:
        echo_url, ui_url = _listen_urls(server, settings)
        print(f"Echo {__version__} listening on {echo_url} - inspector at {ui_url} "
              f"(history: {health.backend}, {settings.history} kept)", flush=True)
        while not stopping.is_set():
            # One poll at a time, each at most asyncore_loop_timeout (1 s), so a stop is seen within that.
            wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, use_poll=server.adj.asyncore_use_poll,
                           map=sockets, count=1)
        # Stop accepting, end every delay now, and answer what has arrived.
        held.stop()
        began = stopped_at[0] if stopped_at else time.monotonic()
        left = drain(sockets, began + DRAIN_SECONDS)
        if left:
            logging.getLogger("echo").warning("stopping with %d connection(s) still unanswered", left)
    finally:
        held.stop()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=SHUTDOWN_GRACE_SECONDS)  # type: ignore[arg-type]
        server.close()
        store.close()
    print("Echo stopped", flush=True)
    return 0


def run() -> NoReturn:
    sys.exit(main())
