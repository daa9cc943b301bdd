"""A small client for tests that assert on what their code sent to Echo.

    from echo.client import EchoClient

    echo = EchoClient("http://127.0.0.1:8080").new_bin()
    send_webhook(echo.url("/hook"))          # the code under test
    hook = echo.wait_for("method:POST path:/hook")
    assert hook["request"]["json"]["event"] == "paid"

`EchoClient` speaks to one Echo (in process, or a CI service container);
`new_bin()` gives a `Bin`, a private corner of it: its URLs are
`/b/{name}/...`, its queries hold `bin:{name}` (so `path:` matches the path
below the bin) and its `clear()` forgets that bin only, so tests sharing one
server never see each other's exchanges. Filters are section 9's filter
language, passed as they are.

A wait that times out, or an assertion that does not hold, raises
`AssertionError` listing the near misses the server found (one line each:
method, path, status, the terms that failed), so a test report says what
arrived instead. Anything else that goes wrong talking to Echo raises
`EchoError`.

Standard library only (urllib, json): this module is imported by test suites
and by the pytest plugin, never by the server, and imports none of it.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["Bin", "EchoClient", "EchoError"]

# Seconds a request to Echo may take on top of the wait it asks for: a
# generous bound that only notices a server that hangs.
NETWORK_SLACK_SECONDS = 10.0
# Exchanges read by `assert_received`: the API's largest page.
ASSERT_LIMIT = 1000


class EchoError(RuntimeError):
    """Echo answered with an error (or not at all) where the client expected an answer."""

    def __init__(self, message: str, status: int | None = None, document: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.document = document


def describe_near_misses(near_misses: list[dict[str, Any]]) -> str:
    """One line per near miss: `  POST /hook 404  failed: method:PUT, header:X-Sig`."""
    if not near_misses:
        return "  (nothing recorded comes close: no recent exchanges)"
    lines = []
    for miss in near_misses:
        failed = ", ".join(miss.get("failed", [])) or "(nothing)"
        lines.append(f"  {miss.get('method')} {miss.get('path')} {miss.get('status')}  failed: {failed}")
    return "\n".join(lines)


class EchoClient:
    """One Echo server, reached at `base_url` (e.g. "http://127.0.0.1:8080").

    `auth` is the (user, password) of the server's --ui-auth, if it has one;
    `ui_prefix` its --ui-prefix."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None, ui_prefix: str = "/_/") -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        if not (ui_prefix.startswith("/") and ui_prefix.endswith("/")):
            raise ValueError(f"ui_prefix must start and end with '/', like '/_/': {ui_prefix!r}")
        self.ui_prefix = ui_prefix

    def __repr__(self) -> str:
        return f"<EchoClient {self.base_url}>"

    # -- what a test uses -------------------------------------------------

    def new_bin(self) -> Bin:
        """A fresh bin with a random name: its own URLs and its own history."""
        return Bin(self, "t" + secrets.token_hex(8))

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` on the echo (e.g. url("/hook"))."""
        return self.base_url + _slash(path)

    def exchanges(self, f: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest exchanges first, at most `limit`, that filter `f` matches."""
        return self._exchanges(f, limit)

    def wait_for(self, f: str | None = None, timeout: float = 5, after: str | None = None) -> dict[str, Any]:
        """The first exchange (after the exchange id `after`, if given) that `f` matches,
        as soon as it is recorded; AssertionError with the near misses after `timeout` seconds."""
        __tracebackhide__ = True  # pytest shows the caller's line, not this one
        return self._wait(f, timeout, after)

    def assert_received(self, f: str | None = None, count: int | None = None) -> list[dict[str, Any]]:
        """The exchanges `f` matches, newest first: at least one, or exactly `count`.

        It does not wait: for something sent in the background, use `wait_for`."""
        __tracebackhide__ = True
        return self._assert_received(f, count)

    def clear(self) -> None:
        """Forget every exchange the server keeps."""
        self._call("DELETE", "api/exchanges")

    # -- the parts a Bin shares ------------------------------------------

    def _exchanges(self, f: str | None, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params = {"f": f} if f else {}
        while True:
            _, doc = self._call("GET", "api/exchanges", {**params, "limit": str(limit - len(found))})
            found += doc["exchanges"]
            # A page the server's --max-scan cut short says where to go on; the rest is older.
            if not doc.get("partial") or not doc.get("next") or len(found) >= limit:
                return found
            params["before"] = doc["next"]

    def _wait(self, f: str | None, timeout: float, after: str | None) -> dict[str, Any]:
        __tracebackhide__ = True
        params = {"timeout": f"{timeout:g}"}
        if f:
            params["f"] = f
        if after:
            params["after"] = after
        status, doc = self._call("GET", "api/exchanges/wait", params, expect=(200, 404),
                                 timeout=timeout + NETWORK_SLACK_SECONDS)
        if status == 404:
            since = f" after {after}" if after else ""
            raise AssertionError(f"no exchange matching {f or '(anything)'!r}{since} arrived within {timeout:g} s; "
                                 f"near misses:\n{describe_near_misses(doc.get('near_misses', []))}")
        return dict(doc)

    def _assert_received(self, f: str | None, count: int | None) -> list[dict[str, Any]]:
        __tracebackhide__ = True
        found = self._exchanges(f, ASSERT_LIMIT)
        if (count is None and found) or count == len(found):
            return found
        want = "at least 1" if count is None else str(count)
        message = f"expected {want} exchange(s) matching {f or '(anything)'!r}, found {len(found)}"
        if found:
            listed = "\n".join(f"  {x['request']['method']} {x['request']['path']} {x['response']['status']}"
                               for x in found[:10])
            raise AssertionError(f"{message}:\n{listed}")
        # A wait that answers at once gives the server's near misses.
        _, doc = self._call("GET", "api/exchanges/wait", {"timeout": "0", **({"f": f} if f else {})},
                            expect=(200, 404))
        raise AssertionError(f"{message}; near misses:\n{describe_near_misses(doc.get('near_misses', []))}")

    def _call(self, method: str, path: str, params: dict[str, str] | None = None,
              expect: tuple[int, ...] = (200, 204), timeout: float = NETWORK_SLACK_SECONDS) -> tuple[int, Any]:
        """One inspector API request: (status, parsed JSON or None); EchoError on anything unexpected."""
        url = self.base_url + self.ui_prefix + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json"}
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode("ascii")
            headers["Authorization"] = "Basic " + token
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body, response_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            with error:
                status, body, response_headers = error.code, error.read(), error.headers
        except OSError as exc:  # refused, reset, timed out, name not found
            raise EchoError(f"{method} {url}: {exc}") from exc
        if "X-Echo-Id" in response_headers:
            # Only the echo sets it: this path is outside the inspector, so the prefix is not the server's.
            raise EchoError(f"{method} {url} was answered by the echo, not the inspector's API: "
                            f"is ui_prefix {self.ui_prefix!r} the server's --ui-prefix?", status)
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        if status not in expect:
            detail = doc.get("error") if isinstance(doc, dict) else body[:200].decode("utf-8", "replace")
            raise EchoError(f"{method} {url} answered {status}: {detail}", status, doc)
        return status, doc


class Bin:
    """One bin of an Echo: URLs under `/b/{name}`, queries and clearing scoped to it."""

    def __init__(self, client: EchoClient, name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"<Bin {self.name} of {self.client.base_url}>"

    def url(self, path: str = "/") -> str:
        """The absolute URL of `path` in this bin (url("/hook") is .../b/{name}/hook)."""
        return self.client.url(f"/b/{self.name}{_slash(path)}")

    def scoped(self, f: str | None) -> str:
        """`f` limited to this bin; there `path:` matches the path below the bin."""
        return f"bin:{self.name} {f}" if f else f"bin:{self.name}"

    def exchanges(self, f: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self.client._exchanges(self.scoped(f), limit)

    def wait_for(self, f: str | None = None, timeout: float = 5, after: str | None = None) -> dict[str, Any]:
        __tracebackhide__ = True
        return self.client._wait(self.scoped(f), timeout, after)

    def assert_received(self, f: str | None = None, count: int | None = None) -> list[dict[str, Any]]:
        __tracebackhide__ = True
        return self.client._assert_received(self.scoped(f), count)

    def clear(self) -> None:
        """Forget this bin's exchanges only."""
        self.client._call("DELETE", "api/exchanges", {"bin": self.name})


def _slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path
