"""The pytest plugin: the `httpbin` fixture, as another project's suite sees it.

Each test writes a throwaway project into tmp_path and runs pytest on it in a
subprocess (this interpreter, this checkout first on the path), so the plugin
is loaded the way users get it: through the installed `pytest11` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USES_FIXTURE = '''
import json
import threading
import urllib.request

import pytest


def get(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


def test_api_of_pytest_httpbin(httpbin):
    assert httpbin.host == "127.0.0.1"
    assert isinstance(httpbin.port, int) and httpbin.port > 0
    assert httpbin.url == f"http://127.0.0.1:{httpbin.port}"
    assert httpbin.protocol == "http"
    assert httpbin.join("/get?a=1") == httpbin.url + "/get?a=1"
    assert httpbin + "/get" == httpbin.url + "/get"
    assert str(httpbin) + "/get" == httpbin.url + "/get"


def test_answers_as_httpbin(httpbin):
    status, doc = get(httpbin + "/get?a=1&a=2&b=3")
    assert status == 200
    assert doc["args"] == {"a": ["1", "2"], "b": "3"}
    assert doc["url"] == httpbin.url + "/get?a=1&a=2&b=3"
    assert set(doc) == {"args", "headers", "origin", "url"}


def test_one_server_for_the_session(httpbin):
    # The first test's exchanges are still in this server's history.
    status, page = get(httpbin + "/_/api/exchanges")
    assert status == 200
    assert any(item["request"]["path"] == "/get" for item in page["exchanges"])
    assert [t.name for t in threading.enumerate()].count("echo-httpbin") == 1


class TestClassBased:
    @pytest.mark.usefixtures("class_based_httpbin")
    def test_self_httpbin(self):
        assert get(self.httpbin.url + "/ip")[1] == {"origin": "127.0.0.1"}
'''

# Records, after every fixture is torn down, which threads are left.
CONFTEST = '''
import json
import os
import threading


def pytest_unconfigure(config):
    left = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    with open(os.environ["THREADS_FILE"], "w") as out:
        json.dump(left, out)
'''

NO_FIXTURE = '''
import sys
import threading


def test_nothing_started_without_the_fixture():
    assert "echo-httpbin" not in [t.name for t in threading.enumerate()]
    # The plugin loads the server's parts only when the fixture is set up.
    assert "echo.app" not in sys.modules
    assert "waitress" not in sys.modules
'''


def run_project(tmp_path: Path, tests: str, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_project.py").write_text(tests)
    threads = tmp_path / "threads.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECHO_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code behind the installed entry point
    env["THREADS_FILE"] = str(threads)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    left = json.loads(threads.read_text()) if threads.is_file() else ["(no thread report)"]
    return done, left


def test_fixture_serves_httpbin_and_stops_cleanly(tmp_path: Path) -> None:
    done, left = run_project(tmp_path, USES_FIXTURE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    # Stopped at session end: the serving thread and waitress's workers are gone.
    assert left == [], left
    # Logging is off: no access-log line reaches the test output.
    assert "GET /get" not in done.stdout + done.stderr


def test_no_server_unless_a_test_asks(tmp_path: Path) -> None:
    done, left = run_project(tmp_path, NO_FIXTURE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert left == []


def test_opt_out_removes_the_fixture(tmp_path: Path) -> None:
    done, _ = run_project(tmp_path, USES_FIXTURE, "-p", "no:echo")
    assert done.returncode != 0
    assert "fixture 'httpbin' not found" in done.stdout


def test_plugin_is_loaded_here_and_starts_nothing(pytestconfig: pytest.Config) -> None:
    # Echo's own suite runs with the plugin installed; it must not serve a thing
    # for tests that do not ask for it (test_httpbin_inspection.py has its own
    # `httpbin` fixture, a real echo-server process, which overrides this one).
    assert pytestconfig.pluginmanager.has_plugin("echo")
    assert "echo-httpbin" not in [t.name for t in threading.enumerate()]
