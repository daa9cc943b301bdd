"""Bad configuration is one clear line on stderr and exit 2, never a traceback:
hosts that are no address, ports in use, trusted proxies that are no address,
range messages, and a Redis that wants a password the URL does not carry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from echo.config import ConfigError, load_settings

from support import ROOT, RedisServer, fetch, need, start_echo, start_redis


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    environment["ECHO_RUNTIME_FILE"] = "off"
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "echo", *args], capture_output=True, text=True, env=environment,
                          cwd=ROOT, timeout=30)


def error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("echo-server: error: ")
    return lines[0]


# ---- 5. hosts and binding ---------------------------------------------------

@pytest.mark.parametrize("host", ["256.1.1.1", "no.such.host.invalid"])
def test_a_host_that_is_no_address_is_one_line_and_exit_2(host: str) -> None:
    line = error_line(run_cli("--host", host, "--port", "0"))
    assert f"--host '{host}'" in line and "not an address of this machine or a host name that resolves" in line


def test_a_host_from_the_environment_is_checked_the_same_way() -> None:
    error_line(run_cli("--port", "0", env={"ECHO_HOST": "256.1.1.1"}))


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = error_line(run_cli("--host", "127.0.0.1", "--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line


# ---- 6. --trusted-proxy -----------------------------------------------------

@pytest.mark.parametrize("value", ["notanip", "10.0.0.0/8", "10.0.0.1,10.0.0.2", "256.1.1.1", "proxy.local"])
def test_a_trusted_proxy_that_is_no_address_is_refused(value: str) -> None:
    line = error_line(run_cli("--trusted-proxy", value, "--port", "0"))
    assert line.startswith("echo-server: error: --trusted-proxy: ") and "is not an IP address" in line


@pytest.mark.parametrize(("value", "kept"), [("*", "*"), ("10.0.0.5", "10.0.0.5"), (" ::1 ", "::1"),
                                             ("0:0::1", "::1"), ("", "")])
def test_a_trusted_proxy_address_is_kept_as_the_socket_spells_it(value: str, kept: str) -> None:
    assert load_settings({"ECHO_TRUSTED_PROXY": value}, {}).trusted_proxy == kept


def test_a_trusted_proxy_address_is_trusted_by_the_real_server() -> None:
    server = start_echo("--trusted-proxy", "127.0.0.1", "--log", "off")
    try:
        _, _, body = fetch(server.url + "/x", headers={"X-Forwarded-For": "203.0.113.9"})
        assert json.loads(body)["remote_addr"] == "203.0.113.9"
    finally:
        server.stop()


# ---- 7. range messages ------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "message"), [
    ("port", "65536", "--port: 65536 is out of range: must be from 0 to 65535"),
    ("port", "-1", "--port: -1 is out of range: must be from 0 to 65535"),
    ("threads", "0", "--threads: 0 is out of range: must be from 1 to 1024"),
    ("max_json_depth", "10001", "--max-json-depth: 10001 is out of range: must be from 1 to 10000"),
    ("history", "-1", "--history: -1 is out of range: must be at least 0"),
    ("max_header", "1023", "--max-header: 1023 is out of range: must be at least 1024"),
    ("max_json_values", "0", "--max-json-values: 0 is out of range: must be at least 1"),
])
def test_range_messages_say_from_to_or_at_least(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({}, {name: value})
    assert str(raised.value) == message


def test_a_range_message_reaches_the_command_line() -> None:
    assert error_line(run_cli("--port", "70000")) == \
        "echo-server: error: --port: 70000 is out of range: must be from 0 to 65535"


# ---- 8. a Redis that needs a password ---------------------------------------

@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    need("redis-server", shutil.which("redis-server") is not None, "redis-server")
    server = start_redis(None, "--requirepass", "s3cret")
    yield server
    server.proc.terminate()
    server.proc.wait(10)


def test_a_redis_that_needs_a_password_says_where_to_put_it(locked_redis: RedisServer) -> None:
    result = run_cli("--store", locked_redis.url, "--port", "0")
    line = error_line(result, code=1)  # an unreachable store at start-up is exit 1, as before
    assert (f"the Redis at redis://127.0.0.1:{locked_redis.port}/0 needs a password: put it in the URL, "
            "redis://:PASSWORD@host:port/db") in line
    assert "HELLO" not in line and "NOAUTH" not in line


def test_a_wrong_redis_password_says_it_was_refused(locked_redis: RedisServer) -> None:
    line = error_line(run_cli("--store", f"redis://:wrong@127.0.0.1:{locked_redis.port}/0", "--port", "0"), code=1)
    assert "refused the user or password in the URL" in line and "wrong" not in line  # never the password


def test_health_names_the_missing_password_and_the_right_one_works(locked_redis: RedisServer) -> None:
    server = start_echo("--store", locked_redis.url, "--start-without-store", "--log", "off")
    try:
        status, _, body = fetch(server.url + "/_/healthz")
        assert status == 503 and "needs a password: put it in the URL" in json.loads(body)["store"]["detail"]
    finally:
        server.stop()
    server = start_echo("--store", f"redis://:s3cret@127.0.0.1:{locked_redis.port}/0", "--log", "off")
    try:
        assert fetch(server.url + "/_/healthz")[0] == 200
    finally:
        server.stop()
