"""How Echo runs waitress: stricter request framing, and a stop that answers what arrived.

waitress 3.0.2 (the newest release) leaves three holes that Echo closes here,
installed on the server by the CLI:

- A chunk-size line (and a trailer section) may grow without end: waitress
  glues each read onto what it has and searches the whole again, so megabytes
  of `0` without CRLF keep its one I/O thread busy for minutes. Echo bounds
  each chunk-size line and the trailer section by --max-header, as the head.
- `Content-Length` with `Transfer-Encoding: chunked` is read as chunked and the
  connection kept open; behind a proxy that trusts the length, what follows is
  a smuggled request. Echo refuses such a message (RFC 9112 section 6.1 says
  it "ought to be handled as an error") with `400` before reading its body, and
  closes the connection, so nothing after it is answered. So is an HTTP/1.0
  message with `Transfer-Encoding`, whose framing the same section calls faulty.
- On stop, waitress cancels queued requests and stops sending; `drain` instead
  stops accepting and serves every request already received, within a deadline.

It also carries out a rule's `fault` (`fault(environ, kind)`): the connection
ends without an answer, closed cleanly (`close`: the peer reads end of stream)
or reset (`reset`: SO_LINGER 0, so closing sends RST and the peer's read fails).
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, NoReturn, cast

from waitress import wasyncore
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.receiver import ChunkedReceiver
from waitress.server import BaseWSGIServer
from waitress.utilities import BadRequest, find_double_newline

from ..config import flag

# How often the stopping loop looks whether everything received is answered.
DRAIN_TICK_SECONDS = 0.05


class BoundedChunkedReceiver(ChunkedReceiver):
    """waitress's chunked decoder, refusing a chunk-size line or trailer section over `limit` bytes."""

    def __init__(self, buf: Any, limit: int) -> None:
        super().__init__(buf)
        self.limit = limit

    def received(self, s: bytes) -> int:
        # waitress's decoder takes any run of bytes; it is fed here one piece
        # at a time (chunk data, a chunk's CRLF, one whole line) so that each
        # line can be measured before it is parsed, at any read boundary.
        consumed = 0
        while s and not self.completed and self.error is None:
            if self.chunk_remainder > 0:
                piece = s[:self.chunk_remainder]
            elif self.validate_chunk_end:
                piece = s[:2]
            elif not self.all_chunks_received:
                pending = self.control_line + s  # control_line is within the limit
                end = pending.find(b"\r\n")
                if (end if end >= 0 else len(pending)) > self.limit:
                    return consumed + self._refuse(s, "chunk-size line")
                piece = s if end < 0 else s[:end + 2 - len(self.control_line)]
            else:
                # The trailer section's field lines, without the blank line that ends them.
                pending = self.trailer + s  # the trailer kept so far is within the limit
                if pending.startswith(b"\r\n"):
                    size = 0  # no trailer fields
                else:
                    end = find_double_newline(pending)
                    size = end - 4 if end >= 0 else len(pending)
                if size > self.limit:
                    return consumed + self._refuse(s, "trailer section")
                piece = s
            taken = super().received(piece)
            consumed += taken
            if taken < len(piece):
                break  # the message ended inside this piece; the rest is the next request's
            s = s[len(piece):]
        return consumed

    def _refuse(self, s: bytes, what: str) -> int:
        self.error = BadRequest(f"{what} longer than {self.limit} bytes ({flag('max_header')})")
        self.all_chunks_received = True
        self.control_line = self.trailer = b""
        return len(s)  # swallowed: the connection closes after the 400


class EchoParser(HTTPRequestParser):
    """waitress's parser with Echo's framing rules (see the module docstring)."""

    chunk_line_limit = 64 * 1024  # replaced by --max-header in `channel_class`

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        headers = cast(dict[str, str], self.headers)  # a dict at run time; a Mapping in the stubs
        problem = None
        if self.chunked and "CONTENT_LENGTH" in headers:
            problem = ("Content-Length and Transfer-Encoding together: ambiguous framing "
                       "(RFC 9112 section 6.1); send one of them")
        elif self.version == "1.0" and "TRANSFER_ENCODING" in headers:
            problem = ("Transfer-Encoding in an HTTP/1.0 request: faulty framing "
                       "(RFC 9112 section 6.1); use HTTP/1.1 or Content-Length")
        if problem:
            # The 400 closes the connection; an HTTP/1.0 keep-alive would have it say Keep-Alive.
            headers.pop("CONNECTION", None)
            raise ParsingError(problem)
        if self.chunked and isinstance(self.body_rcv, ChunkedReceiver):
            self.body_rcv = BoundedChunkedReceiver(self.body_rcv.buf, self.chunk_line_limit)


# A faulted channel logs here instead of on "waitress": its "Client disconnected
# while serving" line would be one misleading line per fault.
_FAULT_LOG = logging.getLogger("waitress.fault")
_FAULT_LOG.setLevel(logging.WARNING)


class Fault(ClientDisconnected):
    """Raised by the echo to end its connection without an answer. waitress
    treats it as a caller gone away: it writes nothing and closes the socket."""


def connection_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client's socket of the channel serving `environ` (waitress only), or None."""
    channel = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
    sock = getattr(channel, "socket", None)
    return sock if isinstance(sock, socket.socket) else None


def fault(environ: dict[str, Any], kind: str) -> NoReturn:
    """End this request's connection without an answer: `close` (FIN) or `reset` (RST)."""
    channel = getattr(environ.get("waitress.client_disconnected"), "__self__", None)
    sock = connection_socket(environ)
    if sock is None or channel is None:
        raise RuntimeError(f"a {kind} fault needs waitress (echo-server), which owns the connection")
    if kind == "reset":
        # Linger on, for 0 s: close() drops the connection with RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    channel.logger = _FAULT_LOG
    raise Fault(kind)


def channel_class(max_header: int) -> type[HTTPChannel]:
    """A waitress channel whose requests are parsed by `EchoParser`, lines bounded by `max_header`."""

    class Parser(EchoParser):
        chunk_line_limit = max_header

    class Channel(HTTPChannel):
        parser_class = Parser

    return Channel


def install(sockets: dict[int, Any], max_header: int, connection_limit: int) -> None:
    """Put Echo's parser on every listening socket, and count --connection-limit in clients only."""
    channel = channel_class(max_header)
    for dispatcher in sockets.values():
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = channel
            # waitress counts every socket in its map, the listening ones and
            # its wake-up pipe too; the setting is about client connections.
            dispatcher.adj.connection_limit = connection_limit + len(sockets)


def drain(sockets: dict[int, Any], deadline: float, clock: Callable[[], float] = time.monotonic) -> int:
    """Stop accepting, close idle connections, and serve until every received request is answered.

    Returns how many connections were still busy at `deadline` (0 when all was answered).
    """
    for dispatcher in list(sockets.values()):
        if isinstance(dispatcher, BaseWSGIServer):
            wasyncore.dispatcher.close(dispatcher)  # the listening socket only; the wake-up pipe stays
    while True:
        busy = 0
        for dispatcher in list(sockets.values()):
            if not isinstance(dispatcher, HTTPChannel):
                continue
            if dispatcher.requests or dispatcher.total_outbufs_len:
                busy += 1
            elif not dispatcher.will_close:
                # Idle, or half-way through sending a request: nothing to answer.
                dispatcher.will_close = True
        if not busy or clock() >= deadline:
            # One more turn closes the connections just marked.
            wasyncore.loop(timeout=0, use_poll=True, map=sockets, count=1)
            return busy
        wasyncore.loop(timeout=DRAIN_TICK_SECONDS, use_poll=True, map=sockets, count=1)
