"""Instructions per request of Echo's WSGI app, in process, counted by callgrind.

    .venv/bin/python bench/callgrind_get.py                 # GET /get?a=1&b=2 with --httpbin
    .venv/bin/python bench/callgrind_get.py --mode echo     # GET /anything?a=1&b=2
    .venv/bin/python bench/callgrind_get.py --history 0     # without recording
    .venv/bin/python bench/callgrind_get.py --cache         # also last-level cache misses (2 MiB LL)
    .venv/bin/python bench/callgrind_get.py --mode echo --post   # POST /anything with bench/run.py's 1 KiB JSON
    .venv/bin/python bench/callgrind_get.py --mode echo --store sqlite   # history in an SQLite file
    .venv/bin/python bench/callgrind_get.py --mode echo --store redis://127.0.0.1:6379/0

With `--store`, the write-behind queue's writer thread is counted too (callgrind
counts every thread of the process; a redis-server's own work is not): each
batch is held until it is full, as on a busy echo, since under valgrind the
requests are too slow to fill one within the linger, and the queue is flushed
before the count ends. `sqlite` is a fresh file in a temporary directory; a
Redis URL's database is emptied before each of the two runs.

Deterministic where req/s on a shared machine is not: the app (built by
`create_app` with the benchmark's settings: full capture, controls, history on,
no access log) is called through WSGI with the environ waitress builds for
wrk's request, `--warmup` times, then `--requests` times. valgrind runs the
script twice, once with no measured requests, and the difference of the two
totals divided by `--requests` is printed: startup and warm-up cancel out.
The request's parsing by waitress is not in the figure; everything the app
does, from capture to recording, is.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from run import SMALL_BODY, json_body  # the benchmark's own body, from bench/run.py beside this file

PATHS = {"httpbin": "/get", "echo": "/anything"}


def environ(path: str, query: str, body: bytes | None = None) -> dict[str, Any]:
    """What waitress 3 hands the app for wrk's `GET path?query` (Host header only),
    or with a `body`, for bench/run.py's 1 KiB JSON POST."""
    env = {
        "REQUEST_METHOD": "GET", "SERVER_PORT": "8080", "SERVER_NAME": "127.0.0.1", "SERVER_SOFTWARE": "waitress",
        "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "", "PATH_INFO": path, "REQUEST_URI": f"{path}?{query}",
        "QUERY_STRING": query, "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_HOST": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.input": io.BytesIO(b""),
        "wsgi.input_terminated": True,
    }
    if body is not None:
        env.update({"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json",
                    "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)})
    return env


def inner(mode: str, history: int, warmup: int, requests: int, store: str, post: bool) -> None:
    from echo.app import create_app
    from echo.history import buffered
    from echo.web.services import EXTENSION

    config: dict[str, Any] = {"log": "off", "history": history, "httpbin": mode == "httpbin"}
    if store == "sqlite":
        config["store"] = f"sqlite:///{tempfile.mkdtemp()}/echo.db"
    elif store:
        import redis

        redis.Redis.from_url(store).flushdb()
        config["store"] = store
    # A busy echo fills a batch long before the linger ends; valgrind's slow requests would not.
    buffered.LINGER_SECONDS = 3600.0
    flask_app = create_app(config, environ={})
    app = flask_app.wsgi_app
    gc.freeze()  # as echo/cli.py does before it serves
    path = PATHS[mode]
    body = json_body(SMALL_BODY) if post else None
    query = "" if post else "a=1&b=2"

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if not status.startswith("200"):
            raise SystemExit(f"answered {status}")
        return None

    def call() -> None:
        answer = app(environ(path, query, body), start_response)
        b"".join(answer)
        close = getattr(answer, "close", None)
        if close is not None:
            close()

    for _ in range(warmup):
        call()
    for _ in range(requests):
        call()
    kept = flask_app.extensions[EXTENSION].store
    if kept.flush(60.0):
        raise SystemExit("the history store did not take every exchange")


# The last-level cache callgrind simulates with --cache: this machine's per-core L2.
LL_CACHE = "--LL=2097152,16,64"


def count(argv: list[str], requests: int, cache: bool) -> list[int]:
    """Instructions, and with `cache` last-level misses (reads + writes), of one run."""
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "callgrind.out")
        sim = ["--cache-sim=yes", LL_CACHE] if cache else ["--cache-sim=no"]
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *sim,
             sys.executable, __file__, "--inner", *argv, "--requests", str(requests)],
            capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        found = re.search(r"Collected\s*:\s*([\d ]+)", done.stderr)
        if not found:
            raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
        # Ir, then with the cache simulated: Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
        events = [int(n) for n in found.group(1).split()]
        return events[:1] + ([sum(events[6:9])] if cache else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(PATHS), default="httpbin")
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1500)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--store", default="", help="sqlite (a fresh file) or a redis:// URL; default: memory")
    parser.add_argument("--post", action="store_true", help="POST bench/run.py's 1 KiB JSON body instead of a GET")
    parser.add_argument("--cache", action="store_true", help="simulate the caches and count last-level misses too")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.mode, args.history, args.warmup, args.requests, args.store, args.post)
        # No interpreter teardown: freeing the history walks it once more, by a
        # different amount in the two runs, which would count into the difference.
        sys.stdout.flush()
        os._exit(0)
    argv = ["--mode", args.mode, "--history", str(args.history), "--warmup", str(args.warmup), "--store", args.store,
            *(["--post"] if args.post else [])]
    base = count(argv, 0, args.cache)
    total = count(argv, args.requests, args.cache)
    per = [(t - b) / args.requests for t, b in zip(total, base, strict=True)]
    misses = f", {per[1]:.1f} last-level misses" if args.cache else ""
    where = f" in {args.store.split('://')[0]}" if args.store else ""
    what = f"{args.mode} {'POST' if args.post else 'GET'}"
    print(f"{what} history {args.history}{where}: {per[0] / 1000:.1f}k instructions{misses} per request "
          f"({args.requests} requests after {args.warmup} of warm-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
