"""The command line: flags from the settings table, then waitress. Nothing else.

`echo-server` and `python -m echo` both land in `main`. A bad flag or variable
is one line on stderr and exit 2; SIGTERM and Ctrl-C stop the server cleanly.
`echo-server health` asks a running server, found through its runtime file,
whether it is healthy (exit 0) or not (exit 1), for HEALTHCHECK lines.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from waitress import wasyncore

from .config import SETTINGS, SETTINGS_BY_NAME, ConfigError, Settings, flag, load_settings
from .observe import runtime
from .observe.logs import JsonLogFormatter, TextLogFormatter, event_line
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
# Then the write-behind queue is written to the store until this long after
# the signal; what is left (the store is down) is counted in one log line.
STORE_FLUSH_BY_SECONDS = 4.5
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


def _configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    names = ["echo", "waitress"]
    if fmt == "json":
        # Every line a collector reads must parse: library warnings too.
        handler.setFormatter(JsonLogFormatter())
        logging.captureWarnings(True)
        names.append("py.warnings")
    else:
        handler.setFormatter(TextLogFormatter())
    for name in names:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    # waitress warns "Task queue depth is N" for every request that waits for a
    # free thread: thousands of lines under load, each costing a write. Queueing
    # is normal for a load-test target, so only errors from it are shown.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _bound(server: Any, settings: Settings) -> tuple[str, int]:
    """The host and port the server really listens on (--port 0 picks one)."""
    port = getattr(server, "effective_port", None)
    host = getattr(server, "effective_host", settings.host)
    if port is None:
        host, port = server.effective_listen[0][:2]
    return str(host), int(port)


def _listen_urls(host: str, port: int, settings: Settings) -> tuple[str, str]:
    if ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{port}"
    return f"{base}/", f"{base}{settings.ui_prefix}"


def _say(settings: Settings, event: str, message: str, **fields: Any) -> None:
    """A start or stop line on stdout: plain text, or a JSON event under --log json."""
    print(event_line(event, message, **fields) if settings.log == "json" else message, flush=True)


def _fail(settings: Settings, message: str) -> None:
    """One error line on stderr; under --log json a JSON event, like every other line."""
    if settings.log == "json":
        print(event_line("error", message), file=sys.stderr, flush=True)
    else:
        print(f"echo-server: error: {message}", file=sys.stderr)


def _resolve_problem(host: str, port: int) -> str | None:
    """Why `host` cannot be bound, when it is no address and no name that resolves."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return (f"{flag('host')} {host!r} is not an address of this machine or a host name that resolves "
                f"({reason})")
    return None


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


class _HealthParser(argparse.ArgumentParser):
    # Docker reserves exit code 2 of a HEALTHCHECK command; every failure is 1.
    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message}\n")


def health_main(argv: Sequence[str], environ: dict[str, str]) -> int:
    """`echo-server health`: 0 when the server's health route answers 200, else 1; one line either way."""
    parser = _HealthParser(
        prog="echo-server health",
        description="Ask the running server, found through its runtime file, whether it is healthy: "
        "exit 0 when it answers 200, 1 otherwise.",
    )
    setting = SETTINGS_BY_NAME["runtime_file"]
    parser.add_argument("--runtime-file", metavar="PATH", default=None,
                        help=f"the server's --runtime-file [env {setting.env}; default 'auto']")
    parser.add_argument("--live", action="store_true",
                        help="check <prefix>livez (the process serves) instead of <prefix>healthz "
                        "(it serves and its history store answers)")
    args = parser.parse_args(argv)
    raw = args.runtime_file if args.runtime_file is not None else environ.get(setting.env, "auto")
    try:
        path = Settings(runtime_file=setting.convert(raw)).runtime_path
    except ConfigError as exc:
        print(f"echo-server health: error: {setting.flag}: {exc}", file=sys.stderr)
        return 1
    if path is None:
        print(f"echo-server health: error: {setting.flag} is off, so the server's address is unknown",
              file=sys.stderr)
        return 1
    try:
        info = runtime.read(path)
    except runtime.RuntimeFileError as exc:
        print(f"echo-server health: error: {exc}", file=sys.stderr)
        return 1
    found = runtime.probe(info["livez" if args.live else "healthz"])
    if found.ok:
        print(f"echo-server health: ok: {found.url} {found.detail}", flush=True)
        return 0
    print(f"echo-server health: unhealthy: {found.url} {found.detail}", file=sys.stderr, flush=True)
    return 1


def waitress_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of waitress's create_server for these settings (also the pytest plugin's)."""
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
    return options


def main(argv: Sequence[str] | None = None) -> int:
    environ = dict(os.environ)
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["health"]:
        return health_main(given[1:], environ)
    try:
        settings = parse(given, environ)
    except ConfigError as exc:
        print(f"echo-server: error: {exc}", file=sys.stderr)
        return 2
    problem = _fit_descriptors(settings.connection_limit) or _resolve_problem(settings.host, settings.port)
    if problem:
        _fail(settings, problem)
        return 2
    _configure_logging(settings.log)

    from waitress.server import create_server

    from .answer.rules import RulesFileError
    from .app import create_app, reload_rules
    from .web.services import services

    try:
        app = create_app(settings)
    except RulesFileError as exc:
        # The line itself names the file, the rule and the field: FILE: rule N (name): what is wrong.
        if settings.log == "json":
            _fail(settings, str(exc))
        else:
            print(str(exc), file=sys.stderr)
        return 2
    except ConfigError as exc:
        _fail(settings, str(exc))
        return 2
    store = services(app).store
    health = store.health()
    if not health.ok:
        if not settings.start_without_store:
            _fail(settings, f"history store is unreachable: {health.detail} "
                  "(--start-without-store to start anyway)")
            return 1
        logging.getLogger("echo").error("starting without the history store: %s", health.detail)

    options = waitress_options(settings)
    try:
        server = create_server(app, **options)
    except OSError as exc:
        _fail(settings, f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
        store.close()
        return 2
    except ValueError as exc:  # waitress's own check of host and port ("Invalid host/port specified.")
        _fail(settings, f"cannot listen on {settings.host}:{settings.port}: {exc}")
        store.close()
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

    reload_wanted = threading.Event()

    def reload(signum: int, frame: Any) -> None:
        # Only a flag, as for stop: the main loop re-reads --rules between polls.
        reload_wanted.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    # TcpWSGIServer keeps its sockets in _map, MultiSocketServer (several listen addresses) in map.
    sockets = getattr(server, "map", None) or server._map  # type: ignore[union-attr]
    install(sockets, settings.max_header, settings.connection_limit)
    held = services(app).held
    runtime_path = settings.runtime_path
    try:
        host, port = _bound(server, settings)
        echo_url, ui_url = _listen_urls(host, port, settings)
        if runtime_path:
            _write_runtime(runtime_path, runtime.describe(os.getpid(), host, port, settings.ui_prefix,
                                                          echo_url, ui_url, __version__))
        _say(settings, "start", f"Echo {__version__} listening on {echo_url} - inspector at {ui_url} "
             f"(history: {health.backend}, {settings.history} kept)",
             version=__version__, url=echo_url, inspector=ui_url, history=health.backend, kept=settings.history)
        while not stopping.is_set():
            # One poll at a time, each at most asyncore_loop_timeout (1 s), so a stop is seen within that.
            wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, use_poll=server.adj.asyncore_use_poll,
                           map=sockets, count=1)
            if reload_wanted.is_set():
                reload_wanted.clear()
                reload_rules(app)
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
        flush_by = (stopped_at[0] if stopped_at else time.monotonic()) + STORE_FLUSH_BY_SECONDS
        store.flush(max(0.0, flush_by - time.monotonic()))
        store.close()  # logs how many exchanges could not be written
        if runtime_path:
            runtime.remove(runtime_path, os.getpid())
    _say(settings, "stop", "Echo stopped")
    return 0


def _write_runtime(path: str, info: dict[str, Any]) -> None:
    try:
        runtime.write(path, info)
    except OSError as exc:
        # Not fatal: the echo works; only `echo-server health` will not find it.
        logging.getLogger("echo").warning("cannot write the runtime file %s (%s): `echo-server health` "
                                          "will not find this server; set %s to a writable path",
                                          path, exc.strerror or exc, flag("runtime_file"))


def run() -> NoReturn:
    sys.exit(main())
