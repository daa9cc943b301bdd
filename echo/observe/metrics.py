"""Metrics: counts of echo exchanges, served at <prefix>metrics in Prometheus text format.

`Metrics` is one of the observer's sinks, so it sees every echo exchange (and
nothing from the inspector, health or metrics routes themselves). `render`
writes the text exposition format, version 0.0.4, which every Prometheus-
compatible scraper reads.
"""

from __future__ import annotations

import bisect
import itertools
import threading

from ..model.records import Exchange

# Seconds; spans a fast echo (sub-millisecond) to the longest default _delay.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Methods counted under their own name. Anything else a caller invents is
# counted as OTHER: every distinct label value is a new time series, and a
# client sending random method tokens must not grow the scrape without bound.
KNOWN_METHODS = frozenset({
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PURGE", "REPORT", "SEARCH", "QUERY",
})

def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


def status_label(status: int) -> str:
    return f"{status // 100}xx"


class Metrics:
    """Thread-safe counters and a latency histogram of answered echo requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not cumulative; the last is over the largest
        self.latency_count = 0
        self.latency_sum = 0.0
        # SIGHUP re-reads of --rules, by outcome ("ok", "failed").
        self.rule_reloads = {"ok": 0, "failed": 0}

    def rules_reloaded(self, ok: bool) -> None:
        with self._lock:
            self.rule_reloads["ok" if ok else "failed"] += 1

    def __call__(self, exchange: Exchange) -> None:
        key = (method_label(exchange.request.method), status_label(exchange.response.status))
        seconds = exchange.duration_ms / 1000
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency_count += 1
            self.latency_sum += seconds
            # The smallest bucket it fits; render adds them up, as the format's buckets are cumulative.
            self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def render(self, history_size: int | None, store_errors: int, dropped: int, version: str,
               buffered: int = 0) -> str:
        """The exposition text. A history size below 0 or None means the store did not answer:
        the gauge is left out for that scrape rather than reported as a made-up number."""
        with self._lock:
            requests = sorted(self.requests.items())
            buckets = list(itertools.accumulate(self.buckets[:-1]))
            count, total = self.latency_count, self.latency_sum
            reloads = dict(self.rule_reloads)
        out = [
            "# HELP echo_requests_total Echo exchanges answered, by method and status class.",
            "# TYPE echo_requests_total counter",
        ]
        out += [f'echo_requests_total{{method="{m}",status="{s}"}} {n}' for (m, s), n in requests]
        out += [
            "# HELP echo_request_duration_seconds Time from arrival to answer built.",
            "# TYPE echo_request_duration_seconds histogram",
        ]
        out += [f'echo_request_duration_seconds_bucket{{le="{b!r}"}} {n}' for b, n in zip(LATENCY_BUCKETS, buckets, strict=True)]
        out += [
            f'echo_request_duration_seconds_bucket{{le="+Inf"}} {count}',
            f"echo_request_duration_seconds_sum {total!r}",
            f"echo_request_duration_seconds_count {count}",
            "# HELP echo_history_size Exchanges kept in history.",
            "# TYPE echo_history_size gauge",
        ]
        if history_size is not None and history_size >= 0:
            out.append(f"echo_history_size {history_size}")
        out += [
            "# HELP echo_store_errors_total Failed writes to the history store (each failed batch counts one).",
            "# TYPE echo_store_errors_total counter",
            f"echo_store_errors_total {store_errors}",
            "# HELP echo_store_buffered Exchanges waiting in the write-behind queue to be written to the store.",
            "# TYPE echo_store_buffered gauge",
            f"echo_store_buffered {buffered}",
            "# HELP echo_store_dropped_total Exchanges never written to the store: the buffer was full.",
            "# TYPE echo_store_dropped_total counter",
            f"echo_store_dropped_total {dropped}",
            "# HELP echo_history_dropped_total The same count as echo_store_dropped_total, under its older name.",
            "# TYPE echo_history_dropped_total counter",
            f"echo_history_dropped_total {dropped}",
            "# HELP echo_rules_reloads_total Re-reads of the --rules file (SIGHUP), by result; "
            "a failed one keeps the rules loaded before.",
            "# TYPE echo_rules_reloads_total counter",
            f'echo_rules_reloads_total{{result="ok"}} {reloads["ok"]}',
            f'echo_rules_reloads_total{{result="failed"}} {reloads["failed"]}',
            "# HELP echo_build_info Version of the running server.",
            "# TYPE echo_build_info gauge",
            f'echo_build_info{{version="{_label_value(version)}"}} 1',
        ]
        return "\n".join(out) + "\n"


def _label_value(text: str) -> str:
    """A label value as the format wants it: backslash, quote and newline escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
