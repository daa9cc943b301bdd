"""The inspector's list page and error pages through Flask's test client.

Fast checks beside the Chromium ones in test_browser_list.py: paging links,
any-method filter, dates and human sizes in server-rendered rows, and the HTML
503 page a failing store becomes for pages (the API keeps its JSON 503).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from echo import create_app
from echo.model.factory import FACTORY_TIME, make_exchange, make_request, make_response
from echo.web.inspector.pages import human_size

from support import FailingStore

ROWS = 200




def exchange_id(i: int) -> str:
    return f"{i + 1:028x}"


def app_with(count: int, **request_fields: Any) -> Flask:
    """An app whose memory history holds `count` exchanges /n/0 (oldest) .. /n/{count-1}."""
    app = create_app({"log": "off"}, environ={})
    store = app.extensions["echo"].store
    for i in range(count):
        fields = {"path": f"/n/{i}", **request_fields}
        store.add(make_exchange(make_request(id=exchange_id(i), **fields)))
    return app


def row_paths(page: str) -> list[str]:
    return re.findall(r'<td class="path"><a href="[^"]*">([^<]*)</a>', page)


def link(page: str, element_id: str) -> str | None:
    match = re.search(rf'<a id="{element_id}"[^>]* href="([^"]*)"', page)
    return None if match is None else match.group(1).replace("&amp;", "&")


# ---- paging ----------------------------------------------------------------------------

def test_the_first_page_links_to_older_exchanges_past_the_newest_rows() -> None:
    client = app_with(ROWS + 30).test_client()
    page = client.get("/_/").get_data(as_text=True)
    paths = row_paths(page)
    assert len(paths) == ROWS and paths[0] == f"/n/{ROWS + 29}" and paths[-1] == "/n/30"
    assert link(page, "older") == f"/_/?before={exchange_id(30)}"
    assert link(page, "newest") is None  # the first page is the newest

    older = client.get(link(page, "older") or "").get_data(as_text=True)
    assert row_paths(older) == [f"/n/{i}" for i in range(29, -1, -1)]
    assert link(older, "older") is None  # nothing older is kept
    assert link(older, "newest") == "/_/"
    assert 'data-paged="1"' in older  # the script leaves an older page as it is


def test_exactly_one_page_of_exchanges_has_no_older_link() -> None:
    page = app_with(ROWS).test_client().get("/_/").get_data(as_text=True)
    assert len(row_paths(page)) == ROWS and link(page, "older") is None
    page = app_with(ROWS + 1).test_client().get("/_/").get_data(as_text=True)
    assert len(row_paths(page)) == ROWS and link(page, "older") == f"/_/?before={exchange_id(1)}"


def test_paging_links_keep_the_filters() -> None:
    app = app_with(ROWS + 5, method="PROPFIND")
    page = app.test_client().get("/_/?method=propfind&q=/n/&status=2xx").get_data(as_text=True)
    assert len(row_paths(page)) == ROWS
    assert link(page, "older") == f"/_/?method=PROPFIND&status=2xx&q=%2Fn%2F&before={exchange_id(5)}"
    older = app.test_client().get(link(page, "older") or "").get_data(as_text=True)
    assert len(row_paths(older)) == 5
    assert link(older, "newest") == "/_/?method=PROPFIND&status=2xx&q=%2Fn%2F"


# ---- any method ------------------------------------------------------------------------

def test_the_method_filter_takes_any_token_and_upper_cases_it() -> None:
    app = app_with(0)
    store = app.extensions["echo"].store
    store.add(make_exchange(make_request(id=exchange_id(1), method="PROPFIND", path="/dav")))
    store.add(make_exchange(make_request(id=exchange_id(2), method="GET", path="/plain")))
    page = app.test_client().get("/_/?method=propfind").get_data(as_text=True)
    assert row_paths(page) == ["/dav"]
    assert re.search(r'<input [^>]*id="f-method"[^>]*value="PROPFIND"', page)
    assert '<datalist id="methods">' in page and '<option value="PURGE">' in page


def test_a_method_that_is_not_a_token_is_refused_by_the_api_and_named_by_the_page() -> None:
    client = app_with(2).test_client()
    response = client.get("/_/api/exchanges?method=GE%20T")
    assert response.status_code == 400
    assert response.get_json()["param"] == "method"
    page = client.get("/_/?method=%3Cb%3EGE%20T")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "method must be an HTTP method" in text and "&lt;B&gt;GE T" in text and "<B>" not in text
    assert len(row_paths(text)) == 2  # the rest of the page still shows the history


# ---- dates and sizes -------------------------------------------------------------------

@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1234, "1.2 KiB"), (1280, "1.3 KiB"),
    (10 * 1024 - 52, "9.9 KiB"), (10 * 1024 - 51, "10.0 KiB"), (1024 * 1024 - 1, "1.0 MiB"), (5 * 1024 ** 3, "5.0 GiB"),
])
def test_human_sizes(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_a_row_from_another_day_shows_its_date_and_labelled_sizes() -> None:
    app = app_with(0)
    request = make_request(id=exchange_id(1), body=b"x" * 1234)  # at FACTORY_TIME, 2026-01-01
    app.extensions["echo"].store.add(make_exchange(request, make_response(body=b"y" * 340)))
    assert FACTORY_TIME < 1_767_312_000  # 2026-01-02: always an earlier day than today
    page = app.test_client().get("/_/").get_data(as_text=True)
    assert '<time datetime="2026-01-01T00:00:00.000Z" title="2026-01-01T00:00:00.000Z">2026-01-01 00:00:00</time>' in page
    assert '<span class="up" title="request body: 1234 bytes">↑ 1.2 KiB</span>' in page
    assert '<span class="down" title="response body: 340 bytes">↓ 340 B</span>' in page


# ---- a failing store -------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/_/", "/_/?before=" + "0" * 28, "/_/exchanges/" + "0" * 28])
def test_a_failing_store_is_an_html_503_page_for_pages(path: str) -> None:
    app = create_app({"log": "off"}, environ={})
    app.extensions["echo"].store = FailingStore()
    response = app.test_client().get(path)
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    text = response.get_data(as_text=True)
    assert "<h1>History unavailable</h1>" in text
    assert "the echo keeps answering" in text
    assert "connection refused" in text


def test_a_failing_store_stays_a_json_503_for_the_api() -> None:
    app = create_app({"log": "off"}, environ={})
    app.extensions["echo"].store = FailingStore()
    response = app.test_client().get("/_/api/exchanges", headers={"Accept": "text/html"})
    assert response.status_code == 503 and response.mimetype == "application/json"
    assert response.get_json()["error"] == "the history store is unavailable; the echo keeps answering"
