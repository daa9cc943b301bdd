"""Metrics: counters of echo exchanges, served in Prometheus text format."""

from __future__ import annotations

import threading
from typing import Callable

from .records import Exchange

# Seconds; spans a fast echo (sub-millisecond) to the longest default _delay.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_count = 0
        self.latency_sum = 0.0

    def __call__(self, exchange: Exchange) -> None:
        method = exchange.request.method
        if not method.isalpha() or len(method) > 20:
            method = "OTHER"  # label values stay bounded whatever the wire sends
        key = (method, f"{exchange.response.status // 100}xx")
        seconds = exchange.duration_ms / 1000
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency_count += 1
            self.latency_sum += seconds
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1

    def render(self, history_size: int, store_errors: int, dropped: int, version: str) -> str:
        with self._lock:
            requests = sorted(self.requests.items())
            buckets = list(self.buckets)
            count, total = self.latency_count, self.latency_sum
        out = [
            "# HELP echo_requests_total Echo exchanges answered, by method and status class.",
            "# TYPE echo_requests_total counter",
        ]
        out += [f'echo_requests_total{{method="{m}",status="{s}"}} {n}' for (m, s), n in requests]
        out += [
            "# HELP echo_request_duration_seconds Time from arrival to answer built.",
            "# TYPE echo_request_duration_seconds histogram",
        ]
        out += [f'echo_request_duration_seconds_bucket{{le="{b:g}"}} {n}' for b, n in zip(LATENCY_BUCKETS, buckets)]
        out += [
            f'echo_request_duration_seconds_bucket{{le="+Inf"}} {count}',
            f"echo_request_duration_seconds_sum {total:.6f}",
            f"echo_request_duration_seconds_count {count}",
            "# HELP echo_history_size Exchanges kept in history.",
            "# TYPE echo_history_size gauge",
            f"echo_history_size {history_size}",
            "# HELP echo_store_errors_total Failed writes to the history store.",
            "# TYPE echo_store_errors_total counter",
            f"echo_store_errors_total {store_errors}",
            "# HELP echo_history_dropped_total Exchanges not recorded because the store was failing.",
            "# TYPE echo_history_dropped_total counter",
            f"echo_history_dropped_total {dropped}",
            "# HELP echo_build_info Version of the running server.",
            "# TYPE echo_build_info gauge",
            f'echo_build_info{{version="{version}"}} 1',
        ]
        return "\n".join(out) + "\n"


MetricsSink = Callable[[Exchange], None]
