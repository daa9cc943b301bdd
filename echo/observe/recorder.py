"""The recorder: after each echo response is built, record, count and log it.

The echo view never touches the store; it hands a finished `Exchange` here.
This is the one place that cuts bodies to --keep-body and redacts --redact
headers. It never waits on a store: a Redis store is behind the write-behind
queue (`history.buffered`), which keeps exchanges through an outage and
counts what it could not write; the memory store is written directly. A
store written directly that fails (none does today) is logged once per
outage, its exchange counted as dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..history import Store, StoreError, WriteStats
from ..model.records import Exchange, Pairs
from ..model.redact import REDACTED, hide_credentials, redact_pairs
from .arrivals import Arrivals

log = logging.getLogger("echo")

class Recorder:
    def __init__(
        self,
        store: Store,
        history: int,
        keep_body: int,
        redact: tuple[str, ...],
        sinks: tuple[Callable[[Exchange], None], ...] = (),
        ui_auth: str = "",
        arrivals: Arrivals | None = None,
    ) -> None:
        self.store = store
        self.enabled = history > 0
        self.keep_body = keep_body
        self.redact = frozenset(name.lower() for name in redact)
        self.sinks = sinks  # access log, metrics: they see the exchange as sent
        self.ui_auth = ui_auth  # the inspector's own credentials, never kept when a browser sends them along
        self.arrivals = arrivals  # told after each exchange the store kept, for history waits
        self._lock = threading.Lock()
        self._failing = False
        self._dropped = 0  # by a store written directly; the queue counts its own
        self._errors = 0

    def write_stats(self) -> WriteStats:
        """Writes waiting, failed and dropped: the store's queue's and the recorder's own."""
        queued = self.store.write_stats()
        return WriteStats(buffered=queued.buffered, errors=queued.errors + self._errors,
                          dropped=queued.dropped + self._dropped)

    @property
    def errors(self) -> int:
        return self.write_stats().errors

    @property
    def dropped(self) -> int:
        return self.write_stats().dropped

    def observe(self, exchange: Exchange) -> None:
        if self.ui_auth:
            exchange = self._without_credentials(exchange)
        for sink in self.sinks:
            sink(exchange)
        if not self.enabled:
            return
        # The store's add is called here, not through a helper: this runs on the
        # request thread for every exchange, where each Python call is its price.
        try:
            self.store.add(self.for_history(exchange))
        except StoreError as exc:
            self._failed(exc)
            return
        if self.arrivals is not None:
            self.arrivals.notify()
        if self._failing:
            self._back()

    def _without_credentials(self, exchange: Exchange) -> Exchange:
        headers = hide_credentials(exchange.request.headers, self.ui_auth)
        if headers is exchange.request.headers:
            return exchange
        return dataclasses.replace(exchange, request=dataclasses.replace(exchange.request, headers=headers))

    def for_history(self, exchange: Exchange) -> Exchange:
        """The exchange as history keeps it: bodies cut, JSON kept as its body alone,
        secrets redacted. The exchange given is left as it was."""
        request, response = exchange.request, exchange.response
        keep = self.keep_body
        cut_body = request.too_large or len(request.body) > keep
        cut_content = request.content is not None and len(request.content) > keep
        cut_response = response.body is not None and len(response.body) > keep
        # Most exchanges are kept as they are: say so before building anything.
        # This runs on the request thread for every recorded exchange, where
        # the two dicts below were built for nothing.
        if not (cut_body or cut_content or cut_response or self.redact):
            return exchange
        changes_req: dict[str, Any] = {}
        if cut_body:
            changes_req["body"] = request.body[:keep]
            changes_req["truncated"] = True
        if cut_content:
            changes_req["content"] = (request.content or b"")[:keep]  # not None: cut_content
            changes_req["truncated"] = True
        if changes_req.get("truncated"):
            # json and form are parsed from the whole body: keeping them would keep
            # the whole body in another shape (1 MiB of JSON is tens of MiB of
            # Python objects). A cut body keeps only the form fields that fit.
            changes_req["json"] = None
            changes_req["form"] = _fit(request.form, keep)
        if self.redact:
            headers = redact_pairs(request.headers, self.redact)
            if headers is not request.headers:
                changes_req["headers"] = headers
                if "cookie" in self.redact and request.cookies:
                    changes_req["cookies"] = tuple((name, REDACTED) for name, _ in request.cookies)
        changes_resp: dict[str, Any] = {}
        if cut_response:
            changes_resp["body"] = (response.body or b"")[:keep]  # not None: cut_response
            changes_resp["truncated"] = True
        if self.redact:
            headers = redact_pairs(response.headers, self.redact)
            if headers is not response.headers:
                changes_resp["headers"] = headers
        # A whole JSON body is kept as that body alone: the stores keep
        # `kept_json` (records.JSON_FROM_BODY), not the parsed value.
        if not changes_req and not changes_resp:
            return exchange
        return dataclasses.replace(
            exchange,
            request=dataclasses.replace(request, **changes_req) if changes_req else request,
            response=dataclasses.replace(response, **changes_resp) if changes_resp else response,
        )

    def _failed(self, exc: StoreError) -> None:
        with self._lock:
            self._errors += 1
            self._dropped += 1
            first, self._failing = not self._failing, True
        if first:
            log.error("history store failing, exchanges are not being recorded: %s", exc)

    def _back(self) -> None:
        with self._lock:
            back, self._failing = self._failing, False
        if back:
            log.warning("history store is back; %d exchanges were not recorded", self._dropped)


def _fit(pairs: Pairs, budget: int) -> Pairs:
    """The leading pairs whose names and values fit in `budget` characters in all."""
    kept = []
    for name, value in pairs:
        budget -= len(name) + len(value)
        if budget < 0:
            break
        kept.append((name, value))
    return tuple(kept)
