"""Settings: one table of name -> converter -> default, shared by flags, env and --help.

Every limit Echo enforces is named here once, with the reason for its default.
`load_settings` layers defaults, then ``ECHO_*`` environment variables, then
explicit overrides (the CLI's flags or ``create_app(config)``), and fails fast
with one `ConfigError` line on an unknown or malformed value.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .model.http import is_token

# Large enough for real webhook payloads and file uploads people debug, small
# enough that a handful of concurrent uploads cannot exhaust a CI container.
MAX_BODY_BYTES = 10 * 1024 * 1024

# Bodies kept per exchange in history. 64 KiB shows any JSON or form payload in
# full while 1000 kept exchanges stay near 64 MiB even with large uploads.
KEEP_BODY_BYTES = 64 * 1024

# A delay longer than this is almost always a typo (ms meant as s) and would
# hold a worker thread for that long.
MAX_DELAY_SECONDS = 10.0

# Exchanges kept in history: a few minutes of a busy test run.
HISTORY_LIMIT = 1000

# Kept exchanges one filtered list request may examine. A filter that matches
# little would otherwise walk the whole history on every call (and on Redis
# fetch each exchange): 10,000 is a few milliseconds of matching in memory.
MAX_SCAN = 10_000

# Exchanges waiting to be written while the store (Redis) is down or slow:
# an outage of a few minutes under a busy test run loses nothing. Past it the
# oldest waiting are dropped (counted in echo_store_dropped_total).
STORE_BUFFER = 10_000

# Bytes of those waiting exchanges, as their bodies, URL and headers plus about
# 1 KiB each: 10,000 typical exchanges (a few KiB) fit, and so do ~250 that keep
# two full --keep-body bodies, so an outage under large uploads holds at most
# about another default history's worth of memory.
STORE_BUFFER_BYTES = 64 * 1024 * 1024

# Request line plus headers. Browsers and proxies cap headers near 8-64 KiB;
# beyond this waitress answers 431 before the app runs.
MAX_HEADER_BYTES = 64 * 1024

# Nesting depth of a JSON body echoed back as `json`. Deeper documents are
# adversarial (they exist to blow up recursive encoders) and stay in `body`.
MAX_JSON_DEPTH = 128

# Values in a JSON body parsed into `json` (each array, object, string,
# number, true, false and null counts one). Every document that fits in
# --keep-body (64 KiB holds at most ~33,000 values) is parsed with room to
# spare; a parsed value costs 30-100 bytes of Python objects, so the cap keeps
# one body's parse near 10 MiB, where 10 MiB of "[[],[],...]" (three million
# empty lists) cost over 500 MiB and 4 s. Larger documents stay in `body`.
MAX_JSON_VALUES = 100_000

# Multipart parts and urlencoded fields parsed into `form`/`files`; werkzeug's
# own default, named so it is visible and configurable.
MAX_FORM_PARTS = 1000

# Worker threads. Each `_delay` holds one thread for its duration, so a few more
# than waitress's default of 4 keep delayed requests from starving the others.
# Throughput does not grow past 8: wrk -t2 -c32 -d3s on GET /bench, 2 cores,
# three rounds: 4 threads 1.9-3.1k req/s, 8 threads 2.4-4.6k, 16 threads 3.2-4.6k.
THREADS = 8

# Client connections open at once. waitress's own 100 let 110 idle sockets lock
# everyone out; an idle connection costs a file descriptor and a few KiB, so a
# thousand is cheap (the start raises the process's descriptor limit to fit, or
# refuses to start).
CONNECTION_LIMIT = 1000

# Seconds a connection may sit idle (no request in progress) before it is
# closed. waitress's 120 s let idle sockets keep their slots for two minutes;
# 30 s is longer than any keep-alive pool waits between a test's requests.
CHANNEL_TIMEOUT_SECONDS = 30

# Lines of httpbin's /stream/{n} and hops of its redirect chains: httpbin's own
# bound for /stream, and far more redirects than any client follows (requests: 30).
MAX_HTTPBIN_N = 100

# The longest a history wait may ask for: longer than any test waits for a
# webhook, short enough that a forgotten wait gives its worker back soon.
MAX_WAIT_SECONDS = 30.0
# Rules added through /_/api/rules and held at once. Each test adds a few and
# removes them; a thousand is far past any suite's need while a client stuck in
# a loop cannot grow the process without bound (each rule is a few KiB).
MAX_RULES = 1000

LOG_FORMATS = ("text", "json", "pretty", "off")


class ConfigError(ValueError):
    """A setting that cannot be used; its message is one line for the user."""


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        try:
            value = int(str(raw).strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"{raw!r} is not a whole number") from None
        if maximum is not None and not minimum <= value <= maximum:
            raise ConfigError(f"{value} is out of range: must be from {minimum} to {maximum}")
        if value < minimum:
            raise ConfigError(f"{value} is out of range: must be at least {minimum}")
        return value

    return convert


def _seconds(raw: str) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{raw!r} must be a finite number of seconds, 0 or more")
    return value


def _held(raw: str) -> int | None:
    # "auto" (the default) is --threads minus 2, at least 1: see Settings.held_limit.
    if str(raw).strip().lower() == "auto":
        return None
    return _int(0, 1024)(raw)


def _waiters(raw: str) -> int | None:
    # "auto" (the default) is half of --threads, within --max-held: see Settings.waiter_limit.
    if str(raw).strip().lower() == "auto":
        return None
    return _int(0, 1024)(raw)


def _bool(raw: str | bool) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{raw!r} is not a boolean (use true or false)")


def _host(raw: str) -> str:
    text = str(raw).strip()
    if not text or any(c.isspace() for c in text):
        raise ConfigError(f"{raw!r} is not a host name or address")
    return text


def _store(raw: str) -> str:
    text = str(raw).strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme not in ("memory", "redis", "rediss", "unix", "sqlite"):
        raise ConfigError(f"{raw!r}: unknown store scheme (use memory://, redis://host:port/db or sqlite:///PATH)")
    if scheme == "sqlite":
        sqlite_path(text)
    return text


def sqlite_path(url: str) -> str:
    """The file an sqlite:// store URL names: sqlite:///relative/path.db or sqlite:////absolute/path.db.

    The path is taken as written (no percent-decoding); a host, a query or a
    fragment is refused rather than silently ignored.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() != "sqlite" or not rest.startswith("/"):
        raise ConfigError(f"{url!r}: an SQLite store is sqlite:///relative/path.db or sqlite:////absolute/path.db "
                          "(three slashes, then the path)")
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ConfigError(f"{url!r}: name the database file after sqlite:///, e.g. sqlite:////data/echo.db")
    if "?" in path or "#" in path or "\x00" in path:
        raise ConfigError(f"{url!r}: an SQLite store URL takes no options (no '?' or '#' in the path)")
    return path


def _prefix(raw: str) -> str:
    text = str(raw).strip()
    if not re.fullmatch(r"/(?:[A-Za-z0-9._~-]+/)*", text) or text == "/":
        raise ConfigError(f"{raw!r}: the inspector prefix must look like /_/ (slash, segments, slash)")
    return text


def _auth(raw: str) -> str:
    text = str(raw)
    if text and (":" not in text or text.startswith(":")):
        raise ConfigError("expected USER:PASS")
    return text


def _redact(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in str(raw).split(",") if part.strip())
    for name in names:
        if not is_token(name):
            raise ConfigError(f"{name!r} is not a header name")
    return names


def _log(raw: str) -> str:
    text = str(raw).strip().lower()
    if text not in LOG_FORMATS:
        raise ConfigError(f"{raw!r}: use one of {', '.join(LOG_FORMATS)}")
    return text


def _text(raw: str) -> str:
    return str(raw).strip()


def _rules_file(raw: str) -> str:
    # The file is read (and every rule checked) when the app is built, so that
    # a bad rule names its number and field; here only the name's shape.
    text = str(raw).strip()
    if text and not text.lower().endswith((".toml", ".json")):
        raise ConfigError(f"{raw!r}: a rules file is TOML or JSON, named *.toml or *.json")
    return text


def _trusted_proxy(raw: str) -> str:
    # waitress trusts exactly one peer address, compared as a string with the
    # socket's (or '*' for any); it takes no list and no CIDR. A typo would
    # otherwise trust nobody without a word, so it is refused here.
    text = str(raw).strip()
    if text in ("", "*"):
        return text
    try:
        # The compressed form is how the socket spells the peer (0:0::1 arrives as ::1).
        return ipaddress.ip_address(text).compressed
    except ValueError:
        raise ConfigError(f"{raw!r} is not an IP address (one address, e.g. 10.0.0.5 or ::1, or '*' for any; "
                          "lists and CIDR ranges are not supported)") from None


def _runtime_file(raw: str) -> str | None:
    # None is "auto" (see default_runtime_file); "" turns the file off.
    text = str(raw).strip()
    if text.lower() in ("", "auto"):
        return None
    if text.lower() == "off":
        return ""
    if text.endswith(("/", os.sep)) or os.path.isdir(text):
        raise ConfigError(f"{raw!r} is a directory: name a file, e.g. /tmp/echo-server.json")
    return text


def default_runtime_file() -> str:
    """Where the runtime file goes by default: the user's runtime directory, else the temp directory.

    Per user (the temp directory is shared), and the same for the server and
    `echo-server health` as long as both see the same environment."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and os.path.isdir(runtime_dir):
        return os.path.join(runtime_dir, "echo-server.json")
    return os.path.join(tempfile.gettempdir(), f"echo-server-{os.getuid()}.json")


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str | None = None  # None marks a boolean switch

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "ECHO_" + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("host", _host, "127.0.0.1", "address to bind (the container image uses 0.0.0.0)", "HOST"),
    Setting("port", _int(0, 65535), 8080, "port to bind; 0 picks a free one", "PORT"),
    Setting("threads", _int(1, 1024), THREADS, "worker threads; each _delay holds one while it waits", "N"),
    Setting("max_held", _held, None, "requests that may hold a worker while they wait (_delay); one more gets 503 with Retry-After; at most --threads minus 1; auto is --threads minus 2, at least 1", "N"),
    Setting("connection_limit", _int(1, 1_000_000), CONNECTION_LIMIT, "client connections open at once; more wait unaccepted until one closes", "N"),
    Setting("channel_timeout", _int(1, 86_400), CHANNEL_TIMEOUT_SECONDS, "seconds an idle connection is kept open", "SECONDS"),
    Setting("history", _int(0), HISTORY_LIMIT, "exchanges kept in history; 0 turns recording off", "N"),
    Setting("max_scan", _int(1), MAX_SCAN, "kept exchanges one filtered list, page or wait may examine; where it stops, the answer says so (partial, next)", "N"),
    Setting("history_ttl", _seconds, 0.0, "seconds an exchange is kept in a Redis or SQLite store; 0 keeps it until --history pushes it out", "SECONDS"),
    Setting("store", _store, "memory://", "history store: memory://, redis://[:password@]host:port/db (rediss:// for TLS) or sqlite:///PATH (sqlite:////abs/path.db)", "URL"),
    Setting("store_prefix", _text, "echo", "key prefix in a shared Redis, so several deployments can use one", "PREFIX"),
    Setting("store_timeout", _seconds, 0.5, "seconds a store call may take before it counts as failed (writes are then retried from the buffer)", "SECONDS"),
    Setting("start_without_store", _bool, False, "start even when the store cannot be reached at start-up"),
    Setting("store_buffer", _int(1), STORE_BUFFER, "exchanges waiting to be written to a Redis store (kept through an outage); past it the oldest are dropped", "N"),
    Setting("store_buffer_bytes", _int(1), STORE_BUFFER_BYTES, "bytes of exchanges waiting to be written to a Redis store; past it the oldest are dropped", "BYTES"),
    Setting("max_body", _int(0), MAX_BODY_BYTES, "largest request body, on the wire and decoded; larger ones get 413", "BYTES"),
    Setting("keep_body", _int(0), KEEP_BODY_BYTES, "request/response body bytes kept per exchange in history", "BYTES"),
    Setting("max_header", _int(1024), MAX_HEADER_BYTES, "largest request line plus headers; larger ones get 431", "BYTES"),
    Setting("max_delay", _seconds, MAX_DELAY_SECONDS, "largest _delay a caller may ask for", "SECONDS"),
    Setting("max_wait", _seconds, MAX_WAIT_SECONDS, "largest timeout a history wait (<prefix>api/exchanges/wait) may ask for", "SECONDS"),
    Setting("max_waiters", _waiters, None, "history waits held at once, each taking one of --max-held too; one more gets 503 with Retry-After; at most --max-held; auto is half of --threads, at least 1, within --max-held", "N"),
    Setting("max_json_depth", _int(1, 10_000), MAX_JSON_DEPTH, "deepest JSON body echoed back as `json`", "N"),
    Setting("max_json_values", _int(1), MAX_JSON_VALUES, "most values in a JSON body echoed back as `json`", "N"),
    Setting("max_form_parts", _int(1), MAX_FORM_PARTS, "most query parameters, form fields and multipart parts parsed into args/form/files", "N"),
    Setting("ui_prefix", _prefix, "/_/", "path prefix of the inspector pages and API", "PREFIX"),
    Setting("ui_auth", _auth, "", "USER:PASS puts HTTP Basic auth on the inspector (the echo stays open)", "USER:PASS"),
    Setting("redact", _redact, (), "headers kept as [redacted] in history, comma-separated (e.g. Authorization,Cookie)", "HEADERS"),
    Setting("no_cors", _bool, False, "do not answer CORS requests and preflights specially"),
    Setting("httpbin", _bool, False, "answer psf/httpbin's routes (/get, /status/418, ...) as httpbin 0.10 does; every other path still gets the echo"),
    Setting("max_httpbin_n", _int(1, 100_000), MAX_HTTPBIN_N, "most lines of /stream/{n} and hops of a redirect chain in httpbin mode", "N"),
    Setting("rules", _rules_file, "", "rules file (TOML or JSON) of programmable answers; re-read on SIGHUP", "FILE"),
    Setting("max_rules", _int(0, 1_000_000), MAX_RULES, "most rules added through <prefix>api/rules and held at once; one more gets 409", "N"),
    Setting("no_metrics", _bool, False, "do not serve Prometheus metrics at <prefix>metrics"),
    Setting("trusted_proxy", _trusted_proxy, "", "IP address of a proxy whose X-Forwarded-* headers are trusted ('*' for any)", "ADDR"),
    Setting("log", _log, "text", "access log on stdout: text, json, pretty or off", "FORMAT"),
    Setting("runtime_file", _runtime_file, None, "file where the server writes the address it bound, for `echo-server health`; auto is $XDG_RUNTIME_DIR/echo-server.json, else <tempdir>/echo-server-<uid>.json; off writes none", "PATH"),
)

SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def _default(name: str) -> Any:
    return SETTINGS_BY_NAME[name].default


def flag(name: str) -> str:
    """The command-line flag of a setting, for messages: flag("max_body") is "--max-body"."""
    return SETTINGS_BY_NAME[name].flag


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one Echo server.

    Each field's default is its row's in `SETTINGS`, named there once."""

    host: str = _default("host")
    port: int = _default("port")
    threads: int = _default("threads")
    max_held: int | None = _default("max_held")
    connection_limit: int = _default("connection_limit")
    channel_timeout: int = _default("channel_timeout")
    history: int = _default("history")
    history_ttl: float = _default("history_ttl")
    max_scan: int = _default("max_scan")
    store: str = _default("store")
    store_prefix: str = _default("store_prefix")
    store_timeout: float = _default("store_timeout")
    start_without_store: bool = _default("start_without_store")
    store_buffer: int = _default("store_buffer")
    store_buffer_bytes: int = _default("store_buffer_bytes")
    max_body: int = _default("max_body")
    keep_body: int = _default("keep_body")
    max_header: int = _default("max_header")
    max_delay: float = _default("max_delay")
    max_wait: float = _default("max_wait")
    max_waiters: int | None = _default("max_waiters")
    max_json_depth: int = _default("max_json_depth")
    max_json_values: int = _default("max_json_values")
    max_form_parts: int = _default("max_form_parts")
    ui_prefix: str = _default("ui_prefix")
    ui_auth: str = _default("ui_auth")
    redact: tuple[str, ...] = _default("redact")
    no_cors: bool = _default("no_cors")
    httpbin: bool = _default("httpbin")
    max_httpbin_n: int = _default("max_httpbin_n")
    rules: str = _default("rules")
    max_rules: int = _default("max_rules")
    no_metrics: bool = _default("no_metrics")
    trusted_proxy: str = _default("trusted_proxy")
    log: str = _default("log")
    runtime_file: str | None = _default("runtime_file")

    @property
    def held_limit(self) -> int:
        """--max-held, or by default two workers kept free for health, the inspector and echoes."""
        if self.max_held is not None:
            return self.max_held
        return max(1, self.threads - 2)

    @property
    def waiter_limit(self) -> int:
        """--max-waiters, or by default half of the workers, and never more than --max-held."""
        if self.max_waiters is not None:
            return self.max_waiters
        return min(max(1, self.threads // 2), self.held_limit)

    @property
    def runtime_path(self) -> str | None:
        """The runtime file's path, or None when --runtime-file is off."""
        if self.runtime_file is None:
            return default_runtime_file()
        return self.runtime_file or None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Defaults, then ``ECHO_*`` variables, then overrides; raise ConfigError on bad input."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}  # which variable or flag set a value, for the error line
    for setting in SETTINGS:
        if environ is not None and setting.env in environ:
            values[setting.name] = _convert(setting, environ[setting.env], setting.env)
            where[setting.name] = setting.env
    for name, raw in (overrides or {}).items():
        found = SETTINGS_BY_NAME.get(name)
        if found is None:
            raise ConfigError(f"unknown setting {name!r}")
        setting = found
        if raw is None:
            continue
        values[name] = _convert(setting, raw, setting.flag)
        where[name] = setting.flag
    settings = Settings(**values)
    _check_held(settings, where.get("max_held", "--max-held"))
    _check_waiters(settings, where.get("max_waiters", "--max-waiters"))
    return settings


def _check_held(settings: Settings, where: str) -> None:
    # A held request keeps its worker; at least one must stay free for health
    # checks and the inspector. One thread has no worker to spare, so there a
    # delay may hold the only one (the default of 1 says so).
    most = max(1, settings.threads - 1)
    if settings.max_held is not None and settings.max_held > most:
        raise ConfigError(f"{where}: {settings.max_held} holders leave no worker free for the others: "
                          f"must be at most --threads minus 1 ({most})")


def _check_waiters(settings: Settings, where: str) -> None:
    # A wait holds its worker like a delay and takes a --max-held slot as well,
    # so more waiters than held slots could never all be served.
    if settings.max_waiters is not None and settings.max_waiters > settings.held_limit:
        raise ConfigError(f"{where}: {settings.max_waiters} waiters do not fit in --max-held "
                          f"({settings.held_limit}): must be at most that")


def _convert(setting: Setting, raw: Any, where: str) -> Any:
    if isinstance(raw, (int, float, tuple, bool)):
        if isinstance(raw, tuple):
            raw = ",".join(raw)
        elif isinstance(raw, bool) and setting.metavar is not None:
            raise ConfigError(f"{where}: expected a value, not a boolean")
    try:
        return setting.convert(raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
