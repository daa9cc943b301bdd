"""The pytest plugin `echo-server` installs (entry point `pytest11`, name `echo`).

`echo_server` (per session) is an `echo.client.EchoClient` for an Echo: the
running one that `--echo-url URL` or the `ECHO_URL` variable names (a CI
service container, say; `ECHO_UI_PREFIX` and `ECHO_UI_AUTH` there say how to
reach its inspector), or else one served in a thread of the test process, as
below but without httpbin mode. `echo` (per test) is a fresh `Bin` of it, its
exchanges cleared after the test: tests never see each other's requests, even
on one shared server. `echo.assert_received(...)` and `echo.wait_for(...)`
raise AssertionError listing the near misses, which pytest's report shows.

It also offers `httpbin`, a drop-in for pytest-httpbin's fixture of that name: one
Echo per test session, in httpbin mode, served by waitress in a daemon thread
of the test process on a free 127.0.0.1 port, with the access log off and
history in memory. `httpbin.url`, `.host`, `.port`, `.join(path)`,
`str(httpbin) + path` and `httpbin + "/path"` work as they do there.
`httpbin_secure` and `httpbin_both` are not offered: Echo serves no TLS.
`-p no:echo` turns the plugin off (e.g. to use pytest-httpbin instead).

Nothing runs unless a test asks for the fixture: pytest imports this module in
every session of every project where echo-server is installed, so the module
imports only the standard library and pytest, and the server's parts load
when the fixture is first set up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urljoin

import pytest

if TYPE_CHECKING:
    from .client import Bin, EchoClient

# The settings of the fixture's server: what the SPEC names (httpbin mode, no
# access log in the test output, history in memory). ECHO_* variables are not
# read, so a variable meant for a deployed Echo cannot reshape a test server.
SETTINGS: dict[str, Any] = {
    "httpbin": True,
    "log": "off",
    "store": "memory://",
    "host": "127.0.0.1",
    "port": 0,
    "runtime_file": "off",
}
# A stop answers what has arrived for at most this long, then the worker
# threads get as long again to finish before the session goes on.
STOP_SECONDS = 2.0
THREAD_NAME = "echo-httpbin"
# The variable that names a running Echo for `echo_server`, as --echo-url does.
URL_VARIABLE = "ECHO_URL"


class EchoHttpbin:
    """An Echo in httpbin mode served from a thread; the API of pytest-httpbin's `Server`."""

    protocol = "http"

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        from waitress.server import create_server

        from .app import create_app
        from .cli import waitress_options
        from .config import load_settings
        from .web.services import services
        from .web.serving import install

        settings = load_settings({}, {**SETTINGS, **(overrides or {})})
        self.app = create_app(settings)
        self._services = services(self.app)
        # One listen address, so a TcpWSGIServer (the stubs type the union of it and MultiSocketServer).
        self._server = cast(Any, create_server(self.app, **waitress_options(settings)))
        self._sockets: dict[int, Any] = self._server._map
        install(self._sockets, settings.max_header, settings.connection_limit)
        self.host, self.port = str(self._server.effective_host), int(self._server.effective_port)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"

    def join(self, url: str, allow_fragments: bool = True) -> str:
        return urljoin(self.url, url, allow_fragments=allow_fragments)

    def __add__(self, other: str) -> str:
        return self.url + other

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"<EchoHttpbin {self.url}>"

    def start(self) -> EchoHttpbin:
        self._thread.start()
        return self

    def __enter__(self) -> EchoHttpbin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        from waitress import wasyncore

        from .web.serving import drain

        adj = self._server.adj
        while not self._stopping.is_set():
            wasyncore.loop(timeout=adj.asyncore_loop_timeout, use_poll=adj.asyncore_use_poll,
                           map=self._sockets, count=1)
        # As the command line stops: end every delay, answer what arrived, close.
        self._services.held.stop()
        drain(self._sockets, time.monotonic() + STOP_SECONDS)

    def stop(self) -> None:
        """Stop serving and wait for every thread the server started; idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread.is_alive():
            # Wake the loop out of its poll now rather than within a second.
            self._server.trigger.pull_trigger()
            self._thread.join(STOP_SECONDS + 2)
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_SECONDS)
        self._server.close()
        self._services.store.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--echo-url", default=None, metavar="URL",
        help=f"a running Echo for the echo_server and echo fixtures (or ${URL_VARIABLE}); "
             "without either, one is started in the test process",
    )


@pytest.fixture(scope="session")
def echo_server(request: pytest.FixtureRequest) -> Iterator[EchoClient]:
    """A client of the Echo named by --echo-url / ECHO_URL, or of one started for the session."""
    from .client import EchoClient

    url = request.config.getoption("echo_url") or os.environ.get(URL_VARIABLE, "")
    if url:
        user, _, password = os.environ.get("ECHO_UI_AUTH", "").partition(":")
        yield EchoClient(url, auth=(user, password) if user else None,
                         ui_prefix=os.environ.get("ECHO_UI_PREFIX", "/_/"))
        return
    # Every path echoed, so /b/{bin}/... is a bin and no httpbin route answers instead.
    with EchoHttpbin({"httpbin": False}) as server:
        yield EchoClient(server.url)


@pytest.fixture
def echo(echo_server: EchoClient) -> Iterator[Bin]:
    """A fresh bin of `echo_server` for one test, cleared after it."""
    found = echo_server.new_bin()
    yield found
    found.clear()


@pytest.fixture(scope="session")
def httpbin() -> Iterator[EchoHttpbin]:
    """A session-wide Echo in httpbin mode on a free 127.0.0.1 port (pytest-httpbin's `httpbin`)."""
    with EchoHttpbin() as server:
        yield server


@pytest.fixture(scope="class")
def class_based_httpbin(request: pytest.FixtureRequest, httpbin: EchoHttpbin) -> None:
    """pytest-httpbin's class fixture: sets `self.httpbin` on the test class."""
    request.cls.httpbin = httpbin
