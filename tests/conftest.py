"""Fixtures: the app and its test client for fast unit tests; real servers for the rest.

The helpers behind them (servers, raw HTTP, tool checks) are in support.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from echo import create_app

from support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IN_CI,
    EchoServer,
    RedisServer,
    call,
    need,
    start_echo,
    start_redis,
)


@pytest.fixture
def app() -> Any:
    return create_app({"log": "off"}, environ={})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def echo_server() -> Iterator[Callable[..., EchoServer]]:
    """Factory: echo_server('--max-body', '10') -> a running server, stopped afterwards."""
    servers: list[EchoServer] = []

    def make(*flags: str, env: dict[str, str] | None = None) -> EchoServer:
        server = start_echo(*flags, env=env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def live_server() -> Iterator[EchoServer]:
    """One shared real server with default settings (history in memory)."""
    server = start_echo("--log", "off")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    need("redis-server", shutil.which("redis-server") is not None, "redis-server")
    server = start_redis()
    yield server
    server.proc.terminate()
    server.proc.wait(10)


@pytest.fixture
def own_redis(redis_server: RedisServer) -> Iterator[Callable[..., RedisServer]]:
    """A dedicated redis-server that a test may stop, stall (SIGSTOP) or restart."""
    servers: list[RedisServer] = []

    def make(port: int | None = None) -> RedisServer:
        server = start_redis(port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)  # in case a test left it stopped
            server.proc.terminate()
        server.proc.wait(10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    need("chromium", os.path.exists(CHROMIUM), "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("the playwright package is missing; install the test extra")
        pytest.skip("the playwright package is missing; pip install '.[test]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test leaves open, closed after it: request this fixture before the
    server's, so that they are closed after the server has stopped."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


@pytest.fixture
def base(live_server: EchoServer) -> str:
    """The module's shared server, its history cleared first: the URL a page test opens."""
    assert call(live_server.port, "DELETE", "/_/api/exchanges")[0] == 204
    return live_server.url


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own cookies and storage) at a desktop size."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()
