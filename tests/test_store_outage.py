"""Redis outages against the real `echo-server`: nothing is lost up to --store-buffer.

A real redis-server (persisting to a temporary directory, so that stopping
and starting it again keeps what it had) is stopped under load and started
again: every exchange answered is then in Redis exactly once, in id order,
and `/_/healthz` said `503 degraded` with the count buffered meanwhile, then
`200`. The bound and one past it; a stalled Redis (SIGSTOP) that no request
waits on; a clean stop that writes what waits, or says how many it could not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support import EchoServer, RedisServer, call, free_port, need, start_redis, wait_for

pytestmark = pytest.mark.redis

# Requests sent across the outage: enough for batches and a backlog, few
# enough for a shared 2-core machine.
LOAD = 300
SENDERS = 4
# How long to wait for what happens by itself (a reconnect, the backlog written).
SETTLE_SECONDS = 20.0


def health(server: EchoServer) -> tuple[int, dict[str, Any]]:
    status, _, body = call(server.port, "GET", "/_/healthz")
    return status, json.loads(body)


def metric(server: EchoServer, name: str) -> float:
    _, _, body = call(server.port, "GET", "/_/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the scrape")


def listed(server: EchoServer, **params: Any) -> list[str]:
    query = urllib.parse.urlencode({"bodies": "0", "limit": "1000", **params})
    status, _, body = call(server.port, "GET", f"/_/api/exchanges?{query}")
    assert status == 200, body
    return [item["id"] for item in json.loads(body)["exchanges"]]


def echo(server: EchoServer, path: str) -> str:
    status, headers, _ = call(server.port, "GET", path)
    assert status == 200
    return str(headers["X-Echo-Id"])


def in_redis(url: str, prefix: str) -> list[str]:
    """The history's index as Redis holds it, oldest first."""
    with redis.Redis.from_url(url) as client:
        return [member.decode() for member in client.zrange(f"{prefix}:ids", 0, -1)]


class DurableRedis:
    """A redis-server on one port and data directory, stopped and started again at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.server: RedisServer | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # Later options win: persist every write, so a stop and start keeps them.
        self.server = start_redis(self.port, "--appendonly", "yes", "--appendfsync", "always",
                                  "--dir", str(self.directory))

    def stop(self) -> None:
        assert self.server is not None
        self.server.proc.terminate()
        self.server.proc.wait(10)

    def end(self) -> None:
        if self.server is not None and self.server.proc.poll() is None:
            os.kill(self.server.proc.pid, signal.SIGCONT)  # in case a test left it stalled
            self.server.proc.terminate()
            self.server.proc.wait(10)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[DurableRedis]:
    need("redis-server", shutil.which("redis-server") is not None, "redis-server")
    server = DurableRedis(tmp_path)
    server.start()
    yield server
    server.end()


def prefix() -> str:
    return f"outage-{uuid.uuid4().hex[:12]}"


def test_an_outage_under_load_loses_nothing_and_each_exchange_is_written_once_in_order(
        durable_redis: DurableRedis, echo_server: Callable[..., EchoServer]) -> None:
    key = prefix()
    server = echo_server("--store", durable_redis.url, "--store-prefix", key, "--store-timeout", "0.3",
                         "--log", "off")
    answered: list[str] = []
    lock = threading.Lock()
    claimed = [0]
    # Senders run through the stop; two thirds in they wait until Redis is
    # down (so some are surely sent during the outage), five sixths in until
    # it is back (so some are sent while the backlog is written).
    stopped, restarted = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def sender() -> None:
        try:
            while True:
                with lock:
                    n = claimed[0]
                    if n >= LOAD:
                        return
                    claimed[0] += 1
                if n >= LOAD * 2 // 3:
                    assert stopped.wait(SETTLE_SECONDS * 2)
                if n >= LOAD * 5 // 6:
                    assert restarted.wait(SETTLE_SECONDS * 2)
                exchange_id = echo(server, f"/load/{n}")
                with lock:
                    answered.append(exchange_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    senders = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in senders:
        thread.start()
    try:
        assert wait_for(lambda: len(answered) >= LOAD // 3)
        durable_redis.stop()  # under load: requests keep arriving meanwhile
        stopped.set()
        # A write has failed (not merely waited for its batch to fill), and exchanges wait.
        assert wait_for(lambda: metric(server, "echo_store_errors_total") >= 1)
        assert wait_for(lambda: health(server)[1].get("buffered", 0) > 0)
        status, doc = health(server)
        assert status == 503 and doc["status"] == "degraded" and doc["store"]["ok"] is False
        assert doc["buffered"] > 0
        assert "refused" in doc["store"]["detail"]
        durable_redis.start()  # the same port and data: what it had is back
    finally:
        stopped.set()
        restarted.set()
        for thread in senders:
            thread.join(SETTLE_SECONDS * 2)
    assert failures == []
    assert len(answered) == LOAD and len(set(answered)) == LOAD

    assert wait_for(lambda: health(server)[0] == 200)  # the backlog is written
    # Those answered after Redis was back may still be on their way.
    assert wait_for(lambda: in_redis(durable_redis.url, key) == sorted(answered))  # each once, in id order
    status, doc = health(server)
    assert (status, doc["status"], doc["buffered"]) == (200, "ok", 0)
    assert listed(server) == sorted(answered, reverse=True)
    assert metric(server, "echo_store_dropped_total") == 0
    assert metric(server, "echo_store_errors_total") >= 1
    assert wait_for(lambda: "history store is back" in "".join(server.lines()))
    output = "".join(server.lines())
    assert output.count("history store failing") == 1
    assert output.count("history store is back") == 1


@pytest.mark.parametrize("past", [0, 1])
def test_the_buffer_bound_and_one_past_it_during_a_real_outage(
        durable_redis: DurableRedis, echo_server: Callable[..., EchoServer], past: int) -> None:
    key, bound = prefix(), 20
    server = echo_server("--store", durable_redis.url, "--store-prefix", key, "--store-timeout", "0.3",
                         "--store-buffer", str(bound), "--log", "off")
    before = echo(server, "/before")
    assert wait_for(lambda: in_redis(durable_redis.url, key) == [before])
    durable_redis.stop()
    during = [echo(server, f"/during/{n}") for n in range(bound + past)]
    assert wait_for(lambda: metric(server, "echo_store_errors_total") >= 1)
    assert wait_for(lambda: metric(server, "echo_store_dropped_total") == past)
    assert metric(server, "echo_store_buffered") == bound
    status, doc = health(server)
    assert (status, doc["status"], doc["buffered"]) == (503, "degraded", bound)

    durable_redis.start()
    assert wait_for(lambda: health(server)[0] == 200)
    assert in_redis(durable_redis.url, key) == [before, *during[past:]]  # the oldest buffered went first
    assert metric(server, "echo_store_dropped_total") == past
    assert wait_for(lambda: f"{past} were dropped (buffer full)" in "".join(server.lines()))
    assert "".join(server.lines()).count("history store buffer full") == past  # logged once, when it first drops


def test_no_request_waits_on_a_stalled_redis_and_the_answering_process_shows_its_exchanges(
        durable_redis: DurableRedis, echo_server: Callable[..., EchoServer]) -> None:
    key = prefix()
    server = echo_server("--store", durable_redis.url, "--store-prefix", key, "--store-timeout", "0.3",
                         "--log", "off")
    assert durable_redis.server is not None
    pid = durable_redis.server.proc.pid
    os.kill(pid, signal.SIGSTOP)  # Redis accepts connections and answers nothing
    try:
        # Each request is answered while Redis answers nothing (the client's
        # own timeout, 10 s, is far past what a wait on Redis would cost).
        during = [echo(server, f"/stalled/{n}") for n in range(20)]
        for exchange_id in during[::5]:
            status, _, body = call(server.port, "GET", f"/_/api/exchanges/{exchange_id}")
            assert status == 200 and json.loads(body)["id"] == exchange_id  # from the queue
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_for(lambda: in_redis(durable_redis.url, key) == during)
    assert wait_for(lambda: health(server)[0] == 200)


def test_a_clean_stop_writes_what_waits(durable_redis: DurableRedis, echo_server: Callable[..., EchoServer]) -> None:
    key = prefix()
    server = echo_server("--store", durable_redis.url, "--store-prefix", key, "--store-timeout", "0.3",
                         "--log", "off")
    assert durable_redis.server is not None
    pid = durable_redis.server.proc.pid
    os.kill(pid, signal.SIGSTOP)  # stalled: everything answered waits in the queue
    try:
        sent = [echo(server, f"/n/{n}") for n in range(30)]
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # the stop has begun, and waits for the store
    finally:
        os.kill(pid, signal.SIGCONT)
    assert server.proc.wait(10) == 0
    server.stop()
    assert in_redis(durable_redis.url, key) == sent
    assert "not written" not in "".join(server.lines())


def test_a_clean_stop_during_an_outage_says_how_many_it_could_not_write(
        durable_redis: DurableRedis, echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--store", durable_redis.url, "--store-prefix", prefix(), "--store-timeout", "0.3",
                         "--log", "off")
    durable_redis.stop()
    for n in range(5):
        echo(server, f"/n/{n}")
    assert wait_for(lambda: metric(server, "echo_store_errors_total") >= 1)
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(10)  # it stops by itself: the contract is within 5 s
    except subprocess.TimeoutExpired:
        pytest.fail("echo-server did not stop within 10 s of SIGTERM during a Redis outage")
    assert code == 0
    server.stop()
    output = "".join(server.lines())
    assert "history store: stopping with 5 exchange(s) not written" in output
    assert "Echo stopped" in output
