"""The echo: a WSGI handler that answers every path outside the inspector.

capture -> (a rule, an httpbin route, or the controls' plan) -> build the
answer -> hand the exchange to the observer. It is
plain WSGI rather than a Flask view because it answers every request the
server gets and Flask's routing and request objects would parse it a second
time; the inspector, which serves people, is the Flask blueprint.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from ..answer.answer import Answer
from ..answer.controls import DEFAULT_BODY_TYPE, ControlError, ControlLimits, ResponsePlan, plan
from ..answer.held import RETRY_AFTER_SECONDS, HeldBudget
from ..answer.routes import Found, RouteLimits, find
from ..answer.rules import Broken, Chosen, RuleBook, render
from ..capture.request import BIN_HEADER, BIN_HEADER_KEY, EMPTY_SHA256, CaptureLimits, capture
from ..config import flag
from ..formats.documents import dumps, echo_document, echo_json, error_document
from ..model.filter import BIN_PATTERN
from ..model.http import HTML_TYPE, JSON_TYPE, PAGE_CSP, SANDBOX_CSP, status_line, wire
from ..model.records import Exchange, IdSource, RequestRecord, ResponseRecord
from ..observe.recorder import Recorder
from .cors import Headers, cors_headers, is_preflight, preflight_headers
from .serving import Fault, connection_socket, fault

log = logging.getLogger("echo")

StartResponse = Callable[..., Any]

# RFC 9110: no content in 204, 205 or 304. A 204 or 304 is framed without a
# Content-Length (waitress knows they end at the head); a 205 is not special
# to waitress, which would chunk it, so it says Content-Length: 0 instead.
_BODYLESS = (204, 205, 304)
# Header pairs most answers share: one tuple each, not one per kept exchange.
_JSON_CONTENT_TYPE = ("Content-Type", JSON_TYPE)
_CSP_HEADER = {csp: ("Content-Security-Policy", csp) for csp in (PAGE_CSP, SANDBOX_CSP)}
# How often a _delay looks whether its caller is still there.
DELAY_TICK_SECONDS = 0.05


def _wait(seconds: float, environ: dict[str, Any], held: HeldBudget) -> None:
    """Sleep out a _delay, but stop once the caller has closed its connection:
    a worker must not wait for no one while other callers queue. A stopping
    server ends the wait at once, so the answer still goes out before exit."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if _caller_left(environ):
            return
        if held.pause(min(left, DELAY_TICK_SECONDS)):
            return


def _caller_left(environ: dict[str, Any]) -> bool:
    # waitress's own check (waitress.client_disconnected) only works with
    # channel_request_lookahead, which also drops every answer to a client that
    # half-closes after its request. So peek at the connection, only here: an
    # end of stream during a delay ends the delay (a caller that merely
    # half-closed still gets its answer, without the rest of the wait).
    check = environ.get("waitress.client_disconnected")
    sock = getattr(getattr(check, "__self__", None), "socket", None)
    if not isinstance(sock, socket.socket):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # connected, nothing sent: the usual case
    except OSError:
        return True  # reset, or closed by the server meanwhile


def _body_headers(body: bytes, csp: str) -> Headers:
    """The headers every answer with a body carries, after its Content-Type."""
    return [
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        _CSP_HEADER[csp],
    ]


class EchoHandler:
    """The echo's WSGI app; it gets its limits as plain values from `create_app`."""

    def __init__(
        self,
        *,
        capture_limits: CaptureLimits,
        control_limits: ControlLimits,
        cors: bool,
        recorder: Recorder,
        render_html: Callable[[RequestRecord, Mapping[str, Any], bytes], bytes],
        held: HeldBudget,
        ids: IdSource | None = None,
        route_limits: RouteLimits | None = None,
        rules: RuleBook | None = None,
    ) -> None:
        self.capture_limits = capture_limits
        self.control_limits = control_limits
        self.cors = cors
        self.recorder = recorder
        self.render_html = render_html
        self.ids = ids or IdSource()
        self.held = held
        # None: httpbin mode is off and every path gets the echo.
        self.route_limits = route_limits
        # None: no --rules file and no API (an app built without them).
        self.rules = rules

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._handle(environ, start_response)
        except Fault:
            raise  # a rule's fault: waitress ends the connection without an answer
        except Exception:  # noqa: BLE001 - the last line of defence; every known case is handled above it
            log.exception("echo failed on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            failed = self._error(500, error_document("Echo failed to answer this request; see the server log"))
            # exc_info lets the server replace a head already begun (PEP 3333).
            start_response(status_line(failed.status), failed.headers, sys.exc_info())
            return [failed.body] if isinstance(failed.body, bytes) else failed.body

    def _handle(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        began = time.perf_counter()
        record = capture(environ, self.capture_limits, self.ids)
        controls: Mapping[str, Any] = {}
        chosen: Chosen | None = None
        if record.too_large and record.body_size <= self.capture_limits.max_body:
            # Under the limit on the wire: its Content-Encoding decoded past it.
            # Decoding stops at the first byte over, so that is the size known.
            answer = self._error(413, error_document(
                f"request body decodes ({record.content_encoding}) to more than the limit",
                limit=self.capture_limits.max_body,
                decoded_size=self.capture_limits.max_body + 1,
                wire_size=record.body_size,
                setting=flag("max_body"),
            ))
        elif record.too_large:
            answer = self._error(413, error_document(
                "request body is larger than the limit",
                limit=self.capture_limits.max_body,
                size=record.body_size,
                setting=flag("max_body"),
            ))
        elif (named := environ.get(BIN_HEADER_KEY)) is not None and named != record.bin:
            answer = self._bad_bin(record, named)
        elif self.rules is not None and (chosen := self.rules.choose(record)) is not None:
            # Precedence (SPEC section 10): rules, then httpbin routes, then the echo.
            # A rule's answer is the answer: the caller's controls do not apply.
            answer, controls = self._rule(record, chosen, began, environ)
        elif self.cors and is_preflight(record.method, environ):
            answer = Answer(204, preflight_headers(environ))
        elif self.route_limits is not None and (found := find(_route_path(record))) is not None:
            answer = self._route(record, found, environ)
        else:
            decided = plan(record.args, record.headers, self.control_limits)
            if isinstance(decided, ControlError):
                answer = self._error(400, error_document(decided.message, param=decided.param, value=decided.value))
            else:
                controls = decided.summary()
                busy = self._hold(decided.delay, environ, "_delay") if decided.delay else None
                answer = busy or self._answer(record, decided, controls, environ)
        return self._send(record, answer, controls, began, environ, start_response,
                          chosen.record if chosen is not None else None)

    def _rule(
        self, record: RequestRecord, chosen: Chosen, began: float, environ: dict[str, Any]
    ) -> tuple[Answer, Mapping[str, Any]]:
        """The chosen rule step's answer; a fault ends the connection here, once recorded."""
        assert self.rules is not None
        rule = chosen.rule
        step = rule.steps[chosen.step]
        if step.fault and connection_socket(environ) is None:
            # Served by another WSGI server (Flask's test client, an embedding app):
            # the connection is not Echo's to close, so say so instead of failing.
            return self._error(501, error_document(
                f"rule {rule.name or rule.id!r}: a {step.fault} fault needs echo-server's own server (waitress)",
                rule=rule.name, id=rule.id, field=f"respond[{chosen.step}].fault",
            )), {}
        if step.fault:
            busy = self._hold(step.delay, environ, f"rule {rule.name or rule.id}") if step.delay else None
            if busy is not None:
                return busy, {}
            self.recorder.observe(Exchange(
                request=record,
                # Nothing was sent: status 0, as HAR writes an answer that never came.
                response=ResponseRecord(status=0, headers=(), body=b"", body_size=0, body_sha256=EMPTY_SHA256,
                                        content_type=""),
                controls={"fault": step.fault, "delay": step.delay},
                duration_ms=(time.perf_counter() - began) * 1000,
                rule=chosen.record,
            ))
            fault(environ, step.fault)
        decided = render(chosen, record, self.rules.limits)
        if isinstance(decided, Broken):
            # A template that fails is the rule's fault, not Echo's and not the caller's:
            # 502, as a gateway answers for an upstream that sent something unusable.
            return self._error(502, error_document(
                f"rule {rule.name or rule.id!r} could not answer: {decided.field}: {decided.message}",
                rule=rule.name, id=rule.id, field=decided.field,
            )), {}
        controls = decided.summary()
        busy = self._hold(decided.delay, environ, f"rule {rule.name or rule.id}") if decided.delay else None
        return busy or self._answer(record, decided, controls, environ), controls

    def _send(
        self,
        record: RequestRecord,
        answer: Answer,
        controls: Mapping[str, Any],
        began: float,
        environ: dict[str, Any],
        start_response: StartResponse,
        rule: Mapping[str, Any] | None = None,
    ) -> Iterable[bytes]:
        """Add Echo's own headers, record the exchange, and hand the answer to WSGI."""
        headers = answer.headers
        headers.append(("X-Echo-Id", record.id))
        origin = environ.get("HTTP_ORIGIN") if self.cors else None
        if origin:
            headers.extend(cors_headers(origin, headers))
        body = answer.body
        if answer.status in _BODYLESS:
            body = b""
            headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
            if answer.status == 205:
                headers.append(("Content-Length", "0"))
        content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
        if record.method == "HEAD":
            body = b""
        if not isinstance(body, bytes):
            # A streamed body is recorded once it has been sent, as it was sent.
            start_response(status_line(answer.status), [(n, wire(v)) for n, v in headers])
            return RecordedBody(body, self.recorder, record, answer.status, tuple(headers), content_type,
                                controls, began)
        self.recorder.observe(Exchange(
            request=record,
            response=ResponseRecord(
                status=answer.status,
                headers=tuple(headers),
                body=None if answer.rebuildable and body else body,
                body_size=len(body),
                body_sha256=hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256,
                content_type=content_type,
            ),
            controls=controls,
            duration_ms=(time.perf_counter() - began) * 1000,
            rule=rule,
        ))
        start_response(status_line(answer.status), [(n, v if v.isascii() else wire(v)) for n, v in headers])
        return [body] if body else []

    def _bad_bin(self, record: RequestRecord, named: str) -> Answer:
        """400 for an X-Echo-Bin that is no bin name, or that names another bin than the path's."""
        value = record.header(BIN_HEADER) or ""  # as decoded for the record, not WSGI's Latin-1
        if BIN_PATTERN.fullmatch(named):
            message = (f"{BIN_HEADER} names bin {value!r} but the path is in bin {record.bin!r} "
                       f"(/b/{record.bin}/...); send one of them, or the same name in both")
        else:
            message = f"{BIN_HEADER} must be a bin name: 1 to 64 of A-Z a-z 0-9 _ -"
        return self._error(400, error_document(message, param=BIN_HEADER, value=value))

    def _route(self, record: RequestRecord, found: Found, environ: dict[str, Any]) -> Answer:
        """httpbin mode: the route's answer is the answer (Echo's controls do not apply)."""
        assert self.route_limits is not None
        allowed = found.route.methods
        if record.method not in allowed:
            refused = self._error(405, error_document(
                f"{record.method} is not allowed on {found.route.pattern}", allowed=sorted(allowed),
            ))
            refused.headers.append(("Allow", ", ".join(sorted(allowed))))
            return refused
        answer = found.route.handler(record, found.params, self.route_limits)
        if record.bin_path is not None and record.bin_path != record.path and found.route.pattern not in _CALLERS_LOCATION:
            _keep_in_bin(answer, record)
        busy = self._hold(answer.delay, environ, found.route.pattern) if answer.delay else None
        return busy or answer

    def _hold(self, seconds: float, environ: dict[str, Any], what: str) -> Answer | None:
        """Wait `seconds` holding a worker under the --max-held budget; a 503 when none is free."""
        if not self.held.acquire():
            busy = self._error(503, error_document(
                f"too many requests are waiting ({what}) already; try again shortly",
                limit=self.held.limit,
                setting=flag("max_held"),
            ))
            busy.headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
            return busy
        try:
            _wait(seconds, environ, self.held)
        finally:
            self.held.release()
        return None

    def _answer(
        self, record: RequestRecord, decided: ResponsePlan, controls: Mapping[str, Any], environ: dict[str, Any]
    ) -> Answer:
        caller_type = decided.content_type
        if decided.body is not None:
            body = decided.body
            rebuildable = False
            headers: Headers = [("Content-Type", caller_type or DEFAULT_BODY_TYPE)]
            csp = SANDBOX_CSP
        elif self._wants_html(decided, environ):
            doc = echo_document(record, controls)
            body = self.render_html(record, controls, dumps(doc, pretty=True))
            rebuildable = False
            headers = [("Content-Type", HTML_TYPE)]
            csp = PAGE_CSP
        else:
            body = echo_json(record, controls)
            rebuildable = True
            headers = [("Content-Type", caller_type) if caller_type else _JSON_CONTENT_TYPE]
            csp = SANDBOX_CSP
        if any(name.lower() == "content-type" for name, _ in decided.headers):
            headers = []  # the caller's _header=Content-Type replaces ours
            csp = SANDBOX_CSP
        headers += _body_headers(body, csp)
        headers.extend(decided.headers)
        headers.extend(("Set-Cookie", cookie) for cookie in decided.cookies)
        return Answer(decided.status, headers, body, rebuildable=rebuildable)

    def _wants_html(self, decided: ResponsePlan, environ: dict[str, Any]) -> bool:
        if decided.format:
            return decided.format == "html"
        accept = environ.get("HTTP_ACCEPT", "")
        if "html" not in accept:
            return False
        accepted = parse_accept_header(accept, MIMEAccept)
        return accepted["text/html"] > accepted["application/json"]

    def _error(self, status: int, doc: dict[str, Any]) -> Answer:
        """The one error shape of the echo: {"error", ...} as JSON with `status`."""
        body = dumps(doc) + b"\n"
        return Answer(status, [_JSON_CONTENT_TYPE, *_body_headers(body, SANDBOX_CSP)], body)


# The httpbin route whose Location is the caller's own `url`, sent as given.
_CALLERS_LOCATION = frozenset({"/redirect-to"})


def _keep_in_bin(answer: Answer, record: RequestRecord) -> None:
    """Point an httpbin redirect at the same bin: /b/{bin}/redirect/3 leads to
    /b/{bin}/relative-redirect/2, so every hop of a chain is in the bin."""
    prefix = f"/b/{record.bin}"
    parts = urlsplit(record.url)
    base = f"{parts.scheme}://{parts.netloc}"
    for i, (name, value) in enumerate(answer.headers):
        if name.lower() != "location":
            continue
        if value.startswith("/") and not value.startswith("//"):
            answer.headers[i] = (name, prefix + value)
        elif value.startswith(base + "/"):
            answer.headers[i] = (name, base + prefix + value[len(base):])


def _route_path(record: RequestRecord) -> str:
    """The path httpbin mode answers: a bin's own path, so /b/{bin}/get is /get in that bin."""
    return record.path if record.bin_path is None else record.bin_path


class RecordedBody:
    """A streamed answer's body as WSGI sends it: each chunk is counted and hashed
    as it goes out, and the exchange is recorded once, when the server closes it
    (after the last chunk, or when the caller went away)."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        recorder: Recorder,
        record: RequestRecord,
        status: int,
        headers: tuple[tuple[str, str], ...],
        content_type: str,
        controls: Mapping[str, Any],
        began: float,
    ) -> None:
        self._chunks = chunks
        self._recorder = recorder
        self._record = record
        self._status = status
        self._headers = headers
        self._content_type = content_type
        self._controls = controls
        self._began = began
        self._digest = hashlib.sha256()
        self._size = 0
        self._kept = bytearray()
        self._keep = recorder.keep_body
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._size += len(chunk)
            self._digest.update(chunk)
            if len(self._kept) < self._keep:
                self._kept += chunk[: self._keep - len(self._kept)]
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        kept = bytes(self._kept)
        self._recorder.observe(Exchange(
            request=self._record,
            response=ResponseRecord(
                status=self._status,
                headers=self._headers,
                body=kept,
                body_size=self._size,
                body_sha256=self._digest.hexdigest(),
                content_type=self._content_type,
                truncated=len(kept) < self._size,
            ),
            controls=self._controls,
            duration_ms=(time.perf_counter() - self._began) * 1000,
        ))
