"""The fidelity bar of httpbin mode: psf/requests' own suite against Echo's `httpbin` fixture.

tests/requests_suite/run.py runs the selected tests of the pinned requests
release (those that use `httpbin`, without TLS) in a subprocess, behind a
guard that refuses every connection off loopback. Every selected test must
pass, as it does against pytest-httpbin, except those in expected_failures.txt,
which must still fail (each names the httpbin route it waits for): when a
route family lands, its tests pass and their lines are removed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from support import need

SUITE = Path(__file__).resolve().parent / "requests_suite"
ROOT = SUITE.parent.parent


def load_runner() -> ModuleType:
    # tests/requests_suite is a folder of scripts, not a package: load run.py by path.
    spec = importlib.util.spec_from_file_location("requests_suite_run", SUITE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


requests_suite = load_runner()


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHO_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SUITE), str(ROOT)])
    env.update(extra)
    return env


def sdist() -> str:
    """The pinned sdist, fetched into the cache on first use (the only step that needs PyPI)."""
    given = os.environ.get("REQUESTS_SDIST")
    if given:
        return given
    cached = requests_suite.cache_dir() / requests_suite.SDIST
    if not cached.is_file():
        try:
            requests_suite.find_sdist(None, sys.executable)
        except subprocess.CalledProcessError:
            pass
    need(requests_suite.SDIST, cached.is_file(), "requests",
         f"pip download --no-deps --no-binary :all: requests=={requests_suite.REQUESTS} "
         f"into {cached.parent}, or set REQUESTS_SDIST")
    return str(cached)


@pytest.mark.slow
def test_requests_suite_passes_against_echo(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(SUITE / "run.py"), "--check", "--sdist", sdist(), "--report", str(report)],
        cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=600,
    )
    assert report.is_file(), done.stdout[-5000:] + done.stderr[-5000:]
    found = json.loads(report.read_text())
    assert found["problems"] == [], "\n".join(found["problems"])
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    expected = requests_suite.read_list(SUITE / "expected_failures.txt")
    assert found["selected"] == requests_suite.EXPECTED_SELECTED
    assert found["passed"] == requests_suite.EXPECTED_SELECTED - len(expected)
    assert found["network_attempts"] == 0


GUARDED = '''
import socket

import pytest


@pytest.fixture
def httpbin():
    return None


def test_dials_out(httpbin):
    # The address requests' timeout tests dial on purpose: refused, never sent.
    with pytest.raises(ConnectionRefusedError, match="only loopback"):
        socket.create_connection(("10.255.255.1", 80), timeout=1)
    with pytest.raises(ConnectionRefusedError):
        socket.socket().connect_ex(("192.0.2.1", 80))
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 80)


def test_loopback_is_fine(httpbin):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        socket.create_connection(server.getsockname(), timeout=1).close()


def test_not_selected():
    raise AssertionError("tests that do not use httpbin are deselected")
'''


def test_guard_refuses_and_fails_the_session(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_guarded.py").write_text(GUARDED)
    (tmp_path / "empty.txt").write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "harness", "-p", "no:cacheprovider", "-p", "no:echo"],
        cwd=tmp_path, env=environment(REQUESTS_SUITE_DESELECTED=str(tmp_path / "empty.txt"),
                                      REQUESTS_SUITE_REPORT=str(tmp_path / "report.json")),
        capture_output=True, text=True, timeout=120,
    )
    # Both selected tests pass, the other is deselected, and yet the session fails.
    assert "2 passed, 1 deselected" in done.stdout, done.stdout
    assert done.returncode == 1, done.stdout
    assert "network guard: attempts to leave loopback" in done.stdout
    attempts = json.loads((tmp_path / "report.json").read_text())["network_attempts"]
    assert [a.split(": ", 1)[1].split(" ")[0] for a in attempts] == ["create_connection", "connect", "name"]
    assert all(a.startswith("test_guarded.py::test_dials_out: ") for a in attempts)
