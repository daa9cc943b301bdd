"""Bins in the inspector, in real headless Chromium (SPEC section 9).

A row's bin links to the bin's own view (the list filtered by `f=bin:NAME`),
which stays filtered while it updates live and whose clear button clears that
bin alone; the detail page shows the bin and the path below it. Every test
ends by checking the page logged no error and opened no dialog.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest

from support import Watch, call, watched

pytestmark = pytest.mark.browser

# Generous: the list refreshes every second, a loaded CI machine may be slow.
WAIT_MS = 10_000


@pytest.fixture
def page(context: Any) -> tuple[Any, Watch]:
    return watched(context)


def expect_paths(tab: Any, expected: list[str]) -> None:
    from playwright.sync_api import expect

    expect(tab.locator("#rows tr td.path")).to_have_text(expected, timeout=WAIT_MS)


def kept_paths(port: int) -> list[str]:
    _, _, body = call(port, "GET", "/_/api/exchanges?limit=1000")
    return [x["request"]["path"] for x in json.loads(body)["exchanges"]]


def test_a_rows_bin_links_to_the_bins_own_view_which_stays_filtered(
    base: str, live_server: Any, page: tuple[Any, Watch]
) -> None:
    from playwright.sync_api import expect

    tab, watch = page
    port = live_server.port
    call(port, "GET", "/plain")
    call(port, "GET", "/b/alpha/one")
    call(port, "GET", "/b/beta/two")
    call(port, "GET", "/three", headers={"X-Echo-Bin": "alpha"})
    tab.goto(base + "/_/")
    expect_paths(tab, ["/three", "/b/beta/two", "/b/alpha/one", "/plain"])
    expect(tab.locator("#rows tr td.bin")).to_have_text(["alpha", "beta", "alpha", ""])
    expect(tab.locator("#bin-view")).to_have_count(0)

    tab.locator("#rows tr", has_text="/b/alpha/one").locator("td.bin a").click()
    expect(tab).to_have_url(re.compile(re.escape("/_/?f=" + quote("bin:alpha", safe="")) + "$"))
    expect_paths(tab, ["/three", "/b/alpha/one"])
    expect(tab.locator("#bin-view")).to_contain_text("alpha")
    # Live updates keep to the bin: another bin's new exchange never shows.
    call(port, "GET", "/b/beta/late")
    call(port, "GET", "/b/alpha/late")
    expect_paths(tab, ["/b/alpha/late", "/three", "/b/alpha/one"])
    # A row added live links its bin the way a served row does.
    late = tab.locator("#rows tr", has_text="/b/alpha/late").locator("td.bin a")
    assert late.get_attribute("href") == "/_/?f=" + quote("bin:alpha", safe="")
    watch.assert_clean()


def test_the_clear_button_of_a_bins_view_clears_that_bin_only(
    base: str, live_server: Any, page: tuple[Any, Watch]
) -> None:
    from playwright.sync_api import expect

    tab, watch = page
    port = live_server.port
    call(port, "GET", "/b/keep/1")
    call(port, "GET", "/b/drop/1")
    call(port, "GET", "/b/drop/2")
    tab.goto(base + "/_/?f=bin:drop")
    expect_paths(tab, ["/b/drop/2", "/b/drop/1"])
    expect(tab.locator("#clear")).to_have_text("Clear this bin")
    watch.accept_confirms = True
    tab.click("#clear")
    assert len(watch.confirmed) == 1 and "drop" in watch.confirmed[0]
    expect_paths(tab, [])
    assert kept_paths(port) == ["/b/keep/1"]
    watch.assert_clean()


def test_the_detail_page_shows_the_bin_and_the_path_below_it(
    base: str, live_server: Any, page: tuple[Any, Watch]
) -> None:
    from playwright.sync_api import expect

    tab, watch = page
    port = live_server.port
    hostile = "/hooks/<img src=x onerror=alert(1)>"
    _, headers, _ = call(port, "GET", "/b/ci-42" + quote(hostile))
    tab.goto(f"{base}/_/exchanges/{headers['X-Echo-Id']}")
    expect(tab.locator("#bin")).to_contain_text("ci-42")
    expect(tab.locator("#bin code")).to_have_text(hostile)  # shown as text, never run
    assert tab.locator("img[src=x]").count() == 0
    _, headers, _ = call(port, "GET", "/plain")
    tab.goto(f"{base}/_/exchanges/{headers['X-Echo-Id']}")
    expect(tab.locator("#bin")).to_have_count(0)
    # The bin's link on a bin exchange's page leads to the bin's view.
    _, headers, _ = call(port, "GET", "/elsewhere", headers={"X-Echo-Bin": "ci-42"})
    tab.goto(f"{base}/_/exchanges/{headers['X-Echo-Id']}")
    expect(tab.locator("#bin code")).to_have_text("/elsewhere")
    tab.locator("#bin a").click()
    expect_paths(tab, ["/elsewhere", "/b/ci-42" + hostile])
    watch.assert_clean()
