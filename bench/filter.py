"""How long a filtered API list takes over a full memory history.

    .venv/bin/python bench/filter.py                 # 10,000 kept exchanges, 30 timed lists
    .venv/bin/python bench/filter.py --kept 2000 --runs 5

Fills an in-process Echo (memory store, `--history` = --kept) by sending it
--kept requests through the real app (capture, recording, packing): webhook
POSTs with 1 KiB JSON bodies and a few headers, API GETs with query strings,
PUTs; then times `GET /_/api/exchanges?f=...` through the same app, in
process, for a three-term filter that matches few of them. Prints the median,
and the fastest and slowest run, in milliseconds. The aim (SPEC section 9):
under 100 ms for 10,000 kept exchanges. It measures the Echo of the checkout
it lives in (not an installed copy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

# The Echo of this checkout, not an installed copy: the figure is for the code beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from echo.app import create_app  # noqa: E402

FILTER = "method:POST path:/hooks/* header:X-Event=push"
# One in EVENTS_EVERY requests is a matching webhook: the filter finds few (20 of
# 10,000), so a list of 50 looks at every kept exchange.
EVENTS_EVERY = 500
PAYLOAD = json.dumps({"action": "opened", "items": [{"id": i, "name": f"item {i}", "price": i * 1.5}
                                                   for i in range(20)]}).encode()


def fill(client: Any, kept: int) -> None:
    headers = {"User-Agent": "bench/1.0", "Accept": "application/json", "X-Request-Id": "0" * 32}
    for n in range(kept):
        kind = n % EVENTS_EVERY
        if kind == 0:
            client.post(f"/hooks/github/{n}", data=PAYLOAD, content_type="application/json",
                        headers={**headers, "X-Event": "push", "X-Signature": "sha256=" + "ab" * 32})
        elif kind % 3 == 0:
            client.post(f"/hooks/github/{n}", data=PAYLOAD, content_type="application/json",
                        headers={**headers, "X-Event": "pull_request"})
        elif kind % 3 == 1:
            client.get(f"/api/items?page={n}&sort=name", headers=headers)
        else:
            client.put(f"/api/orders/{n}", data=PAYLOAD, content_type="application/json", headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kept", type=int, default=10_000, help="exchanges kept in history (default 10000)")
    parser.add_argument("--runs", type=int, default=30, help="timed lists (default 30)")
    parser.add_argument("--filter", default=FILTER, help=f"the filter (default {FILTER!r})")
    options = parser.parse_args()

    app = create_app({"log": "off", "history": options.kept}, environ={})
    client = app.test_client()
    started = time.perf_counter()
    fill(client, options.kept)
    filled = time.perf_counter() - started
    url = "/_/api/exchanges?bodies=0&limit=50&f=" + quote(options.filter)
    first = client.get(url)
    assert first.status_code == 200, first.data
    found = len(first.get_json()["exchanges"])
    times = []
    for _ in range(options.runs):
        start = time.perf_counter()
        response = client.get(url)
        response.get_data()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    print(f"kept {options.kept} exchanges in {filled:.1f} s; filter {options.filter!r} lists {found}")
    print(f"list: median {statistics.median(times):.1f} ms (fastest {min(times):.1f}, slowest {max(times):.1f}) "
          f"over {options.runs} runs")


if __name__ == "__main__":
    main()
