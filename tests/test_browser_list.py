"""The inspector's history list in real headless Chromium: paging, the clear
confirmation, any-method filter, a phone-width layout, dates and sizes that the
server and the live refresh draw alike, and the page a store outage becomes.

Each page is watched for console errors and uncaught exceptions; dialogs are
answered only where a test expects one. Waiting uses Playwright's retrying
assertions with a generous timeout.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta, timezone
from http.client import HTTPConnection
from typing import Any

import pytest

from support import EchoServer, RedisServer, call, watched

pytestmark = pytest.mark.browser

WAIT_MS = 10_000
# Rows on one page of the list (LIST_ROWS in echo/web/inspector/common.py).
ROWS = 200
# Longer than a few live polls (one a second): what has not appeared by then is not coming.
QUIET_SECONDS = 2.5


def send_many(port: int, paths: list[str]) -> None:
    """GET each path over one kept-alive connection (hundreds of requests, quickly)."""
    with closing(HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200


def listed(port: int) -> list[str]:
    _, _, body = call(port, "GET", "/_/api/exchanges?limit=1000&bodies=0")
    return [x["request"]["path"] for x in json.loads(body)["exchanges"]]


def row_paths(tab: Any) -> list[str]:
    return list(tab.locator("#rows tr td.path").all_inner_texts())


def expect_paths(tab: Any, expected: list[str]) -> None:
    from playwright.sync_api import expect

    expect(tab.locator("#rows tr td.path")).to_have_text(expected, timeout=WAIT_MS)


# ---- 1. paging through the whole history -----------------------------------------------

def test_older_pages_reach_every_kept_exchange_and_newest_comes_back(
    base: str, live_server: EchoServer, context: Any
) -> None:
    from playwright.sync_api import expect

    send_many(live_server.port, [f"/p/{i}" for i in range(ROWS + 30)])
    tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    paths = row_paths(tab)
    assert len(paths) == ROWS and paths[0] == f"/p/{ROWS + 29}" and paths[-1] == "/p/30"
    assert tab.locator("#newest").count() == 0

    # New arrivals push the oldest rows off the first page; "Older" follows
    # the rows shown now, so none of the pushed-off ones is skipped.
    send_many(live_server.port, ["/new/1", "/new/2"])
    expect(tab.locator("#rows tr td.path").first).to_have_text("/new/2", timeout=WAIT_MS)
    expect(tab.locator("#rows tr td.path").last).to_have_text("/p/32", timeout=WAIT_MS)
    tab.click("#older")
    tab.wait_for_url(re.compile(r"[?&]before=[0-9a-f]{28}"))
    assert row_paths(tab) == [f"/p/{i}" for i in range(31, -1, -1)]
    assert tab.locator("#older").count() == 0  # nothing older is kept

    # An older page stays still: the live refresh pauses there and says so.
    send_many(live_server.port, ["/while-paged"])
    time.sleep(QUIET_SECONDS)
    assert row_paths(tab)[0] == "/p/31"
    assert "paused" in tab.locator("#live").inner_text()

    tab.click("#newest")
    tab.wait_for_url(base + "/_/")
    expect(tab.locator("#rows tr td.path").first).to_have_text("/while-paged", timeout=WAIT_MS)
    send_many(live_server.port, ["/live-again"])  # and live updates are back
    expect(tab.locator("#rows tr td.path").first).to_have_text("/live-again", timeout=WAIT_MS)
    watch.assert_clean()


def test_changing_a_filter_on_an_older_page_goes_back_to_the_live_first_page(
    base: str, live_server: EchoServer, context: Any
) -> None:
    send_many(live_server.port, [f"/q/{i}" for i in range(ROWS + 3)] + ["/other"])
    tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    tab.click("#older")
    tab.wait_for_url(re.compile(r"before="))
    assert row_paths(tab) == ["/q/3", "/q/2", "/q/1", "/q/0"]  # "/other" is on the first page
    tab.fill("#f-q", "/other")
    expect_paths(tab, ["/other"])
    assert "before=" not in tab.url
    send_many(live_server.port, ["/other/2"])
    expect_paths(tab, ["/other/2", "/other"])
    watch.assert_clean()


# ---- 2. clearing asks first --------------------------------------------------------------

def test_clear_history_asks_and_dismissing_keeps_everything(base: str, live_server: EchoServer, context: Any) -> None:
    send_many(live_server.port, ["/keep/1", "/keep/2", "/keep/3"])
    tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    deletes: list[str] = []
    tab.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)
    tab.goto(base + "/_/")
    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.type + ": " + dialog.message)
        dialog.dismiss()

    tab.once("dialog", dismiss)
    tab.click("#clear")
    assert len(asked) == 1 and asked[0].startswith("confirm: ") and "Clear" in asked[0]
    time.sleep(QUIET_SECONDS)
    assert deletes == []
    assert row_paths(tab) == ["/keep/3", "/keep/2", "/keep/1"]
    assert listed(live_server.port) == ["/keep/3", "/keep/2", "/keep/1"]
    watch.assert_clean()


def test_clear_history_clears_once_accepted(base: str, live_server: EchoServer, context: Any) -> None:
    send_many(live_server.port, ["/gone/1", "/gone/2"])
    tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    tab.once("dialog", lambda dialog: dialog.accept())
    tab.click("#clear")
    expect_paths(tab, [])
    assert tab.locator("#empty").is_visible()
    assert listed(live_server.port) == []
    send_many(live_server.port, ["/after-clear"])  # the list keeps going
    expect_paths(tab, ["/after-clear"])
    watch.assert_clean()


# ---- 3. any method -------------------------------------------------------------------------

def test_filtering_by_a_method_outside_the_common_ones(base: str, live_server: EchoServer, context: Any) -> None:
    from playwright.sync_api import expect

    assert call(live_server.port, "PROPFIND", "/dav/a")[0] == 200
    assert call(live_server.port, "GET", "/plain")[0] == 200
    assert call(live_server.port, "PURGE", "/cache")[0] == 200
    tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    tab.goto(base + "/_/")
    expect_paths(tab, ["/cache", "/plain", "/dav/a"])
    assert "PROPFIND" in tab.locator("#methods option").evaluate_all("os => os.map(o => o.value)")

    tab.fill("#f-method", "propfind")
    expect_paths(tab, ["/dav/a"])
    expect(tab).to_have_url(re.compile(r"[?&]method=PROPFIND(&|$)"), timeout=WAIT_MS)
    assert call(live_server.port, "PROPFIND", "/dav/b")[0] == 200  # new ones arrive, filtered
    assert call(live_server.port, "GET", "/plain/2")[0] == 200
    expect_paths(tab, ["/dav/b", "/dav/a"])

    tab.reload()  # the filtered address is a page of its own
    assert tab.input_value("#f-method") == "PROPFIND"
    assert row_paths(tab) == ["/dav/b", "/dav/a"]

    # Not a token: the field says so and the list stays as it was.
    tab.fill("#f-method", "PROP FIND")
    expect(tab.locator("#filter-problem")).to_contain_text("is not an HTTP method", timeout=WAIT_MS)
    assert tab.locator("#f-method").evaluate("e => e.validity.valid") is False
    time.sleep(QUIET_SECONDS)
    assert row_paths(tab) == ["/dav/b", "/dav/a"]
    tab.fill("#f-method", "")
    expect(tab.locator("#filter-problem")).to_be_hidden()
    expect_paths(tab, ["/plain/2", "/dav/b", "/cache", "/plain", "/dav/a"])
    watch.assert_clean()


# ---- 4. a phone-width screen ------------------------------------------------------------------

def test_the_list_fits_a_400_pixel_wide_screen(base: str, live_server: EchoServer, browser: Any) -> None:
    ctx = browser.new_context(viewport={"width": 400, "height": 800})
    try:
        tab, watch = watched(ctx, handle_dialogs=False, timeout_ms=WAIT_MS)
        long_path = "/api/v1/customers/12345/orders?include=items,payments&sort=-created_at"
        assert call(live_server.port, "POST", long_path + "&_status=404", b"x" * 5000)[0] == 404
        tab.goto(base + "/_/")
        assert call(live_server.port, "PUT", "/live/row?_status=201", b"y" * 99)[0] == 201  # a row drawn live too
        expect_paths(tab, ["/live/row?_status=201", long_path + "&_status=404"])
        for row in tab.locator("#rows tr").all():
            for name in ("method", "path", "status"):
                box = row.locator(f"td.{name}").bounding_box()
                assert box is not None and box["width"] > 0, name
                assert box["x"] >= 0 and box["x"] + box["width"] <= 400, (name, box)
        assert tab.locator("#rows tr td.status").all_inner_texts() == ["201", "404"]
        assert tab.evaluate("document.documentElement.scrollWidth") <= 400
        watch.assert_clean()
    finally:
        ctx.close()


# ---- 5. dates and sizes, drawn alike by the server and the live refresh -----------------------

# The rows as a tree of tag, attributes and text, ignoring whitespace between
# elements and the one-off "new" highlight of a row that just arrived.
SHAPE = """row => {
  function shape(node) {
    if (node.nodeType === Node.TEXT_NODE) return node.textContent.trim() ? node.textContent : null;
    const attrs = Array.from(node.attributes).map(a => [a.name, a.value])
      .filter(([name, value]) => !(name === "class" && node.tagName === "TR"))
      .sort();
    const kids = Array.from(node.childNodes).map(shape).filter(k => k !== null);
    return [node.tagName, attrs, kids];
  }
  return JSON.stringify(shape(row));
}"""


def test_a_live_row_and_a_server_rendered_row_look_the_same(base: str, live_server: EchoServer, context: Any) -> None:
    from playwright.sync_api import expect

    live_tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    live_tab.goto(base + "/_/")
    _, headers, _ = call(live_server.port, "POST", "/orders/7?x=1&_status=201", b"x" * 1234)
    exchange_id = headers["X-Echo-Id"]
    live_row = live_tab.locator(f"#rows tr[data-id='{exchange_id}']")
    expect(live_row).to_have_count(1, timeout=WAIT_MS)

    rendered_tab, rendered_watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    rendered_tab.goto(base + "/_/")
    rendered_row = rendered_tab.locator(f"#rows tr[data-id='{exchange_id}']")
    assert live_row.evaluate(SHAPE) == rendered_row.evaluate(SHAPE)

    # What both show: today's time to the millisecond, labelled human sizes,
    # the exact byte counts on hover.
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", rendered_row.locator("td.time").inner_text())
    up = rendered_row.locator("td.size .up")
    assert up.inner_text() == "↑ 1.2 KiB" and up.get_attribute("title") == "request body: 1234 bytes"
    down = rendered_row.locator("td.size .down")
    assert re.fullmatch(r"↓ \d+(\.\d)? (B|KiB)", down.inner_text())
    assert re.fullmatch(r"response body: \d+ bytes", down.get_attribute("title") or "")
    watch.assert_clean()
    rendered_watch.assert_clean()


def test_a_live_row_from_another_day_shows_its_date(base: str, live_server: EchoServer, context: Any) -> None:
    from playwright.sync_api import expect

    tab, watch = watched(context, handle_dialogs=False, timeout_ms=WAIT_MS)
    # The browser's clock says it is tomorrow: today's exchanges are from another day.
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    tab.clock.set_fixed_time(tomorrow)
    tab.goto(base + "/_/")
    _, headers, _ = call(live_server.port, "GET", "/yesterday")
    row = tab.locator(f"#rows tr[data-id='{headers['X-Echo-Id']}']")
    expect(row).to_have_count(1, timeout=WAIT_MS)
    shown = row.locator("td.time").inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown), shown
    stamp = row.locator("time").get_attribute("datetime") or ""
    assert shown == stamp[:10] + " " + stamp[11:19]
    watch.assert_clean()


# ---- 6. a store outage -----------------------------------------------------------------------

def test_a_redis_outage_is_an_html_page_in_the_browser(
    echo_server: Callable[..., EchoServer], own_redis: Callable[..., RedisServer], browser: Any
) -> None:
    redis = own_redis()
    server = echo_server("--store", redis.url, "--store-timeout", "0.3", "--log", "off")
    assert call(server.port, "GET", "/before")[0] == 200
    redis.proc.terminate()
    redis.proc.wait(10)

    ctx = browser.new_context()
    try:
        tab, watch = watched(ctx, handle_dialogs=False, timeout_ms=WAIT_MS)
        response = tab.goto(server.url + "/_/")
        assert response is not None and response.status == 503
        assert response.headers["content-type"].startswith("text/html")
        assert tab.locator("h1").inner_text() == "History unavailable"
        assert "the echo keeps answering" in tab.locator("main").inner_text()
        # The echo does keep answering, and the API keeps its JSON error.
        assert call(server.port, "GET", "/during")[0] == 200
        status, _, body = call(server.port, "GET", "/_/api/exchanges")
        assert status == 503 and "error" in json.loads(body)
        watch.assert_clean(allow=("status of 503",))
    finally:
        ctx.close()
