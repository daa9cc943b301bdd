"""Rules (SPEC section 10): answers written in advance, per path, as values.

A rule is a `match` (a filter of section 9) and one or more steps; a step says
how to answer (status, headers, cookies, a body, a delay, a fault) and for how
many requests (`times`) before the next takes over; the last step repeats.

This module owns the rule model, reading and checking rules (from the
`--rules` file, TOML or JSON, or from one API request), the Jinja2 sandbox of
`template = true`, and the `RuleBook`: file rules and API rules in their order
of precedence, each rule's hits counted atomically in `Counters` (in process,
or in Redis so replicas share one sequence). A step becomes a `ResponsePlan`,
the same value the controls produce, so the echo sends it the way it sends
every other answer.

Every header and cookie of a rule goes through the very checks of controls
(`check_header`, `check_cookie`, ...): a rule can no more split a response or
set a framing header than a caller can.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mimetypes
import os
import random
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from ..config import MAX_BODY_BYTES, MAX_DELAY_SECONDS, ConfigError, flag
from ..formats.documents import echo_document
from ..history.base import Counters, LocalCounters, StoreError
from ..model.filter import BIN_PATTERN, Filter, FilterError, parse
from ..model.records import Exchange, Pairs, RequestRecord, ResponseRecord
from .controls import (
    Refused,
    ResponsePlan,
    check_cookie,
    check_header,
    check_header_value,
    status_choices,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML through the backport
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

log = logging.getLogger("echo")

RULE_FIELDS = ("name", "match", "respond", "bin")
STEP_FIELDS = ("status", "headers", "cookies", "body", "json", "body_file", "template", "delay", "times", "fault")
BODY_FIELDS = ("body", "json", "body_file")
FAULTS = ("close", "reset")
SOURCES = ("file", "api")
# f-<12 hex> for a file rule (a digest of what it says, so every replica
# reading the same file gives it the same id and shares its counter), a-<12 hex>
# for an API rule (random).
RULE_ID = re.compile(r"[fa]-[0-9a-f]{12}")
# A rule's name appears in logs, the inspector and error lines.
MAX_NAME = 200
# The first path segment of a request, for the index (see RuleBook).
_SEGMENT = re.compile(r"/([^/*]*)/")


class RuleError(ValueError):
    """A rule that cannot be used: the field (`respond[1].status`) and what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RulesFileError(ConfigError):
    """A rules file that cannot be used; its message is the one line to show:
    `FILE: rule N (name): what is wrong`."""


@dataclass(frozen=True)
class RuleLimits:
    """The settings rules are checked against, as plain values."""

    max_delay: float = MAX_DELAY_SECONDS
    max_body: int = MAX_BODY_BYTES


# ---- the template sandbox ---------------------------------------------------


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox (no attribute that reaches Python's internals, no unsafe
    call), with sizes bounded too: a template must not make a string of
    gigabytes before its output is measured. `*` and `**` and the filters and
    methods that grow a string by a number refuse one past --max-body."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, limit: int) -> None:
        super().__init__(autoescape=False, auto_reload=False, cache_size=0)
        self.limit = limit
        # lipsum(n) writes n paragraphs: of Jinja's globals only the bounded ones stay.
        self.globals = {name: self.globals[name] for name in ("range", "dict", "namespace", "cycler", "joiner")}
        for name in ("center", "indent", "wordwrap", "format", "replace", "truncate"):
            self.filters[name] = self._bounded(self.filters[name])

    def _check(self, args: Iterable[Any]) -> None:
        for arg in args:
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > self.limit:
                raise SecurityError(f"a number over the body limit ({self.limit}, {flag('max_body')})")
            if isinstance(arg, str) and re.search(r"%[-+ #0]*\d{8,}|\{[^}]*:[^}]*\d{8,}", arg):
                raise SecurityError("a format width over the body limit")

    def _bounded(self, func: Callable[..., Any]) -> Callable[..., Any]:
        def bounded(*args: Any, **kwargs: Any) -> Any:
            self._check(args[1:])
            self._check(kwargs.values())
            result = func(*args, **kwargs)
            if isinstance(result, str) and len(result) > self.limit:
                raise SecurityError(f"a value over the body limit ({self.limit}, {flag('max_body')})")
            return result

        # Filters that take the environment or context keep saying so.
        for marker in ("jinja_pass_arg",):
            if hasattr(func, marker):
                setattr(bounded, marker, getattr(func, marker))
        return bounded

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("an exponent over 64")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > self.limit:
                    raise SecurityError(f"a value over the body limit ({self.limit}, {flag('max_body')})")
        if operator == "%" and isinstance(left, str):
            self._check([left])
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        name = getattr(__obj, "__name__", "")
        if name in ("center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map", "replace", "join"):
            __self._check(args)
            __self._check(kwargs.values())
            if name == "replace" and len(args) >= 2 and isinstance(getattr(__obj, "__self__", None), str):
                text, old, new = __obj.__self__, str(args[0]), str(args[1])
                grows = (text.count(old) if old else len(text) + 1) * (len(new) - len(old))
                if len(text) + grows > __self.limit:
                    raise SecurityError(f"a value over the body limit ({__self.limit}, {flag('max_body')})")
        return super().call(__context, __obj, *args, **kwargs)


_SANDBOXES: dict[int, _Sandbox] = {}
_SANDBOX_LOCK = threading.Lock()


def sandbox(limit: int) -> _Sandbox:
    """The sandbox for this body limit (one per limit, shared: compiling is the costly part)."""
    with _SANDBOX_LOCK:
        found = _SANDBOXES.get(limit)
        if found is None:
            found = _SANDBOXES[limit] = _Sandbox(limit)
        return found


# ---- the model --------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One answer of a rule, checked: everything here may go on the wire as it is."""

    codes: tuple[int, ...] = (200,)
    weights: tuple[int, ...] = (1,)
    headers: Pairs = ()
    cookies: tuple[str, ...] = ()
    body: bytes | None = None  # None: the echo document, as a plain echo
    content_type: str | None = None
    template: Any = None  # the compiled body template, when `template = true`
    header_templates: tuple[tuple[str, Any], ...] = ()  # (name, compiled value) in header order
    delay: float = 0.0
    times: int | None = None
    fault: str | None = None


@dataclass(frozen=True)
class Rule:
    """A checked rule: who it answers (`match`, `bin`) and how (`steps`)."""

    id: str
    name: str
    source: str  # "file" or "api"
    match: Filter
    bin: str | None
    steps: tuple[Step, ...]
    written: Mapping[str, Any] = field(default_factory=dict)  # the rule as given, for the API
    # The hit at which each step but the last hands over to the next.
    ends: tuple[int, ...] = ()

    def step_for(self, hit: int) -> int:
        """The step that answers the `hit`-th request (from 0); the last step repeats."""
        for index, end in enumerate(self.ends):
            if hit < end:
                return index
        return len(self.steps) - 1

    def matches(self, exchange: Exchange) -> bool:
        return (self.bin is None or exchange.request.bin == self.bin) and self.match.matches(exchange)


def parse_rule(
    data: Any, *, source: str, limits: RuleLimits, folder: Path | None = None, rule_id: str | None = None
) -> Rule:
    """A checked `Rule` from its TOML/JSON table, or `RuleError` naming the field.

    `folder` is where the rules file is: `body_file` is read from it (never
    outside it, links resolved first); API rules have none and no `body_file`."""
    if not isinstance(data, Mapping):
        raise RuleError("rule", "a rule is a table (TOML) or an object (JSON) with match and respond")
    unknown = [key for key in data if key not in RULE_FIELDS]
    if unknown:
        raise RuleError(str(unknown[0]), f"unknown field; a rule has {', '.join(RULE_FIELDS)}")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise RuleError("name", "must be a string")
    if len(name) > MAX_NAME:
        raise RuleError("name", f"is {len(name)} characters long; at most {MAX_NAME}")
    _no_controls(name, "name")
    if "match" not in data:
        raise RuleError("match", 'is required: a filter like "method:POST path:/hooks/*" ("" answers every request)')
    text = data["match"]
    if not isinstance(text, str):
        raise RuleError("match", "must be a filter, written as a string")
    try:
        match = parse(text)
    except FilterError as exc:
        raise RuleError("match", f"{exc.message} (at character {exc.position + 1})") from None
    for term in match.terms:
        if term.kind in ("status", "rule", "check"):
            raise RuleError("match", f"{term.text!r}: a rule answers before there is a "
                            f"{term.kind}, so a {term.kind}: term can never hold")
    bin_name = data.get("bin")
    if bin_name is not None:
        if not isinstance(bin_name, str) or not BIN_PATTERN.fullmatch(bin_name):
            raise RuleError("bin", "a bin is 1 to 64 of A-Z a-z 0-9 _ -")
        if match.bin is not None and match.bin != bin_name:
            raise RuleError("match", f"names bin {match.bin!r} but the rule's bin is {bin_name!r}")
        if match.bin is None:
            # Scoped like a Bin's queries: `path:` is the path below /b/{bin}.
            match = parse(f"bin:{bin_name} {text}")
            match = Filter(text, match.terms, match.bin)
    if "respond" not in data:
        raise RuleError("respond", "is required: a step (a table) or a list of steps")
    respond = data["respond"]
    if isinstance(respond, Mapping):
        respond = [respond]
    if not isinstance(respond, list) or not respond:
        raise RuleError("respond", "must be a step (a table) or a non-empty list of steps")
    steps = tuple(_step(raw, f"respond[{i}]", limits, folder, last=i == len(respond) - 1)
                  for i, raw in enumerate(respond))
    ends: list[int] = []
    total = 0
    for step in steps[:-1]:
        total += step.times or 1
        ends.append(total)
    written = {key: data[key] for key in RULE_FIELDS if key in data}
    if rule_id is None:
        digest = hashlib.sha256(json.dumps(written, sort_keys=True, default=str).encode("utf-8", "surrogatepass"))
        rule_id = ("f-" if source == "file" else "a-") + digest.hexdigest()[:12]
    return Rule(rule_id, name, source, match, bin_name or match.bin, steps, written, tuple(ends))


def _no_controls(text: str, where: str) -> None:
    try:
        check_header_value(text, where)
    except Refused as exc:
        raise RuleError(where, exc.message) from None


def _step(raw: Any, where: str, limits: RuleLimits, folder: Path | None, last: bool) -> Step:
    if not isinstance(raw, Mapping):
        raise RuleError(where, "a step is a table (TOML) or an object (JSON)")
    unknown = [key for key in raw if key not in STEP_FIELDS]
    if unknown:
        raise RuleError(f"{where}.{unknown[0]}", f"unknown field; a step has {', '.join(STEP_FIELDS)}")
    values: dict[str, Any] = {}
    template = raw.get("template", False)
    if not isinstance(template, bool):
        raise RuleError(f"{where}.template", "must be true or false")

    fault = raw.get("fault")
    if fault is not None:
        if fault not in FAULTS:
            raise RuleError(f"{where}.fault", f"must be one of {', '.join(FAULTS)}")
        answering = [key for key in ("status", "headers", "cookies", *BODY_FIELDS, "template") if key in raw]
        if answering:
            raise RuleError(f"{where}.{answering[0]}", f"a {fault} fault sends no answer, so it takes no {answering[0]}")
        values["fault"] = fault

    if "status" in raw:
        status = raw["status"]
        if isinstance(status, bool) or not isinstance(status, (int, str)):
            raise RuleError(f"{where}.status", "must be a number (503) or a pick like \"200:9,503:1\"")
        try:
            values["codes"], values["weights"] = status_choices(str(status))
        except Refused as exc:
            raise RuleError(f"{where}.status", exc.message) from None

    headers: list[tuple[str, str]] = []
    header_templates: list[tuple[str, Any]] = []
    raw_headers = raw.get("headers", {})
    if not isinstance(raw_headers, Mapping):
        raise RuleError(f"{where}.headers", 'must be a table of names and values, like { "Retry-After" = "1" }')
    for name, value in raw_headers.items():
        spot = f"{where}.headers.{name}"
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, bool) or not isinstance(one, (str, int, float)):
                raise RuleError(spot, "a header value is a string (or a list of strings for repeated lines)")
            try:
                checked = check_header(str(name), str(one))
            except Refused as exc:
                raise RuleError(spot, exc.message) from None
            headers.append(checked)
            if template:
                header_templates.append((checked[0], _compile(checked[1], spot, limits)))
    values["headers"] = tuple(headers)
    values["header_templates"] = tuple(header_templates)

    cookies = raw.get("cookies", [])
    if isinstance(cookies, str):
        cookies = [cookies]
    if not isinstance(cookies, list):
        raise RuleError(f"{where}.cookies", 'must be a list of Set-Cookie values, like ["sid=abc; Path=/"]')
    checked_cookies = []
    for i, cookie in enumerate(cookies):
        if not isinstance(cookie, str):
            raise RuleError(f"{where}.cookies[{i}]", "a cookie is a Set-Cookie value, written as a string")
        try:
            checked_cookies.append(check_cookie(cookie))
        except Refused as exc:
            raise RuleError(f"{where}.cookies[{i}]", exc.message) from None
    values["cookies"] = tuple(checked_cookies)

    given = [key for key in BODY_FIELDS if key in raw]
    if len(given) > 1:
        raise RuleError(f"{where}.{given[1]}", f"a step has one of body, json and body_file; this one has {' and '.join(given)}")
    text: str | None = None
    if "body" in raw:
        if not isinstance(raw["body"], str):
            raise RuleError(f"{where}.body", "must be a string (for JSON, use json)")
        text = raw["body"]
        values["body"] = _utf8(text, f"{where}.body")
        values["content_type"] = "text/plain; charset=utf-8"
    elif "json" in raw:
        if template:
            raise RuleError(f"{where}.template", "renders body and body_file; write a JSON template as body "
                            "with a Content-Type: application/json header")
        try:
            body = json.dumps(raw["json"], ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise RuleError(f"{where}.json", f"cannot be sent as JSON: {exc}") from None
        values["body"] = body
        values["content_type"] = "application/json"
    elif "body_file" in raw:
        body, content_type = _body_file(raw["body_file"], f"{where}.body_file", limits, folder)
        values["body"] = body
        values["content_type"] = content_type
        if template:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise RuleError(f"{where}.body_file", "a template must be UTF-8 text") from None
    if values.get("body") is not None and len(values["body"]) > limits.max_body:
        spot = next(f"{where}.{key}" for key in BODY_FIELDS if key in raw)
        raise RuleError(spot, f"is {len(values['body'])} bytes; at most {limits.max_body} ({flag('max_body')})")
    if template:
        if text is None and not header_templates:
            raise RuleError(f"{where}.template", "renders body, body_file and header values; this step has none")
        if text is not None:
            values["template"] = _compile(text, f"{where}.{given[0]}", limits)

    if "delay" in raw:
        delay = raw["delay"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise RuleError(f"{where}.delay", "must be a number of seconds")
        if not math.isfinite(delay) or not 0 <= delay <= limits.max_delay:
            raise RuleError(f"{where}.delay", f"{delay!r} is out of range: a number of seconds from 0 to "
                            f"{limits.max_delay:g} ({flag('max_delay')})")
        values["delay"] = float(delay)

    if "times" in raw:
        times = raw["times"]
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise RuleError(f"{where}.times", "must be a whole number, 1 or more")
        if last:
            raise RuleError(f"{where}.times", "the last step repeats for every later request, so times "
                            "cannot end it; add the step that follows")
        values["times"] = times
    return Step(**values)


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise RuleError(where, "holds a lone surrogate, which UTF-8 cannot encode") from None


def _compile(text: str, where: str, limits: RuleLimits) -> Any:
    try:
        return sandbox(limits.max_body).from_string(text)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise RuleError(where, f"template error{f' on line {line}' if line else ''}: {exc.message or exc}") from None


def _body_file(raw: Any, where: str, limits: RuleLimits, folder: Path | None) -> tuple[bytes, str]:
    if folder is None:
        raise RuleError(where, "only rules in the --rules file may read a file; send the body as body or json")
    if not isinstance(raw, str) or not raw or "\x00" in raw:
        raise RuleError(where, "must be a file name relative to the rules file")
    base = folder.resolve()
    try:
        # Links resolved first: a link inside the folder to a file outside it is outside.
        path = (base / raw).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise RuleError(where, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    if not path.is_relative_to(base):
        raise RuleError(where, f"is outside the rules file's folder ({base}); only files in it may be sent")
    if not path.is_file():
        raise RuleError(where, "is not a file")
    size = path.stat().st_size
    if size > limits.max_body:
        raise RuleError(where, f"is {size} bytes; at most {limits.max_body} ({flag('max_body')})")
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise RuleError(where, f"cannot be read: {exc.strerror or exc}") from None
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/json", "application/xml", "image/svg+xml"):
        guessed += "; charset=utf-8"
    return body, guessed


def load_rules_file(path: str, limits: RuleLimits) -> tuple[Rule, ...]:
    """Every rule of a TOML or JSON rules file, or `RulesFileError` with the one line to show."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".toml", ".json"):
        raise RulesFileError(f"{path}: a rules file is .toml or .json")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise RulesFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError:
        raise RulesFileError(f"{path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesFileError(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RulesFileError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise RulesFileError(f'{path}: expected {{"rule": [...]}} at the top')
    extra = [key for key in doc if key != "rule"]
    if extra:
        raise RulesFileError(f"{path}: unknown top-level key {extra[0]!r}; rules go in [[rule]] tables "
                             '(TOML) or {"rule": [...]} (JSON)')
    found = doc.get("rule", [])
    if not isinstance(found, list):
        raise RulesFileError(f"{path}: rule must be a list of rules ([[rule]] in TOML)")
    folder = Path(path).resolve().parent
    rules = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(found, start=1):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        shown = name if isinstance(name, str) and name else "no name"
        try:
            rule = parse_rule(raw, source="file", limits=limits, folder=folder)
        except RuleError as exc:
            raise RulesFileError(f"{path}: rule {number} ({_one_line(shown)}): {exc.field}: {exc.message}") from None
        if rule.id in seen:
            # The same rule twice: the second could never answer, and they would share one id.
            raise RulesFileError(f"{path}: rule {number} ({_one_line(shown)}): is the same as rule {seen[rule.id]}")
        seen[rule.id] = number
        rules.append(rule)
    return tuple(rules)


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)[:MAX_NAME]


# ---- answering ----------------------------------------------------------------


@dataclass(frozen=True)
class Chosen:
    """The rule that answers a request, and which of its steps."""

    rule: Rule
    step: int

    @property
    def record(self) -> dict[str, Any]:
        """What the exchange keeps (`Exchange.rule`)."""
        found = {"name": self.rule.name, "id": self.rule.id, "step": self.step}
        fault = self.rule.steps[self.step].fault
        if fault:
            found["fault"] = fault
        return found


@dataclass(frozen=True)
class Broken:
    """A step that could not be rendered (a template failed): the field and why."""

    field: str
    message: str


def render(chosen: Chosen, record: RequestRecord, limits: RuleLimits, rng: Any = random) -> ResponsePlan | Broken:
    """The chosen step as a `ResponsePlan` for this request; `Broken` when its template fails."""
    step = chosen.rule.steps[chosen.step]
    where = f"respond[{chosen.step}]"
    status = step.codes[0] if len(step.codes) == 1 else rng.choices(step.codes, weights=step.weights, k=1)[0]
    headers = step.headers
    body = step.body
    if step.template is not None or step.header_templates:
        doc = echo_document(record, {})
        if step.template is not None:
            try:
                text = _render(step.template, doc, limits.max_body)
            except (TemplateError, SecurityError, ArithmeticError, LookupError, TypeError, ValueError,
                    RecursionError, MemoryError) as exc:
                return Broken(f"{where}.body", _reason(exc))
            body = text.encode("utf-8", "surrogatepass")
            if len(body) > limits.max_body:
                return Broken(f"{where}.body", f"renders to more than {limits.max_body} bytes ({flag('max_body')})")
        if step.header_templates:
            rendered = []
            for name, compiled in step.header_templates:
                try:
                    value = _render(compiled, doc, limits.max_body)
                    check_header_value(value, f"the rendered {name} value")
                except Refused as exc:
                    return Broken(f"{where}.headers.{name}", exc.message)
                except (TemplateError, SecurityError, ArithmeticError, LookupError, TypeError, ValueError,
                        RecursionError, MemoryError) as exc:
                    return Broken(f"{where}.headers.{name}", _reason(exc))
                rendered.append((name, value))
            headers = tuple(rendered)
    return ResponsePlan(
        status=status,
        headers=headers,
        cookies=step.cookies,
        delay=step.delay,
        body=body,
        content_type=step.content_type if body is not None else None,
    )


def _render(template: Any, doc: dict[str, Any], limit: int) -> str:
    """Render piece by piece, stopping as soon as the text passes `limit`."""
    pieces = []
    size = 0
    for piece in template.generate(request=doc):
        size += len(piece)
        if size > limit:
            raise SecurityError(f"renders to more than {limit} bytes ({flag('max_body')})")
        pieces.append(piece)
    text = "".join(pieces)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("renders a lone surrogate, which UTF-8 cannot encode") from None
    return text


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"the template failed: {_one_line(str(text))[:300]}"


# ---- the rule book -------------------------------------------------------------


# (method, first segment) pairs whose candidates a snapshot remembers: both come
# from the wire, so the memo is bounded; past it, candidates are worked out per request.
MEMO_ENTRIES = 4096


@dataclass(frozen=True)
class _Snapshot:
    """The rules in force, in order of precedence, and the index that skips most of them.

    A request's candidates are the rules that may match its method and first
    path segment: a rule with a positive `method:` term is left out for other
    methods, and one whose `path:` starts with a literal segment for other
    segments. The rest are tried in order. With 100 rules that never match a
    request, that request pays one dict look-up, not 100 filters."""

    rules: tuple[Rule, ...] = ()
    # First path segment -> the rules that may match a path starting with it
    # (those whose `path:` starts with that segment, and those without a
    # literal first segment), in order of precedence; `anywhere` is the latter
    # alone, for every other segment.
    by_segment: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    anywhere: tuple[Rule, ...] = ()
    by_bin: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    methods: Mapping[str, frozenset[str] | None] = field(default_factory=dict)  # rule id -> its methods
    needs: Mapping[str, str | None] = field(default_factory=dict)  # rule id -> a header name it needs (lowercase)
    order: Mapping[str, int] = field(default_factory=dict)  # rule id -> its place in precedence
    memo: dict[tuple[str, str], _Candidates] = field(default_factory=dict)

    def candidates(self, record: RequestRecord) -> tuple[Rule, ...]:
        method = record.method.upper()
        if record.bin is not None and record.bin in self.by_bin:
            found = self._sorted(self.by_bin[record.bin], method)
        else:
            path = record.path
            end = path.find("/", 1)
            segment = path[1:end] if end > 0 else path[1:]
            key = (method, segment)
            memo = self.memo.get(key)
            if memo is None:
                memo = self._sorted(self.by_segment.get(segment, self.anywhere), method)
                if len(self.memo) < MEMO_ENTRIES:
                    self.memo[key] = memo
            found = memo
        always, by_header = found
        if not by_header:
            return always
        # Rules that need a header join only when the request carries it:
        # a handful of look-ups per request, however many such rules there are.
        extra = [rule for name, _ in record.headers for rule in by_header.get(name.lower(), ())]
        if not extra:
            return always
        order = self.order
        return tuple(sorted({rule.id: rule for rule in (*always, *extra)}.values(), key=lambda r: order[r.id]))

    def _sorted(self, rules: tuple[Rule, ...], method: str) -> _Candidates:
        methods, needs = self.methods, self.needs
        kept = [rule for rule in rules if (m := methods[rule.id]) is None or method in m]
        by_header: dict[str, list[Rule]] = {}
        for rule in kept:
            if (name := needs[rule.id]) is not None:
                by_header.setdefault(name, []).append(rule)
        return (tuple(rule for rule in kept if needs[rule.id] is None),
                {name: tuple(found) for name, found in by_header.items()})


# The rules a request may match: those it must try, and those it tries only
# when it carries the header named (lowercase).
_Candidates = tuple[tuple[Rule, ...], Mapping[str, tuple[Rule, ...]]]


def _segment_of(rule: Rule) -> str | None:
    """The literal first path segment every request this rule matches starts with, if the match says one."""
    if rule.bin is not None:
        return None
    for term in rule.match.terms:
        if term.kind == "path" and not term.negated:
            glob = term.text.partition(":")[2]
            if '"' in glob or "\\" in glob:
                return None  # quoted: not worth reading back; such a rule is looked at for every path
            found = _SEGMENT.match(glob)
            if found and "*" not in glob[: found.end()]:
                return found.group(1)
            if glob.startswith("/") and "*" not in glob and "/" not in glob[1:]:
                return glob[1:]  # an exact one-segment path: /health
    return None


def _methods_of(rule: Rule) -> frozenset[str] | None:
    """The methods a rule can match (its positive `method:` terms), or None for any."""
    found: frozenset[str] | None = None
    for term in rule.match.terms:
        if term.kind == "method" and not term.negated:
            value = term.text.partition(":")[2]
            if '"' in value or "\\" in value:
                continue
            named = frozenset(part.strip().upper() for part in value.split(","))
            found = named if found is None else found & named
    return found


def _header_of(rule: Rule) -> str | None:
    """A (lowercase) header name a request must carry for this rule to match (its first positive `header:` term)."""
    for term in rule.match.terms:
        if term.kind == "header" and not term.negated:
            name = term.text.partition(":")[2].partition("=")[0]
            if '"' not in name and "\\" not in name:
                return name.lower()
    return None


def _index(rules: tuple[Rule, ...]) -> _Snapshot:
    segments = {rule.id: _segment_of(rule) for rule in rules}
    anywhere = tuple(rule for rule in rules if rule.bin is None and segments[rule.id] is None)
    by_segment = {
        key: tuple(rule for rule in rules if rule.bin is None and segments[rule.id] in (key, None))
        for key in {s for s in segments.values() if s is not None}
    }
    by_bin: dict[str, tuple[Rule, ...]] = {}
    for name in {rule.bin for rule in rules if rule.bin is not None}:
        # A bin request may be answered by its bin's rules and by every rule without a bin.
        by_bin[name] = tuple(rule for rule in rules if rule.bin in (name, None))
    return _Snapshot(rules, by_segment, anywhere, by_bin,
                     methods={rule.id: _methods_of(rule) for rule in rules},
                     needs={rule.id: _header_of(rule) for rule in rules},
                     order={rule.id: i for i, rule in enumerate(rules)})


class RuleBook:
    """File rules and API rules, in precedence order: API rules newest first, then
    the file's in order. Reads take the current snapshot without a lock; every
    change builds a new one under the lock."""

    def __init__(self, limits: RuleLimits, counters: Counters | None = None, path: str | None = None,
                 max_api_rules: int = 1000) -> None:
        self.limits = limits
        self.path = path
        self.max_api_rules = max_api_rules
        self.counters = counters or LocalCounters()
        # When a shared counter store fails, rules keep answering from these.
        self._fallback = LocalCounters()
        self._failing = False
        self._lock = threading.Lock()
        self._file: tuple[Rule, ...] = ()
        self._api: list[Rule] = []  # oldest first
        self._snapshot = _Snapshot()

    # -- changes -----------------------------------------------------------

    def _rebuild(self) -> None:
        self._snapshot = _index(tuple(reversed(self._api)) + self._file)

    def set_file_rules(self, rules: Sequence[Rule]) -> None:
        with self._lock:
            self._file = tuple(rules)
            self._rebuild()

    def load_file(self) -> int:
        """(Re)read --rules: the new rules replace the file's, or `RulesFileError` leaves them as they were."""
        if self.path is None:
            return 0
        rules = load_rules_file(self.path, self.limits)
        self.set_file_rules(rules)
        return len(rules)

    def add(self, rule: Rule) -> bool:
        """Add an API rule (it takes precedence over every older one); False when --max-rules are held already."""
        with self._lock:
            if len(self._api) >= self.max_api_rules:
                return False
            self._api.append(rule)
            self._rebuild()
        return True

    def remove(self, rule_id: str) -> Rule | None:
        with self._lock:
            found = next((rule for rule in self._api if rule.id == rule_id), None)
            if found is not None:
                self._api.remove(found)
                self._rebuild()
        if found is not None:
            self._forget([found.id])
        return found

    def clear(self, bin_name: str | None = None) -> int:
        """Remove the API rules (of one bin only, when given); the file's stay."""
        with self._lock:
            gone = [rule for rule in self._api if bin_name is None or rule.bin == bin_name]
            self._api = [rule for rule in self._api if rule not in gone]
            self._rebuild()
        self._forget([rule.id for rule in gone])
        return len(gone)

    def _forget(self, ids: list[str]) -> None:
        self._fallback.delete(ids)
        try:
            self.counters.delete(ids)
        except StoreError as exc:
            log.warning("rules: could not forget the hit counts of %d rule(s): %s", len(ids), exc)

    # -- reading -----------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._snapshot.rules

    def get(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self._snapshot.rules if rule.id == rule_id), None)

    def hits(self, rules: Sequence[Rule]) -> list[int]:
        ids = [rule.id for rule in rules]
        try:
            shared = self.counters.get(ids)
        except StoreError:
            shared = [0] * len(ids)
        return [max(a, b) for a, b in zip(shared, self._fallback.get(ids), strict=True)]

    def choose(self, record: RequestRecord) -> Chosen | None:
        """The rule (and its step) that answers `record`, counting the hit; None when no rule matches."""
        snapshot = self._snapshot
        if not snapshot.rules:
            return None
        candidates = snapshot.candidates(record)
        if not candidates:
            return None
        exchange = _request_only(record)
        for rule in candidates:
            if rule.matches(exchange):
                return Chosen(rule, rule.step_for(self._count(rule) - 1))
        return None

    def _count(self, rule: Rule) -> int:
        try:
            value = self.counters.incr(rule.id)
        except StoreError as exc:
            if not self._failing:
                self._failing = True
                log.error("rules: the shared hit counter failed, counting in this process meanwhile: %s", exc)
            return self._fallback.incr(rule.id)
        if self._failing:
            self._failing = False
            log.warning("rules: the shared hit counter is back")
        return value


# The response side of the view a rule's match sees: there is no answer yet,
# and `status:` terms are refused in a rule's match.
_NO_RESPONSE = ResponseRecord(status=0, headers=(), body=None, body_size=0, body_sha256="", content_type="")


def _request_only(record: RequestRecord) -> Exchange:
    return Exchange(request=record, response=_NO_RESPONSE, controls={}, duration_ms=0.0)


def rule_document(rule: Rule, hits: int) -> dict[str, Any]:
    """A rule as `GET /_/api/rules` lists it."""
    return {
        "id": rule.id,
        "name": rule.name,
        "source": rule.source,
        "bin": rule.bin,
        "match": rule.match.source,
        "hits": hits,
        "step": rule.step_for(hits),
        "steps": len(rule.steps),
        "rule": dict(rule.written),
    }


def new_api_id() -> str:
    return "a-" + os.urandom(6).hex()
