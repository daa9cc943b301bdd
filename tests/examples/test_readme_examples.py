"""The README's "Assert on what your code sent" examples: shown as written here, and run.

Each code block of that section is a file beside this one; a test checks the
README shows the file exactly, and another runs it: the pytest example passes
in a throwaway project (in process, and against a real server at the
workflow's ECHO_URL), the failing one fails with the report the README shows,
and the client script runs against a real server. The example files are not
named like tests (test_*.py, *_test.py), so this project's own run does not collect them (its conftest
has an `echo_server` fixture of its own, which would shadow the plugin's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support import EchoServer, fetch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SECTION = "## Assert on what your code sent"
# (language, file) of each code block of the section, in order.
BLOCKS = [
    ("python", "webhook_example.py"),
    ("python", "webhook_failing_example.py"),
    ("text", "webhook_failing_report.txt"),
    ("python", "client_example.py"),
    ("yaml", "github-actions.yml"),
]
BIN_NAME = re.compile(r"\bt[0-9a-f]{16}\b")


def section_blocks() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    text = readme[start:end if end >= 0 else None]
    return re.findall(r"```(\w+)\n(.*?)```", text, re.DOTALL)


def test_the_readme_shows_each_example_file_as_it_is() -> None:
    blocks = section_blocks()
    assert [language for language, _ in blocks] == [language for language, _ in BLOCKS]
    for (_, shown), (_, name) in zip(blocks, BLOCKS, strict=True):
        assert shown == (HERE / name).read_text(encoding="utf-8"), f"README and tests/examples/{name} differ"


def run_project(tmp_path: Path, tests: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_webhooks.py").write_text(tests)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ECHO_", "PYTEST_"))}
    environment["PYTHONPATH"] = str(ROOT)  # this checkout's code behind the installed entry point
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
                          cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)


def example(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def test_the_pytest_example_passes(tmp_path: Path) -> None:
    done = run_project(tmp_path, example("webhook_example.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_failing_example_fails_with_the_report_shown(tmp_path: Path) -> None:
    done = run_project(tmp_path, example("webhook_example.py") + "\n\n" + example("webhook_failing_example.py"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    got = [BIN_NAME.sub("BIN", line.rstrip()) for line in done.stdout.splitlines()]
    for line in example("webhook_failing_report.txt").splitlines():
        assert BIN_NAME.sub("BIN", line) in got, done.stdout


def test_the_client_example_runs(echo_server: Callable[..., EchoServer], tmp_path: Path) -> None:
    server = echo_server("--log", "off")
    script = example("client_example.py").replace("http://127.0.0.1:8080", server.url)
    assert script != example("client_example.py")
    path = tmp_path / "client_example.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, str(path)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # It used that server, and its clear emptied only its own bin.
    _, _, body = fetch(server.url + "/_/metrics", timeout=10)
    assert 'echo_requests_total{method="GET",status="2xx"} 2' in body.decode()


def test_the_workflow_points_the_fixtures_at_its_service(echo_server: Callable[..., EchoServer],
                                                          tmp_path: Path) -> None:
    workflow = example("github-actions.yml")
    port = re.search(r"- (\d+):8080", workflow)
    url = re.search(r"ECHO_URL: (\S+)", workflow)
    assert port is not None and url is not None
    assert url.group(1) == f"http://127.0.0.1:{port.group(1)}"  # the published port of the service
    assert re.search(r"run: pytest\b", workflow)
    assert re.search(r"pip install echo-server\b", workflow)
    # The test step, run against a real Echo standing in for the service container.
    server = echo_server("--log", "off")
    done = run_project(tmp_path, example("webhook_example.py"),
                       env={"ECHO_URL": url.group(1).replace(f"127.0.0.1:{port.group(1)}", f"127.0.0.1:{server.port}")})
    assert done.returncode == 0, done.stdout + done.stderr
    _, _, body = fetch(server.url + "/_/metrics", timeout=10)
    assert 'echo_requests_total{method="POST",status="2xx"} 1' in body.decode()

