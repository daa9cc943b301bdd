"""The inspector's own credentials (--ui-auth): scoped to the inspector, never kept.

A browser that meets a 401 at `/_` (the bare prefix) scopes the Basic
credentials to `/`, and then sends the inspector password with every echo
request. So the bare prefix redirects before asking, and whatever a browser
sends along, history, logs and exports never keep the inspector's password.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from support import call

USER_PASS = "admin:s3cret-pass"
BASIC = "Basic " + base64.b64encode(USER_PASS.encode()).decode()


@pytest.fixture
def guarded(echo_server: Any) -> Any:
    return echo_server("--ui-auth", USER_PASS, "--log", "pretty")


def test_bare_prefix_redirects_before_asking_for_credentials(guarded: Any) -> None:
    status, headers, _ = call(guarded.port, "GET", "/_")
    assert status == 308
    assert headers["Location"].endswith("/_/")
    assert "WWW-Authenticate" not in headers
    # The prefix itself still asks.
    status, headers, _ = call(guarded.port, "GET", "/_/")
    assert status == 401 and "WWW-Authenticate" in headers


@pytest.mark.parametrize("header", [BASIC, "basic " + BASIC[6:], "Basic  " + BASIC[6:] + " "])
def test_inspector_credentials_sent_to_the_echo_are_not_kept(guarded: Any, header: str) -> None:
    status, headers, body = call(guarded.port, "GET", "/some/page", headers={"Authorization": header})
    assert status == 200
    exchange_id = headers["X-Echo-Id"]
    status, _, kept = call(guarded.port, "GET", f"/_/api/exchanges/{exchange_id}", headers={"Authorization": BASIC})
    assert status == 200
    doc = json.loads(kept)
    assert doc["request"]["headers"]["Authorization"] == "[redacted]"
    for route in (f"/_/api/exchanges/{exchange_id}/curl", "/_/api/exchanges.har", f"/_/exchanges/{exchange_id}"):
        status, _, page = call(guarded.port, "GET", route, headers={"Authorization": BASIC})
        assert status == 200
        assert BASIC[6:].encode() not in page, route
    guarded.stop()
    assert BASIC[6:] not in "".join(guarded.lines())


def test_other_credentials_are_kept_as_sent(guarded: Any) -> None:
    other = "Basic " + base64.b64encode(b"someone:else").decode()
    _, headers, _ = call(guarded.port, "GET", "/api", headers={"Authorization": other})
    _, _, kept = call(guarded.port, "GET", f"/_/api/exchanges/{headers['X-Echo-Id']}", headers={"Authorization": BASIC})
    assert json.loads(kept)["request"]["headers"]["Authorization"] == other
