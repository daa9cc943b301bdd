"""A hostile client against the real server: held workers, idle sockets, endless chunk lines, smuggling, stop.

Each test starts the real `python -m echo` (waitress) on 127.0.0.1 and talks
raw sockets where the wire matters. Timeouts are generous; an answer that does
not come within them is the failure being tested for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from echo import create_app
from echo.answer.held import HeldBudget
from echo.config import ConfigError, load_settings

from support import ROOT, EchoServer, call, split_response, start_echo

# Well under the delays used below: an answer slower than this waited for them.
PROMPT = 1.5
ANSWER_TIMEOUT = 10.0


def connect(port: int, data: bytes = b"", timeout: float = ANSWER_TIMEOUT) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if data:
        sock.sendall(data)
    return sock


# Bytes read past one answer (pipelined answers can arrive in one read), per socket.
_unread: dict[socket.socket, bytes] = {}


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The next Content-Length-framed answer from `sock`: status, headers (lower-case names), body."""
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a whole head arrived: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, pairs, _ = split_response(head + b"\r\n\r\n")
    headers = {name.lower(): value for name, value in pairs}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    if len(body) > length:
        _unread[sock] = body[length:]
    return status, headers, body[:length]


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (or reset) `sock`; waits up to the socket's timeout."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def timed_get(port: int, path: str, timeout: float = ANSWER_TIMEOUT) -> tuple[int, float]:
    """GET `path` on a fresh connection: (status, seconds it took); fails if no answer within `timeout`."""
    began = time.monotonic()
    sock = connect(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), timeout=timeout)
    try:
        status = read_answer(sock)[0]
    finally:
        sock.close()
    return status, time.monotonic() - began


def exchanges(server: EchoServer, query: str) -> list[dict[str, Any]]:
    status, _, body = call(server.port, "GET", f"/_/api/exchanges?bodies=0&limit=1000&{query}")
    assert status == 200
    return json.loads(body)["exchanges"]


# ---- 1. requests that hold a worker share --max-held --------------------------

def test_held_budget_takes_up_to_its_limit_and_never_waits() -> None:
    budget = HeldBudget(2)
    assert budget.acquire() and budget.acquire()
    began = time.monotonic()
    assert not budget.acquire()
    assert time.monotonic() - began < 0.1
    budget.release()
    assert budget.acquire() and budget.in_use == 2
    budget.release()
    budget.release()
    with pytest.raises(RuntimeError):
        budget.release()


def test_held_budget_stop_ends_every_pause_at_once() -> None:
    budget = HeldBudget(1)
    ended: list[bool] = []
    sleeper = threading.Thread(target=lambda: ended.append(budget.pause(30)))
    sleeper.start()
    time.sleep(0.1)
    budget.stop()
    sleeper.join(2)
    assert ended == [True] and budget.pause(30) is True


@pytest.mark.parametrize(("threads", "held"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 6), (64, 62)])
def test_max_held_default_keeps_two_workers_free_and_at_least_one_holder(threads: int, held: int) -> None:
    assert load_settings({}, {"threads": str(threads)}).held_limit == held
    assert load_settings({"ECHO_MAX_HELD": "auto"}, {"threads": str(threads)}).held_limit == held


@pytest.mark.parametrize(("threads", "held", "ok"), [
    (4, "3", True), (4, "4", False), (8, "7", True), (8, "8", False), (2, "1", True), (2, "2", False),
    (1, "1", True), (1, "2", False), (4, "0", True), (4, "-1", False), (4, "many", False),
])
def test_max_held_must_leave_a_worker_free(threads: int, held: str, ok: bool) -> None:
    if ok:
        assert load_settings({}, {"threads": str(threads), "max_held": held}).held_limit == int(held)
        return
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"threads": str(threads), "max_held": held})
    assert "--max-held" in str(info.value) and "\n" not in str(info.value)


def test_max_held_from_the_environment_is_named_in_the_error() -> None:
    with pytest.raises(ConfigError, match="ECHO_MAX_HELD"):
        load_settings({"ECHO_MAX_HELD": "9", "ECHO_THREADS": "4"}, {})


def test_conflicting_max_held_is_one_line_and_exit_2() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    result = subprocess.run([sys.executable, "-m", "echo", "--threads", "4", "--max-held", "4"], capture_output=True,
                            text=True, env=environment, cwd=ROOT, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--max-held" in lines[0]


def test_max_held_0_refuses_every_delay_but_answers_the_rest() -> None:
    client = create_app({"log": "off", "threads": "4", "max_held": "0"}, environ={}).test_client()
    refused = client.get("/x?_delay=0.01")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.get_json()["setting"] == "--max-held"
    assert client.get("/x?_delay=0").status_code == 200 and client.get("/x").status_code == 200


def test_twelve_delays_on_four_threads_leave_health_and_the_inspector_free(echo_server: Any) -> None:
    # The red-team finding: twelve _delay=4 on --threads 4 made /_/healthz take 11.7 s.
    server = echo_server("--log", "off", "--threads", "4")
    results: list[int] = []

    def delayed(n: int) -> None:
        results.append(call(server.port, "GET", f"/x/{n}?_delay=4")[0])

    callers = [threading.Thread(target=delayed, args=(n,)) for n in range(12)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)
    for path in ("/_/healthz", "/_/api/exchanges?limit=1", "/plain"):
        status, took = timed_get(server.port, path, timeout=PROMPT)
        assert status == 200 and took < PROMPT, (path, took)
    for caller in callers:
        caller.join(ANSWER_TIMEOUT)
    assert sorted(results) == [200, 200] + [503] * 10  # --max-held auto: 4 - 2


@pytest.mark.parametrize(("max_held", "sent"), [(3, 3), (3, 4)])
def test_max_held_at_the_limit_and_one_more(sockets: list[socket.socket], echo_server: Any,
                                            max_held: int, sent: int) -> None:
    server = echo_server("--log", "off", "--threads", "4", "--max-held", str(max_held))
    for n in range(sent):
        sockets.append(connect(server.port, f"GET /held/{n}?_delay=3 HTTP/1.1\r\nHost: x\r\n\r\n".encode()))
        time.sleep(0.1)  # in this order: the last one is the one over the limit
    if sent > max_held:
        began = time.monotonic()
        status, headers, body = read_answer(sockets[-1])
        assert time.monotonic() - began < PROMPT  # at once, not after the others' delays
        document = json.loads(body)
        assert status == 503 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"
        assert document["setting"] == "--max-held" and document["limit"] == max_held and "error" in document
        recorded = exchanges(server, "status=503")
        assert [e["request"]["path"] for e in recorded] == [f"/held/{sent - 1}"]
        assert recorded[0]["response"]["headers"]
    # With every slot taken the server still answers promptly, and the holders get their answers.
    status, took = timed_get(server.port, "/_/healthz", timeout=PROMPT)
    assert status == 200 and took < PROMPT
    for sock in sockets[:max_held]:
        status, _, body = read_answer(sock)
        assert status == 200 and json.loads(body)["controls"]["delay"] == 3
    # The slots are free again.
    sock = connect(server.port, b"GET /again?_delay=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
    sockets.append(sock)
    assert read_answer(sock)[0] == 200


# ---- 2. idle connections: --connection-limit and --channel-timeout -----------

def test_more_idle_connections_than_waitress_allows_lock_no_one_out(sockets: list[socket.socket],
                                                                     echo_server: Any) -> None:
    # The red-team finding: 110 idle connections locked everyone out for 120 s.
    server = echo_server("--log", "off")
    for _ in range(130):
        sockets.append(connect(server.port))
    time.sleep(0.5)
    for path in ("/after-the-idle-ones", "/_/healthz"):
        assert timed_get(server.port, path, timeout=5)[0] == 200, path


def test_connection_limit_at_the_limit_and_one_more(sockets: list[socket.socket], echo_server: Any) -> None:
    limit = 20
    server = echo_server("--log", "off", "--connection-limit", str(limit))
    for _ in range(limit - 1):
        sockets.append(connect(server.port))
    time.sleep(0.3)
    last = connect(server.port, b"GET /at-the-limit HTTP/1.1\r\nHost: x\r\n\r\n")
    sockets.append(last)
    assert read_answer(last)[0] == 200  # the limit-th connection is served (and stays open)
    over = connect(server.port, b"GET /one-more HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1.5)
    sockets.append(over)
    with pytest.raises(socket.timeout):
        over.recv(1)  # not accepted while `limit` connections are open
    sockets[0].close()
    over.settimeout(5)
    status, _, body = read_answer(over)  # accepted as soon as one closes
    assert status == 200 and json.loads(body)["path"] == "/one-more"


def test_idle_connections_are_closed_after_the_channel_timeout(sockets: list[socket.socket],
                                                               echo_server: Any) -> None:
    server = echo_server("--log", "off", "--channel-timeout", "2")
    idle = connect(server.port, timeout=6)
    kept_alive = connect(server.port, b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n", timeout=6)
    sockets.extend([idle, kept_alive])
    assert read_answer(kept_alive)[0] == 200
    began = time.monotonic()
    assert closed_by_server(idle) and closed_by_server(kept_alive)
    assert time.monotonic() - began < 5


def test_a_delay_longer_than_the_channel_timeout_is_still_answered(sockets: list[socket.socket],
                                                                   echo_server: Any) -> None:
    server = echo_server("--log", "off", "--channel-timeout", "1")
    sock = connect(server.port, b"GET /slow?_delay=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    sockets.append(sock)
    assert read_answer(sock)[0] == 200  # a connection with a request in progress is not idle


@pytest.mark.parametrize(("flag", "value"), [("--connection-limit", "0"), ("--channel-timeout", "0"),
                                             ("--connection-limit", "many"), ("--channel-timeout", "1.5")])
def test_bad_connection_settings_are_one_line_and_exit_2(flag: str, value: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    result = subprocess.run([sys.executable, "-m", "echo", flag, value], capture_output=True, text=True,
                            env=environment, cwd=ROOT, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and flag in lines[0]


def test_a_connection_limit_beyond_the_open_file_limit_is_refused_at_start() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 900_000:
        pytest.skip("this machine's open-file limit is too high to go over")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ECHO_")}
    result = subprocess.run([sys.executable, "-m", "echo", "--port", "0", "--connection-limit", str(hard)],
                            capture_output=True, text=True, env=environment, cwd=ROOT, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--connection-limit" in lines[0]


# ---- 3. chunk-size lines and trailers are bounded by --max-header -----------

CHUNKED_HEAD = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def send_hostile(port: int, data: bytes) -> socket.socket:
    """Send as much of `data` as the server takes; it may close the connection part-way."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sock


def refused_promptly(sock: socket.socket) -> bool:
    """A 400, or a closed connection, within the socket's timeout."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return data == b"" or data.startswith(b"HTTP/1.1 400 ")
    except TimeoutError:
        return False
    return data == b"" or data.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("what", ["chunk-size line", "trailer section"])
def test_an_endless_chunk_line_is_refused_promptly(echo_server: Any, what: str) -> None:
    # The red-team finding: 2 MiB of `0` without CRLF was neither refused nor
    # answered, and 30 MiB on four connections held waitress's I/O thread.
    server = echo_server("--log", "off")
    endless = b"0" * (384 * 1024) if what == "chunk-size line" else b"0\r\nX-Trailer: " + b"a" * (384 * 1024)
    began = time.monotonic()
    hostile = [send_hostile(server.port, CHUNKED_HEAD + endless) for _ in range(4)]
    try:
        assert all(refused_promptly(sock) for sock in hostile)
        assert time.monotonic() - began < 5
        status, took = timed_get(server.port, "/_/healthz", timeout=PROMPT)
        assert status == 200 and took < PROMPT
    finally:
        for sock in hostile:
            sock.close()


def assert_refused_or_hello(sock: socket.socket, refused: bool) -> None:
    """Over the limit: refused at once. At it: the chunked body "hello" is echoed."""
    try:
        if refused:
            assert refused_promptly(sock)
        else:
            status, _, body = read_answer(sock)
            assert status == 200 and json.loads(body)["body"]["text"] == "hello"
    finally:
        sock.close()


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_chunk_size_line_at_the_limit_and_one_more(echo_server: Any, extra: int, refused: bool) -> None:
    limit = 2048  # --max-header: the largest head, and the largest chunk-size line
    server = echo_server("--log", "off", "--max-header", str(limit))
    size_line = b"0" * (limit + extra - 1) + b"5"  # leading zeros: still the number 5
    sock = send_hostile(server.port, CHUNKED_HEAD + size_line + b"\r\nhello\r\n0\r\n\r\n")
    assert_refused_or_hello(sock, refused)


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_trailer_section_at_the_limit_and_one_more(echo_server: Any, extra: int, refused: bool) -> None:
    limit = 2048
    server = echo_server("--log", "off", "--max-header", str(limit))
    field = b"X-Trailer: "
    trailer = field + b"a" * (limit + extra - len(field))
    sock = send_hostile(server.port, CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n\r\n")
    assert_refused_or_hello(sock, refused)


def test_chunked_bodies_split_anywhere_still_arrive_whole(echo_server: Any) -> None:
    # The bounded decoder is fed one piece at a time; every read boundary must still work.
    server = echo_server("--log", "off")
    message = (CHUNKED_HEAD + b"5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
               + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    for cut in range(len(CHUNKED_HEAD), len(message), 3):
        sock = connect(server.port)
        try:
            sock.sendall(message[:cut])
            time.sleep(0.005)
            sock.sendall(message[cut:])
            status, _, body = read_answer(sock)
            assert status == 200 and json.loads(body)["body"]["text"] == "hello, world", cut
            status, _, body = read_answer(sock)
            assert status == 200 and json.loads(body)["path"] == "/next", cut
        finally:
            sock.close()


# ---- 4. Content-Length with Transfer-Encoding: refused, and the connection closed ----

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(("name", "head"), [
    ("length then chunked", b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("chunked then length", b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n"),
    ("HTTP/1.0 with chunked", b"POST /first HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    ("HTTP/1.0 chunked alone", b"POST /first HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"),
])
def test_ambiguous_framing_is_refused_and_nothing_after_it_is_answered(echo_server: Any, name: str,
                                                                        head: bytes) -> None:
    server = echo_server("--log", "off")
    sock = connect(server.port, head + b"0\r\n\r\n" + SMUGGLED, timeout=5)
    try:
        status, headers, body = read_answer(sock)
        assert status == 400 and b"RFC 9112" in body and headers.get("connection") == "close"
        assert closed_by_server(sock)  # and nothing more: the smuggled request is never answered
    finally:
        sock.close()
    assert exchanges(server, "q=smuggled") == [] and exchanges(server, "q=first") == []
    assert call(server.port, "GET", "/still-serving")[0] == 200


def test_chunked_requests_alone_are_still_pipelined(echo_server: Any) -> None:
    server = echo_server("--log", "off")
    one = CHUNKED_HEAD + b"3\r\none\r\n0\r\n\r\n"
    sock = connect(server.port, one + one + b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    try:
        texts = [json.loads(read_answer(sock)[2]) for _ in range(3)]
        assert [t["body"]["text"] for t in texts[:2]] == ["one", "one"] and texts[2]["path"] == "/third"
    finally:
        sock.close()


# ---- 5. SIGTERM answers everything already received, then exits -------------

def test_sigterm_answers_delayed_and_queued_requests_then_exits_within_5_seconds(
        sockets: list[socket.socket]) -> None:
    # The red-team finding: queued requests got an empty reply ("Canceling 3
    # pending task(s)") and an in-flight _delay=8 got no answer at all.
    server = start_echo("--log", "off", "--threads", "4", "--max-delay", "10")
    try:
        held = connect(server.port, b"GET /held/a?_delay=8 HTTP/1.1\r\nHost: x\r\n\r\n")
        queued = b"GET /queued/1 HTTP/1.1\r\nHost: x\r\n\r\n" + CHUNKED_HEAD + b"4\r\nbody\r\n0\r\n\r\n"
        pipelined = connect(server.port, b"GET /held/b?_delay=8 HTTP/1.1\r\nHost: x\r\n\r\n" + queued
                            + b"GET /queued/3?_delay=8 HTTP/1.1\r\nHost: x\r\n\r\n")
        idle = connect(server.port, b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
        sockets.extend([held, pipelined, idle])
        assert read_answer(idle)[0] == 200  # now idle, kept alive
        time.sleep(0.5)  # both delays are asleep in their workers
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)

        status, _, body = read_answer(held)
        assert status == 200 and json.loads(body)["path"] == "/held/a"
        paths = []
        for _ in range(4):
            status, _, body = read_answer(pipelined)
            assert status == 200
            paths.append(json.loads(body)["path"])
        assert paths == ["/held/b", "/queued/1", "/chunked", "/queued/3"]
        code = server.proc.wait(5)
        assert time.monotonic() - began < 5 and code == 0
        assert closed_by_server(idle) and closed_by_server(held)
    finally:
        server.stop()
    output = "".join(server.lines())
    assert "Traceback" not in output and "Canceling" not in output and "unanswered" not in output
