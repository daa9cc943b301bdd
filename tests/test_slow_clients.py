"""Slow and stuck clients: half-sent bodies, idle keep-alive connections and callers who leave mid-delay.

Run against the real server with only two worker threads, so any client that
could pin a worker would show at once as other clients going unanswered.
waitress reads requests on its event loop and hands a worker only a request
that has fully arrived; these tests hold Echo to that, and to its own part:
a `_delay` must not keep a worker once its caller has gone. The tests assert
that others are answered within a generous timeout, never how fast.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest

from support import EchoServer, split_response

# Generous: an answer that takes this long means the client was blocked.
ANSWER_TIMEOUT = 10.0
THREADS = 2
STUCK_CLIENTS = 6


def ask(server: EchoServer, path: str, timeout: float = ANSWER_TIMEOUT) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def open_socket(server: EchoServer, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT)
    if data:
        sock.sendall(data)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Read one Content-Length-framed answer from a kept-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers, _ = split_response(head + b"\r\n\r\n")
    length = int(dict((k.lower(), v) for k, v in headers)["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return status, body


@pytest.fixture
def two_threads(echo_server: Any) -> EchoServer:
    return echo_server("--log", "off", "--threads", str(THREADS), "--max-delay", "30")


def test_half_sent_bodies_and_idle_connections_block_no_one(sockets: list[socket.socket],
                                                            two_threads: EchoServer) -> None:
    server = two_threads
    threads_before = server.status_field("Threads")
    half_body = b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10
    for _ in range(STUCK_CLIENTS):
        sockets.append(open_socket(server, half_body))  # promised 1000 bytes, sent 10
        sockets.append(open_socket(server))  # connected, never says anything
        sockets.append(open_socket(server, b"GET /slow-head HTTP/1.1\r\nHost: x\r\n"))  # headers never end
    chunked = open_socket(server, b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    sockets.append(chunked)
    keep_alive = open_socket(server, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    sockets.append(keep_alive)
    assert read_answer(keep_alive)[0] == 200  # now idle, kept alive

    for n in range(3 * THREADS):
        status, document = ask(server, f"/others/{n}")
        assert status == 200 and document["path"] == f"/others/{n}"

    # The stuck clients can still finish, and get the right answer.
    sockets[0].sendall(b"b" * 990)
    status, body = read_answer(sockets[0])
    assert status == 200 and json.loads(body)["body"]["text"] == "a" * 10 + "b" * 990
    chunked.sendall(b"lo\r\n0\r\n\r\n")
    status, body = read_answer(chunked)
    assert status == 200 and json.loads(body)["body"]["text"] == "hello"
    keep_alive.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = read_answer(keep_alive)
    assert status == 200 and json.loads(body)["path"] == "/second"
    assert server.status_field("Threads") == threads_before  # no thread per connection, none leaked


def test_a_body_sent_a_byte_at_a_time_does_not_hold_a_worker(sockets: list[socket.socket],
                                                              two_threads: EchoServer) -> None:
    server = two_threads
    body = b"slowly, slowly"
    trickle = open_socket(server, b"POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    sockets.append(trickle)
    for n, byte in enumerate(body):
        trickle.sendall(bytes([byte]))
        if n % 4 == 0:
            assert ask(server, f"/meanwhile/{n}")[0] == 200
        time.sleep(0.01)
    status, answer = read_answer(trickle)
    assert status == 200 and json.loads(answer)["body"]["text"] == body.decode()


def test_a_client_leaving_during_a_delay_blocks_no_one(two_threads: EchoServer) -> None:
    server = two_threads
    threads_before = server.status_field("Threads")
    leaver = open_socket(server, b"GET /leaving?_delay=3 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # the request is in a worker, sleeping
    leaver.close()
    for n in range(2 * THREADS):
        status, document = ask(server, f"/after-leaver/{n}")
        assert status == 200
    assert server.status_field("Threads") == threads_before


def test_callers_who_leave_during_a_delay_give_their_workers_back(echo_server: Any) -> None:
    # Every worker is asleep for a caller that has already left; the next
    # client must not wait out their delays.
    delay = 6
    server = echo_server("--log", "off", "--threads", str(THREADS), "--max-delay", str(delay))
    leavers = [open_socket(server, f"GET /gone/{n}?_delay={delay} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
               for n in range(THREADS)]
    time.sleep(0.3)
    for sock in leavers:
        sock.close()
    status, document = ask(server, "/next-in-line", timeout=delay / 2)
    assert status == 200 and document["path"] == "/next-in-line"
    # The callers who left are still in the history, well before their delays
    # would have ended. With --max-held the next caller no longer waits for a
    # leaver's worker, so a held leaver may be recorded just after it: poll.
    wanted = {f"/gone/{n}" for n in range(THREADS)}
    deadline = time.monotonic() + delay / 2
    while True:
        _, listing = ask(server, "/_/api/exchanges?bodies=0")
        paths = {e["request"]["path"] for e in listing["exchanges"]}
        if wanted <= paths or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert wanted <= paths


def test_many_short_connections_leak_no_threads(two_threads: EchoServer) -> None:
    server = two_threads
    threads_before = server.status_field("Threads")
    for n in range(50):
        sock = open_socket(server, b"GET /short HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
        sock.close()  # left mid-body
        if n % 10 == 0:
            assert ask(server, f"/check/{n}")[0] == 200
    assert ask(server, "/final")[0] == 200
    assert server.status_field("Threads") == threads_before
