"""The rule that answered, in real headless Chromium: the list (rows rendered by
the server and rows added live by inspector.js) and the detail page, with a
hostile rule name shown as text."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from support import Watch, call, watched

pytestmark = pytest.mark.browser

WAIT_MS = 10_000
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def page(context: Any) -> tuple[Any, Watch]:
    return watched(context)


def add_rule(port: int, name: str, match: str, respond: dict[str, Any]) -> str:
    status, _, body = call(port, "POST", "/_/api/rules",
                           json.dumps({"name": name, "match": match, "respond": respond}).encode())
    assert status == 201, body
    return str(json.loads(body)["id"])


def test_the_list_shows_the_rule_on_first_load_and_live(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    from playwright.sync_api import expect

    tab, watch = page
    marker = uuid.uuid4().hex
    rule_id = add_rule(live_server.port, HOSTILE, f"path:/{marker}/*", {"status": 503})
    try:
        call(live_server.port, "GET", f"/{marker}/first")
        tab.goto(base + "/_/")
        first = tab.locator("#rows tr").first.locator("td.status .rule-badge")
        expect(first).to_have_text(HOSTILE, timeout=WAIT_MS)
        call(live_server.port, "GET", f"/{marker}/live")  # added by inspector.js
        expect(tab.locator("#rows tr td.path").first).to_have_text(f"/{marker}/live", timeout=WAIT_MS)
        live = tab.locator("#rows tr").first.locator("td.status .rule-badge")
        expect(live).to_have_text(HOSTILE)
        assert "step 0" in (live.get_attribute("title") or "")
        call(live_server.port, "GET", "/no-rule-here")
        expect(tab.locator("#rows tr td.path").first).to_have_text("/no-rule-here", timeout=WAIT_MS)
        assert tab.locator("#rows tr").first.locator(".rule-badge").count() == 0
        watch.assert_clean()
    finally:
        call(live_server.port, "DELETE", f"/_/api/rules/{rule_id}")


def test_the_detail_shows_the_rule_and_its_step(base: str, live_server: Any, page: tuple[Any, Watch]) -> None:
    tab, watch = page
    marker = uuid.uuid4().hex
    rule_id = add_rule(live_server.port, HOSTILE, f"path:/{marker}",
                       [{"status": 503, "times": 1}, {"status": 200, "body": "ok"}])
    try:
        call(live_server.port, "GET", f"/{marker}")
        _, headers, _ = call(live_server.port, "GET", f"/{marker}")
        tab.goto(base + "/_/exchanges/" + headers["X-Echo-Id"])
        line = tab.locator(".rule-line")
        assert HOSTILE in line.inner_text()
        assert rule_id in line.inner_text() and "step 1" in line.inner_text()
        watch.assert_clean()
    finally:
        call(live_server.port, "DELETE", f"/_/api/rules/{rule_id}")
