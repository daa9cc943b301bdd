"""The side-by-side benchmark: Echo against httpbin and a bare Flask app.

Run it with the Python that has Echo installed (the README's `.venv` after
`scripts/test`, or any venv with `pip install .`):

    .venv/bin/python bench/run.py            # full: warm-up + 3 runs x 10 s per target and workload
    .venv/bin/python bench/run.py --quick    # smoke test: 2 s per target and workload, 1 run

Every target is served by waitress with the same thread count and options,
pinned to CPU 0; `wrk` (Debian's package, installed with apt-get when missing)
drives it from CPU 1 with 16 connections. All targets are started first and the
runs are interleaved (workload by workload, each run visiting every target), so
a change in background load hits every target alike. Echo runs with full
capture, controls and history on, and with `--log off`: no target writes an
access log. httpbin (the current release on PyPI) lives in its own venv,
bench/.venv-httpbin, with the same Flask, Werkzeug and waitress as Echo.

History and the stores are priced apart: after each workload's runs, Echo,
`--history 0` and the store targets (and `echo-twin`, a second Echo alike, for
the method's own noise) take turns in 20 short rounds; the history cost and a
store's ratio to in-memory history are the medians of the rounds' ratios.

It prints median req/s, p50/p99 latency and the server's CPU time per request
for each target and workload, the ratios the targets are set on, and Echo's RSS
idle and after 1000 exchanges of 1 KiB and of 64 KiB bodies. A missed target is
reported, never an exit status: the exit status is non-zero only when the
benchmark itself breaks (a server that does not start, a wrong answer, non-2xx
answers under load, wrk missing and not installable).
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
HTTPBIN_VENV = BENCH / ".venv-httpbin"
RESULTS = BENCH / "results"

# The server on one core, the load generator on the other, so that neither
# takes cycles from the other on a 2-core machine.
SERVER_CPU = 0
CLIENT_CPU = 1
CONNECTIONS = 16  # twice the threads: waitress's queue is exercised, as under real load
THREADS = 8  # Echo's default --threads; every target gets the same
WRK_TIMEOUT = "5s"  # wrk's default 2 s would count a slow multipart answer as an error

FULL = {"warmup": 3, "duration": 10, "runs": 3, "rounds": 20, "round_duration": 2}
QUICK = {"warmup": 1, "duration": 2, "runs": 1, "rounds": 2, "round_duration": 1}
# History is priced from short bursts to Echo with and without it, in turns:
# on a shared machine one disturbed 10 s pair moves the median of three by
# several points, while 20 rounds of 2 s (80 s per workload) need many
# disturbed rounds to move theirs, and their quartiles show the spread.

# A 1-minute load average above this at the start means something else is
# using the cores the benchmark pins to; the run goes on, with a warning.
BUSY_LOAD = 0.5
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MEMORY_EXCHANGES = 1000  # Echo's default --history: the history is full at the end
SMALL_BODY = 1024
LARGE_BODY = 64 * 1024  # Echo's default --keep-body: kept whole
UPLOAD_BODY = 100 * 1024
BOUNDARY = "----echo-bench-boundary-7d3f"

# The targets Echo's performance is held to, all measured in one run.
GET_VS_HTTPBIN = 1.5
GET_VS_CEILING = 0.8
POST_VS_HTTPBIN = 2.0
HTTPBIN_GET_VS_HTTPBIN = 2.0  # GET /get with --httpbin: a drop-in should be faster than what it replaces
HISTORY_COST = 0.05
# Stores against in-memory history (SPEC section 13), and 100 rules that never match against none (section 10).
SQLITE_VS_MEMORY = 0.9
REDIS_VS_MEMORY = 0.85
RULES_VS_NONE = 0.95
RULES_LOADED = 100
RSS_SMALL_MIB = 64
RSS_LARGE_MIB = 140

ALL_TARGETS = ("echo", "echo-nohistory", "echo-log", "echo-sqlite", "echo-redis", "echo-twin", "echo-rules",
               "echo-httpbin", "httpbin", "flask-hello")
# The targets priced against Echo in alternating rounds after each workload's
# runs, when Echo and at least one of them run: a store's ratio is then read
# from rounds seconds apart, as the history cost is, and not from three 10 s
# runs a minute apart. `echo-twin` is a second Echo exactly like `echo`: its
# ratio is the method's own noise on this machine, against which the others'
# distance from 1 can be read.
ROUND_TARGETS = ("echo", "echo-nohistory", "echo-sqlite", "echo-redis", "echo-twin")
# workload -> round target -> its ratios to Echo (req/s and CPU per request), per round
Rounds = dict[str, dict[str, list[dict[str, float]]]]
DEFAULT_TARGETS = ("echo", "echo-nohistory", "echo-httpbin", "httpbin", "flask-hello")
ALL_WORKLOADS = ("get", "post-json", "multipart", "httpbin-get")


class BenchError(RuntimeError):
    """The benchmark itself broke: exit non-zero."""


# ---- request bodies -----------------------------------------------------------

def json_body(size: int) -> bytes:
    """A webhook-like JSON document (a list of small objects) of exactly `size` bytes."""
    events: list[dict[str, object]] = []
    doc: dict[str, object] = {"type": "order.updated", "id": "evt_0001", "events": events, "pad": ""}
    n = 0
    while len(json.dumps(doc, separators=(",", ":"))) < size - 120:
        n += 1
        events.append({"seq": n, "sku": f"SKU-{n:05d}", "qty": n % 7 + 1, "price": round(n * 1.25, 2),
                       "ok": n % 3 != 0})
    events.pop()
    doc["pad"] = "x" * (size - len(json.dumps(doc, separators=(",", ":"))))
    data = json.dumps(doc, separators=(",", ":")).encode()
    assert len(data) == size, len(data)
    return data


def multipart_body(size: int) -> tuple[bytes, str]:
    """A form field and a CSV file upload, `size` bytes in all, and its Content-Type."""
    head = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnightly export\r\n"
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"export.csv\"\r\n"
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    room = size - len(head) - len(tail)
    lines: list[bytes] = []
    n = 0
    while sum(map(len, lines)) < room:
        n += 1
        lines.append(f"{n},SKU-{n:05d},{n % 7 + 1},{n * 1.25:.2f}\n".encode())
    data = head + b"".join(lines)[:room] + tail
    assert len(data) == size
    return data, f"multipart/form-data; boundary={BOUNDARY}"


# ---- workloads and targets ------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    name: str
    label: str
    method: str
    path: str
    content_type: str | None = None
    body: bytes = b""
    # The targets it runs on (None: every target but those kept to named workloads),
    # and the Echo target its Echo/httpbin ratio is read from.
    targets: frozenset[str] | None = None
    echo: str = "echo"


def workloads() -> list[Workload]:
    upload, upload_type = multipart_body(UPLOAD_BODY)
    return [
        Workload("get", "GET /anything?a=1&b=2", "GET", "/anything?a=1&b=2"),
        Workload("post-json", "POST 1 KiB JSON", "POST", "/anything", "application/json", json_body(SMALL_BODY)),
        Workload("multipart", "POST 100 KiB multipart", "POST", "/anything", upload_type, upload),
        # httpbin mode against httpbin on the route both serve: the drop-in of SPEC section 8.
        Workload("httpbin-get", "GET /get (httpbin mode)", "GET", "/get?a=1&b=2",
                 targets=frozenset({"echo-httpbin", "httpbin"}), echo="echo-httpbin"),
    ]


@dataclass
class Target:
    name: str
    label: str
    command: Callable[[int], list[str]]  # port -> argv
    check: Callable[[Workload, int, bytes], str | None]  # what is wrong with an answer, or None
    workloads: frozenset[str] | None = None  # the only workloads it runs (None: all that take it)


def runs_on(target: Target, workload: Workload) -> bool:
    if workload.targets is not None:
        return target.name in workload.targets
    return target.workloads is None


def _echo_check(workload: Workload, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"status {status}"
    doc = json.loads(body)
    if workload.name == "get" and doc.get("args") != {"a": ["1"], "b": ["2"]}:
        return f"args {doc.get('args')!r}"
    if workload.name == "post-json" and doc.get("json") != json.loads(workload.body):
        return "json not echoed"
    if workload.name == "multipart" and not doc.get("files", {}).get("file"):
        return f"files {doc.get('files')!r}"
    if doc.get("body", {}).get("size") != len(workload.body):
        return f"body size {doc.get('body', {}).get('size')}"
    return None


def _httpbin_check(workload: Workload, status: int, body: bytes) -> str | None:
    if status != 200:
        return f"status {status}"
    doc = json.loads(body)
    if workload.name in ("get", "httpbin-get") and doc.get("args") != {"a": "1", "b": "2"}:
        return f"args {doc.get('args')!r}"
    if workload.name == "post-json" and doc.get("json") != json.loads(workload.body):
        return "json not echoed"
    if workload.name == "multipart" and "file" not in doc.get("files", {}):
        return f"files {list(doc.get('files', {}))!r}"
    return None


def _hello_check(workload: Workload, status: int, body: bytes) -> str | None:
    return None if status == 200 and body == b"Hello, World!" else f"status {status}, body {body[:60]!r}"


def echo_command(python: str, *extra: str, log: str = "off") -> Callable[[int], list[str]]:
    script = Path(python).with_name("echo-server")
    base = [str(script)] if script.exists() else [python, "-m", "echo"]

    def command(port: int) -> list[str]:
        return [*base, "--host", "127.0.0.1", "--port", str(port), "--threads", str(THREADS), "--log", log, *extra]

    return command


def peer_command(python: str, app: str, *path: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        argv = [python, str(BENCH / "serve.py"), app, "--port", str(port), "--threads", str(THREADS)]
        for entry in path:
            argv += ["--path", entry]
        return argv

    return command


# ---- tools ------------------------------------------------------------------------

def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk not found: install Debian's wrk package (apt-get install wrk)")
    print("wrk not found: installing Debian's wrk package", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk not found and apt-get could not install it")
    return found


def pinning() -> tuple[list[str], list[str], str]:
    """taskset prefixes for the server and the client, and a line saying how they run."""
    cpus = os.sched_getaffinity(0)
    if shutil.which("taskset") and {SERVER_CPU, CLIENT_CPU} <= cpus:
        return (["taskset", "-c", str(SERVER_CPU)], ["taskset", "-c", str(CLIENT_CPU)],
                f"servers on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}")
    return [], [], f"NOT pinned (CPUs {sorted(cpus)}, taskset {'found' if shutil.which('taskset') else 'missing'})"


def ensure_httpbin(python: str, quiet: bool) -> tuple[str, str] | None:
    """bench/.venv-httpbin's python and httpbin's version, or None when it cannot be had."""
    venv_python = HTTPBIN_VENV / "bin" / "python"
    if not venv_python.exists():
        made = subprocess.run([python, "-m", "venv", str(HTTPBIN_VENV)], capture_output=True, text=True)
        if made.returncode != 0:
            print(f"could not create {HTTPBIN_VENV}: {made.stderr.strip()}", flush=True)
            return None
    # The same framework and server versions as Echo's, so that only the apps differ.
    pins = []
    for name in ("flask", "werkzeug", "waitress"):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    pip = [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade"]
    for attempt in (["httpbin", *pins], ["httpbin", "waitress"]):
        try:
            done = subprocess.run(pip + attempt, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            continue
        if done.returncode == 0:
            break
        if not quiet:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"pip install {' '.join(attempt)} failed: {last}", flush=True)
    # An install that failed now (offline) may still have left an earlier httpbin.
    version = subprocess.run(
        [str(venv_python), "-c", "import httpbin, importlib.metadata as m; print(m.version('httpbin'))"],
        capture_output=True, text=True,
    )
    if version.returncode != 0:
        return None
    return str(venv_python), version.stdout.strip()


# ---- servers ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def request(port: int, workload: Workload, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": workload.content_type} if workload.content_type else {}
        conn.request(workload.method, workload.path, body=workload.body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


class Server:
    """One target's process on a free port, pinned, with its output in a log file."""

    def __init__(self, command: Callable[[int], list[str]], prefix: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.argv = [*prefix, *command(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, probe: Workload) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{' '.join(self.argv)} exited with {self.proc.returncode}:\n{self.output()[-2000:]}")
            try:
                request(self.port, probe)
                return
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"{' '.join(self.argv)} did not answer within {START_TIMEOUT:g} s:\n{self.output()[-2000:]}")

    def _proc_file(self, name: str) -> str:
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/{name}").read_text()

    def rss_mib(self) -> float:
        for line in self._proc_file("status").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise BenchError("no VmRSS in /proc/<pid>/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        fields = self._proc_file("stat").rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- wrk --------------------------------------------------------------------------------

@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    socket_errors: int
    cpu_us: float = 0.0  # the server's CPU time (user + system) per request


@dataclass
class Result:
    target: str
    workload: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    samples: list[Sample] = field(default_factory=list)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Sample:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise BenchError(f"cannot read wrk's output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise BenchError(f"{non_2xx.group(1)} non-2xx/3xx answers under load:\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = sum(int(n) for n in errors.groups()) if errors else 0
    return Sample(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(total.group(1)), socket_errors)


def wrk(wrk_bin: str, prefix: list[str], server: Server, workload: Workload, seconds: int,
        body_file: Path | None) -> Sample:
    argv = [*prefix, wrk_bin, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", WRK_TIMEOUT]
    if workload.body:
        assert body_file is not None and workload.content_type
        argv += ["-s", str(BENCH / "body.lua")]
    argv.append(f"http://127.0.0.1:{server.port}{workload.path}")
    if workload.body:
        argv += ["--", workload.method, workload.content_type or "", str(body_file)]
    cpu = server.cpu_seconds()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    cpu = server.cpu_seconds() - cpu
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    sample = parse_wrk(done.stdout)
    sample.cpu_us = cpu / max(sample.requests, 1) * 1e6
    return sample


# ---- the run ------------------------------------------------------------------------------

def run_order(targets: list[Target], run: int) -> list[Target]:
    """The order of the targets in one run.

    Each run starts with a different target, so none is always first after a
    warm-up. Echo with and without history run back to back, in turns first,
    so that the history cost is read from pairs measured seconds apart: a
    machine that slows down between runs moves both halves of a pair.
    """
    order = targets[run % len(targets):] + targets[:run % len(targets)]
    names = [t.name for t in order]
    if "echo" in names and "echo-nohistory" in names:
        off = order.pop(names.index("echo-nohistory"))
        at = [t.name for t in order].index("echo")
        order.insert(at + 1 if run % 2 == 0 else at, off)
    return order


def alternate(servers: dict[str, Server], base: str, workload: Workload, plan: dict[str, int], wrk_bin: str,
              prefix: list[str], body_file: Path | None) -> list[dict[str, dict[str, float]]]:
    """Per round, one short burst to each server, the first of them turning each
    round: every other server's req/s and CPU per request over `base`'s in that round."""
    names = list(servers)
    rounds = []
    for i in range(plan["rounds"]):
        turn = i % len(names)
        got = {name: wrk(wrk_bin, prefix, servers[name], workload, plan["round_duration"], body_file)
               for name in names[turn:] + names[:turn]}
        rounds.append({name: {"rps": sample.rps / got[base].rps, "cpu_us": sample.cpu_us / got[base].cpu_us}
                       for name, sample in got.items() if name != base})
    return rounds


def price_history(on: Server, off: Server, workload: Workload, plan: dict[str, int], wrk_bin: str,
                  prefix: list[str], body_file: Path | None) -> list[dict[str, float]]:
    """Echo's req/s and CPU per request with history over without, per round of
    one short burst to each, the first of the two taking turns."""
    return [r["on"] for r in alternate({"off": off, "on": on}, "off", workload, plan, wrk_bin, prefix, body_file)]


def run_load(targets: list[Target], loads: list[Workload], plan: dict[str, int], wrk_bin: str,
             pins: tuple[list[str], list[str]], scratch: Path
             ) -> tuple[list[Result], dict[str, int], dict[str, list[dict[str, float]]], Rounds]:
    """Every target up at once (idle ones cost nothing), runs interleaved, then the
    rounds; results, queue-log counts, each workload's history rounds and the
    other round targets' ratios to Echo per workload."""
    body_files = {}
    for workload in loads:
        if workload.body:
            body_files[workload.name] = scratch / f"{workload.name}.body"
            body_files[workload.name].write_bytes(workload.body)
    servers = {t.name: Server(t.command, pins[0], scratch / f"{t.name}.log") for t in targets}
    results = []
    history_rounds: dict[str, list[dict[str, float]]] = {}
    store_rounds: Rounds = {}
    try:
        for target in targets:
            servers[target.name].start(next(w for w in loads if runs_on(target, w)))
        all_targets = targets
        for workload in loads:
            targets = [t for t in all_targets if runs_on(t, workload)]
            body_file = body_files.get(workload.name)
            samples: dict[str, list[Sample]] = {t.name: [] for t in targets}
            for target in targets:
                server = servers[target.name]
                wrong = target.check(workload, *request(server.port, workload))
                if wrong:
                    raise BenchError(f"{target.label} answered {workload.label} wrongly: {wrong}")
                wrk(wrk_bin, pins[1], server, workload, plan["warmup"], body_file)
            for run in range(plan["runs"]):
                for target in run_order(targets, run):
                    sample = wrk(wrk_bin, pins[1], servers[target.name], workload, plan["duration"], body_file)
                    samples[target.name].append(sample)
                    print(f"  {workload.label:<24} {target.label:<24} run {run + 1}: {sample.rps:>7.0f} req/s  "
                          f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:7.2f} ms  cpu {sample.cpu_us:5.0f} us/req"
                          + (f"  {sample.socket_errors} socket errors" if sample.socket_errors else ""), flush=True)
            for target in targets:
                got = samples[target.name]
                results.append(Result(
                    target.name, workload.name,
                    rps=statistics.median(s.rps for s in got),
                    p50_ms=statistics.median(s.p50_ms for s in got),
                    p99_ms=statistics.median(s.p99_ms for s in got),
                    cpu_us=statistics.median(s.cpu_us for s in got),
                    samples=got,
                ))
            group = [t.name for t in targets if t.name in ROUND_TARGETS]
            if "echo" in group and len(group) > 1 and plan["rounds"]:
                rounds = alternate({name: servers[name] for name in group}, "echo", workload, plan, wrk_bin,
                                   pins[1], body_file)
                for name in group:
                    if name == "echo":
                        continue
                    of_name = [r[name] for r in rounds]
                    if name == "echo-nohistory":  # kept as with over without, as the cost is read
                        history_rounds[workload.name] = [{what: 1 / r[what] for what in r} for r in of_name]
                    else:
                        store_rounds.setdefault(workload.name, {})[name] = of_name
                    ratios = sorted(r["rps"] for r in of_name)
                    print(f"  {workload.label:<24} rounds: {len(rounds)} x {plan['round_duration']} s, "
                          f"{name}/echo req/s from {ratios[0]:.2f} to {ratios[-1]:.2f}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return (results, {t.label: servers[t.name].output().count("Task queue depth") for t in all_targets},
            history_rounds, store_rounds)


def measure_memory(python: str, scratch: Path) -> dict[str, float]:
    """Echo's RSS idle, after 1000 exchanges of 1 KiB JSON bodies, then after 1000 of 64 KiB."""
    server = Server(echo_command(python), [], scratch / "echo-memory.log")
    small = Workload("small", "1 KiB", "POST", "/anything", "application/json", json_body(SMALL_BODY))
    large = Workload("large", "64 KiB", "POST", "/anything", "application/json", json_body(LARGE_BODY))
    rss: dict[str, float] = {}
    try:
        server.start(Workload("get", "GET", "GET", "/anything?a=1&b=2"))
        time.sleep(0.5)
        rss["idle"] = server.rss_mib()
        for name, workload in (("after_1kib", small), ("after_64kib", large)):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                for _ in range(MEMORY_EXCHANGES):
                    status, _ = request(server.port, workload, conn)
                    if status != 200:
                        raise BenchError(f"memory run: {workload.label} body answered {status}")
            finally:
                conn.close()
            time.sleep(0.5)
            rss[name] = server.rss_mib()
    finally:
        server.stop()
    return rss


# ---- the report ------------------------------------------------------------------------------

Check = tuple[str, str, "bool | None"]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _x(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.2f}x"


def report(results: list[Result], rss: dict[str, float] | None, labels: dict[str, str],
           loads: list[Workload], history_rounds: dict[str, list[dict[str, float]]],
           store_rounds: Rounds | None = None) -> tuple[str, list[Check]]:
    by = {(r.target, r.workload): r for r in results}

    def get(target: str, load: str, what: str) -> float | None:
        found = by.get((target, load))
        return getattr(found, what) if found else None

    lines = [f"{'workload':<24} {'target':<24} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10}"]
    for workload in loads:
        for name, label in labels.items():
            r = by.get((name, workload.name))
            if r:
                lines.append(f"{workload.label:<24} {label:<24} {r.rps:>7.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
                             f" {r.cpu_us:>10.0f}")
        lines.append("")

    def history_ratios(load: str, what: str) -> list[float]:
        """With/without history, per history round; per run's back-to-back pair when there were no rounds."""
        if history_rounds.get(load):
            return [r[what] for r in history_rounds[load]]
        on, off = by.get(("echo", load)), by.get(("echo-nohistory", load))
        if not on or not off or len(on.samples) != len(off.samples):
            return []
        return [getattr(a, what) / getattr(b, what) for a, b in zip(on.samples, off.samples, strict=True) if getattr(b, what)]

    def as_cost(value: float, what: str) -> float:
        # Fewer req/s and more CPU per request are both a positive cost.
        return 1 - value if what == "rps" else value - 1

    def history_cost(load: str, what: str) -> float | None:
        ratios = history_ratios(load, what)
        return as_cost(statistics.median(ratios), what) if ratios else None

    def history_spread(load: str) -> str:
        ratios = history_ratios(load, "rps")
        if len(ratios) < 4:
            return ""
        low, _, high = statistics.quantiles(ratios, n=4)
        return f" [middle half {as_cost(high, 'rps'):+.1%} .. {as_cost(low, 'rps'):+.1%}]"

    lines.append("ratios of median req/s (and, steadier on a busy machine, of CPU time per request); the history "
                 "cost is the median over the history rounds (over the runs' back-to-back pairs with --rounds 0)")
    for workload in loads:
        w, e = workload.name, workload.echo
        cost = history_cost(w, "rps")
        cpu_cost = history_cost(w, "cpu_us")
        lines.append(
            f"  {workload.label:<24} Echo/httpbin {_x(ratio(get(e, w, 'rps'), get('httpbin', w, 'rps')))}"
            f" ({_x(ratio(get('httpbin', w, 'cpu_us'), get(e, w, 'cpu_us')))})"
            f"  Echo/ceiling {_x(ratio(get('echo', w, 'rps'), get('flask-hello', w, 'rps')))}"
            f" ({_x(ratio(get('flask-hello', w, 'cpu_us'), get('echo', w, 'cpu_us')))})"
            f"  history cost {'n/a' if cost is None else f'{cost:+.1%}'}"
            f" ({'n/a' if cpu_cost is None else f'{cpu_cost:+.1%}'}){history_spread(w)}"
        )
    rounds_of = store_rounds or {}
    for workload in loads:
        for name, got in rounds_of.get(workload.name, {}).items():
            ratios = [r["rps"] for r in got]
            low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            cpu = statistics.median(r["cpu_us"] for r in got)
            lines.append(f"  {workload.label:<24} {labels.get(name, name)}/echo in {len(got)} rounds "
                         f"{statistics.median(ratios):.2f}x [middle half {low:.2f}x .. {high:.2f}x]"
                         f" ({1 / cpu:.2f}x by CPU per request)"
                         + ("  (two alike: the method's noise)" if name == "echo-twin" else ""))
    lines.append("")

    def against_memory(target: str, load: str) -> float | None:
        """A store's req/s over memory history's: the median of the rounds' ratios
        when it ran in rounds, else the ratio of the runs' medians."""
        got = rounds_of.get(load, {}).get(target)
        if got:
            return statistics.median(r["rps"] for r in got)
        return ratio(get(target, load, "rps"), get("echo", load, "rps"))

    checks: list[Check] = []

    def check(text: str, value: float | None, ok: Callable[[float], bool], shown: str) -> None:
        checks.append((text, "n/a" if value is None else shown.format(value), None if value is None else ok(value)))

    check(f"GET Echo/httpbin >= {GET_VS_HTTPBIN}x", ratio(get("echo", "get", "rps"), get("httpbin", "get", "rps")),
          lambda v: v >= GET_VS_HTTPBIN, "{:.2f}x")
    check(f"GET Echo/ceiling >= {GET_VS_CEILING}x",
          ratio(get("echo", "get", "rps"), get("flask-hello", "get", "rps")), lambda v: v >= GET_VS_CEILING, "{:.2f}x")
    check(f"1 KiB JSON POST Echo/httpbin >= {POST_VS_HTTPBIN}x",
          ratio(get("echo", "post-json", "rps"), get("httpbin", "post-json", "rps")),
          lambda v: v >= POST_VS_HTTPBIN, "{:.2f}x")
    check(f"GET /get (httpbin mode) Echo/httpbin >= {HTTPBIN_GET_VS_HTTPBIN}x",
          ratio(get("echo-httpbin", "httpbin-get", "rps"), get("httpbin", "httpbin-get", "rps")),
          lambda v: v >= HTTPBIN_GET_VS_HTTPBIN, "{:.2f}x")
    for load, label in (("get", "GET"), ("post-json", "1 KiB JSON POST")):
        check(f"{label}: SQLite history/memory >= {SQLITE_VS_MEMORY}x", against_memory("echo-sqlite", load),
              lambda v: v >= SQLITE_VS_MEMORY, "{:.2f}x")
        check(f"{label}: Redis history/memory >= {REDIS_VS_MEMORY}x", against_memory("echo-redis", load),
              lambda v: v >= REDIS_VS_MEMORY, "{:.2f}x")
    check(f"GET: {RULES_LOADED} rules/none >= {RULES_VS_NONE}x", ratio(get("echo-rules", "get", "rps"),
          get("echo", "get", "rps")), lambda v: v >= RULES_VS_NONE, "{:.2f}x")
    for workload in loads:
        check(f"{workload.label}: Echo p99 <= httpbin's",
              ratio(get(workload.echo, workload.name, "p99_ms"), get("httpbin", workload.name, "p99_ms")),
              lambda v: v <= 1.0, "{:.2f} of it")
    for workload in loads:
        if workload.targets is not None and "echo" not in workload.targets:
            continue  # Echo with and without history do not run it
        check(f"{workload.label}: history costs <= {HISTORY_COST:.0%}", history_cost(workload.name, "rps"),
              lambda v: v <= HISTORY_COST, "{:+.1%}")
    if rss:
        lines.append(f"Echo RSS (default --history 1000 and --keep-body 65536; {MEMORY_EXCHANGES} sequential "
                     "JSON POSTs per size)")
        lines.append(f"  idle {rss['idle']:.1f} MiB, after 1 KiB bodies {rss['after_1kib']:.1f} MiB, "
                     f"after 64 KiB bodies {rss['after_64kib']:.1f} MiB")
        lines.append("")
        check(f"RSS after 1000 x 1 KiB <= {RSS_SMALL_MIB} MiB", rss["after_1kib"], lambda v: v <= RSS_SMALL_MIB,
              "{:.1f} MiB")
        check(f"RSS after 1000 x 64 KiB <= {RSS_LARGE_MIB} MiB", rss["after_64kib"], lambda v: v <= RSS_LARGE_MIB,
              "{:.1f} MiB")
    lines.append("targets")
    for text, shown, ok in checks:
        lines.append(f"  {'n/a ' if ok is None else ('met ' if ok else 'MISS')} {text:<52} {shown}")
    return "\n".join(lines), checks


# ---- main ------------------------------------------------------------------------------------

def build_targets(wanted: list[str], python: str, quick: bool, notes: list[str]) -> list[Target]:
    targets = []
    for name in wanted:
        if name == "echo":
            targets.append(Target(name, "echo", echo_command(python), _echo_check))
        elif name == "echo-nohistory":
            targets.append(Target(name, "echo --history 0", echo_command(python, "--history", "0"), _echo_check))
        elif name == "echo-log":
            # The access log priced: `echo` with --log text, its stdout going to a file.
            targets.append(Target(name, "echo --log text", echo_command(python, log="text"), _echo_check))
        elif name == "echo-sqlite":
            # History in an SQLite file (a fresh one per run), written in batches by its writer thread.
            database = Path(tempfile.mkdtemp(prefix="echo-bench-")) / "history.db"
            targets.append(Target(name, "echo --store sqlite", echo_command(python, "--store", f"sqlite:///{database}"),
                                  _echo_check))
        elif name == "echo-twin":
            targets.append(Target(name, "echo (twin)", echo_command(python), _echo_check))
        elif name == "echo-redis":
            # History in a redis-server of its own (no persistence), on this machine's cores too.
            url = start_redis(notes)
            if url is None:
                continue
            targets.append(Target(name, "echo --store redis", echo_command(python, "--store", url), _echo_check))
        elif name == "echo-rules":
            # 100 rules loaded, none of which matches the workloads: what looking them up costs.
            rules = Path(tempfile.mkdtemp(prefix="echo-bench-")) / "rules.toml"
            # Three shapes in turn: a path alone, a method and a header, a method, path and query.
            shapes = ("path:/api{i}/*", "method:PUT header:X-Rule-{i}", "method:POST path:/api{i}/* query:k{i}")
            rules.write_text("".join(
                f'[[rule]]\nname = "r{i}"\nmatch = "{shapes[i % 3].format(i=i)}"\nrespond = {{ status = 503 }}\n'
                for i in range(RULES_LOADED)))
            targets.append(Target(name, f"echo, {RULES_LOADED} rules", echo_command(python, "--rules", str(rules)),
                                  _echo_check))
        elif name == "echo-httpbin":
            # Echo as the httpbin drop-in; it answers as httpbin does, so httpbin's check applies.
            targets.append(Target(name, "echo --httpbin", echo_command(python, "--httpbin"), _httpbin_check,
                                  workloads=frozenset({"httpbin-get"})))
        elif name == "httpbin":
            found = ensure_httpbin(python, quiet=quick)
            if found is None:
                if not quick:
                    raise BenchError("httpbin could not be installed into bench/.venv-httpbin (offline?); "
                                     "run with --targets echo,echo-nohistory,flask-hello to measure the rest")
                notes.append("httpbin could not be installed (offline?): skipped")
                continue
            venv_python, version = found
            targets.append(Target(name, f"httpbin {version}", peer_command(venv_python, "httpbin:app"),
                                  _httpbin_check))
        elif name == "flask-hello":
            targets.append(Target(name, "flask hello (ceiling)",
                                  peer_command(python, "flask_hello:app", str(BENCH / "apps")), _hello_check))
    return targets


_REDIS: list[subprocess.Popen[bytes]] = []


def start_redis(notes: list[str]) -> str | None:
    """A throwaway redis-server on a free 127.0.0.1 port (stopped at exit), or None with a note."""
    binary = shutil.which("redis-server")
    if binary is None:
        notes.append("echo-redis: redis-server not found: skipped")
        return None
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    _REDIS.append(proc)
    atexit.register(proc.terminate)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"redis-server on port {port} did not answer within {START_TIMEOUT:g} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Echo vs httpbin vs a bare Flask app, on waitress, driven by wrk.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1 s warm-up, one 2 s run per target and workload; httpbin is skipped "
                             "when it cannot be installed")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma-separated, from {', '.join(ALL_TARGETS)} (echo-log: Echo with --log text; "
                        "echo-sqlite: history in an SQLite file; echo-redis: history in a redis-server the run "
                        f"starts; echo-twin: a second Echo alike, whose ratio to Echo in the rounds is the "
                        f"method's noise; echo-rules: {RULES_LOADED} rules that never match)")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                        help=f"comma-separated: {', '.join(ALL_WORKLOADS)} (GET /get, Echo with --httpbin vs httpbin)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 10, --quick 2)")
    parser.add_argument("--runs", type=int, help="runs per target and workload; medians are shown (default 3, --quick 1)")
    parser.add_argument("--rounds", type=int,
                        help="rounds per workload: a short burst to Echo and to each of --history 0, the stores and "
                             "the twin that run, in turns (default 20 of 2 s, --quick 2 of 1 s; 0 prices history "
                             "from the runs' pairs and the stores from the runs' medians)")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS measurement")
    parser.add_argument("--history-memory", action="store_true",
                        help="also measure, by bench/memory.py, RSS after 100,000 small GETs kept (--history 100000) "
                             "and the time to list 50 of them through the API")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/latest.json)")
    args = parser.parse_args(argv)

    plan = dict(QUICK if args.quick else FULL)
    if args.duration:
        plan["duration"] = args.duration
    if args.runs:
        plan["runs"] = args.runs
    if args.rounds is not None:
        if args.rounds < 0:
            parser.error("--rounds must be 0 or more")
        plan["rounds"] = args.rounds
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(wanted) - set(ALL_TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(names) - set(ALL_WORKLOADS):
        parser.error(f"unknown workloads: {', '.join(sorted(set(names) - set(ALL_WORKLOADS)))}")
    loads = [w for w in workloads() if w.name in names]
    if not loads or not wanted:
        parser.error("nothing to run")

    python = sys.executable
    try:
        import echo  # noqa: F401 - only to fail early with a clear line
    except ImportError:
        print("benchmark failed: Echo is not installed in this Python; run it with .venv/bin/python "
              "(after scripts/test) or pip install . first", file=sys.stderr)
        return 1

    scratch = Path(tempfile.mkdtemp(prefix="echo-bench-"))
    try:
        wrk_bin = ensure_wrk()
        server_pin, client_pin, pinned = pinning()
        notes = [
            f"{pinned}; wrk -t1 -c{CONNECTIONS}; waitress threads={THREADS}; warm-up {plan['warmup']} s, then "
            f"{plan['runs']} x {plan['duration']} s per target and workload, interleaved; medians; "
            + (f"then {plan['rounds']} rounds of {plan['round_duration']} s, Echo and those of "
               f"{', '.join(ROUND_TARGETS[1:])} that run taking turns"
               if plan["rounds"] else "history priced from the runs' back-to-back pairs"),
            "Echo with full capture, controls and history on; no target writes an access log (Echo --log off); "
            "the waitress.queue logger at ERROR for every target",
        ]
        targets = build_targets(wanted, python, args.quick, notes)
        # A target no chosen workload runs on is not started at all.
        targets = [t for t in targets if any(runs_on(t, w) for w in loads)]
        if not targets:
            raise BenchError("no chosen target runs the chosen workloads")
        load = os.getloadavg()[0]
        if load > BUSY_LOAD:
            notes.append(f"load average {load:.2f} at the start: something else is busy, so req/s and latency "
                         "suffer unevenly; CPU time per request is the steadier figure")
        print("\n".join(notes), flush=True)
        results, queue_lines, history_rounds, store_rounds = run_load(
            targets, loads, plan, wrk_bin, (server_pin, client_pin), scratch)
        rss = None if args.no_memory else measure_memory(python, scratch)
        kept: dict[str, Any] | None = None
        if args.history_memory:
            import memory  # bench/memory.py, beside this file (its directory is first on sys.path)
            kept = {"rss": memory.rss_after(scratch), "list": memory.list_of_kept(scratch)}
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        print(f"server logs are in {scratch}", file=sys.stderr)
        return 1

    labels = {t.name: t.label for t in targets}
    table, checks = report(results, rss, labels, loads, history_rounds, store_rounds)
    print()
    print("\n".join(notes))
    print("'Task queue depth' lines logged: " + ", ".join(f"{k} {v}" for k, v in queue_lines.items()))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print()
    print(table)
    if kept is not None:
        memory.report_rss(kept["rss"])
        memory.report_list(kept["list"])
    out = args.json or RESULTS / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "plan": plan, "notes": notes, "targets": labels, "rss_mib": rss, "queue_log_lines": queue_lines,
        "results": [asdict(r) for r in results], "history_rounds": history_rounds,
        "store_rounds": store_rounds, "history_memory": kept,
        "checks": [{"target": text, "value": shown, "met": ok} for text, shown, ok in checks],
    }, indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
