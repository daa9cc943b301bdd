"""httpbin's compressed answers: /gzip, /deflate, /brotli.

Each is httpbin's JSON (origin, headers, method and a flag saying how it was
compressed), really compressed, with Content-Encoding saying so; like httpbin,
whatever the request's Accept-Encoding. Brotli is not a dependency of Echo:
/brotli compresses when the `brotli` package can be imported and answers 501
naming the package when it cannot, so a client's test sees why.
"""

from __future__ import annotations

import functools
import gzip as gzip_format
import importlib
import json
import zlib
from typing import Any

from ...model.http import JSON_TYPE
from ...model.records import RequestRecord
from ..answer import Answer
from .common import body_answer, json_answer, request_dict
from .table import RouteLimits, route

BROTLI_PACKAGE = "brotli"


def _document(record: RequestRecord, flag: str) -> bytes:
    doc = {**request_dict(record, "origin", "headers"), "method": record.method, flag: True}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _encoded(body: bytes, encoding: str) -> Answer:
    return body_answer(200, body, JSON_TYPE, [("Content-Encoding", encoding)])


@route("/gzip", {"GET"})
def gzip(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _encoded(gzip_format.compress(_document(record, "gzipped"), compresslevel=4), "gzip")  # httpbin's level


@route("/deflate", {"GET"})
def deflate(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    # HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2), which is what httpbin sends.
    return _encoded(zlib.compress(_document(record, "deflated")), "deflate")


@functools.cache
def _brotli() -> Any:
    """The brotli module, or None when it is not installed (looked for once)."""
    try:
        return importlib.import_module(BROTLI_PACKAGE)
    except ImportError:
        return None


@route("/brotli", {"GET"})
def brotli(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    module = _brotli()
    if module is None:
        return json_answer({
            "error": f"/brotli needs the {BROTLI_PACKAGE!r} package, which is not installed here "
                     f"(pip install {BROTLI_PACKAGE})",
            "package": BROTLI_PACKAGE,
        }, 501)
    return _encoded(module.compress(_document(record, "brotli")), "br")
