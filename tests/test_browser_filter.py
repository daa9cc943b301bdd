"""The inspector's filter box in real headless Chromium: the filter language
as the `f` parameter of the page's URL, kept by reloads and by the live
refresh; a bad filter shown (escaped, with its position) instead of the list.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from support import EchoServer, call, watched

pytestmark = pytest.mark.browser

WAIT_MS = 10_000
# A failed fetch (the 400 of a bad filter) is logged by Chromium itself.
BAD_REQUEST_LOG = ("status of 400",)


def send(server: EchoServer, method: str, path: str, headers: dict[str, str] | None = None) -> None:
    status, _, _ = call(server.port, method, path, b"{}" if method != "GET" else None, headers)
    assert status == 200


def seed(server: EchoServer) -> None:
    send(server, "POST", "/hooks/github", {"X-Event": "push"})
    send(server, "POST", "/hooks/gitlab", {"X-Event": "tag"})
    send(server, "GET", "/hooks/github")
    send(server, "PUT", "/items/1")


def expect_paths(tab: Any, expected: list[str]) -> None:
    from playwright.sync_api import expect

    expect(tab.locator("#rows tr td.path")).to_have_text(expected, timeout=WAIT_MS)


def f_of(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query).get("f", [])


def test_a_typed_filter_is_applied_on_enter_and_put_in_the_url(base: str, live_server: EchoServer,
                                                               context: Any) -> None:
    seed(live_server)
    tab, watch = watched(context, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    expect_paths(tab, ["/items/1", "/hooks/github", "/hooks/gitlab", "/hooks/github"])
    tab.fill("#f-f", "method:POST header:X-Event=push")
    tab.press("#f-f", "Enter")
    expect_paths(tab, ["/hooks/github"])
    tab.wait_for_url(re.compile(r"[?&]f="))
    assert f_of(tab.url) == ["method:POST header:X-Event=push"]
    watch.assert_clean()


def test_a_reload_keeps_the_filter_and_the_live_refresh_follows_it(base: str, live_server: EchoServer,
                                                                  context: Any) -> None:
    from playwright.sync_api import expect

    seed(live_server)
    tab, watch = watched(context, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/?f=" + quote("path:/hooks/* -method:GET"))
    expect(tab.locator("#f-f")).to_have_value("path:/hooks/* -method:GET")
    expect_paths(tab, ["/hooks/gitlab", "/hooks/github"])
    tab.reload()
    expect(tab.locator("#f-f")).to_have_value("path:/hooks/* -method:GET")
    expect_paths(tab, ["/hooks/gitlab", "/hooks/github"])
    # New arrivals: the live refresh shows the one that matches, not the others.
    send(live_server, "GET", "/hooks/new")
    send(live_server, "DELETE", "/hooks/new")
    send(live_server, "POST", "/elsewhere")
    expect_paths(tab, ["/hooks/new", "/hooks/gitlab", "/hooks/github"])
    assert f_of(tab.url) == ["path:/hooks/* -method:GET"]
    watch.assert_clean()


def test_the_filter_box_works_with_the_method_status_and_path_fields(base: str, live_server: EchoServer,
                                                                     context: Any) -> None:
    seed(live_server)
    tab, watch = watched(context, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    tab.fill("#f-method", "POST")
    tab.fill("#f-f", "-header:X-Event=push")
    tab.press("#f-f", "Enter")
    expect_paths(tab, ["/hooks/gitlab"])
    query = parse_qs(urlsplit(tab.url).query)
    assert query["method"] == ["POST"] and query["f"] == ["-header:X-Event=push"]
    tab.fill("#f-f", "")
    tab.press("#f-f", "Enter")
    expect_paths(tab, ["/hooks/gitlab", "/hooks/github"])
    assert f_of(tab.url) == []
    watch.assert_clean()


def test_a_bad_filter_shows_its_error_and_position_instead_of_the_list(base: str, live_server: EchoServer,
                                                                       context: Any) -> None:
    from playwright.sync_api import expect

    seed(live_server)
    tab, watch = watched(context, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    expect_paths(tab, ["/items/1", "/hooks/github", "/hooks/gitlab", "/hooks/github"])
    tab.fill("#f-f", "method:POST status:6xx")
    tab.press("#f-f", "Enter")
    error = tab.locator("#filter-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("status:")
    expect(error).to_contain_text("(at position 19)")
    expect(error.locator("mark")).to_have_text("6")
    expect(tab.locator("#rows tr")).to_have_count(0)
    expect(tab.locator("table.exchanges")).to_be_hidden()
    expect(tab.locator("#empty")).to_be_hidden()
    # The server draws the same when the page is loaded with it: a shared link.
    tab.reload()
    expect(error).to_be_visible()
    expect(error).to_contain_text("(at position 19)")
    expect(error.locator("mark")).to_have_text("6")
    expect(tab.locator("#rows tr")).to_have_count(0)
    # Fixing it brings the list back.
    tab.fill("#f-f", "method:POST status:2xx")
    tab.press("#f-f", "Enter")
    expect_paths(tab, ["/hooks/gitlab", "/hooks/github"])
    expect(error).to_be_hidden()
    watch.assert_clean(allow=BAD_REQUEST_LOG)


HOSTILE = ['"<img src=x onerror=alert(1)>', "<script>alert(1)</script>:x", "-\"</code><b id=owned>x</b>"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_filter_text_is_shown_as_text(base: str, live_server: EchoServer, context: Any, text: str) -> None:
    from playwright.sync_api import expect

    seed(live_server)
    tab, watch = watched(context, timeout_ms=WAIT_MS)
    # Typed (the live path draws it) and loaded (the server draws it).
    tab.goto(base + "/_/")
    tab.fill("#f-f", text)
    tab.press("#f-f", "Enter")
    error = tab.locator("#filter-error")
    expect(error).to_be_visible()
    expect(error.locator("code")).to_have_text(text)
    tab.goto(base + "/_/?f=" + quote(text))
    expect(error).to_be_visible()
    expect(error.locator("code")).to_have_text(text)
    assert tab.locator("#filter-error img, #filter-error script, #owned").count() == 0
    expect(tab.locator("#f-f")).to_have_value(text)
    watch.assert_clean(allow=BAD_REQUEST_LOG)  # and no dialog: nothing ran


def test_a_scan_cut_short_by_max_scan_says_so_and_older_goes_on(echo_server: Any, context: Any) -> None:
    from playwright.sync_api import expect

    server = echo_server("--max-scan", "3", "--log", "off")
    for n in range(5):
        send(server, "POST" if n == 0 else "GET", f"/p/{n}")
    tab, watch = watched(context, timeout_ms=WAIT_MS)
    tab.goto(server.url + "/_/")
    tab.fill("#f-f", "method:POST")
    tab.press("#f-f", "Enter")
    # The three newest were examined, none matched: said, and Older goes on from /p/2.
    expect(tab.locator("#partial")).to_be_visible()
    expect(tab.locator("#rows tr")).to_have_count(0)
    tab.click("#older")
    tab.wait_for_url(re.compile(r"[?&]before=[0-9a-f]{28}"))
    assert f_of(tab.url) == ["method:POST"]
    expect_paths(tab, ["/p/0"])
    expect(tab.locator("#partial")).to_be_hidden()
    watch.assert_clean()
