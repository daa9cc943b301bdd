"""History's costs, measured apart from the side-by-side run: what recording costs
in req/s, what 100,000 kept exchanges cost in memory, and how fast a page of
them is listed.

    .venv/bin/python bench/memory.py ab                  # history 1000 against --history 0, interleaved
    .venv/bin/python bench/memory.py rss                 # RSS after 100,000 small GETs, --history 100000
    .venv/bin/python bench/memory.py list                # list 50 of 100,000 kept, memory store
    .venv/bin/python bench/memory.py list --store redis://127.0.0.1:6379/0   # the same on another store

`ab` keeps both servers alive at once and alternates short wrk rounds between
them (the first of each pair taking turns), so that whatever else the machine
does lands on both; it prints the median of the rounds' req/s ratios and their
middle half (25th to 75th percentile). `rss` and `list` fill the history with
a fast client: one keep-alive connection, requests pipelined in batches, each
answer read to its end. RSS is the server's VmRSS from /proc; the list time is
the median wall time of `GET {prefix}api/exchanges?limit=50` over keep-alive
requests, first request not counted.

`bench/run.py --history-memory` runs `rss` and `list` after its own figures.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402 - bench/run.py, beside this file

KEPT = 100_000
SMALL_GET = "/anything?a=1&b=2"  # the side-by-side benchmark's GET
PIPELINE = 64  # requests written before their answers are read
LIST_PAGE = 50
LIST_TIMES = 30
UI_PREFIX = "/_/"
# Issue 20's targets, reported beside the figures (never an exit status).
HISTORY_COST = 0.05
RSS_100K_MIB = 200
LIST_MS = 20.0


def fill(port: int, count: int, path: str = SMALL_GET) -> None:
    """`count` GETs on one keep-alive connection, pipelined, each 200 answer read whole."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        buffer = b""
        left = count
        while left:
            batch = min(PIPELINE, left)
            sock.sendall(request * batch)
            for _ in range(batch):
                while (end := buffer.find(b"\r\n\r\n")) < 0:
                    buffer += _recv(sock)
                head = buffer[:end].decode("latin-1")
                if not head.startswith("HTTP/1.1 200"):
                    raise run.BenchError(f"fill: answered {head.splitlines()[0]!r}")
                length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                              if line.lower().startswith("content-length:"))
                while len(buffer) < end + 4 + length:
                    buffer += _recv(sock)
                buffer = buffer[end + 4 + length:]
            left -= batch


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(1 << 20)
    if not data:
        raise run.BenchError("fill: the server closed the connection")
    return data


def echo_server(scratch: Path, name: str, *extra: str) -> run.Server:
    server = run.Server(run.echo_command(sys.executable, *extra), [], scratch / f"{name}.log")
    server.start(run.Workload("get", "GET", "GET", SMALL_GET))
    return server


def rss_after(scratch: Path, count: int = KEPT, store: str | None = None) -> dict[str, float]:
    """The server's RSS idle and after `count` small GETs, with history kept for all of them."""
    server = echo_server(scratch, "echo-rss", "--history", str(count), *(["--store", store] if store else []))
    try:
        time.sleep(0.5)
        idle = server.rss_mib()
        began = time.monotonic()
        fill(server.port, count)
        took = time.monotonic() - began
        time.sleep(0.5)
        after = server.rss_mib()
    finally:
        server.stop()
    return {"exchanges": count, "idle_mib": idle, "after_mib": after,
            "bytes_per_exchange": (after - idle) * 1024 * 1024 / count, "fill_seconds": took}


def list_time(port: int, limit: int = LIST_PAGE, times: int = LIST_TIMES) -> dict[str, float]:
    """Median and worst wall time of listing `limit` exchanges through the API."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    took = []
    try:
        for i in range(times + 1):
            began = time.perf_counter()
            conn.request("GET", f"{UI_PREFIX}api/exchanges?limit={limit}")
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - began) * 1000
            if response.status != 200 or body.count(b'"id"') < limit:
                raise run.BenchError(f"list: answered {response.status}, {len(body)} bytes")
            if i:  # the first one warms the connection and the app
                took.append(elapsed)
    finally:
        conn.close()
    return {"median_ms": statistics.median(took), "max_ms": max(took), "times": times}


def list_of_kept(scratch: Path, count: int = KEPT, store: str | None = None) -> dict[str, float | str]:
    server = echo_server(scratch, "echo-list", "--history", str(count), *(["--store", store] if store else []))
    try:
        if store:  # a shared store may hold a previous run's exchanges
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("DELETE", f"{UI_PREFIX}api/exchanges")
            conn.getresponse().read()
            conn.close()
        fill(server.port, count)
        found = list_time(server.port)
    finally:
        server.stop()
    return {"exchanges": count, "store": store or "memory://", **found}


def interleaved(scratch: Path, workload_names: list[str], rounds: int, seconds: int,
                history: int) -> dict[str, dict[str, float]]:
    """Echo with history `history` against `--history 0`, both alive, alternating rounds."""
    wrk_bin = run.ensure_wrk()
    server_pin, client_pin, how = run.pinning()
    print(how, flush=True)
    loads = [w for w in run.workloads() if w.name in workload_names]
    on = run.Server(run.echo_command(sys.executable, "--history", str(history)), server_pin, scratch / "on.log")
    off = run.Server(run.echo_command(sys.executable, "--history", "0"), server_pin, scratch / "off.log")
    out: dict[str, dict[str, float]] = {}
    try:
        on.start(loads[0])
        off.start(loads[0])
        for workload in loads:
            body_file = None
            if workload.body:
                body_file = scratch / f"{workload.name}.body"
                body_file.write_bytes(workload.body)
            for server in (on, off):
                run.wrk(wrk_bin, client_pin, server, workload, 2, body_file)  # warm-up
            plan = {"rounds": rounds, "round_duration": seconds}
            got = run.price_history(on, off, workload, plan, wrk_bin, client_pin, body_file)
            cost, low, high = _cost(sorted(r["rps"] for r in got))
            # CPU time per request the other way round: more CPU is a cost.
            cpu, cpu_low, cpu_high = _cost(sorted(2 - r["cpu_us"] for r in got))
            out[workload.name] = {"cost": cost, "middle_low": low, "middle_high": high, "rounds": len(got),
                                  "cpu_cost": cpu, "cpu_middle_low": cpu_low, "cpu_middle_high": cpu_high}
            print(f"  {workload.label:<24} history {history} costs {cost:+.1%} of req/s against --history 0 "
                  f"(middle half {low:+.1%} .. {high:+.1%}), {cpu:+.1%} in CPU per request "
                  f"(middle half {cpu_low:+.1%} .. {cpu_high:+.1%}); {len(got)} rounds of {seconds} s; "
                  f"target at most {HISTORY_COST:.0%}", flush=True)
    finally:
        on.stop()
        off.stop()
    return out


def _cost(ratios: list[float]) -> tuple[float, float, float]:
    """1 - the median of sorted with/without ratios, and the same of their middle half (low, high)."""
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return 1 - statistics.median(ratios), 1 - q3, 1 - q1


def report_rss(found: dict[str, float]) -> None:
    verdict = "met" if found["after_mib"] <= RSS_100K_MIB else "MISSED"
    print(f"  RSS after {found['exchanges']:,.0f} small GETs kept: {found['after_mib']:.0f} MiB "
          f"(idle {found['idle_mib']:.0f} MiB, {found['bytes_per_exchange']:,.0f} bytes per exchange, "
          f"filled in {found['fill_seconds']:.0f} s); target at most {RSS_100K_MIB} MiB: {verdict}", flush=True)


def report_list(found: dict[str, Any]) -> None:
    median = float(found["median_ms"])
    verdict = "met" if median < LIST_MS else "MISSED"
    print(f"  list {LIST_PAGE} of {found['exchanges']:,} kept ({found['store']}): {median:.1f} ms median, "
          f"{float(found['max_ms']):.1f} ms worst of {found['times']}; target under {LIST_MS:g} ms: {verdict}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ab = sub.add_parser("ab", help="history on against --history 0, interleaved rounds")
    ab.add_argument("--workloads", default="get,post-json")
    ab.add_argument("--rounds", type=int, default=20)
    ab.add_argument("--seconds", type=int, default=2)
    ab.add_argument("--history", type=int, default=1000)
    rss = sub.add_parser("rss", help=f"RSS after {KEPT:,} small GETs kept")
    rss.add_argument("--count", type=int, default=KEPT)
    rss.add_argument("--store", help="a store URL other than memory://")
    listing = sub.add_parser("list", help=f"time to list {LIST_PAGE} of {KEPT:,} kept exchanges")
    listing.add_argument("--count", type=int, default=KEPT)
    listing.add_argument("--store", help="a store URL other than memory:// (its history is cleared first)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="echo-bench-") as tmp:
        scratch = Path(tmp)
        try:
            if args.what == "ab":
                interleaved(scratch, args.workloads.split(","), args.rounds, args.seconds, args.history)
            elif args.what == "rss":
                report_rss(rss_after(scratch, args.count, args.store))
            else:
                report_list(list_of_kept(scratch, args.count, args.store))
        except run.BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
