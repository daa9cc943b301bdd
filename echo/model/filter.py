"""The filter language (SPEC section 9): one parser, one matcher, used everywhere.

`parse("method:POST path:/hooks/* -header:X-Retry")` gives a `Filter` once; the
API's `f=`, the inspector's filter box, waits, the HAR export and rules all ask
that same object whether an exchange `matches`, and waits and assertions ask it
which terms an exchange failed (`difference`) to explain a near miss.

Terms are separated by spaces and must all hold; `-term` negates one; double
quotes group spaces (`header:"X-Note=two words"`, `"a b"`), and inside quotes a
backslash takes the next character as it is. A glob's only wildcard is `*`,
any run of characters. A parse error names the 0-based `position` of the
fault in the text, so the API can point at it.

Matching never uses a regular expression built from the filter: a glob is a
prefix, a suffix and literals found in order, so no filter can make matching
slower than linear in the text it looks at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .http import is_token
from .records import Exchange

# A bin name (section 9): the same pattern for /b/{bin}/..., X-Echo-Bin and `bin:`.
BIN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHECKS = ("ok", "failed")

Test = Callable[[Exchange], bool]


class FilterError(ValueError):
    """A filter that does not parse: what is wrong and where (0-based)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class Term:
    """One term as written (`text`, with its `-`) and the test it compiled to."""

    text: str
    kind: str  # "method", "status", ..., "word" for a bare word
    negated: bool
    test: Test
    hints: tuple[bytes, ...] = ()  # see Filter.hints

    def holds(self, exchange: Exchange) -> bool:
        return self.test(exchange) != self.negated


@dataclass(frozen=True, slots=True)
class Filter:
    """Terms that must all hold. The empty filter matches every exchange."""

    source: str
    terms: tuple[Term, ...]
    bin: str | None  # the bin a positive `bin:` term names, if any

    def matches(self, exchange: Exchange) -> bool:
        return all(term.holds(exchange) for term in self.terms)

    def difference(self, exchange: Exchange) -> list[str]:
        """The terms (as written) that `exchange` fails: empty when it matches."""
        return [term.text for term in self.terms if not term.holds(exchange)]

    @property
    def hints(self) -> tuple[bytes, ...]:
        """Texts an exchange's record must hold for the filter to hold: a cheap pre-check.

        Each is printable ASCII (no quote or backslash), lowercased; whenever
        the filter holds, each occurs in the `str.lower()` of any JSON text that
        holds the request's path, bin path, query string, args, headers and
        remote address, the answered status and the rule, with non-ASCII
        characters written as they are (orjson's way). A store that keeps such
        text (the memory store's packed fields) skips an exchange missing one
        without unpacking it; matching itself still decides.
        """
        return tuple(hint for term in self.terms if not term.negated for hint in term.hints)

    def __bool__(self) -> bool:
        return bool(self.terms)


EVERYTHING = Filter("", (), None)


def parse(text: str) -> Filter:
    """The filter `text` says, or FilterError with the position of the fault."""
    words = list(_split(text))
    bin_name = None
    for _, _, word, negated in words:
        key, _, value = word.partition(":")
        if key == "bin" and not negated and BIN_PATTERN.fullmatch(value):
            bin_name = value
    terms = tuple(_term(text[start:end], start, word, negated, bin_name is not None)
                  for start, end, word, negated in words)
    return Filter(text, terms, bin_name)


def _split(text: str) -> list[tuple[int, int, str, bool]]:
    """(start, end, word without its `-` and quotes, negated) for each term."""
    found = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        negated = text[i] == "-"
        if negated:
            i += 1
        chars: list[str] = []
        while i < n and not text[i].isspace():
            if text[i] == '"':
                opening = i
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(text[i])
                    i += 1
                if i >= n:
                    raise FilterError("unclosed quote", opening)
                i += 1  # the closing quote
            else:
                chars.append(text[i])
                i += 1
        word = "".join(chars)
        if not word:
            raise FilterError("a term is empty (a lone '-' or \"\")", start)
        found.append((start, i, word, negated))
    return found


def _term(written: str, position: int, word: str, negated: bool, in_bin: bool) -> Term:
    key, colon, value = word.partition(":")
    if not colon:
        needle = word.lower()
        return Term(written, "word", negated, lambda ex: needle in ex.request.path.lower()
                    or needle in ex.request.query_string.lower(), _hint(needle))
    compile_term = TERMS.get(key.lower())
    if compile_term is None:
        raise FilterError(f"unknown term {key + ':'!r}; terms are {', '.join(k + ':' for k in TERMS)} or a bare word",
                          position)
    at = position + (1 if negated else 0) + len(key) + 1  # where the value starts, for errors
    try:
        test = compile_term(value, in_bin)
    except _Bad as exc:
        raise FilterError(f"{key}: {exc}", at) from None
    return Term(written, key.lower(), negated, test, _hints(key.lower(), value))


class _Bad(ValueError):
    """A term's value is wrong; `_term` adds the position."""


def _hint(text: str) -> tuple[bytes, ...]:
    """`text` lowercased as a hint, when JSON writes it as it is (printable ASCII but quote and backslash)."""
    if text and all(" " <= c <= "~" and c not in '"\\' for c in text):
        return (text.lower().encode("ascii"),)
    return ()


def _hints(kind: str, value: str) -> tuple[bytes, ...]:
    """The hints (Filter.hints) of a positive term: the literal texts it needs in the record.

    None for method: (compared upper-cased, which "ſ" turns into "S"), status
    classes and ranges, body: and json: (the body is not in the record's text).
    """
    if kind == "status" and value.isascii() and value.isdigit():
        return _hint(value)
    if kind in ("path", "client", "rule"):
        return _glob_hints(value)
    if kind in ("query", "header"):
        name, equals, wanted = value.partition("=")
        return _hint(name) + (_glob_hints(wanted) if equals else ())
    if kind == "bin":
        return _hint(value)
    return ()


def _glob_hints(pattern: str) -> tuple[bytes, ...]:
    return tuple(hint for literal in pattern.split("*") for hint in _hint(literal))


# ---- the terms -------------------------------------------------------------


def _method(value: str, in_bin: bool) -> Test:
    methods = frozenset(part.strip().upper() for part in value.split(","))
    if not value or not all(is_token(m) for m in methods):
        raise _Bad("needs HTTP methods separated by commas, like method:PUT,PATCH")
    return lambda ex: ex.request.method.upper() in methods


def _status(value: str, in_bin: bool) -> Test:
    message = "needs a code (404), a class (4xx) or a range (500-599), from 100 to 599"
    low = high = None
    # ASCII digits: \d alone also takes other scripts' digits ("٤٠٤").
    if re.fullmatch(r"[1-5]xx", value, re.IGNORECASE):
        low = int(value[0]) * 100
        high = low + 99
    elif re.fullmatch(r"\d{3}", value, re.ASCII):
        low = high = int(value)
    elif re.fullmatch(r"\d{3}-\d{3}", value, re.ASCII):
        low, high = int(value[:3]), int(value[4:])
    if low is None or high is None or not 100 <= low <= high <= 599:
        raise _Bad(message)
    lowest, highest = low, high
    return lambda ex: lowest <= ex.response.status <= highest


def _path(value: str, in_bin: bool) -> Test:
    if not value:
        raise _Bad("needs a glob, like path:/hooks/*")
    glob = Glob(value)
    if in_bin:
        # In a bin's filter, paths are the bin's own: `path:/hook` finds /b/{bin}/hook.
        return lambda ex: glob.match(ex.request.bin_path if ex.request.bin_path is not None else ex.request.path)
    return lambda ex: glob.match(ex.request.path)


def _named(value: str, what: str) -> tuple[str, Glob | None]:
    name, equals, wanted = value.partition("=")
    if not name:
        raise _Bad(f"needs a {what} name, like {what}:name or {what}:name=value")
    return name, Glob(wanted) if equals else None


def _query(value: str, in_bin: bool) -> Test:
    name, glob = _named(value, "query")
    if glob is None:
        return lambda ex: any(key == name for key, _ in ex.request.args)
    return lambda ex: any(key == name and glob.match(arg) for key, arg in ex.request.args)


def _header(value: str, in_bin: bool) -> Test:
    name, glob = _named(value, "header")
    if not is_token(name):
        raise _Bad("a header name is a token of letters, digits and !#$%&'*+-.^_`|~")
    lowered = name.lower()
    if glob is None:
        return lambda ex: any(key.lower() == lowered for key, _ in ex.request.headers)
    return lambda ex: any(key.lower() == lowered and glob.match(got) for key, got in ex.request.headers)


def _body(value: str, in_bin: bool) -> Test:
    if not value:
        raise _Bad("needs the text to look for, like body:order_id")
    needle = value.encode("utf-8", "surrogatepass")
    # The decoded body (Content-Encoding undone), as kept: searched as bytes, never decoded whole.
    return lambda ex: needle in ex.request.decoded


def _json(value: str, in_bin: bool) -> Test:
    dotted, equals, wanted = value.partition("=")
    if not dotted:
        raise _Bad("needs a dotted path, like json:data.items.0.id=42")
    steps = tuple(dotted.split("."))
    glob = Glob(wanted) if equals else None

    def test(ex: Exchange) -> bool:
        if ex.request.json is None:
            return False
        found, ok = _at(ex.request.json_value(), steps)
        if not ok:
            return False
        if glob is None:
            return True
        # Strings compare as they are; numbers, booleans and null as their JSON text.
        return glob.match(found if isinstance(found, str) else json.dumps(found))

    return test


def _at(value: Any, steps: tuple[str, ...]) -> tuple[Any, bool]:
    for step in steps:
        if isinstance(value, dict) and step in value:
            value = value[step]
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        elif isinstance(value, list) and step.isascii() and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None, False
    return value, True


def _bin(value: str, in_bin: bool) -> Test:
    if not BIN_PATTERN.fullmatch(value):
        raise _Bad("a bin is 1 to 64 of A-Z a-z 0-9 _ -")
    return lambda ex: ex.request.bin == value


def _client(value: str, in_bin: bool) -> Test:
    if not value:
        raise _Bad("needs an address (a glob), like client:127.0.0.1")
    glob = Glob(value)
    return lambda ex: glob.match(ex.request.remote_addr)


def _rule(value: str, in_bin: bool) -> Test:
    if not value:
        raise _Bad("needs a rule name (a glob)")
    glob = Glob(value)
    return lambda ex: ex.rule is not None and glob.match(str(ex.rule.get("name", "")))


def _check(value: str, in_bin: bool) -> Test:
    if value not in CHECKS:
        raise _Bad("is check:ok or check:failed")
    # Signature checks (section 11) record a verdict per exchange; until then none has one.
    return lambda ex: False


# term key -> compiler of its value (the order is the one error messages list).
TERMS: dict[str, Callable[[str, bool], Test]] = {
    "method": _method,
    "status": _status,
    "path": _path,
    "query": _query,
    "header": _header,
    "body": _body,
    "json": _json,
    "bin": _bin,
    "client": _client,
    "rule": _rule,
    "check": _check,
}


class Glob:
    """A pattern whose only wildcard is `*` (any run of characters), matched whole.

    Split once into literals; a text matches when it starts with the first,
    ends with the last and holds the others in order between. Leftmost search
    is exact for `*`-only patterns and linear in the text.
    """

    __slots__ = ("exact", "parts")

    def __init__(self, pattern: str) -> None:
        self.parts = pattern.split("*")
        self.exact = len(self.parts) == 1

    def match(self, text: str) -> bool:
        parts = self.parts
        if self.exact:
            return text == parts[0]
        first, last = parts[0], parts[-1]
        if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
            return False
        at, end = len(first), len(text) - len(last)
        for literal in parts[1:-1]:
            found = text.find(literal, at, end)
            if found < 0:
                return False
            at = found + len(literal)
        return True
