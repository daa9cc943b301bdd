"""The access log on stdout, against the real server: text, json, off, and pretty
on a real terminal (a pty), plus the guarantee that nothing a caller sends
reaches the terminal as a control sequence.

An exchange's log entry is written before its answer is sent, so once a
request has been answered its entry is on the way; tests find it by the
answer's X-Echo-Id. Only `off` needs the server stopped, to show an absence.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
from werkzeug.test import EnvironBuilder

from echo.app import capture_limits
from echo.capture.request import capture
from echo.config import Settings
from echo.model.factory import make_exchange, make_response
from echo.model.records import IdSource
from echo.observe.logs import AccessLog

from support import ROOT, START_LINE, EchoServer, end_process, raw_request, split_response, start_echo

# Our own colours are SGR sequences (ESC [ digits ; ... m); a caller's escape is
# anything else, or an SGR we never emit.
OUR_SGR = re.compile(r"\x1b\[[0-9;]*m")
# The last line of a pretty block: "<- 201 Created ...", in the status colour.
ANSWER_LINE = re.compile(r"\n(?:\x1b\[[0-9;]*m)+<- [^\n]*\n")
STOP_SECONDS = 5
START_SECONDS = 15
# How long an entry may take to travel from the server's stdout to the test's reader.
ARRIVAL_SECONDS = 10

# Sequences a caller might try: clear screen, set the window title (OSC ... BEL),
# a C1 CSI, a bidi override, and an SGR (blink, red background) we never write.
HOSTILE = {
    "clear": "\x1b[2J",
    "title": "\x1b]0;owned\x07",
    "csi": "\x9b6n",
    "bidi": "\u202e",
    "blink": "\x1b[5;41m",
}
HOSTILE_PATH = "/logs/" + "".join(HOSTILE.values()) + "/end"
HOSTILE_SHOWN = "/logs/\\x1b[2J\\x1b]0;owned\\x07\\x9b6n\\u202e\\x1b[5;41m/end"


def send(
    port: int, method: str, target: str, body: bytes = b"", headers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, dict[str, str], bytes]:
    """One request written byte for byte (so headers can carry what http.client would refuse)."""
    head = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: 127.0.0.1", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    head.append(b"Content-Length: " + str(len(body)).encode())
    status, pairs, answer = split_response(raw_request(port, b"\r\n".join(head) + b"\r\n\r\n" + body))
    return status, {name.lower(): value for name, value in pairs}, answer


def quoted(path: str) -> str:
    return urllib.parse.quote(path.encode("utf-8"), safe="/")


def wait_for(read: Callable[[], str], needle: str, ending: str = "\n") -> str:
    """The output once `needle` and then `ending` after it have arrived."""
    deadline = time.monotonic() + ARRIVAL_SECONDS
    while True:
        text = read()
        at = text.find(needle)
        if at >= 0 and text.find(ending, at + len(needle)) >= 0:
            return text
        assert time.monotonic() < deadline, f"{needle!r} never arrived in:\n{text}"
        time.sleep(0.02)


def line_of(server: EchoServer, exchange_id: str) -> str:
    text = wait_for(lambda: "".join(server.lines()), exchange_id)
    (line,) = [line for line in text.splitlines() if exchange_id in line]
    return line


# Lines of the `logging` module on stderr (merged into the captured output).
SERVER_LOGGING = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def log_lines(output: str) -> list[str]:
    """The access-log lines: everything but the start and stop lines and the server's own logging."""
    return [line for line in output.splitlines()
            if line.strip() and not START_LINE.search(line) and line != "Echo stopped"
            and not SERVER_LOGGING.match(line)]


@pytest.fixture(scope="module")
def text_server() -> Iterator[EchoServer]:
    server = start_echo("--log", "text")
    yield server
    server.stop(STOP_SECONDS)


@pytest.fixture(scope="module")
def json_server() -> Iterator[EchoServer]:
    server = start_echo("--log", "json")
    yield server
    server.stop(STOP_SECONDS)


# ---- text, json, off --------------------------------------------------------

def test_text_log_is_one_line_per_exchange(text_server: EchoServer) -> None:
    _, headers, _ = send(text_server.port, "POST", "/orders/7?x=1&x=2", b"hello")
    line = line_of(text_server, headers["x-echo-id"])
    time_, client, method, target, status, duration, size, exchange_id = line.split(" ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", time_)
    assert (client, method, target, status, size, exchange_id) == (
        "127.0.0.1", "POST", "/orders/7?x=1&x=2", "200", "5B", headers["x-echo-id"])
    assert re.fullmatch(r"\d+\.\dms", duration)

    _, headers, _ = send(text_server.port, "GET", "/health?_status=503")
    assert line_of(text_server, headers["x-echo-id"]).split(" ")[3:5] == ["/health?_status=503", "503"]


def test_json_log_is_one_object_per_line(json_server: EchoServer) -> None:
    _, headers, _ = send(json_server.port, "PUT", "/items/%C3%A9t%C3%A9?q=1", b'{"a": 1}')
    entry = json.loads(line_of(json_server, headers["x-echo-id"]))
    assert {k: entry[k] for k in ("id", "method", "path", "query_string", "status", "request_bytes")} == {
        "id": headers["x-echo-id"], "method": "PUT", "path": "/items/été", "query_string": "q=1", "status": 200,
        "request_bytes": 8,
    }
    assert entry["response_bytes"] > 0 and entry["duration_ms"] >= 0


def test_json_log_comes_from_the_environment_too(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server(env={"ECHO_LOG": "json"})
    _, headers, _ = send(server.port, "GET", "/env")
    assert json.loads(line_of(server, headers["x-echo-id"]))["path"] == "/env"


def test_log_off_writes_nothing_per_exchange(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    _, headers, _ = send(server.port, "GET", "/quiet")
    server.stop(STOP_SECONDS)  # all it wrote has now been read
    output = "".join(server.lines())
    assert START_LINE.search(output)
    assert headers["x-echo-id"] not in output
    assert log_lines(output) == []


def test_inspector_requests_are_not_logged(text_server: EchoServer) -> None:
    before = len(text_server.lines())
    for path in ("/_/healthz", "/_/api/exchanges", "/_/metrics", "/_/static/inspector.js", "/_/"):
        assert send(text_server.port, "GET", path)[0] == 200
    _, headers, _ = send(text_server.port, "GET", "/marker")
    line_of(text_server, headers["x-echo-id"])
    # Entries are written in order, so everything logged since `before` is in hand.
    assert [line.split(" ")[3] for line in log_lines("".join(text_server.lines()[before:]))] == ["/marker"]


def test_pretty_log_falls_back_to_text_when_stdout_is_not_a_terminal(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "pretty")  # stdout is a pipe here
    _, headers, _ = send(server.port, "POST", "/pipe", b'{"a": 1}', ((b"Content-Type", b"application/json"),))
    line = line_of(server, headers["x-echo-id"])
    assert line.split(" ")[2:4] == ["POST", "/pipe"] and line.endswith(headers["x-echo-id"])
    assert "\x1b" not in "".join(server.lines())


# ---- pretty, on a terminal --------------------------------------------------

class TerminalServer:
    """`python -m echo --log pretty` with stdout and stderr on a pseudo-terminal."""

    def __init__(self, *flags: str) -> None:
        self.master, slave = pty.openpty()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "echo", "--host", "127.0.0.1", "--port", "0", "--log", "pretty", *flags],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=ROOT,
        )
        os.close(slave)
        self.data = bytearray()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()
        text = wait_for(self.text, "listening on")
        match = START_LINE.search(text)
        assert match, text
        self.port = int(match.group("port"))

    def _pump(self) -> None:
        while not self.done.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the server closed the terminal
                return
            if not chunk:
                return
            with self.lock:
                self.data.extend(chunk)

    def text(self) -> str:
        """Everything written so far, with the terminal's CR LF line ends back to LF."""
        with self.lock:
            return bytes(self.data).decode("utf-8", "replace").replace("\r\n", "\n")

    def block(self, exchange_id: str) -> str:
        """The pretty block of one exchange: from its first line to its answer line, which
        only Echo can write (it starts with our colour codes; a body's escapes are made inert)."""
        deadline = time.monotonic() + ARRIVAL_SECONDS
        while True:
            text = self.text()
            at = text.find(exchange_id)
            end = ANSWER_LINE.search(text, at) if at >= 0 else None
            if end:
                return text[text.rfind("\n", 0, at) + 1:end.end()]
            assert time.monotonic() < deadline, f"no complete block for {exchange_id} in:\n{text}"
            time.sleep(0.02)

    def stop(self) -> None:
        end_process(self.proc, STOP_SECONDS)
        self.done.set()
        self.reader.join(5)
        os.close(self.master)


@pytest.fixture(scope="module")
def tty_server() -> Iterator[TerminalServer]:
    server = TerminalServer()
    yield server
    server.stop()


def test_pretty_log_on_a_terminal_shows_request_headers_and_highlighted_body(tty_server: TerminalServer) -> None:
    body = b'{"order": 7, "items": ["tea"]}'
    _, headers, _ = send(tty_server.port, "POST", "/orders?_status=201", body,
                         ((b"Content-Type", b"application/json"), (b"X-Trace", b"abc")))
    coloured = tty_server.block(headers["x-echo-id"])
    plain = OUR_SGR.sub("", coloured)
    lines = plain.split("\n")
    assert lines[0].endswith(headers["x-echo-id"])
    assert lines[1] == "POST /orders?_status=201 HTTP/1.1"
    assert "Content-Type: application/json" in lines and "X-Trace: abc" in lines
    # The body is re-indented JSON, with pygments' colours around its tokens.
    assert '  "order": 7,' in lines
    assert re.search(r'\x1b\[[0-9;]*m"order"\x1b\[[0-9;]*m', coloured)
    assert [line for line in lines if line.startswith("<- ")][0].startswith("<- 201 Created")


def test_pretty_log_shows_a_binary_body_as_its_size(tty_server: TerminalServer) -> None:
    _, headers, _ = send(tty_server.port, "POST", "/upload", bytes(range(256)) * 4,
                         ((b"Content-Type", b"application/octet-stream"),))
    plain = OUR_SGR.sub("", tty_server.block(headers["x-echo-id"]))
    assert "[1024 bytes of binary body]" in plain
    assert "\x00" not in plain


# ---- a caller's control characters ------------------------------------------

def assert_inert(output: str) -> None:
    """No escape sequence but our own colours, and none of the hostile characters."""
    for name, sequence in HOSTILE.items():
        assert sequence not in output, name
    left = OUR_SGR.sub("", output)
    assert "\x1b" not in left and "\x07" not in left and "\x9b" not in left


def test_control_characters_in_a_path_are_written_as_visible_escapes_in_text(text_server: EchoServer) -> None:
    status, headers, _ = send(text_server.port, "GET", quoted(HOSTILE_PATH))
    assert status == 200
    line = line_of(text_server, headers["x-echo-id"])
    assert line.split(" ")[3] == HOSTILE_SHOWN
    assert_inert("".join(text_server.lines()))


def test_control_characters_in_a_path_are_written_as_visible_escapes_in_pretty(tty_server: TerminalServer) -> None:
    status, headers, _ = send(tty_server.port, "GET", quoted(HOSTILE_PATH))
    assert status == 200
    plain = OUR_SGR.sub("", tty_server.block(headers["x-echo-id"]))
    assert plain.split("\n")[1] == f"GET {HOSTILE_SHOWN} HTTP/1.1"
    assert_inert(tty_server.text())


def test_control_characters_in_a_path_stay_escaped_and_lossless_in_json(json_server: EchoServer) -> None:
    _, headers, _ = send(json_server.port, "GET", quoted(HOSTILE_PATH))
    line = line_of(json_server, headers["x-echo-id"])
    assert json.loads(line)["path"] == HOSTILE_PATH
    assert_inert("".join(json_server.lines()))


def test_control_characters_in_headers_and_body_never_reach_the_terminal(tty_server: TerminalServer) -> None:
    body = ("plain " + "".join(HOSTILE.values()) + " text\n").encode("utf-8")
    # waitress refuses C0 controls in header values, but latin-1 C1 bytes pass.
    status, headers, _ = send(tty_server.port, "POST", "/hdr", body,
                              ((b"Content-Type", b"text/plain; charset=utf-8"), (b"X-Evil", b"\x9b2J red")))
    assert status == 200
    plain = OUR_SGR.sub("", tty_server.block(headers["x-echo-id"]))
    assert "X-Evil: \\x9b2J red" in plain.split("\n")
    assert "plain \\x1b[2J" in plain
    assert_inert(tty_server.text())


def test_a_raw_escape_in_a_header_is_refused_before_the_log(text_server: EchoServer) -> None:
    # A raw ESC in a header value never reaches the app (or its log): waitress answers 400.
    status, _, _ = send(text_server.port, "GET", "/refused", headers=((b"X-Evil", b"\x1b[2J"),))
    assert status == 400
    _, headers, _ = send(text_server.port, "GET", "/after-refused")
    line_of(text_server, headers["x-echo-id"])
    output = "".join(text_server.lines())
    assert "/refused" not in output
    assert_inert(output)


# ---- --redact in the pretty block ---------------------------------------------

def test_pretty_block_hides_redacted_headers() -> None:
    request = capture(
        EnvironBuilder(path="/login", method="POST", data=b"{}", headers={
            "Authorization": "Bearer s3cret", "Content-Type": "application/json", "X-Trace": "abc"}).get_environ(),
        capture_limits(Settings()), IdSource(),
    )
    exchange = make_exchange(request, make_response(headers=(), body_size=2), controls={}, duration_ms=1.0)
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", encoding="utf-8") as terminal:
            AccessLog("pretty", stream=terminal, redact=("authorization",))(exchange)
        written = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the written bytes are drained and the slave is closed
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(master)
    lines = OUR_SGR.sub("", written.decode("utf-8")).replace("\r\n", "\n").split("\n")
    assert "Authorization: [redacted]" in lines and "X-Trace: abc" in lines
    assert "s3cret" not in written.decode("utf-8")
