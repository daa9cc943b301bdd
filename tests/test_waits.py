"""History waits on the real server: GET /_/api/exchanges/wait (SPEC section 9).

An exchange that arrives while a wait is held answers it; one already kept
answers at once; `after` skips what came before; a timeout is a 404 with the
near misses and the terms each failed. Waits are bounded by --max-wait (the
timeout) and --max-waiters (at once, within --max-held): with every slot taken
the echo and /_/healthz still answer, one more wait gets 503 with Retry-After,
and a caller that leaves gives its slot back. On Redis, a wait on one replica
is answered by an exchange another replica records.

No test measures time: "held" is shown by the next wait being refused, and an
answer "while every slot is taken" by the slots still being taken afterwards.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from support import EchoServer, RedisServer, fetch, wait_for

# Generous bounds that only notice a hang; no test asserts how long anything took.
CLIENT_TIMEOUT = 30.0
LONG_WAIT = "25"
SETTLE_SECONDS = 15.0
# A filter that nothing these tests send matches: a probe wait that must hold, not answer.
NEVER = "path:/never-sent-anywhere"


def wait_url(server: EchoServer, **params: str) -> str:
    return f"{server.url}/_/api/exchanges/wait?{urllib.parse.urlencode(params)}"


def wait(server: EchoServer, **params: str) -> tuple[int, dict[str, str], Any]:
    status, headers, body = fetch(wait_url(server, **params), timeout=CLIENT_TIMEOUT)
    return status, headers, json.loads(body)


def send(server: EchoServer, path: str, method: str = "GET", data: bytes | None = None) -> str:
    headers = {"Content-Type": "application/json"} if data else {}
    status, headers, _ = fetch(server.url + path, method, data, headers, timeout=CLIENT_TIMEOUT)
    assert status < 500
    return headers["X-Echo-Id"]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def probe(server: EchoServer) -> int:
    """The status of a short wait for nothing: 503 while every slot is taken, 404 otherwise."""
    status, _, _ = wait(server, f=NEVER, timeout="0.2")
    return status


def until_full(server: EchoServer) -> None:
    """Return once every waiter slot is taken (a probe is refused)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if probe(server) == 503:
            return
    raise AssertionError(f"the waits never took every slot: {wait(server, f=NEVER, timeout='0.2')}")


def hold(pool: ThreadPoolExecutor, server: EchoServer, **params: str) -> Future[tuple[int, dict[str, str], Any]]:
    """A long wait in the background; refused only while a probe holds the slot it needs, it tries again."""

    def held() -> tuple[int, dict[str, str], Any]:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            found = wait(server, **{"timeout": LONG_WAIT, **params})
            if found[0] != 503 or time.monotonic() > deadline:
                return found

    return pool.submit(held)


def delay(pool: ThreadPoolExecutor, server: EchoServer, seconds: int) -> Future[tuple[int, dict[str, str], bytes]]:
    """A `_delay` in the background, tried again while a probe holds the slot it needs."""

    def delayed() -> tuple[int, dict[str, str], bytes]:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            found = fetch(f"{server.url}/slow?_delay={seconds}", timeout=CLIENT_TIMEOUT)
            if found[0] != 503 or time.monotonic() > deadline:
                return found

    return pool.submit(delayed)


def test_an_exchange_that_arrives_mid_wait_answers_it(echo_server: Callable[..., EchoServer],
                                                      pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--max-waiters", "1")
    held = hold(pool, server, f="method:POST path:/hook")
    until_full(server)  # the wait is held: nothing matched when it began
    assert not held.done()
    sent = send(server, "/hook", "POST", b'{"event": "paid"}')
    status, _, doc = held.result(CLIENT_TIMEOUT)
    assert status == 200
    assert doc["id"] == sent
    assert doc["request"]["json"] == {"event": "paid"}
    # The one-exchange document, as GET api/exchanges/{id} gives it.
    _, _, one = fetch(f"{server.url}/_/api/exchanges/{sent}", timeout=CLIENT_TIMEOUT)
    assert doc == json.loads(one)


def test_a_wait_for_what_is_already_kept_answers_at_once(live_server: EchoServer) -> None:
    tag = uuid.uuid4().hex
    sent = send(live_server, f"/already?tag={tag}")
    # timeout=0: no waiting at all, so only a match already kept can answer 200.
    status, _, doc = wait(live_server, f=f"query:tag={tag}", timeout="0")
    assert status == 200
    assert doc["id"] == sent


def test_the_oldest_match_answers_and_after_skips_up_to_an_id(live_server: EchoServer) -> None:
    tag = uuid.uuid4().hex
    first = send(live_server, f"/order?tag={tag}")
    second = send(live_server, f"/order?tag={tag}")
    f = f"query:tag={tag}"
    assert wait(live_server, f=f, timeout="0")[2]["id"] == first
    assert wait(live_server, f=f, after=first, timeout="0")[2]["id"] == second
    status, _, doc = wait(live_server, f=f, after=second, timeout="0")
    assert status == 404
    # What matched but came too early fails `after`, and says so.
    misses = {miss["id"]: miss["failed"] for miss in doc["near_misses"]}
    assert misses[second] == [f"after={second}"]


def test_a_wait_after_an_id_is_answered_by_the_next_arrival(echo_server: Callable[..., EchoServer],
                                                             pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--max-waiters", "1")
    before = send(server, "/next")
    held = hold(pool, server, f="path:/next", after=before)
    until_full(server)
    after = send(server, "/next")
    status, _, doc = held.result(CLIENT_TIMEOUT)
    assert (status, doc["id"]) == (200, after)


def test_many_waiters_each_get_their_own_exchange(echo_server: Callable[..., EchoServer],
                                                  pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--threads", "10", "--max-waiters", "5")
    held = {n: hold(pool, server, f=f"path:/many query:n={n}") for n in range(5)}
    until_full(server)
    sent = {n: send(server, f"/many?n={n}") for n in reversed(range(5))}
    for n, future in held.items():
        status, _, doc = future.result(CLIENT_TIMEOUT)
        assert (status, doc["id"]) == (200, sent[n])


def test_the_waiter_cap_holds_that_many_and_refuses_one_more(echo_server: Callable[..., EchoServer],
                                                             pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--max-waiters", "3")
    held = [hold(pool, server, f=f"path:/cap query:n={n}") for n in range(3)]
    until_full(server)
    status, headers, doc = wait(server, f="path:/cap query:n=3", timeout="1")
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert doc["setting"] == "--max-waiters"
    assert doc["limit"] == 3
    assert not any(future.done() for future in held)  # all three still held: the cap, not fewer
    for n in range(3):
        send(server, f"/cap?n={n}")
    assert all(future.result(CLIENT_TIMEOUT)[0] == 200 for future in held)
    # Their slots are back.
    assert probe(server) == 404


def test_with_every_slot_taken_the_echo_and_healthz_still_answer(echo_server: Callable[..., EchoServer],
                                                                 pool: ThreadPoolExecutor) -> None:
    # Defaults: 8 threads, so half of them (4) may wait.
    server = echo_server("--log", "off")
    held = [hold(pool, server, f=f"{NEVER} query:n={n}") for n in range(4)]
    until_full(server)
    for _ in range(10):  # more requests than there are free workers, one after another
        status, _, body = fetch(server.url + "/still-here", timeout=CLIENT_TIMEOUT)
        assert status == 200 and json.loads(body)["path"] == "/still-here"
        status, _, body = fetch(server.url + "/_/healthz", timeout=CLIENT_TIMEOUT)
        assert status == 200 and json.loads(body)["status"] == "ok"
    # ...and all of that was answered while every waiter slot stayed taken.
    assert probe(server) == 503
    assert not any(future.done() for future in held)
    # The echo requests above are not what they wait for.
    for n in range(4):
        send(server, f"/never-sent-anywhere?n={n}")
    assert all(future.result(CLIENT_TIMEOUT)[0] == 200 for future in held)


def test_waiters_also_count_in_the_held_budget(echo_server: Callable[..., EchoServer],
                                               pool: ThreadPoolExecutor) -> None:
    # Two held slots: a delay takes one, a wait the other; the next wait finds the held budget full.
    server = echo_server("--log", "off", "--threads", "4", "--max-held", "2", "--max-waiters", "2")
    delayed = delay(pool, server, 8)
    held = hold(pool, server, f="path:/budget")
    until_full(server)
    status, headers, doc = wait(server, f=NEVER, timeout="1")
    assert status == 503
    assert doc["setting"] in ("--max-held", "--max-waiters")
    assert headers["Retry-After"] == "1"
    send(server, "/budget")
    assert held.result(CLIENT_TIMEOUT)[0] == 200
    assert delayed.result(CLIENT_TIMEOUT)[0] == 200


def test_a_delay_and_a_wait_refused_by_the_held_budget_name_it(echo_server: Callable[..., EchoServer],
                                                               pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--threads", "4", "--max-held", "1", "--max-waiters", "1")
    delayed = delay(pool, server, 8)
    # The delay holds the only held slot; a wait then gets 503 naming --max-held.
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        status, _, doc = wait(server, f=NEVER, timeout="0.2")
        if status == 503 or time.monotonic() > deadline:
            break
    assert status == 503
    assert doc["setting"] == "--max-held"
    assert delayed.result(CLIENT_TIMEOUT)[0] == 200


def test_a_caller_that_disconnects_frees_its_slot(echo_server: Callable[..., EchoServer],
                                                  sockets: list[socket.socket]) -> None:
    server = echo_server("--log", "off", "--max-waiters", "1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT)
    sockets.append(sock)
    target = f"/_/api/exchanges/wait?f={urllib.parse.quote(NEVER)}&timeout=25"
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    until_full(server)
    sock.close()
    # The slot comes back long before the 25 s wait would have ended.
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and probe(server) == 503:
        pass
    assert probe(server) == 404


@pytest.mark.parametrize(("timeout", "status"), [("0", 404), ("0.5", 404), ("1", 404), ("1.001", 400), ("2", 400)])
def test_timeout_is_allowed_up_to_max_wait_and_refused_above(echo_server: Callable[..., EchoServer],
                                                             timeout: str, status: int) -> None:
    server = echo_server("--log", "off", "--max-wait", "1")
    found, _, doc = wait(server, f=NEVER, timeout=timeout)
    assert found == status
    if status == 400:
        assert doc["param"] == "timeout"
        assert doc["setting"] == "--max-wait"
        assert doc["limit"] == 1
        assert "--max-wait" in doc["error"]


@pytest.mark.parametrize(("param", "value"), [
    ("timeout", "-1"), ("timeout", "soon"), ("timeout", "nan"), ("timeout", "inf"), ("timeout", "31"),
    ("after", "not-an-id"), ("after", "0" * 27), ("f", "method:"), ("f", 'body:"open'), ("f", "nope:1"),
])
def test_bad_parameters_get_a_400_naming_them(live_server: EchoServer, param: str, value: str) -> None:
    status, _, doc = wait(live_server, **{param: value})
    assert status == 400
    assert doc["param"] == param
    assert doc["error"]


def test_a_timeout_lists_the_closest_recent_exchanges_and_what_each_failed(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    send(server, "/far")  # fails all three terms
    post_other = send(server, "/other", "POST", b"x")  # fails path and query
    get_hook = send(server, "/hook?id=2")  # fails method and query
    post_hook = send(server, "/hook?id=2", "POST", b"x")  # fails query only
    status, _, doc = wait(server, f="method:POST path:/hook query:id=1", timeout="0.2")
    assert status == 404
    assert doc["f"] == "method:POST path:/hook query:id=1"
    assert doc["error"]
    assert doc["near_misses"] == [
        {"id": post_hook, "method": "POST", "path": "/hook", "status": 200, "failed": ["query:id=1"]},
        {"id": get_hook, "method": "GET", "path": "/hook", "status": 200, "failed": ["method:POST", "query:id=1"]},
        {"id": post_other, "method": "POST", "path": "/other", "status": 200, "failed": ["path:/hook", "query:id=1"]},
    ]


def test_a_bins_near_misses_are_its_own_however_busy_the_server(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    own = send(server, "/b/job-1/hook")
    for n in range(120):  # other jobs' traffic: more than the newest exchanges looked at
        send(server, f"/b/job-2/hook?n={n}", "POST", b"{}")
    status, _, doc = wait(server, f="bin:job-1 method:POST path:/hook", timeout="0")
    assert status == 404
    assert doc["near_misses"][0] == {"id": own, "method": "GET", "path": "/b/job-1/hook", "status": 200,
                                     "failed": ["method:POST"]}


def test_a_timeout_with_an_empty_history_has_no_near_misses(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    status, _, doc = wait(server, f="method:POST", timeout="0")
    assert (status, doc["near_misses"]) == (404, [])


def test_a_wait_without_a_filter_takes_any_exchange(echo_server: Callable[..., EchoServer],
                                                    pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--max-waiters", "1")
    held = hold(pool, server)
    until_full(server)
    sent = send(server, "/anything")
    assert held.result(CLIENT_TIMEOUT)[2]["id"] == sent


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "echo", "--port", "0", "--runtime-file", "off", "--log", "off",
                           *args], capture_output=True, text=True, timeout=CLIENT_TIMEOUT)


def test_max_waiters_must_fit_in_max_held() -> None:
    from echo.config import load_settings

    assert load_settings({}, {"threads": 8, "max_held": 3, "max_waiters": 3}).waiter_limit == 3
    over = run_cli("--threads", "8", "--max-held", "3", "--max-waiters", "4")
    assert over.returncode == 2
    lines = over.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--max-waiters" in lines[0] and "--max-held" in lines[0]


def test_the_waiter_default_is_half_the_threads_within_max_held() -> None:
    from echo.config import load_settings

    assert load_settings({}, {"threads": 8}).waiter_limit == 4
    assert load_settings({}, {"threads": 9}).waiter_limit == 4
    assert load_settings({}, {"threads": 1}).waiter_limit == 1
    assert load_settings({}, {"threads": 8, "max_held": 2}).waiter_limit == 2
    assert load_settings({"ECHO_MAX_WAITERS": "2"}, {}).waiter_limit == 2
    assert load_settings({"ECHO_MAX_WAIT": "7.5"}, {}).max_wait == 7.5


@pytest.mark.redis
def test_a_wait_on_one_replica_sees_an_exchange_another_records(
    echo_server: Callable[..., EchoServer], redis_server: RedisServer, pool: ThreadPoolExecutor,
) -> None:
    prefix = f"waits-{uuid.uuid4().hex[:12]}"
    flags = ("--store", redis_server.url, "--store-prefix", prefix, "--log", "off", "--max-waiters", "1")
    waiting, sending = echo_server(*flags), echo_server(*flags)
    tag = uuid.uuid4().hex
    held = hold(pool, waiting, f=f"query:tag={tag}")
    until_full(waiting)
    sent = send(sending, f"/elsewhere?tag={tag}")
    status, _, doc = held.result(CLIENT_TIMEOUT)
    assert (status, doc["id"]) == (200, sent)
    # A local arrival answers a wait on Redis as well, and near misses come from the shared store.
    status, _, doc = wait(sending, f=f"query:tag={tag} method:POST", timeout="0")
    assert status == 404
    assert doc["near_misses"][0]["id"] == sent
    assert doc["near_misses"][0]["failed"] == ["method:POST"]


def test_a_stopping_server_ends_a_held_wait_with_a_503(echo_server: Callable[..., EchoServer],
                                                       pool: ThreadPoolExecutor) -> None:
    server = echo_server("--log", "off", "--max-waiters", "1")
    # Without hold()'s retry, which would knock on the stopped server: a wait
    # refused because a probe held the slot just then is sent again here.
    deadline = time.monotonic() + SETTLE_SECONDS
    held = pool.submit(wait, server, f=NEVER, timeout=LONG_WAIT)
    while probe(server) != 503:
        if held.done():
            held = pool.submit(wait, server, f=NEVER, timeout=LONG_WAIT)
        assert time.monotonic() < deadline, "the wait never held its slot"
    server.proc.terminate()
    status, _, doc = held.result(CLIENT_TIMEOUT)
    assert status == 503
    assert "stopping" in doc["error"]
    assert server.proc.wait(CLIENT_TIMEOUT) == 0


def test_the_arrival_signal_wakes_a_waiter_and_misses_nothing_in_between() -> None:
    from echo.observe.arrivals import Arrivals

    arrivals = Arrivals()
    seen = arrivals.generation
    arrivals.notify()  # between the look and the wait: the wait returns at once
    assert arrivals.wait(seen, 30) == seen + 1
    assert arrivals.wait(seen + 1, 0) == seen + 1  # nothing new: the timeout ends it
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(arrivals.wait(seen + 1, 30)))
    waiter.start()
    arrivals.notify()
    waiter.join(30)
    assert woke == [seen + 2]


def test_a_notify_wakes_a_waiter_already_asleep_and_takes_no_lock_without_one() -> None:
    from echo.observe.arrivals import Arrivals

    arrivals = Arrivals()
    seen = arrivals.generation
    woke: list[int] = []
    waiter = threading.Thread(target=lambda: woke.append(arrivals.wait(seen, 30)))
    waiter.start()
    wait_for(lambda: arrivals._waiters == 1)  # asleep in the condition, not yet looking
    arrivals.notify()
    waiter.join(5)
    assert woke == [seen + 1]  # woken by notify, not by the 30 s timeout
    assert arrivals._waiters == 0
    # With nobody waiting, notify moves the counter without the condition's lock:
    # it returns while another thread holds that lock.
    with arrivals._condition:
        notifier = threading.Thread(target=arrivals.notify)
        notifier.start()
        notifier.join(5)
        assert not notifier.is_alive()
    assert arrivals.generation == seen + 2


def test_a_wait_looks_at_most_max_scan_exchanges_and_says_so(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off", "--max-scan", "5")
    send(server, "/old")
    newer = [send(server, f"/new?n={n}") for n in range(5)]
    # The match is the 6th newest: past the bound, and the 404 says the look was cut.
    status, _, doc = wait(server, f="path:/old", timeout="0")
    assert status == 404
    assert doc["partial"] is True and doc["scanned"] == 5
    assert "--max-scan" in doc["error"]
    # Within the bound the match is found.
    assert wait(server, f="path:/new query:n=0", timeout="0")[2]["id"] == newer[0]
    # After an id inside the bound, everything after it was looked at: a plain 404.
    status, _, doc = wait(server, f="path:/old", timeout="0", after=newer[0])
    assert status == 404 and "partial" not in doc
