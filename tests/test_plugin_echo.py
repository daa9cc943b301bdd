"""The pytest plugin's `echo_server` and `echo` fixtures, as another project's suite sees them.

This project's own conftest has a fixture named `echo_server` (a factory of
real servers), which shadows the plugin's here; so, as in test_plugin.py,
each test writes a throwaway project into tmp_path and runs pytest on it in a
subprocess, where the plugin is loaded through its installed entry point.
Passing and failing runs both, in process and against a separately started
real server named by ECHO_URL or --echo-url.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support import EchoServer, fetch

ROOT = Path(__file__).resolve().parent.parent

PASSING = '''
import json
import urllib.request


def post(url, doc):
    request = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status


def test_a_webhook_arrives(echo):
    assert post(echo.url("/hook"), {"event": "paid"}) == 200
    hook = echo.wait_for("method:POST path:/hook")
    assert hook["request"]["json"] == {"event": "paid"}
    echo.assert_received("path:/hook", count=1)
    with open("bin-name.txt", "w") as out:
        out.write(echo.name)


def test_each_test_has_its_own_bin(echo):
    # The first test's exchange is in another bin.
    assert echo.exchanges() == []
    post(echo.url("/other"), {})
    assert len(echo.assert_received()) == 1


def test_the_server_itself_is_a_client_too(echo_server):
    urllib.request.urlopen(echo_server.url("/plain"), timeout=10).close()
    assert echo_server.wait_for("path:/plain")["request"]["bin"] is None
'''

FAILING = '''
import urllib.request


def test_a_put_was_expected(echo):
    urllib.request.urlopen(urllib.request.Request(echo.url("/hook"), data=b"x", method="POST"), timeout=10).close()
    echo.assert_received("method:PUT path:/hook")


def test_a_wait_that_times_out(echo):
    urllib.request.urlopen(echo.url("/ping?n=1"), timeout=10).close()
    echo.wait_for("path:/ping query:n=2", timeout=0.5)
'''


def run_project(tmp_path: Path, tests: str, *args: str, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_project.py").write_text(tests)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ECHO_", "PYTEST_"))}
    environment["PYTHONPATH"] = str(ROOT)  # this checkout's code behind the installed entry point
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
    )


def test_the_fixtures_serve_an_echo_in_process(tmp_path: Path) -> None:
    done = run_project(tmp_path, PASSING)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_a_failing_assertion_shows_the_near_misses_in_the_report(tmp_path: Path) -> None:
    done = run_project(tmp_path, FAILING)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 failed" in done.stdout
    lines = [line.strip() for line in done.stdout.splitlines()]
    # Each near miss is one line: method, the path in its bin, status, and the terms that failed.
    assert any(line.startswith("E") and "POST /b/" in line and "/hook 200  failed: method:PUT" in line
               for line in lines), done.stdout
    assert any(line.startswith("E") and "GET /b/" in line and "/ping 200  failed: query:n=2" in line
               for line in lines), done.stdout
    assert "expected at least 1 exchange(s) matching" in done.stdout
    assert "arrived within 0.5 s" in done.stdout
    # The report points at the test's line, not into the client.
    assert 'echo.assert_received("method:PUT path:/hook")' in done.stdout


def test_echo_url_names_a_running_server(tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    done = run_project(tmp_path, PASSING, env={"ECHO_URL": server.url})
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_recorded_there(tmp_path, server)


def test_the_echo_url_option_names_a_running_server(tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    done = run_project(tmp_path, PASSING, "--echo-url", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_recorded_there(tmp_path, server)


def _assert_recorded_there(tmp_path: Path, server: EchoServer) -> None:
    # The run used that server: its bin's exchange was recorded there, then cleared after the test.
    name = (tmp_path / "bin-name.txt").read_text()
    status, _, body = fetch(f"{server.url}/_/api/exchanges?f=bin:{name}", timeout=10)
    assert status == 200 and json.loads(body)["exchanges"] == []
    status, _, body = fetch(f"{server.url}/_/metrics", timeout=10)
    assert status == 200
    assert any(line.startswith("echo_requests_total{method=\"POST\"") and not line.endswith(" 0")
               for line in body.decode().splitlines()), body.decode()


def test_a_running_server_behind_ui_auth_and_a_prefix(tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off", "--ui-auth", "ci:pw", "--ui-prefix", "/inspect/")
    done = run_project(tmp_path, PASSING, env={
        "ECHO_URL": server.url, "ECHO_UI_AUTH": "ci:pw", "ECHO_UI_PREFIX": "/inspect/",
    })
    assert done.returncode == 0, done.stdout + done.stderr
    failed = run_project(tmp_path, PASSING, env={"ECHO_URL": server.url, "ECHO_UI_PREFIX": "/inspect/"})
    assert failed.returncode == 1
    assert "401" in failed.stdout
