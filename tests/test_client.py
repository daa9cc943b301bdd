"""echo.client against the real server: EchoClient and Bin (SPEC section 9).

Every call goes over the wire to a real `echo-server`; what the client says
on a failed wait or assertion (the near misses, one line each) is checked as
a test report would show it.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from echo.client import Bin, EchoClient, EchoError, describe_near_misses

from support import EchoServer, free_port

CLIENT = Path(__file__).resolve().parent.parent / "echo" / "client.py"
TIMEOUT = 30.0


def send(url: str, method: str = "GET", body: dict[str, object] | None = None) -> str:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        return str(answer.headers["X-Echo-Id"])


@pytest.fixture
def client(live_server: EchoServer) -> EchoClient:
    return EchoClient(live_server.url)


def test_the_client_imports_the_standard_library_only() -> None:
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module}: the client imports nothing of the server"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_url_joins_paths_to_the_base(client: EchoClient, live_server: EchoServer) -> None:
    assert client.url("/hook") == live_server.url + "/hook"
    assert client.url("hook") == live_server.url + "/hook"
    assert EchoClient(live_server.url + "/").url("/x") == live_server.url + "/x"


def test_exchanges_lists_newest_first_with_a_filter_and_a_limit(client: EchoClient) -> None:
    tag = uuid.uuid4().hex
    ids = [send(client.url(f"/list?tag={tag}&n={n}")) for n in range(3)]
    found = client.exchanges(f"query:tag={tag}")
    assert [x["id"] for x in found] == ids[::-1]
    assert [x["id"] for x in client.exchanges(f"query:tag={tag}", limit=2)] == ids[:0:-1]


def test_wait_for_returns_what_arrives_in_the_background(client: EchoClient) -> None:
    tag = uuid.uuid4().hex
    sent: list[str] = []
    later = threading.Timer(0.3, lambda: sent.append(send(client.url(f"/bg?tag={tag}"), "POST", {"a": 1})))
    later.start()
    try:
        found = client.wait_for(f"method:POST query:tag={tag}", timeout=20)
    finally:
        later.join()
    assert found["id"] == sent[0]
    assert found["request"]["json"] == {"a": 1}


def test_wait_for_after_an_id_skips_what_came_before(client: EchoClient) -> None:
    tag = uuid.uuid4().hex
    first = send(client.url(f"/after?tag={tag}"))
    second = send(client.url(f"/after?tag={tag}"))
    assert client.wait_for(f"query:tag={tag}", timeout=0)["id"] == first
    assert client.wait_for(f"query:tag={tag}", timeout=0, after=first)["id"] == second


def test_a_failed_wait_lists_the_near_misses_one_line_each(client: EchoClient) -> None:
    tag = uuid.uuid4().hex
    send(client.url(f"/hook?tag={tag}"), "POST", {"a": 1})
    with pytest.raises(AssertionError) as failed:
        client.wait_for(f"method:PUT query:tag={tag}", timeout=0.2)
    message = str(failed.value)
    assert f"no exchange matching 'method:PUT query:tag={tag}' arrived within 0.2 s" in message
    assert "  POST /hook 200  failed: method:PUT" in message.splitlines()


def test_assert_received_counts(client: EchoClient) -> None:
    tag = uuid.uuid4().hex
    ids = [send(client.url(f"/count?tag={tag}")) for _ in range(2)]
    assert [x["id"] for x in client.assert_received(f"query:tag={tag}")] == ids[::-1]
    assert len(client.assert_received(f"query:tag={tag}", count=2)) == 2
    with pytest.raises(AssertionError, match=r"expected 1 exchange\(s\) matching .*, found 2:\n  GET /count 200"):
        client.assert_received(f"query:tag={tag}", count=1)
    assert client.assert_received(f"query:tag={tag} method:POST", count=0) == []


def test_assert_received_of_nothing_shows_the_near_misses(client: EchoClient) -> None:
    tag = uuid.uuid4().hex
    send(client.url(f"/near?tag={tag}"))
    with pytest.raises(AssertionError) as failed:
        client.assert_received(f"method:DELETE query:tag={tag}")
    message = str(failed.value)
    assert "expected at least 1 exchange(s)" in message
    assert "  GET /near 200  failed: method:DELETE" in message.splitlines()


def test_describe_near_misses_without_any() -> None:
    assert "no recent exchanges" in describe_near_misses([])


def test_a_bad_filter_is_an_echo_error_naming_the_problem(client: EchoClient) -> None:
    with pytest.raises(EchoError, match="bad filter") as failed:
        client.exchanges("nope:1")
    assert failed.value.status == 400
    assert failed.value.document["param"] == "f"


def test_a_server_that_is_not_there_is_an_echo_error() -> None:
    with pytest.raises(EchoError):
        EchoClient(f"http://127.0.0.1:{free_port()}").exchanges()


def test_clear_forgets_everything(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off")
    client = EchoClient(server.url)
    send(client.url("/gone"))
    client.clear()
    assert client.exchanges() == []


def test_auth_reaches_an_inspector_behind_ui_auth(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off", "--ui-auth", "tester:s3cret")
    sent = send(server.url + "/private")
    assert EchoClient(server.url, auth=("tester", "s3cret")).wait_for("path:/private", timeout=0)["id"] == sent
    with pytest.raises(EchoError) as refused:
        EchoClient(server.url).exchanges()
    assert refused.value.status == 401


def test_the_client_follows_the_ui_prefix(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off", "--ui-prefix", "/inspect/")
    client = EchoClient(server.url, ui_prefix="/inspect/")
    sent = send(client.url("/prefixed"))
    assert client.wait_for("path:/prefixed", timeout=0)["id"] == sent
    # With the default prefix it would be talking to the echo, which answers every path, but not as the API.
    with pytest.raises(EchoError, match="ui_prefix"):
        EchoClient(server.url).wait_for("path:/prefixed", timeout=0)
    with pytest.raises(ValueError):
        EchoClient(server.url, ui_prefix="inspect")


def test_a_bin_has_its_own_urls_and_queries(client: EchoClient, live_server: EchoServer) -> None:
    mine, theirs = client.new_bin(), client.new_bin()
    assert isinstance(mine, Bin) and mine.name != theirs.name
    assert mine.url("/hook") == f"{live_server.url}/b/{mine.name}/hook"
    sent = send(mine.url("/hook"), "POST", {"n": 1})
    send(theirs.url("/hook"), "POST", {"n": 2})
    # path: matches the path below the bin.
    found = mine.wait_for("method:POST path:/hook", timeout=0)
    assert found["id"] == sent
    assert found["request"]["bin"] == mine.name and found["request"]["bin_path"] == "/hook"
    assert [x["id"] for x in mine.assert_received("path:/hook", count=1)] == [sent]
    assert [x["id"] for x in mine.exchanges()] == [sent]


def test_a_bin_wait_shows_near_misses_from_its_bin(client: EchoClient) -> None:
    mine = client.new_bin()
    send(mine.url("/hook"))
    with pytest.raises(AssertionError) as failed:
        mine.wait_for("method:POST path:/hook", timeout=0.2)
    assert f"  GET /b/{mine.name}/hook 200  failed: method:POST" in str(failed.value).splitlines()


def test_a_bin_clears_only_itself(client: EchoClient) -> None:
    mine, theirs = client.new_bin(), client.new_bin()
    send(mine.url("/a"))
    kept = send(theirs.url("/a"))
    mine.clear()
    assert mine.exchanges() == []
    assert [x["id"] for x in theirs.exchanges()] == [kept]


def test_a_bin_wait_is_answered_by_its_own_arrival(client: EchoClient) -> None:
    mine = client.new_bin()
    other = client.new_bin()
    sent: list[str] = []

    def later() -> None:
        time.sleep(0.2)
        send(other.url("/late"))  # not this bin's: the wait goes on
        sent.append(send(mine.url("/late")))

    thread = threading.Thread(target=later)
    thread.start()
    try:
        found = mine.wait_for("path:/late", timeout=20)
    finally:
        thread.join()
    assert found["id"] == sent[0]


def test_exchanges_go_on_past_a_page_that_max_scan_cut_short(echo_server: Callable[..., EchoServer]) -> None:
    server = echo_server("--log", "off", "--max-scan", "5")
    client = EchoClient(server.url)
    old = send(client.url("/old"))
    newer = [send(client.url(f"/new?n={n}")) for n in range(12)]  # more than two scans' worth
    assert [x["id"] for x in client.exchanges("path:/old")] == [old]
    assert [x["id"] for x in client.assert_received("path:/new", count=12)] == newer[::-1]
