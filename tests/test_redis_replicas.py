"""Several real `echo-server` processes on one real redis-server share one history.

What a load balancer in front of replicas relies on: an exchange answered by
one replica is listed, filtered, paged, shown, exported and cleared through
another; ids stay unique and newest-first holds across them; the bound holds
for all of them together; a replica's restart loses nothing; and a Redis
outage never slows the echo down, shows up in /_/healthz, and heals by itself.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support import EchoServer, RedisServer, fetch, free_port, wait_for

pytestmark = pytest.mark.redis

# Generous: the client only needs to notice a hang, never to time anything.
CLIENT_TIMEOUT = 10.0
# How long to wait for something that happens by itself (a reconnect, the
# recorder's retry after a failure); far above what it takes.


def call(url: str, method: str = "GET", data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return fetch(url, method, data, headers, timeout=CLIENT_TIMEOUT)


def send(server: EchoServer, path: str = "/", method: str = "GET", data: bytes | None = None,
         headers: dict[str, str] | None = None) -> str:
    """One echo request; its exchange id."""
    status, response_headers, _ = call(server.url + path, method, data, headers)
    assert status < 500
    return response_headers["X-Echo-Id"]


def listed(server: EchoServer, **params: Any) -> list[str]:
    query = urllib.parse.urlencode({"bodies": "0", **params})
    status, _, body = call(f"{server.url}/_/api/exchanges?{query}")
    assert status == 200, body
    return [item["id"] for item in json.loads(body)["exchanges"]]


def health(server: EchoServer) -> tuple[int, dict[str, Any]]:
    status, _, body = call(f"{server.url}/_/healthz")
    return status, json.loads(body)


@pytest.fixture
def replica(echo_server: Callable[..., EchoServer], redis_server: RedisServer) -> Iterator[Callable[..., EchoServer]]:
    """replica(prefix, *flags) -> an echo-server on the shared redis-server."""

    def make(prefix: str, *flags: str, url: str | None = None) -> EchoServer:
        return echo_server("--store", url or redis_server.url, "--store-prefix", prefix, "--log", "off", *flags)

    yield make


def unique_prefix() -> str:
    return f"replicas-{uuid.uuid4().hex[:12]}"


def test_two_replicas_show_one_history(replica: Callable[..., EchoServer]) -> None:
    prefix = unique_prefix()
    a, b = replica(prefix), replica(prefix)
    posted = send(a, "/orders/7?x=1", "POST", b'{"qty": 2}', {"Content-Type": "application/json"})
    missing = send(b, "/health?v=1&_status=404")
    put = send(a, "/items/3", "PUT", b"plain body")

    newest_first = [put, missing, posted]
    assert len(set(newest_first)) == 3
    # Written behind the answers: each replica lists its own at once, the
    # other's once their batch is written (within a second).
    assert wait_for(lambda: listed(a) == listed(b) == newest_first)
    assert listed(b, method="post") == [posted]
    assert listed(a, status="404") == [missing]
    assert listed(b, status="2xx") == [put, posted]
    assert listed(a, q="ORDERS") == [posted]
    assert listed(b, limit=2) == [put, missing]
    assert listed(b, limit=2, before=missing) == [posted]

    status, _, body = call(f"{b.url}/_/api/exchanges/{posted}")
    assert status == 200
    detail = json.loads(body)
    assert (detail["id"], detail["request"]["method"], detail["request"]["path"]) == (posted, "POST", "/orders/7")
    assert detail["request"]["json"] == {"qty": 2}
    assert detail["response"]["status"] == 200

    status, _, page = call(f"{b.url}/_/exchanges/{put}")
    assert status == 200 and b"/items/3" in page

    status, _, curl = call(f"{b.url}/_/api/exchanges/{posted}/curl")
    assert status == 200 and b"POST" in curl and b"/orders/7?x=1" in curl

    status, _, har = call(f"{a.url}/_/api/exchanges.har")
    assert status == 200
    urls = [entry["request"]["url"] for entry in json.loads(har)["log"]["entries"]]
    assert [u.split("/", 3)[3] for u in urls] == ["orders/7?x=1", "health?v=1&_status=404", "items/3"]

    status, _, _ = call(f"{b.url}/_/api/exchanges", "DELETE")
    assert status == 204
    assert listed(a) == []
    status, _, body = call(f"{a.url}/_/api/exchanges/{posted}")
    assert status == 404


def test_the_bound_holds_across_replicas_and_a_restart_loses_nothing(replica: Callable[..., EchoServer]) -> None:
    prefix = unique_prefix()
    flags = ("--history", "4")
    a, b = replica(prefix, *flags), replica(prefix, *flags)
    sent = [send((a, b)[i % 2], f"/n/{i}") for i in range(7)]
    newest = sent[::-1][:4]
    assert wait_for(lambda: listed(a, limit=100) == listed(b, limit=100) == newest)

    assert a.stop() == 0
    sent.append(send(b, "/while-a-is-down"))
    restarted = replica(prefix, *flags)
    newest = sent[::-1][:4]
    assert wait_for(lambda: listed(restarted, limit=100) == newest)
    sent.append(send(restarted, "/after-restart"))
    assert wait_for(lambda: listed(b, limit=100) == sent[::-1][:4])
    assert len(set(sent)) == len(sent)


def test_a_redis_outage_keeps_the_echo_answering_and_heals_by_itself(
    replica: Callable[..., EchoServer], own_redis: Callable[..., RedisServer]
) -> None:
    redis = own_redis()
    server = replica(unique_prefix(), "--store-timeout", "0.3", url=redis.url)
    before = send(server, "/before")
    assert listed(server) == [before]

    redis.proc.terminate()
    redis.proc.wait(10)
    for i in range(20):
        status, headers, body = call(f"{server.url}/during/{i}")
        assert status == 200 and headers["X-Echo-Id"] and json.loads(body)["path"] == f"/during/{i}"
    status, doc = health(server)
    assert status == 503
    assert doc["store"]["backend"] == "redis" and doc["store"]["ok"] is False
    assert f"127.0.0.1:{redis.port}" in doc["store"]["detail"] and "refused" in doc["store"]["detail"]
    status, _, body = call(f"{server.url}/_/api/exchanges")
    assert status == 503 and "error" in json.loads(body) and b"refused" in body

    # A write has failed (the batch did not merely wait to fill) before Redis is back.
    assert wait_for(lambda: "history store failing" in "".join(server.lines()))
    own_redis(redis.port)  # back on the same address (empty: it kept nothing on disk)
    assert wait_for(lambda: health(server)[0] == 200)

    recorded: list[str] = []

    def records_again() -> bool:
        exchange_id = send(server, "/after")
        if exchange_id in listed(server):
            recorded.append(exchange_id)
            return True
        return False

    assert wait_for(records_again)
    output = "".join(server.lines())
    assert output.count("history store failing") == 1  # logged once, not once per request
    assert "history store is back" in output
    assert recorded


def test_a_replica_started_without_redis_records_once_redis_is_up(
    replica: Callable[..., EchoServer], own_redis: Callable[..., RedisServer]
) -> None:
    port = free_port()
    server = replica(unique_prefix(), "--start-without-store", "--store-timeout", "0.3",
                     url=f"redis://127.0.0.1:{port}/0")
    status, doc = health(server)
    assert status == 503 and not doc["store"]["ok"]
    assert send(server, "/no-store-yet")

    own_redis(port)
    assert wait_for(lambda: health(server)[0] == 200)
    assert wait_for(lambda: send(server, "/stored") in listed(server))


def test_a_large_json_body_sent_to_one_replica_is_shown_parsed_by_the_other(
    replica: Callable[..., EchoServer],
) -> None:
    prefix = unique_prefix()
    a, b = replica(prefix), replica(prefix)
    document = {"rows": [{"id": i, "name": f"row {i}"} for i in range(300)]}
    sent = send(a, "/bulk", "POST", json.dumps(document).encode(), {"Content-Type": "application/json"})
    assert wait_for(lambda: call(f"{b.url}/_/api/exchanges/{sent}")[0] == 200)
    status, _, body = call(f"{b.url}/_/api/exchanges/{sent}")
    assert status == 200
    assert json.loads(body)["request"]["json"] == document
