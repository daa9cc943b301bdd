"""The command line and settings: flags, ECHO_* variables, bad values, start and stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from echo.config import SETTINGS, ConfigError, Settings, load_settings

from support import ROOT, start_echo


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "echo", *args], capture_output=True, text=True, env=environment,
                          cwd=ROOT, timeout=30)


def test_defaults_match_the_contract() -> None:
    settings = load_settings({}, {})
    assert (settings.host, settings.port, settings.history) == ("127.0.0.1", 8080, 1000)
    assert settings.store == "memory://" and settings.ui_prefix == "/_/"
    assert settings.max_body == 10 * 1024 * 1024 and settings.keep_body == 64 * 1024 and settings.max_delay == 10


def test_environment_then_flags() -> None:
    settings = load_settings({"ECHO_PORT": "9000", "ECHO_HISTORY": "5", "ECHO_NO_CORS": "true"}, {"port": "9001"})
    assert settings.port == 9001 and settings.history == 5 and settings.no_cors is True


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("port", "65535", True), ("port", "65536", False), ("port", "abc", False), ("port", "-1", False),
        ("max_body", "0", True), ("max_body", "-1", False), ("keep_body", "1", True), ("history", "0", True),
        ("max_delay", "0", True), ("max_delay", "-0.5", False), ("max_delay", "nan", False), ("max_delay", "inf", False),
        ("store", "memory://", True), ("store", "redis://127.0.0.1:6379/0", True), ("store", "foo://x", False),
        ("ui_prefix", "/inspect/", True), ("ui_prefix", "/", False), ("ui_prefix", "inspect", False),
        ("ui_auth", "user:pass", True), ("ui_auth", "nocolon", False), ("log", "json", True), ("log", "xml", False),
        ("redact", "Authorization,X-Token", True), ("redact", "Bad Header", False), ("threads", "0", False),
        ("no_cors", "maybe", False),
    ],
)
def test_setting_values(name: str, value: str, ok: bool) -> None:
    if ok:
        assert getattr(load_settings({}, {name: value}), name) is not None
    else:
        with pytest.raises(ConfigError) as info:
            load_settings({}, {name: value})
        assert "\n" not in str(info.value) and name.replace("_", "-") in str(info.value)


def test_unknown_setting_fails_fast() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({}, {"colour": "blue"})


def test_settings_table_and_dataclass_agree() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert {s.name for s in SETTINGS} == fields
    defaults = Settings()
    for setting in SETTINGS:
        assert getattr(defaults, setting.name) == setting.default, setting.name


def test_help_lists_every_flag_with_its_variable() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for setting in SETTINGS:
        assert setting.flag in text and setting.env in text


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--port", "abc"], {}, "--port"),
        (["--store", "ftp://x"], {}, "unknown store scheme"),
        (["--max-body", "-5"], {}, "--max-body"),
        ([], {"ECHO_MAX_DELAY": "soon"}, "ECHO_MAX_DELAY"),
        (["--no-such-flag"], {}, "unrecognized arguments"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(args: list[str], env: dict[str, str], needle: str) -> None:
    result = run_cli(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


def test_env_variable_configures_the_server_and_the_flag_wins(echo_server: Any) -> None:
    server = echo_server("--max-delay", "2", env={"ECHO_MAX_DELAY": "0.5", "ECHO_LOG": "off"})
    with urllib.request.urlopen(f"{server.url}/x?_delay=1") as response:
        assert json.load(response)["controls"]["delay"] == 1.0
    assert server.lines()[0].startswith("Echo ")


def test_start_line_names_both_urls() -> None:
    server = start_echo("--log", "off")
    try:
        line = server.lines()[0]
        assert f"http://127.0.0.1:{server.port}/ " in line and f"http://127.0.0.1:{server.port}/_/" in line
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_it_cleanly_within_5_seconds(sig: int) -> None:
    server = start_echo("--log", "off")
    began = time.monotonic()
    server.proc.send_signal(sig)
    code = server.proc.wait(5)
    assert time.monotonic() - began < 5
    assert code == 0
    server.stop()
    assert "Traceback" not in "".join(server.lines())


def test_sigterm_during_a_long_delay_still_stops_within_5_seconds() -> None:
    server = start_echo("--log", "off")
    conn = __import__("socket").create_connection(("127.0.0.1", server.port))
    try:
        conn.sendall(b"GET /?_delay=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        began = time.monotonic()
        server.proc.terminate()
        server.proc.wait(5)
        assert time.monotonic() - began < 5
    finally:
        conn.close()
        server.stop()


def test_console_script_is_installed_and_runs() -> None:
    script = shutil.which("echo-server", path=str(Path(sys.executable).parent)) or shutil.which("echo-server")
    assert script, "the echo-server console script is not installed"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("echo-server ")


def test_readme_documents_every_flag() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for setting in SETTINGS:
        assert f"`{setting.flag}" in readme and setting.env in readme, setting.flag
