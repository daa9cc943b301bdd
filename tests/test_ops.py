"""Operations, against the real server: liveness and health, the runtime file and
`echo-server health`, the probes in the deployment files, a log that is JSON
through and through, and the SIGTERM drain of a single delayed request.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from echo.app import create_app

from support import ROOT, EchoServer, RedisServer, call, fetch, free_port, start_echo

KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"


def get(server: EchoServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = fetch(server.url + path, headers=headers)
    return status, json.loads(body)


def health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`echo-server health ...` as the image's HEALTHCHECK runs it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "echo", "health", *args], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=30)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ---- 1. liveness while the store is down ------------------------------------

def test_livez_stays_200_while_redis_is_down_and_healthz_says_503(
        own_redis: Callable[..., RedisServer], echo_server: Callable[..., EchoServer]) -> None:
    redis = own_redis()
    server = echo_server("--store", redis.url, "--log", "off")
    assert get(server, "/_/livez") == (200, {"status": "ok", "version": get(server, "/_/healthz")[1]["version"]})
    assert get(server, "/_/healthz")[0] == 200

    redis.proc.terminate()
    redis.proc.wait(10)
    status, doc = get(server, "/_/healthz")
    assert status == 503 and doc["store"]["ok"] is False
    assert get(server, "/_/livez")[0] == 200
    assert call(server.port, "GET", "/still-echoing")[0] == 200  # what readiness should say: it serves


def test_livez_is_open_under_ui_auth_and_not_recorded() -> None:
    client = create_app({"log": "off", "ui_auth": "user:pass"}, environ={}).test_client()
    assert client.get("/_/livez").status_code == 200
    assert client.get("/_/api/exchanges").status_code == 401  # the rest of the inspector stays closed
    secret = base64.b64encode(b"user:pass").decode()
    listed = client.get("/_/api/exchanges", headers={"Authorization": f"Basic {secret}"}).get_json()
    assert listed["exchanges"] == []


# ---- the probes in the deployment files -------------------------------------

def kubernetes_probes(text: str) -> dict[str, str]:
    """probe name -> httpGet path, for the Deployment's container (the file holds several documents)."""
    documents = re.split(r"^---\s*$", text, flags=re.MULTILINE)
    (deployment,) = [d for d in documents if re.search(r"^kind: Deployment$", d, re.MULTILINE)]
    found: dict[str, str] = {}
    for match in re.finditer(r"^( +)(\w+Probe):\n((?:\1 .*\n|\s*\n)*)", deployment, re.MULTILINE):
        path = re.search(r"^ +httpGet:\n +path: (\S+)$", match.group(3), re.MULTILINE)
        assert path, f"{match.group(2)} is not an HTTP probe"
        found[match.group(2)] = path.group(1)
    return found


def test_kubernetes_probes_use_livez_so_a_redis_outage_restarts_and_unreadies_nothing() -> None:
    assert kubernetes_probes(KUBERNETES.read_text(encoding="utf-8")) == {
        "readinessProbe": "/_/livez", "livenessProbe": "/_/livez"}


def test_compose_checks_each_replica_with_echo_server_health() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    anchor = text.split("\nservices:", 1)[0]  # the x-echo block every replica shares
    assert re.search(r'^  healthcheck:\n    test: \["CMD", "echo-server", "health"\]$', anchor, re.MULTILINE)


def test_dockerfile_healthcheck_runs_echo_server_health() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    # The instruction, continuation lines included (up to the first line not ending in a backslash).
    (line,) = re.findall(r"^HEALTHCHECK\b.*?[^\\]\n", text, re.MULTILINE | re.DOTALL)
    found = re.search(r"CMD\s+(\[.*\])", line, re.DOTALL)
    assert found, line
    command = json.loads(found.group(1))
    assert command == ["echo-server", "health"]
    assert "ECHO_PORT" not in line and "ECHO_UI_PREFIX" not in line


# ---- 2. the runtime file and `echo-server health` ---------------------------

@pytest.mark.parametrize("port", ["0", "free"])
def test_health_finds_a_server_configured_by_flags(tmp_path: Path, port: str) -> None:
    runtime = tmp_path / "echo.json"
    chosen = str(free_port()) if port == "free" else "0"
    server = start_echo("--port", chosen, "--ui-prefix", "/ops/", "--runtime-file", str(runtime), "--log", "off")
    try:
        info = json.loads(runtime.read_text(encoding="utf-8"))
        assert info["healthz"] == f"http://127.0.0.1:{server.port}/ops/healthz"
        assert info["livez"] == f"http://127.0.0.1:{server.port}/ops/livez"
        assert info["inspector"] == f"http://127.0.0.1:{server.port}/ops/" and info["pid"] == server.proc.pid

        checked = health("--runtime-file", str(runtime))
        assert checked.returncode == 0, checked.stderr
        assert one_line(checked) == f"echo-server health: ok: {info['healthz']} answered 200"
        live = health("--live", env={"ECHO_RUNTIME_FILE": str(runtime)})
        assert live.returncode == 0 and one_line(live).endswith("/ops/livez answered 200")
        assert [p.name for p in tmp_path.iterdir()] == ["echo.json"]  # no temporary file left behind
    finally:
        assert server.stop() == 0
    assert not runtime.exists(), "a clean stop removes the runtime file"
    gone = health("--runtime-file", str(runtime))
    assert gone.returncode == 1 and "no runtime file" in one_line(gone)


def test_health_by_default_reads_the_runtime_directory(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "ECHO_RUNTIME_FILE": "auto"}
    server = start_echo("--log", "off", env=env)
    try:
        assert (tmp_path / "echo-server.json").exists()
        checked = health(env={"XDG_RUNTIME_DIR": str(tmp_path)})
        assert checked.returncode == 0 and str(server.port) in one_line(checked)
    finally:
        server.stop()


def test_health_fails_while_redis_is_down_and_live_does_not(
        own_redis: Callable[..., RedisServer], tmp_path: Path) -> None:
    redis = own_redis()
    runtime = str(tmp_path / "echo.json")
    server = start_echo("--store", redis.url, "--runtime-file", runtime, "--log", "off")
    try:
        redis.proc.terminate()
        redis.proc.wait(10)
        down = health("--runtime-file", runtime)
        assert down.returncode == 1
        line = one_line(down)
        assert line.startswith("echo-server health: unhealthy: ") and "answered 503" in line
        assert health("--runtime-file", runtime, "--live").returncode == 0
    finally:
        server.stop()


def test_health_of_a_server_that_died_fails_in_one_line(tmp_path: Path) -> None:
    runtime = tmp_path / "echo.json"
    server = start_echo("--runtime-file", str(runtime), "--log", "off")
    server.proc.kill()  # no clean stop: the file stays, pointing at nothing
    server.stop()
    assert runtime.exists()
    dead = health("--runtime-file", str(runtime))
    assert dead.returncode == 1 and "cannot be reached" in one_line(dead)


def test_health_never_exits_2_which_docker_reserves() -> None:
    result = health("--no-such-flag")
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_an_unwritable_runtime_file_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    server = start_echo("--runtime-file", str(tmp_path / "missing" / "echo.json"), "--log", "off")
    try:
        assert call(server.port, "GET", "/x")[0] == 200
        assert any("cannot write the runtime file" in line for line in server.lines())
    finally:
        assert server.stop() == 0


# ---- 3. --log json is JSON on every line ------------------------------------

def test_json_log_is_json_on_every_line_banner_warnings_and_stop_included() -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # the echo logger reports it, once per outage
    server = start_echo("--log", "json", "--trusted-proxy", "127.0.0.1", "--store", dead_redis,
                        "--start-without-store")
    try:
        assert call(server.port, "GET", "/hello")[0] == 200
        # A malformed header from a trusted proxy: waitress itself logs a warning.
        assert call(server.port, "GET", "/proxied", headers={"X-Forwarded-Proto": "ht tp"})[0] == 400
        assert call(server.port, "GET", "/_/healthz")[0] == 503
    finally:
        assert server.stop() == 0
    lines = [line for line in "".join(server.lines()).splitlines() if line.strip()]
    docs = []
    for line in lines:
        try:
            docs.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line!r}")
    events = [d.get("event") for d in docs]
    start = docs[events.index("start")]
    assert start["url"] == f"http://127.0.0.1:{server.port}/"
    assert start["inspector"] == f"http://127.0.0.1:{server.port}/_/"
    assert events[-1] == "stop"
    loggers = {d["logger"] for d in docs if d.get("event") == "log"}
    assert {"echo", "waitress"} <= loggers
    assert any(d.get("path") == "/hello" for d in docs)


def test_json_log_start_errors_are_json_too() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    result = subprocess.run([sys.executable, "-m", "echo", "--log", "json", "--host", "no.such.host.invalid"],
                            capture_output=True, text=True, env=environment, cwd=ROOT, timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    doc = json.loads(line)
    assert doc["event"] == "error" and "no.such.host.invalid" in doc["message"]


# ---- 4. SIGTERM: a single delayed request ------------------------------------

def test_sigterm_answers_a_single_in_flight_delay_8_and_exits_0_within_5_seconds() -> None:
    server = start_echo("--log", "off")
    try:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with sock:
            sock.sendall(b"GET /held?_delay=8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(0.5)  # the delay is asleep in its worker
            began = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["path"] == "/held"
        code = server.proc.wait(5)
        assert code == 0 and time.monotonic() - began < 5
    finally:
        server.stop()
