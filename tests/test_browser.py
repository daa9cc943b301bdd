"""The inspector pages and the HTML echo page in real headless Chromium.

Each test watches the page for console errors, uncaught exceptions and
dialogs (an `alert` from an injected payload would open one), and ends by
checking there were none. Waiting uses Playwright's retrying assertions with a
generous timeout; no test asserts how long anything took.
"""

from __future__ import annotations

import json
import re
import uuid
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


def paths(page: Any) -> list[str]:
    return page.locator("#rows tr td.path").all_inner_texts()


def expect_paths(page: Any, expected: list[str]) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#rows tr td.path")).to_have_text(expected, timeout=WAIT_MS)


# ---- the live list -----------------------------------------------------------------------

def test_a_new_exchange_appears_without_a_reload(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    call(live_server.port, "GET", "/before")
    tab.goto(base + "/_/")
    assert paths(tab) == ["/before"]
    tab.evaluate("window.stillTheSamePage = true")
    marker = f"/arrived/{uuid.uuid4().hex}"
    call(live_server.port, "POST", marker + "?x=1&_status=201", b"hello")
    expect_paths(tab, [marker + "?x=1&_status=201", "/before"])
    assert tab.evaluate("window.stillTheSamePage") is True  # updated in place, not reloaded
    row = tab.locator("#rows tr").first
    assert row.locator("td.method").inner_text() == "POST"
    assert row.locator("td.status").inner_text() == "201"
    assert row.locator("td.size .up").inner_text() == "↑ 5 B"
    watch.assert_clean()


def test_the_clear_button_empties_the_history(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    for i in range(3):
        call(live_server.port, "GET", f"/old/{i}")
    tab.goto(base + "/_/")
    assert len(paths(tab)) == 3 and tab.locator("#empty").is_hidden()
    watch.accept_confirms = True  # "Clear history" asks first
    tab.click("#clear")
    assert len(watch.confirmed) == 1
    expect_paths(tab, [])
    assert tab.locator("#empty").is_visible()
    _, _, body = call(live_server.port, "GET", "/_/api/exchanges")
    assert json.loads(body)["exchanges"] == []
    # The list keeps going after a clear, with only what came after it.
    call(live_server.port, "GET", "/after-clear")
    expect_paths(tab, ["/after-clear"])
    watch.assert_clean()


def test_filters_by_method_status_class_and_path_text(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    tab, watch = page
    call(live_server.port, "GET", "/alpha")
    call(live_server.port, "POST", "/beta?_status=404", b"b")
    call(live_server.port, "DELETE", "/gamma?_status=503")
    call(live_server.port, "PUT", "/alphabet?_status=201", b"p")
    tab.goto(base + "/_/")
    expect_paths(tab, ["/alphabet?_status=201", "/gamma?_status=503", "/beta?_status=404", "/alpha"])

    tab.fill("#f-method", "POST")
    expect_paths(tab, ["/beta?_status=404"])
    tab.fill("#f-method", "")
    tab.select_option("#f-status", "5xx")
    expect_paths(tab, ["/gamma?_status=503"])
    tab.select_option("#f-status", "2xx")
    expect_paths(tab, ["/alphabet?_status=201", "/alpha"])
    tab.select_option("#f-status", "")
    tab.fill("#f-q", "ALPHA")
    expect_paths(tab, ["/alphabet?_status=201", "/alpha"])
    # The list may already be filtered by a live poll (it reads the form) before
    # the typing pause ends and the address is updated: wait for the address.
    expect(tab).to_have_url(re.compile(r"[?&]q=ALPHA(&|$)"), timeout=WAIT_MS)

    # New exchanges still arrive, filtered.
    call(live_server.port, "GET", "/alpha-2")
    call(live_server.port, "GET", "/other")
    expect_paths(tab, ["/alpha-2", "/alphabet?_status=201", "/alpha"])

    # The filtered address is a page of its own: the server renders it filtered.
    tab.reload()
    assert tab.input_value("#f-q") == "ALPHA"
    assert paths(tab) == ["/alpha-2", "/alphabet?_status=201", "/alpha"]
    watch.assert_clean()


# ---- the detail page -----------------------------------------------------------------------

def test_the_detail_page_highlights_the_body_and_copies_curl(base: str, live_server: Any, browser: Any) -> None:
    ctx = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        tab, watch = watched(ctx)
        _, headers, _ = call(live_server.port, "POST", "/orders/7?x=1", b'{"name": "Ada", "items": [1, 2]}',
                             {"Content-Type": "application/json", "Cookie": "sid=abc"})
        exchange_id = headers["X-Echo-Id"]
        tab.goto(base + "/_/")
        tab.click(f"#rows tr[data-id='{exchange_id}'] td.path a")
        tab.wait_for_url(f"**/_/exchanges/{exchange_id}")
        assert tab.locator("h1").inner_text().startswith("POST /orders/7?x=1")
        assert "POST http://127.0.0.1:" in tab.locator("pre.requestline").inner_text()
        # pygments' JSON tokens: object keys are Name.Tag spans.
        keys = tab.locator("section").first.locator(".hl span.nt").all_inner_texts()
        assert '"name"' in keys and '"items"' in keys
        assert tab.locator("table.kv th", has_text="sid").count() == 1
        raw = tab.locator("details.view", has_text="Raw").first
        raw.locator("summary").click()
        assert raw.locator("pre.raw").inner_text() == '{"name": "Ada", "items": [1, 2]}'
        curl = tab.locator("#curl").inner_text()
        assert curl.startswith("curl ") and "--data-raw" in curl
        tab.click("#copy-curl")
        assert tab.evaluate("navigator.clipboard.readText()") == curl
        watch.assert_clean()
    finally:
        ctx.close()


def test_detail_pages_of_every_body_kind_log_no_errors(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    multipart = (b"--B\r\nContent-Disposition: form-data; name=\"who\"\r\n\r\nAda\r\n"
                 b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
                 b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\r\n--B--\r\n")
    sent = [
        call(live_server.port, "PUT", "/bin", bytes(range(256)), {"Content-Type": "application/octet-stream"}),
        call(live_server.port, "POST", "/form", b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"}),
        call(live_server.port, "POST", "/upload", multipart, {"Content-Type": "multipart/form-data; boundary=B"}),
        call(live_server.port, "POST", "/xml", b"<a><b>1</b></a>", {"Content-Type": "application/xml"}),
        call(live_server.port, "POST", "/bad-json", b"{nope", {"Content-Type": "application/json"}),
        call(live_server.port, "GET", "/page", headers={"Accept": "text/html"}),
        call(live_server.port, "GET", "/redirect?_status=302&_header=Location:/x"),
        call(live_server.port, "GET", "/nc?_status=204"),
        call(live_server.port, "GET", "/bad-control?_status=abc"),
    ]
    for _, headers, _ in sent:
        response = tab.goto(f"{base}/_/exchanges/{headers['X-Echo-Id']}")
        assert response is not None and response.status == 200
        assert tab.locator("h1").count() == 1
    tab.goto(f"{base}/_/exchanges/{sent[0][1]['X-Echo-Id']}")
    assert "Binary" in tab.locator("section").first.inner_text()
    watch.assert_clean()


def test_an_unknown_exchange_is_a_friendly_404_page(base: str, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    response = tab.goto(base + "/_/exchanges/" + "0" * 28)
    assert response is not None and response.status == 404
    assert tab.locator("h1").inner_text() == "Not found"
    tab.click("text=Back to the history")
    tab.wait_for_url("**/_/")
    # The 404 document itself is reported by Chromium as a failed load; nothing else may be.
    watch.assert_clean(allow=("status of 404",))


# ---- hostile input ---------------------------------------------------------------------------

PAYLOADS = [
    "<script>window.pwned=1;alert('script')</script>",
    "<img src=x onerror=\"window.pwned=1;alert('img')\">",
    "\"><svg onload=\"window.pwned=1;alert('svg')\">",
    "';window.pwned=1;//",
]


def hostile_request(port: int) -> str:
    """A request with a payload in its path, query, headers, cookies and body; returns its id."""
    path = "/x/" + quote(PAYLOADS[0], safe="") + "/" + quote(PAYLOADS[1], safe="")
    query = "q=" + quote(PAYLOADS[2], safe="") + "&p=" + quote(PAYLOADS[3], safe="")
    _, headers, _ = call(port, "POST", f"{path}?{query}", " ".join(PAYLOADS).encode(), {
        "Content-Type": "text/html",
        "X-Evil": PAYLOADS[1],
        "X-Evil-2": PAYLOADS[2],
        "Cookie": "c=<script>window.pwned=1</script>",
        "User-Agent": PAYLOADS[0],
    })
    return headers["X-Echo-Id"]


def assert_nothing_ran(tab: Any, watch: Watch) -> None:
    assert tab.evaluate("typeof window.pwned") == "undefined"
    assert tab.locator("svg").count() == 0 and tab.locator("main img").count() == 0
    watch.assert_clean()


def test_hostile_requests_run_nothing_in_the_list(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    tab.goto(base + "/_/")
    hostile_request(live_server.port)  # arrives while the page is open: drawn by the script
    from playwright.sync_api import expect

    expect(tab.locator("#rows tr")).to_have_count(1, timeout=WAIT_MS)
    assert PAYLOADS[0] in tab.locator("#rows td.path").inner_text()  # shown as text
    tab.reload()  # and drawn by the server's template
    assert PAYLOADS[0] in tab.locator("#rows td.path").inner_text()
    assert_nothing_ran(tab, watch)


def test_hostile_requests_run_nothing_in_the_detail_page(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    exchange_id = hostile_request(live_server.port)
    tab.goto(f"{base}/_/exchanges/{exchange_id}")
    text = tab.locator("main").inner_text()
    for payload in PAYLOADS:
        assert payload in text
    assert tab.locator("table.kv td", has_text=PAYLOADS[1]).count() >= 1
    assert PAYLOADS[0] in tab.title()
    for summary in tab.locator("details summary").all():
        summary.click()  # open the raw views and the echo document too
    assert_nothing_ran(tab, watch)


# ---- the HTML echo page ----------------------------------------------------------------------

def test_a_browser_gets_the_echo_as_a_highlighted_page(base: str, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    response = tab.goto(base + "/hello/world?x=1&x=2")
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert tab.locator(".hl span.nt").count() > 5  # highlighted JSON keys
    assert '"path": "/hello/world"' in tab.locator(".hl").inner_text()
    # "As JSON" asks again for the same request as JSON.
    with tab.expect_navigation() as navigation:
        tab.click("text=As JSON")
    response = navigation.value
    assert response.headers["content-type"] == "application/json"
    doc = json.loads(response.text())
    assert doc["path"] == "/hello/world" and doc["args"] == {"x": ["1", "2"], "_format": ["json"]}
    watch.assert_clean()


def test_format_json_forces_json_for_a_browser(base: str, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    response = tab.goto(base + "/forced?_format=json")
    assert response is not None and response.headers["content-type"] == "application/json"
    assert json.loads(response.text())["path"] == "/forced"
    watch.assert_clean()


def test_the_echo_page_runs_nothing_hostile(base: str, browser: Any) -> None:
    ctx = browser.new_context(extra_http_headers={"X-Evil": PAYLOADS[1], "X-Evil-2": PAYLOADS[2]})
    try:
        tab, watch = watched(ctx)
        url = (base + "/x/" + quote(PAYLOADS[0], safe="") + "?q=" + quote(PAYLOADS[1], safe="")
               + "&p=" + quote(PAYLOADS[3], safe=""))
        response = tab.goto(url)
        assert response is not None and response.headers["content-type"].startswith("text/html")
        text = tab.locator("main").inner_text()
        # Shown as text (inside JSON strings, where " is written \").
        assert PAYLOADS[0] in text and "<img src=x onerror=" in text and PAYLOADS[3] in text
        assert PAYLOADS[0] in tab.title()
        assert_nothing_ran(tab, watch)
    finally:
        ctx.close()


def test_pages_read_in_dark_mode_too(base: str, live_server: Any, browser: Any) -> None:
    ctx = browser.new_context(color_scheme="dark")
    try:
        tab, watch = watched(ctx)
        _, headers, _ = call(live_server.port, "POST", "/dark", b'{"a": 1}', {"Content-Type": "application/json"})
        tab.goto(f"{base}/_/exchanges/{headers['X-Echo-Id']}")
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        foreground = tab.evaluate("getComputedStyle(document.body).color")
        assert background == "rgb(15, 19, 24)" and foreground == "rgb(230, 233, 239)"
        token = tab.locator(".hl span.nt").first
        assert token.evaluate("e => getComputedStyle(e).color") != "rgb(0, 128, 0)"  # not the light style's green
        watch.assert_clean()
    finally:
        ctx.close()
