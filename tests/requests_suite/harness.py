"""pytest plugin for running psf/requests' own suite against an `httpbin` fixture.

Loaded with `-p harness` (this folder on PYTHONPATH) by run.py, inside the
unpacked requests sdist. It does three things:

- selects by rule: only tests that use the `httpbin` fixture, and none that
  use `httpbin_secure` or `httpbin_ca_bundle` (Echo has no TLS), less the
  ids in deselected.txt (tests that need TLS or the internet, each with why);
- guards the network: every socket may connect to loopback only. Any other
  address is refused with an error, recorded, and fails the session at its
  end, so a test that dials out (requests dials 10.255.255.1 on purpose) can
  never reach the network and never passes quietly;
- writes the outcome of every selected test as JSON to $REQUESTS_SUITE_REPORT.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
NEEDS = "httpbin"
REFUSED_FIXTURES = frozenset({"httpbin_secure", "httpbin_ca_bundle", "httpbin_both"})
# Names a test may resolve: they answer on this machine only.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def read_list(path: Path) -> dict[str, str]:
    """`node id  # reason` lines; blank lines and lines starting with # are skipped."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        node, _, reason = line.partition("#")
        node, reason = node.strip(), reason.strip()
        if not reason:
            raise ValueError(f"{path.name}: {node} has no reason")
        found[node] = reason
    return found


def is_loopback(host: str) -> bool:
    host = host.strip("[]").split("%", 1)[0]
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


class Guard:
    """Refuses, and records, every connection or name lookup off this machine."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.current = "(outside a test)"
        self._undo: list[Callable[[], None]] = []

    def refuse(self, what: str) -> None:
        self.attempts.append(f"{self.current}: {what}")
        raise ConnectionRefusedError(f"requests suite harness: {what} refused, only loopback is allowed")

    def check_address(self, sock: socket.socket, address: Any) -> None:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        host = address[0] if isinstance(address, tuple) else str(address)
        if not is_loopback(str(host)):
            self.refuse(f"connect to {address!r}")

    def install(self) -> None:
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo
        real_create_connection = socket.create_connection
        guard = self

        def connect(sock: socket.socket, address: Any) -> None:
            guard.check_address(sock, address)
            real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check_address(sock, address)
            return real_connect_ex(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # A lookup of a public name is traffic too (DNS), and the first step to dialling out.
            if host is not None and not is_loopback(host.decode() if isinstance(host, bytes) else str(host)):
                guard.attempts.append(f"{guard.current}: name lookup of {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, f"requests suite harness: lookup of {host!r} refused")
            return real_getaddrinfo(host, *args, **kwargs)

        def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
            if not is_loopback(str(address[0])):
                guard.refuse(f"create_connection to {address!r}")
            return real_create_connection(address, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo
        socket.create_connection = create_connection

        def undo() -> None:
            socket.socket.connect = real_connect  # type: ignore[method-assign]
            socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
            socket.getaddrinfo = real_getaddrinfo
            socket.create_connection = real_create_connection

        self._undo.append(undo)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()


GUARD = Guard()
OUTCOMES: dict[str, str] = {}
SELECTED: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    GUARD.install()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    listed = read_list(Path(os.environ.get("REQUESTS_SUITE_DESELECTED") or HERE / "deselected.txt"))
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if NEEDS in names and not names & REFUSED_FIXTURES and item.nodeid not in listed:
            keep.append(item)
        else:
            dropped.append(item)
    stale = set(listed) - {item.nodeid for item in items}
    if stale:
        raise pytest.UsageError(f"deselected.txt names tests that do not exist: {sorted(stale)}")
    config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    SELECTED[:] = [item.nodeid for item in keep]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    GUARD.current = item.nodeid
    try:
        return (yield)
    finally:
        GUARD.current = "(outside a test)"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # One outcome per test: a failure in setup or teardown counts against it,
    # and requests' own xfail marks give "xfailed" (or "xpassed"), as pytest says.
    if report.when == "call":
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "error"
    elif report.skipped and report.when == "setup":
        outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    else:
        return
    if OUTCOMES.get(report.nodeid) in (None, "passed", "xfailed", "xpassed"):
        OUTCOMES[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if GUARD.attempts:
        terminalreporter.section("network guard: attempts to leave loopback", red=True)
        for attempt in GUARD.attempts:
            terminalreporter.line(attempt)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    GUARD.uninstall()
    path = os.environ.get("REQUESTS_SUITE_REPORT")
    if path:
        document = {"selected": SELECTED, "outcomes": OUTCOMES, "network_attempts": GUARD.attempts}
        Path(path).write_text(json.dumps(document, indent=1, sort_keys=True), encoding="utf-8")
    if GUARD.attempts:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
