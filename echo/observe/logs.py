"""Access log: one line (or, for people at a terminal, one block) per exchange on stdout.

`--log text` is a line for reading and grepping, `--log json` one JSON object
per line for log collectors (the container image's default), `--log pretty` a
coloured block with the request line, headers and highlighted body, and `off`
nothing. Everything in a log line that came from the wire is made inert first:
a caller's escape sequences, bidi overrides or other control characters are
written as visible `\\x1b`-style escapes, never passed to the terminal, so a
request cannot retitle, clear or recolour the screen of whoever is watching.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..formats.documents import iso_time
from ..formats.render import highlight_terminal, pretty_text
from ..model.http import decode_text, phrase
from ..model.records import Exchange
from ..model.redact import redact_pairs

log = logging.getLogger("echo")

# Body characters shown in a pretty block. A screenful or two is what a person
# reads at a terminal; the inspector has the whole body.
PRETTY_BODY_CHARS = 4096
# Re-indenting JSON parses the whole body; past this size it is shown as sent,
# so a large upload costs the log no more than its first screenful.
PRETTY_REFORMAT_CHARS = 256 * 1024

# Our own colours (SGR codes). These and pygments' colours are the only escapes
# a pretty block sends to the terminal.
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
CYAN = "\x1b[36m"
RESET = "\x1b[0m"
STATUS_COLOURS = {2: "\x1b[32m", 3: "\x1b[36m", 4: "\x1b[33m", 5: "\x1b[31m"}


def inert(text: str, keep: str = "") -> str:
    """`text` with every character a terminal would act on written as a visible escape.

    That is C0 and C1 controls, DEL, lone surrogates and the Unicode format and
    separator characters (bidi overrides, zero-width joiners, line separators):
    all that str.isprintable() rejects. Characters in `keep` (a body's newlines
    and tabs) are left alone.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char in keep or char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFF:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def _target(exchange: Exchange) -> str:
    request = exchange.request
    return request.path + (f"?{request.query_string}" if request.query_string else "")


def text_line(exchange: Exchange) -> str:
    """time client method target status duration size id, on one line."""
    r = exchange.request
    return inert(
        f"{iso_time(r.started)} {r.remote_addr} {r.method} {_target(exchange)} "
        f"{exchange.response.status} {exchange.duration_ms:.1f}ms {r.body_size}B {r.id}"
    ) + "\n"


# JSON escapes C0 controls itself; these it would write raw with ensure_ascii=False.
_JSON_RAW_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")


def json_line(exchange: Exchange) -> str:
    """One JSON object per line; non-ASCII text stays readable, controls are \\u-escaped."""
    r = exchange.request
    line = json.dumps(
        {
            "time": iso_time(r.started),
            "id": r.id,
            "remote_addr": r.remote_addr,
            "method": r.method,
            "path": r.path,
            "query_string": r.query_string,
            "status": exchange.response.status,
            "duration_ms": round(exchange.duration_ms, 3),
            "request_bytes": r.body_size,
            "response_bytes": exchange.response.body_size,
        },
        ensure_ascii=False,
    )
    # Such characters can only occur inside JSON strings, where \\u escapes mean the same.
    return _JSON_RAW_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", line) + "\n"


def _json_text(doc: dict[str, Any]) -> str:
    line = json.dumps(doc, ensure_ascii=False, default=str)
    return _JSON_RAW_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)


def event_line(event: str, message: str, **fields: Any) -> str:
    """A server event (start, stop, error) as one JSON object, for --log json.

    `message` is the line --log text prints, so a person reading the JSON (or a
    script waiting for "listening on") finds the same words."""
    return _json_text({"time": iso_time(time.time()), "event": event, "message": message, **fields})


class JsonLogFormatter(logging.Formatter):
    """The `logging` records of Echo and waitress as one JSON object per line.

    With --log json every line Echo writes is JSON: a collector (Loki, Fluent
    Bit, Cloud Logging) parses each one instead of tripping over plain text.
    A traceback stays inside the object, as `exc_info`, instead of spreading
    over many lines."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": iso_time(record.created),
            "event": "log",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return _json_text(doc)


class TextLogFormatter(logging.Formatter):
    """Echo's and waitress's `logging` records as text lines, made inert.

    waitress's warnings can quote what a client sent (a malformed header
    value): its escape sequences must not reach the terminal of whoever reads
    the log, so the line goes through `inert` like every access-log line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return inert(super().format(record), keep="\n")


def _status_text(code: int) -> str:
    name = phrase(code)
    return f"{code} {name}" if name else str(code)


def _body_lines(exchange: Exchange) -> list[str]:
    r = exchange.request
    data = r.decoded
    if not data:
        return []
    content_type = r.header("Content-Type")
    text = decode_text(data, content_type)
    if text is None:
        return [f"{DIM}[{len(data)} bytes of binary body]{RESET}"]
    if len(text) <= PRETTY_REFORMAT_CHARS:
        text = pretty_text(text, content_type)
    more = ""
    if len(text) > PRETTY_BODY_CHARS:
        more = f"{DIM}... {len(text) - PRETTY_BODY_CHARS} more characters in the inspector{RESET}"
        text = text[:PRETTY_BODY_CHARS]
    if r.truncated or r.too_large:
        more = more or f"{DIM}... body cut at the size limit{RESET}"
    # CR LF line ends are the norm in forms and multipart; only a lone CR is shown as \x0d.
    # Made inert before highlighting: pygments adds only our colours around it.
    safe = inert(text.replace("\r\n", "\n"), keep="\n\t")
    highlighted = highlight_terminal(safe, content_type).rstrip("\n")
    lines = ["", *highlighted.split("\n")]
    return lines + [more] if more else lines


def pretty_block(exchange: Exchange) -> str:
    """A readable block: request line, headers, highlighted body, then the answer."""
    r = exchange.request
    status = exchange.response.status
    colour = STATUS_COLOURS.get(status // 100, "")
    lines = [
        f"{DIM}{iso_time(r.started)}  {inert(r.remote_addr)}  {r.id}{RESET}",
        f"{BOLD}{inert(r.method)} {inert(_target(exchange))} {inert(r.http_version)}{RESET}",
    ]
    lines += [f"{CYAN}{inert(name)}{RESET}: {inert(value)}" for name, value in r.headers]
    lines += _body_lines(exchange)
    lines.append(
        f"{colour}{BOLD}<- {_status_text(status)}{RESET}  {inert(exchange.response.content_type) or '-'}  "
        f"{exchange.response.body_size}B  {exchange.duration_ms:.1f}ms"
    )
    return "\n".join(lines) + "\n\n"


class AccessLog:
    """Writes each exchange in one format; a lock keeps lines and blocks whole across threads."""

    FORMATS: dict[str, Callable[[Exchange], str]] = {"text": text_line, "json": json_line, "pretty": pretty_block}

    def __init__(self, fmt: str, stream: TextIO | None = None, redact: tuple[str, ...] = ()) -> None:
        target = stream or sys.stdout
        if fmt == "pretty" and not _is_terminal(target):
            fmt = "text"  # colour codes in a file or `docker logs` are noise
        self.name = fmt
        self.format = self.FORMATS[fmt]
        self.stream = stream
        # Only the pretty block shows headers; --redact hides them there as in history.
        self.redact = frozenset(name.lower() for name in redact) if fmt == "pretty" else frozenset()
        self._lock = threading.Lock()
        self._broken = False

    def __call__(self, exchange: Exchange) -> None:
        if self.redact:
            exchange = _redacted(exchange, self.redact)
        line = self.format(exchange)
        stream = self.stream or sys.stdout
        with self._lock:
            try:
                try:
                    stream.write(line)
                except UnicodeEncodeError:
                    # An ASCII-only stdout (LANG=C without UTF-8 mode): escape, do not fail the echo.
                    stream.write(line.encode("ascii", "backslashreplace").decode("ascii"))
                stream.flush()
            except (OSError, ValueError) as exc:
                # stdout gone (closed pipe, detached terminal): the echo keeps answering.
                if not self._broken:
                    self._broken = True
                    log.error("access log cannot be written, lines are being dropped: %s", exc)


def _redacted(exchange: Exchange, names: frozenset[str]) -> Exchange:
    hidden = redact_pairs(exchange.request.headers, names)
    if hidden is exchange.request.headers:
        return exchange
    return dataclasses.replace(exchange, request=dataclasses.replace(exchange.request, headers=hidden))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object without a tty
        return False
