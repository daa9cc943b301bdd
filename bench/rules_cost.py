"""What rules that never match cost an echo GET, in CPU instructions (deterministic).

Run under callgrind, twice per case, and take the difference per request so
that start-up cancels out:

    for n in 200 1200; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/rules_cost.py RULES $n KIND 2>&1 | grep Collected
    done

RULES rules are loaded from a --rules file; none matches GET /anything?a=1&b=2,
the benchmark's GET. KIND: `path` (each has method:POST and its own path:/apiN/*),
`mix` (nine in ten so, one in ten without a path term), `method` (method:POST and
a header only), `plain` (a header term only: tried on every request).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from werkzeug.test import EnvironBuilder

from echo import create_app


def match_of(kind: str, i: int) -> str:
    if kind == "path" or (kind == "mix" and i % 10):
        return f"method:POST path:/api{i}/* header:X-Event=push"
    if kind == "plain":
        return f"header:X-Event{i}=push"
    return f"method:POST header:X-Event{i}=push"


def main() -> None:
    rules, requests, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    config: dict[str, Any] = {"log": "off"}
    if rules:
        path = os.path.join(tempfile.mkdtemp(), "rules.toml")
        with open(path, "w", encoding="utf-8") as file:
            for i in range(rules):
                file.write(f'[[rule]]\nname = "r{i}"\nmatch = "{match_of(kind, i)}"\nrespond = {{ status = 503 }}\n\n')
        config["rules"] = path
    wsgi = create_app(config, environ={}).wsgi_app
    environ = EnvironBuilder(path="/anything", query_string="a=1&b=2", method="GET").get_environ()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        assert status.startswith("200"), status

    for _ in range(requests):
        for _chunk in wsgi(dict(environ), start_response):
            pass


if __name__ == "__main__":
    main()
