"""Helpers the tests share: real servers (Echo, Redis), raw HTTP, and tool checks.

`start_echo(...)` starts the real `python -m echo` (waitress) on a free port;
`start_redis` a real redis-server. Tools a laptop may lack are skipped with a
reason there (`need`) and fail under CI=true, where .ci/run has installed them.
Fixtures that use these live in conftest.py.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from echo.history import Health, Store, StoreError

ROOT = Path(__file__).resolve().parent.parent


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


CHROMIUM = os.environ.get("ECHO_TEST_CHROMIUM", "/usr/bin/chromium")


CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


START_LINE = re.compile(r"listening on http://(?P<host>[^ ]+?):(?P<port>\d+)/")


def need(tool: str, found: bool, package: str, how: str | None = None) -> None:
    """Skip on a machine without `tool`; fail in CI, which must have installed it."""
    if found:
        return
    how = how or f"install Debian's {package} package (apt-get install {package})"
    message = f"{tool} not found: {how}"
    if IN_CI:
        pytest.fail(f"CI=true but {message}; .ci/run should have installed it")
    pytest.skip(message)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> bool:
    """Whether `condition` holds within `timeout` seconds, asked every `every` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def end_process(proc: subprocess.Popen[Any], timeout: float) -> int:
    """Ask a server to stop (SIGTERM), kill it if it has not within `timeout`; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class EchoServer:
    """A running `python -m echo` on 127.0.0.1, with its output collected."""

    proc: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10) -> int:
        end_process(self.proc, timeout)
        if self.reader is not None:
            self.reader.join(5)
        if self.proc.stdout is not None and self.reader is not None and not self.reader.is_alive():
            self.proc.stdout.close()
        return self.proc.returncode

    def lines(self) -> list[str]:
        return list(self.output)

    def status_field(self, name: str) -> int:
        """A number from /proc/<pid>/status, e.g. VmRSS (KiB) or Threads."""
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{name}:"):
                    return int(line.split()[1])
        raise AssertionError(f"no {name} line")


def start_echo(*flags: str, env: dict[str, str] | None = None, timeout: float = 15) -> EchoServer:
    """Start the real server with --port 0 and wait for its start line."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    # Test servers leave the user's default runtime file alone unless a test names one.
    environment["ECHO_RUNTIME_FILE"] = "off"
    environment.update(env or {})
    environment["PYTHONUNBUFFERED"] = "1"
    args = [sys.executable, "-m", "echo", "--host", "127.0.0.1", "--port", "0", *flags]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=ROOT,
        encoding="utf-8", errors="replace",
    )
    output: list[str] = []
    started = threading.Event()
    port: list[int] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            match = START_LINE.search(line)
            if match and not port:
                port.append(int(match.group("port")))
                started.set()
        started.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if not started.wait(timeout) or not port:
        proc.kill()
        proc.wait()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        raise RuntimeError("echo-server did not start:\n" + "".join(output))
    return EchoServer(proc, port[0], output, reader)


def raw_request(port: int, data: bytes, timeout: float = 10, read_all: bool = True) -> bytes:
    """Send bytes as they are and read the answer until the server closes or times out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        sock.settimeout(timeout)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_all and b"\r\n\r\n" in b"".join(chunks):
                break
    return b"".join(chunks)


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """One request over a fresh connection: (status, headers, body), whatever the status."""
    with closing(HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()


def fetch(url: str, method: str | None = None, data: bytes | None = None,
          headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One request through urllib (as a typical client sends it): (status, headers, body), whatever the status."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def split_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, header lines in order, body) of one raw HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    return status, headers, body  # type: ignore[return-value]


@dataclass
class RedisServer:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(port: int | None = None, *args: str) -> RedisServer:
    """A redis-server on 127.0.0.1; `args` are more of its options (e.g. "--requirepass", "secret")."""
    binary = shutil.which("redis-server")
    assert binary is not None
    port = port or free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                # A Redis with --requirepass answers -NOAUTH: it is up, and wants a password.
                if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                    return RedisServer(proc, port)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def http_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                 body: bytes | None = None) -> bytes:
    """One HTTP/1.1 request as raw bytes, Content-Length added for a body."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers or []]
    if body is not None:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def send(server: EchoServer, data: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the answer must be one complete HTTP response."""
    raw = raw_request(server.port, data, timeout=timeout)
    assert raw.startswith(b"HTTP/1."), f"no answer (dropped connection?): {raw[:80]!r}"
    status, header_list, body = split_response(raw)
    headers = {name.lower(): value for name, value in header_list}
    if "content-length" in headers:
        assert len(body) == int(headers["content-length"]), "answer cut short"
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return status, headers, body


def dechunk(data: bytes) -> bytes:
    """A chunked body, joined; it must end with the last (empty) chunk."""
    out = []
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        assert sep, "chunked answer cut short"
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[:size])
        assert data[size:size + 2] == b"\r\n", "malformed chunk"
        data = data[size + 2:]


# ---- pages in Chromium ------------------------------------------------------

@dataclass
class Watch:
    """What a page did that it must not: log errors, throw, or open dialogs."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    # A test that expects the page to ask (window.confirm) says so here.
    accept_confirms: bool = False
    confirmed: list[str] = field(default_factory=list)

    def assert_clean(self, allow: tuple[str, ...] = ()) -> None:
        errors = [e for e in self.errors if not any(a in e for a in allow)]
        assert errors == [], errors
        assert self.dialogs == [], self.dialogs


def watched(ctx: Any, handle_dialogs: bool = True, timeout_ms: float | None = None) -> tuple[Any, Watch]:
    """A new page of the browser context `ctx` whose errors (and dialogs) are recorded.

    With `handle_dialogs` off, the test answers dialogs itself."""
    page = ctx.new_page()
    watch = Watch()
    page.on("console", lambda msg: watch.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: watch.errors.append(f"uncaught: {exc}"))
    if timeout_ms is not None:
        page.set_default_timeout(timeout_ms)

    def on_dialog(dialog: Any) -> None:
        if watch.accept_confirms and dialog.type == "confirm":
            watch.confirmed.append(dialog.message)
            dialog.accept()
            return
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    if handle_dialogs:
        page.on("dialog", on_dialog)
    return page, watch


# ---- a store that is down -------------------------------------------------------

class FailingStore(Store):
    """A store whose every call fails the way an unreachable Redis does."""

    backend = "failing"

    def _fail(self, *_: Any) -> Any:
        raise StoreError("connection refused")

    add = get = list = clear = count = _fail  # type: ignore[assignment]

    def health(self) -> Health:
        return Health(ok=False, backend=self.backend, detail="connection refused")
