"""Access log: one line (or block) per exchange on stdout, in the --log format."""

from __future__ import annotations

import json
import sys
import threading
from typing import Callable, TextIO

from .documents import iso_time
from .records import Exchange
from .render import highlight_terminal


def _target(exchange: Exchange) -> str:
    request = exchange.request
    return request.path + (f"?{request.query_string}" if request.query_string else "")


def text_line(exchange: Exchange) -> str:
    r = exchange.request
    return (
        f"{iso_time(r.started)} {r.remote_addr} {r.method} {_target(exchange)} "
        f"{exchange.response.status} {exchange.duration_ms:.1f}ms {r.body_size}B {r.id}\n"
    )


def json_line(exchange: Exchange) -> str:
    r = exchange.request
    return json.dumps(
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
    ) + "\n"


def pretty_block(exchange: Exchange) -> str:
    """A readable block for a terminal: request line, headers, highlighted body."""
    r = exchange.request
    lines = [f"\x1b[1m{r.method} {_target(exchange)}\x1b[0m  -> {exchange.response.status}  "
             f"{exchange.duration_ms:.1f}ms  {r.id}"]
    lines += [f"  \x1b[36m{name}\x1b[0m: {value}" for name, value in r.headers]
    if r.body:
        content_type = r.header("Content-Type")
        text = r.decoded.decode("utf-8", "replace")
        lines.append(highlight_terminal(text, content_type).rstrip("\n"))
    return "\n".join(_printable(line) for line in lines) + "\n\n"


def _printable(line: str) -> str:
    # Keep our own colour codes, but never pass a caller's control characters to the terminal.
    return "".join(c if c.isprintable() or c in "\x1b\t" else "\ufffd" for c in line)


class AccessLog:
    """Writes each exchange in one format; a lock keeps lines whole across threads."""

    FORMATS: dict[str, Callable[[Exchange], str]] = {"text": text_line, "json": json_line, "pretty": pretty_block}

    def __init__(self, fmt: str, stream: TextIO | None = None) -> None:
        if fmt == "pretty" and not (stream or sys.stdout).isatty():
            fmt = "text"  # colour codes in a file or `docker logs` are noise
        self.format = self.FORMATS[fmt]
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, exchange: Exchange) -> None:
        line = self.format(exchange)
        stream = self.stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()
