"""Rules against the real server: sequences under 200 concurrent requests (one
process, and two replicas sharing Redis), faults seen by raw sockets, SIGHUP
re-reads good and bad edits, API rules per bin, and a rule's delay ended when
its caller leaves."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from support import EchoServer, RedisServer, call, http_request

SEQUENCE = '''
[[rule]]
name = "fails twice"
match = "method:POST path:/hooks/*"
respond = [
  { status = 503, headers = { "Retry-After" = "1" }, times = 2 },
  { status = 200, json = { ok = true } },
]
'''


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def hammer(ports: list[int], n: int, path: str = "/hooks/x") -> Counter[int]:
    """n requests at once (all threads released together), spread over `ports`; their statuses."""
    statuses: list[int] = []
    failures: list[BaseException] = []
    gate = threading.Barrier(n)
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            gate.wait(30)
            status = call(ports[i % len(ports)], "POST", path, b"{}")[0]
            with lock:
                statuses.append(status)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[:3]
    return Counter(statuses)


def test_a_times_2_step_answers_exactly_two_of_200_concurrent_requests(
        tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--rules", str(write(tmp_path, SEQUENCE)), "--log", "off", "--threads", "16")
    assert hammer([server.port], 200) == Counter({503: 2, 200: 198})
    rules = json.loads(call(server.port, "GET", "/_/api/rules")[2])["rules"]
    assert (rules[0]["hits"], rules[0]["step"]) == (200, 1)


@pytest.mark.redis
def test_replicas_on_one_redis_share_a_sequence(
        tmp_path: Path, echo_server: Callable[..., EchoServer], own_redis: Callable[..., RedisServer]) -> None:
    redis = own_redis()
    path = write(tmp_path, SEQUENCE)
    replicas = [echo_server("--rules", str(path), "--store", redis.url, "--log", "off", "--threads", "16")
                for _ in range(2)]
    assert hammer([r.port for r in replicas], 200) == Counter({503: 2, 200: 198})
    for replica in replicas:
        rules = json.loads(call(replica.port, "GET", "/_/api/rules")[2])["rules"]
        assert rules[0]["hits"] == 200


FAULTS = '''
[[rule]]
name = "hang up"
match = "path:/close"
respond = { fault = "close" }

[[rule]]
name = "reset"
match = "path:/reset"
respond = { fault = "reset" }

[[rule]]
name = "flaky"
match = "path:/flaky"
respond = [ { fault = "reset", times = 1 }, { status = 200, body = "fine" } ]
'''


def raw(port: int, path: str) -> bytes:
    """Send one request and read until the server ends the connection; what arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(http_request(b"GET", path.encode()))
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_a_close_fault_ends_the_connection_without_an_answer(
        tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--rules", str(write(tmp_path, FAULTS)), "--log", "off")
    assert raw(server.port, "/close") == b""  # end of stream, not a byte of an answer
    # The server goes on answering, and history shows what happened.
    assert call(server.port, "GET", "/other")[0] == 200
    found = json.loads(call(server.port, "GET", "/_/api/exchanges?f=rule:hang*")[2])["exchanges"]
    assert found[0]["rule"]["fault"] == "close" and found[0]["response"]["status"] == 0


def test_a_reset_fault_resets_the_connection(tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--rules", str(write(tmp_path, FAULTS)), "--log", "off")
    with pytest.raises(ConnectionResetError):
        raw(server.port, "/reset")
    assert call(server.port, "GET", "/other")[0] == 200
    assert "Client disconnected" not in "".join(server.lines())


def test_a_client_retrying_after_a_reset_gets_the_next_step(
        tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--rules", str(write(tmp_path, FAULTS)), "--log", "off")
    with pytest.raises(ConnectionResetError):
        raw(server.port, "/flaky")
    status, _, body = call(server.port, "GET", "/flaky")
    assert (status, body) == (200, b"fine")


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric(server: EchoServer, line: str) -> str:
    text = call(server.port, "GET", "/_/metrics")[2].decode()
    return next((row for row in text.splitlines() if row.startswith(line)), "")


def test_sighup_reads_a_good_edit_and_keeps_the_old_rules_on_a_bad_one(
        tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    path = write(tmp_path, '[[rule]]\nname = "v1"\nmatch = "path:/v"\nrespond = { status = 201 }\n')
    server = echo_server("--rules", str(path))
    assert call(server.port, "GET", "/v")[0] == 201

    path.write_text('[[rule]]\nname = "v2"\nmatch = "path:/v"\nrespond = { status = 202 }\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: call(server.port, "GET", "/v")[0] == 202, "the good edit")
    assert any("rules: reloaded" in line for line in server.lines())
    assert metric(server, 'echo_rules_reloads_total{result="ok"}').endswith(" 1")

    path.write_text('[[rule]]\nname = "v3"\nmatch = "path:/v"\nrespond = { status = 999 }\n')
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("reload failed" in line for line in server.lines()), "the failure line")
    failed = [line for line in server.lines() if "reload failed" in line]
    assert len(failed) == 1
    assert f"{path}: rule 1 (v3): respond[0].status" in failed[0]
    assert call(server.port, "GET", "/v")[0] == 202  # the old rules stay
    assert metric(server, 'echo_rules_reloads_total{result="failed"}').endswith(" 1")
    assert server.proc.poll() is None


def test_api_rules_of_a_bin_do_not_answer_outside_it(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    rule = {"name": "mine", "match": "path:/hook", "bin": "job1", "respond": {"status": 503}}
    status, _, body = call(server.port, "POST", "/_/api/rules", json.dumps(rule).encode(),
                           {"Content-Type": "application/json"})
    assert status == 201
    shared = {"name": "shared", "match": "path:/shared", "respond": {"status": 418}}
    assert call(server.port, "POST", "/_/api/rules", json.dumps(shared).encode())[0] == 201
    # The bin's rule is no answer for the same path outside the bin; a rule without a bin is.
    assert call(server.port, "GET", "/hook")[0] == 200
    assert call(server.port, "GET", "/shared")[0] == 418
    listed = json.loads(call(server.port, "GET", "/_/api/rules")[2])["rules"]
    assert [(r["name"], r["bin"], r["hits"]) for r in listed] == [("shared", None, 1), ("mine", "job1", 0)]
    assert call(server.port, "DELETE", "/_/api/rules?bin=job1")[0] == 204
    assert [r["name"] for r in json.loads(call(server.port, "GET", "/_/api/rules")[2])["rules"]] == ["shared"]


def test_api_rules_of_a_bin_answer_inside_it_by_path_and_by_header(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    rule = {"name": "mine", "match": "method:POST path:/hook", "bin": "job1", "respond": {"status": 503}}
    assert call(server.port, "POST", "/_/api/rules", json.dumps(rule).encode(),
                {"Content-Type": "application/json"})[0] == 201
    # In its bin, `path:` is the path below /b/{bin}, as in a bin's filters.
    assert call(server.port, "POST", "/b/job1/hook", b"{}")[0] == 503
    assert call(server.port, "POST", "/hook", b"{}", {"X-Echo-Bin": "job1"})[0] == 503
    assert call(server.port, "POST", "/b/job2/hook", b"{}")[0] == 200  # another job's bin
    assert call(server.port, "GET", "/b/job1/hook")[0] == 200  # the match still holds whole
    found = json.loads(call(server.port, "GET", "/_/api/exchanges?f=" + quote("bin:job1 rule:mine"))[2])["exchanges"]
    assert [(x["request"]["bin"], x["request"]["bin_path"], x["rule"]["name"], x["response"]["status"])
            for x in found] == [
        ("job1", "/hook", "mine", 503), ("job1", "/hook", "mine", 503)]


def test_a_rule_delay_ends_when_the_caller_leaves(tmp_path: Path, echo_server: Callable[..., EchoServer]) -> None:
    path = write(tmp_path, '[[rule]]\nname = "slow"\nmatch = "path:/slow"\nrespond = { delay = 10, body = "late" }\n')
    # One held slot: while the first delay holds it, a second slow request is refused with 503.
    server = echo_server("--rules", str(path), "--log", "off", "--threads", "3", "--max-held", "1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(http_request(b"GET", b"/slow"))

    def busy() -> bool:
        status, headers, _ = call(server.port, "GET", "/slow")
        return status == 503 and headers["Retry-After"] == "1"

    wait_for(busy, "the delay to take the held slot")
    sock.close()  # the caller leaves: its delay ends, and the slot is free again
    wait_for(lambda: raw_status(server.port, "/slow", timeout=3) != 503, "the slot to come free", timeout=5)


def raw_status(port: int, path: str, timeout: float) -> Any:
    """The status of a request that may be held: 0 when nothing came within `timeout`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(http_request(b"GET", path.encode()))
        try:
            head = sock.recv(64)
        except TimeoutError:
            return 0
        return int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
