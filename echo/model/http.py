"""HTTP vocabulary every floor shares: tokens, status lines, media types, text.

One definition each of the things several modules need to agree on: what an
HTTP token is, the status line of a code, which media types are JSON, how a
body is read as text, how a header value goes on the wire, and the Content
Security Policies Echo sends.
"""

from __future__ import annotations

import codecs
import re
from http import HTTPStatus

from werkzeug.http import parse_options_header

# RFC 9110 section 5.6.2: the characters of a header name, a method, a cookie name.
TOKEN_CHARS = r"!#$%&'*+.^_`|~0-9A-Za-z-"
TOKEN = re.compile(f"[{TOKEN_CHARS}]+")

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"

# Pages Echo itself renders: its own styles only, no script needed.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Anything whose bytes a caller chose (and the echo JSON, which is made of the
# caller's bytes) is sandboxed: even if a browser renders it, it has no origin.
SANDBOX_CSP = "sandbox"

# Headers that frame the message or belong to one connection: a caller setting
# them would desynchronise the client (response splitting, smuggling).
# PEP 3333's hop-by-hop names are among them: waitress refuses an app that sets one.
FRAMING_HEADERS = frozenset({
    "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer", "trailers",
    "proxy-connection", "proxy-authenticate", "proxy-authorization",
})

_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_STATUS_LINES = {code: f"{code} {phrase}" for code, phrase in _PHRASES.items()}


def phrase(code: int) -> str | None:
    """The reason phrase of a status code, or None for one that has no name."""
    return _PHRASES.get(code)


def status_line(code: int) -> str:
    """The status line WSGI's start_response takes: "404 Not Found"."""
    return _STATUS_LINES.get(code) or f"{code} Unknown"


def is_token(text: str) -> bool:
    return TOKEN.fullmatch(text) is not None


def is_json_type(mimetype: str) -> bool:
    """application/json and every +json suffix type (RFC 6839)."""
    return mimetype == JSON_TYPE or mimetype.endswith("+json")


def wire(value: str) -> str:
    """Header values go out as Latin-1 text; send UTF-8 text as its bytes."""
    if value.isascii():
        return value
    return value.encode("utf-8").decode("latin-1")


_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]*")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_target(raw: bytes) -> str:
    """A request target (or Host) exactly as sent, percent-encoding only bytes a URL cannot hold."""
    if _VISIBLE_ASCII.fullmatch(raw):
        return raw.decode("ascii")
    return "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in raw)


def content_type_options(content_type: str) -> tuple[str, dict[str, str]]:
    """The lowercased media type of a Content-Type value and its parameters."""
    # werkzeug.http is sans-IO (no WSGI), so the bottom floor may lean on its
    # parser, which knows quoting and RFC 2231 continuations.
    mimetype, options = parse_options_header(content_type)
    return mimetype.lower(), options


def codec_name(declared: str) -> str | None:
    """Python's codec for a declared charset, or None when it has none by that name."""
    try:
        return codecs.lookup(declared).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name, e.g. RFC 2231 charset*=UTF-8''%00
        return None


def decode_text(data: bytes, content_type: str | None) -> str | None:
    """The body as text in its declared charset (UTF-8 when none), or None."""
    charset = "utf-8"
    if content_type:
        declared = content_type_options(content_type)[1].get("charset")
        if declared:
            charset = codec_name(declared) or charset
    try:
        text = data.decode(charset)
    except (ValueError, LookupError):  # idna, punycode and undefined raise a bare UnicodeError (a ValueError)
        return None
    if not text.isascii() and _LONE_SURROGATE.search(text):
        # utf-7 "+2AA-" and unicode_escape "\ud800" decode to lone surrogates,
        # which no page, JSON document or log line can encode: not text.
        return None
    return text
