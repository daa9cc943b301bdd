"""/_/metrics against the real server: valid Prometheus text exposition, counters
that follow the requests sent, scrapes that are neither counted nor recorded,
--no-metrics, and store errors counted while Redis is down.

The exposition is checked by a strict parser written here from the format's
specification (text format 0.0.4), so a malformed line fails the test rather
than being skipped the way a lenient scraper might.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from echo.observe.metrics import LATENCY_BUCKETS, Metrics

from support import EchoServer, fetch, need, start_echo, start_redis

# ---- a strict parser for the text exposition format -------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>[^}]*)\})?"
    r" (?P<value>\S+)"
    r"(?: (?P<timestamp>-?\d+))?"
)
LABEL = re.compile(r'(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

Labels = tuple[tuple[str, str], ...]


class ExpositionError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, sample: str | None = None, **labels: str) -> float:
        return self.samples[(sample or self.name, tuple(sorted(labels.items())))]


def _float(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text):
        raise ExpositionError(f"not a number: {text!r}")
    return float(text)


def _labels(text: str | None) -> Labels:
    if not text:
        return ()
    pairs, pos = [], 0
    while pos < len(text):
        match = LABEL.match(text, pos)
        if not match:
            raise ExpositionError(f"bad label set at {text[pos:]!r}")
        value = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), match.group("value"))
        pairs.append((match.group("name"), value))
        pos = match.end()
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ExpositionError(f"repeated label in {text!r}")
    return tuple(sorted(pairs))


def _family_of(sample: str, families: dict[str, Family]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        base = sample[: -len(suffix)] if sample.endswith(suffix) else None
        if base and base in families and families[base].type in ("histogram", "summary"):
            return base
    return sample


def parse_exposition(text: str) -> dict[str, Family]:
    """Families by name. Raises ExpositionError on anything the format does not allow."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    finished: set[str] = set()  # families whose sample block has ended
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.fullmatch(name):
                    raise ExpositionError(f"bad metric name, {where}")
                family = families.setdefault(name, Family(name))
                if name in finished or (family.samples and parts[1] == "TYPE"):
                    raise ExpositionError(f"{parts[1]} after the family's samples, {where}")
                if parts[1] == "TYPE":
                    if family.type != "untyped" or len(parts) != 4 or parts[3] not in TYPES:
                        raise ExpositionError(f"bad or repeated TYPE, {where}")
                    family.type = parts[3]
                else:
                    if family.help is not None:
                        raise ExpositionError(f"repeated HELP, {where}")
                    family.help = parts[3] if len(parts) == 4 else ""
            continue
        match = SAMPLE.fullmatch(line)
        if not match:
            raise ExpositionError(f"not a sample, {where}")
        name = _family_of(match.group("name"), families)
        if name != current:
            if current is not None:
                finished.add(current)
            if name in finished:
                raise ExpositionError(f"samples of {name} are not contiguous, {where}")
            current = name
        family = families.setdefault(name, Family(name))
        if family.type not in ("histogram", "summary") and match.group("name") != name:
            raise ExpositionError(f"sample name does not belong to its family, {where}")
        key = (match.group("name"), _labels(match.group("labels")))
        if key in family.samples:
            raise ExpositionError(f"duplicate series, {where}")
        family.samples[key] = _float(match.group("value"))
    for family in families.values():
        _check_family(family)
    return families


def _check_family(family: Family) -> None:
    if family.type == "counter":
        for (name, labels), value in family.samples.items():
            if not value >= 0:
                raise ExpositionError(f"counter {name}{dict(labels)} is {value}")
    if family.type != "histogram":
        return
    series: dict[Labels, list[tuple[float, float]]] = {}
    for (name, labels), value in family.samples.items():
        if name == family.name + "_bucket":
            le = dict(labels).get("le")
            if le is None:
                raise ExpositionError(f"{name} without le")
            rest = tuple(pair for pair in labels if pair[0] != "le")
            series.setdefault(rest, []).append((_float(le), value))
    if not series:
        raise ExpositionError(f"histogram {family.name} has no buckets")
    for rest, buckets in series.items():
        bounds = [bound for bound, _ in buckets]
        counts = [count for _, count in buckets]
        if bounds != sorted(bounds) or bounds[-1] != math.inf:
            raise ExpositionError(f"{family.name} buckets are not in order ending at +Inf: {bounds}")
        if counts != sorted(counts):
            raise ExpositionError(f"{family.name} buckets are not cumulative: {counts}")
        count = family.samples.get((family.name + "_count", rest))
        total = family.samples.get((family.name + "_sum", rest))
        if count != counts[-1] or total is None:
            raise ExpositionError(f"{family.name}: _count {count} != +Inf bucket {counts[-1]}, or no _sum")


@pytest.mark.parametrize(("text", "problem"), [
    ("# TYPE a counter\na 1", "newline"),
    ("# TYPE a counter\na{x=\"1\"} 1\nb 2\na{x=\"2\"} 3\n", "contiguous"),
    ("# TYPE a counter\na 1\na 2\n", "duplicate"),
    ("# TYPE a counter\na -1\n", "counter"),
    ("# TYPE a counter\n# TYPE a gauge\na 1\n", "TYPE"),
    ("a{x=1} 1\n", "label"),
    ("a{x=\"\\t\"} 1\n", "label"),
    ("a one\n", "number"),
    ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n", "cumulative"),
    ("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n", "+Inf"),
    ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 1\n", "_count"),
])
def test_the_parser_refuses_malformed_expositions(text: str, problem: str) -> None:
    with pytest.raises(ExpositionError, match=re.escape(problem)):
        parse_exposition(text)


# ---- against the server -----------------------------------------------------

def get(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    return fetch(url, method, data)


def scrape(server: EchoServer) -> dict[str, Family]:
    status, headers, body = get(server.url + "/_/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain") and "version=0.0.4" in headers["Content-Type"]
    return parse_exposition(body.decode("utf-8"))


def requests_by_label(families: dict[str, Family]) -> dict[tuple[str, str], float]:
    return {(dict(labels)["method"], dict(labels)["status"]): value
            for (_, labels), value in families["echo_requests_total"].samples.items()}


@pytest.fixture(scope="module")
def server() -> Iterator[EchoServer]:
    """One server for the tests that compare scrapes: each looks only at what moved."""
    running = start_echo("--log", "off")
    yield running
    running.stop()


def test_metrics_are_valid_exposition_with_every_family(server: EchoServer) -> None:
    get(server.url + "/warm-up")
    families = scrape(server)
    expected = {
        "echo_requests_total": "counter",
        "echo_request_duration_seconds": "histogram",
        "echo_history_size": "gauge",
        "echo_store_errors_total": "counter",
    }
    assert {name: families[name].type for name in expected} == expected
    assert all(families[name].help for name in expected)
    buckets = [dict(labels)["le"] for (name, labels) in families["echo_request_duration_seconds"].samples
               if name.endswith("_bucket")]
    assert [float(b) for b in buckets] == [*LATENCY_BUCKETS, math.inf]


# (method, path, counted as): statuses come from _status; unknown tokens count as OTHER.
SENT = [
    ("GET", "/a", ("GET", "2xx")),
    ("GET", "/b?_status=204", ("GET", "2xx")),
    ("POST", "/c?_status=404", ("POST", "4xx")),
    ("PUT", "/d?_status=abc", ("PUT", "4xx")),  # an invalid control: 400
    ("DELETE", "/e?_status=503", ("DELETE", "5xx")),
    ("PATCH", "/f?_status=301&_header=Location:/g", ("PATCH", "3xx")),
    ("PROPFIND", "/g", ("PROPFIND", "2xx")),
    ("FROBNICATE", "/h", ("OTHER", "2xx")),
]


def test_counters_follow_the_requests_sent(server: EchoServer) -> None:
    before = scrape(server)
    before_requests = requests_by_label(before)
    for method, path, _ in SENT:
        get(server.url + path, method=method, data=b"x" if method in ("POST", "PUT", "PATCH") else None)
    after = scrape(server)

    expected: dict[tuple[str, str], float] = {}
    for _, _, key in SENT:
        expected[key] = expected.get(key, 0) + 1
    moved = {key: value - before_requests.get(key, 0) for key, value in requests_by_label(after).items()}
    assert {key: value for key, value in moved.items() if value} == expected

    duration = "echo_request_duration_seconds"
    assert after[duration].value(duration + "_count") - before[duration].value(duration + "_count") == len(SENT)
    assert after[duration].value(duration + "_sum") > before[duration].value(duration + "_sum")
    assert after["echo_history_size"].value() - before["echo_history_size"].value() == len(SENT)


def test_a_slow_answer_lands_above_the_smaller_buckets(server: EchoServer) -> None:
    duration = "echo_request_duration_seconds"
    before = scrape(server)[duration]
    get(server.url + "/slow?_delay=0.3")
    after = scrape(server)[duration]

    def moved(le: str) -> float:
        return after.value(duration + "_bucket", le=le) - before.value(duration + "_bucket", le=le)

    assert moved("0.25") == 0  # it took at least 0.3 s
    assert moved("+Inf") == 1


def test_scrapes_are_not_counted_or_recorded(server: EchoServer) -> None:
    get(server.url + "/one")
    first = scrape(server)
    for _ in range(3):
        scrape(server)
    last = scrape(server)
    assert requests_by_label(last) == requests_by_label(first)
    assert last["echo_history_size"].value() == first["echo_history_size"].value()
    status, _, body = get(server.url + "/_/api/exchanges?limit=1000")
    assert status == 200
    paths = [e["request"]["path"] for e in json.loads(body)["exchanges"]]
    assert paths[0] == "/one" and not [p for p in paths if p.startswith("/_/")]


@pytest.mark.parametrize(("flags", "env"), [
    (("--no-metrics",), None),
    ((), {"ECHO_NO_METRICS": "true"}),
])
def test_no_metrics_turns_the_route_off(echo_server: Callable[..., EchoServer], flags: tuple[str, ...],
                                        env: dict[str, str] | None) -> None:
    server = echo_server("--log", "off", *flags, env=env)
    status, headers, body = get(server.url + "/_/metrics")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert "metrics" in json.loads(body)["error"]
    # ... and the path is the inspector's, so it is still not echoed or recorded.
    status, _, body = get(server.url + "/_/api/exchanges")
    assert json.loads(body)["exchanges"] == []


def test_store_errors_are_counted_while_redis_is_down(echo_server: Callable[..., EchoServer]) -> None:
    need("redis-server", shutil.which("redis-server") is not None, "redis-server")
    redis = start_redis()
    try:
        server = echo_server("--log", "off", "--store", redis.url, "--store-timeout", "0.2")
        get(server.url + "/while-up")
        up = scrape(server)
        assert up["echo_store_errors_total"].value() == 0
        assert up["echo_history_size"].value() == 1
    finally:
        redis.proc.terminate()
        redis.proc.wait(10)
    status, _, _ = get(server.url + "/while-down")
    assert status == 200  # the echo keeps answering
    # The write fails in the write-behind writer, a moment after the answer.
    deadline = time.monotonic() + 10
    down = scrape(server)
    while down["echo_store_errors_total"].value() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        down = scrape(server)
    assert down["echo_store_errors_total"].value() >= 1
    # The store cannot say how much it holds: the gauge is left out, not made up.
    assert down["echo_history_size"].samples == {}


def test_label_values_are_escaped() -> None:
    text = Metrics().render(0, 0, 0, 'v1 "quoted" \\ back\nslash')
    info = parse_exposition(text)["echo_build_info"]
    assert info.value(version='v1 "quoted" \\ back\nslash') == 1
