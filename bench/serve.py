"""Serve a peer WSGI app (httpbin, the Flask hello) with waitress, set up as Echo is.

`python bench/serve.py MODULE:ATTR --port N --threads T [--path DIR]`

The options and logging mirror echo/cli.py so that the comparison is of the
apps, not of the servers: the same thread count, `asyncore_use_poll`,
`clear_untrusted_proxy_headers=False`, and the `waitress.queue` logger
silenced below ERROR (waitress otherwise writes "Task queue depth is N" for
every request that waits for a thread). No access log, as Echo runs with
`--log off` in the benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from typing import Any, NoReturn


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("waitress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="MODULE:ATTR of the WSGI app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--path", action="append", default=[], help="directory to put on sys.path first")
    args = parser.parse_args()
    sys.path[:0] = args.path
    _configure_logging()

    from waitress.server import create_server

    server = create_server(
        _load(args.app),
        host=args.host,
        port=args.port,
        threads=args.threads,
        clear_untrusted_proxy_headers=False,
        asyncore_use_poll=True,
    )
    print(f"serving {args.app} on http://{args.host}:{args.port}/", flush=True)

    def stop(signum: int, frame: Any) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
