"""Curl: a recorded request -> a shell command that sends the same request again.

The command is written for bash (and works in zsh and dash, which share the
quoting it uses). It sends the same method, URL, headers and body bytes:

- Every argument is single-quoted (a ' inside is written '\\''), so quotes,
  `$`, backticks and backslashes reach curl untouched. An argument that holds
  a control character (a tab in a header) is written as $'...' instead, so a
  terminal never sees a raw control byte when the command is pasted.
- Text bodies go inline with --data-raw (never --data-binary, which would read
  a body starting with '@' as a local file name). Binary bodies, bodies with
  NUL or CR bytes, and large ones are piped in with `printf` and three-digit
  octal escapes, a shell builtin, so neither the argument length limit nor a
  NUL byte stops them.
- Nothing from the request is ever where curl looks for an option or a file:
  the URL goes after --url, a request target that does not start with '/'
  ('*', '-K/dev/stdin', an absolute URL naming another host) is sent as it was
  with --request-target to the request's own host, and only a Host header that
  is a plain host[:port] is ever put in the URL (one with userinfo, a path or
  spaces would send curl somewhere the request did not name).
- Headers curl adds by itself (User-Agent, Accept, the Content-Type of a body,
  Expect) are switched off when the original request did not have them.

When the command cannot be exact (a body cut to --keep-body, a redacted
header), comment lines before it say so.
"""

from __future__ import annotations

import re

from ..config import flag
from ..model.http import escape_target, is_token
from ..model.records import RequestRecord
from ..model.redact import REDACTED

# Headers curl derives from the URL and the body; sending them again would
# duplicate or contradict what it computes.
_DERIVED = frozenset({"host", "content-length", "transfer-encoding", "connection"})

# Headers curl adds on its own unless told not to; an empty `Name:` turns one off.
_CURL_DEFAULTS = ("User-Agent", "Accept")
_CURL_BODY_DEFAULTS = ("Content-Type", "Expect")

# A body goes inline as one argument when its quoted form is at most this
# long. Linux caps a single argument at 128 KiB (MAX_ARG_STRLEN) and quoting
# can grow text fourfold (each ' becomes '\''); larger bodies are piped in
# through printf, a shell builtin that no exec limit applies to.
INLINE_ARG_MAX = 64 * 1024

# What a Host header may be to go into the URL: a name, an IPv4 or [IPv6]
# literal, and a port. Userinfo ('@'), a path, '?', '#' or a space would
# change which host curl connects to.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_ABSOLUTE = re.compile(r"(https?)://([^/?#]*)(.*)", re.DOTALL)
# Where the command goes when the request named no usable host.
FALLBACK_AUTHORITY = "localhost"


def quote(text: str) -> str:
    """One shell word holding exactly `text` (which must not contain NUL)."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        return _ansi_c_quote(text)
    return "'" + text.replace("'", "'\\''") + "'"


def _ansi_c_quote(text: str) -> str:
    out = ["$'"]
    for char in text:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == "'":
            out.append("\\'")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    out.append("'")
    return "".join(out)


def printf_format(data: bytes) -> str:
    """A printf format that prints exactly `data`: printable ASCII as is, the rest as \\ooo."""
    out = []
    for byte in data:
        if byte == 0x25:  # %
            out.append("%%")
        elif byte == 0x5C:  # backslash
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            # Always three digits: a following digit is never read as part of the escape.
            out.append(f"\\{byte:03o}")
    return "".join(out)


def printf_command(data: bytes) -> str:
    """A shell command that writes exactly `data` to stdout.

    `--` ends printf's options: a body starting with '-' is data, not a flag.
    """
    return f"printf -- {quote(printf_format(data))}"


def _inline_argument(data: bytes) -> str | None:
    """The body as one quoted argument, or None when it must be piped in."""
    if len(data) > INLINE_ARG_MAX:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # NUL cannot be in an argument at all; CR and other control bytes are exact
    # in a quoted word but are easily changed by terminals and editors on paste.
    if any((ord(char) < 0x20 and char not in "\n\t") or ord(char) == 0x7F for char in text):
        return None
    quoted = quote(text)
    return quoted if len(quoted.encode("utf-8")) <= INLINE_ARG_MAX else None


def destination(record: RequestRecord) -> tuple[str, str | None, list[str]]:
    """(the URL for --url, a request target for --request-target or None, notes).

    record.url is `scheme://<Host as sent><target as sent>` for a target that
    starts with '/', and the target itself for any other ('*', 'a/b',
    '-K/dev/stdin', an absolute URL). Either way the command connects to the
    host the Host header named, never to one taken from the target.
    """
    notes: list[str] = []
    host = record.header("Host")
    match = _ABSOLUTE.fullmatch(record.url)
    scheme = match.group(1) if match else "http"
    if host is not None and _AUTHORITY.fullmatch(host):
        authority = host
    elif host is None and match and _AUTHORITY.fullmatch(match.group(2)):
        authority = match.group(2)  # no Host (HTTP/1.0): the address the server was reached at
    else:
        authority = FALLBACK_AUTHORITY
        notes.append(
            f"# the Host header {host!r} is not a host[:port]; this sends the request to "
            f"{FALLBACK_AUTHORITY} with that Host header: change the URL to reach the server"
        )
    prefix = f"{scheme}://{escape_target(host.encode('latin-1', 'replace')) if host is not None else ''}"
    if match and record.url.startswith(prefix) and record.url[len(prefix):].startswith("/"):
        return f"{scheme}://{authority}{record.url[len(prefix):]}", None, notes
    if match and host is None and match.group(3).startswith("/"):
        return f"{scheme}://{authority}{match.group(3)}", None, notes
    return f"{scheme}://{authority}/", record.url, notes


def curl_command(record: RequestRecord) -> str:
    """One shell command, with comment lines first when it cannot be exact."""
    parts = ["curl", "--globoff", "--path-as-is", "--silent", "--show-error"]
    if record.http_version == "HTTP/1.0":
        parts.append("--http1.0")
    has_length = record.header("Content-Length") is not None
    send_body = record.body_size > 0 or has_length
    if record.method == "HEAD" and not send_body:
        parts.append("--head")
    elif record.method != "GET" or send_body:
        parts += ["--request", quote(record.method)]
    url, target, notes = destination(record)
    parts += ["--url", quote(url)]
    if target is not None:
        parts += ["--request-target", quote(target)]
    host = record.header("Host")
    if host is None:
        parts += ["--header", quote("Host:")]  # the request had none; curl would add one
    elif not _AUTHORITY.fullmatch(host):
        parts += ["--header", quote(f"Host: {host}")]  # the URL could not carry it

    present = {name.lower() for name, _ in record.headers}
    for name, value in record.headers:
        if name.lower() in _DERIVED:
            continue
        if not is_token(name):
            # curl reads "--header @file" as a file of headers; a name is a token, so never '@'.
            notes.append(f"# a header named {name!r} is not an HTTP token; it is left out")
            continue
        if "\x00" in name or "\x00" in value:
            notes.append(f"# the {name!r} header held a NUL byte, which no command-line argument can carry; it is left out")
            continue
        # "Name;" is curl's way to send a header with an empty value ("Name:" would remove it).
        parts += ["--header", quote(f"{name};" if value == "" else f"{name}: {value}")]
        if value == REDACTED:
            notes.append(f"# {name} was redacted in history; put the real value back before running this")
    defaults = _CURL_DEFAULTS + (_CURL_BODY_DEFAULTS if send_body else ())
    parts += [arg for name in defaults if name.lower() not in present for arg in ("--header", quote(f"{name}:"))]

    stdin = ""
    if send_body:
        if record.truncated:
            notes.append(
                f"# the body was cut to {len(record.body)} of {record.body_size} bytes in history "
                f"({flag('keep_body')}); this sends the part that was kept"
            )
        argument = _inline_argument(record.body)
        if argument is not None:
            parts += ["--data-raw", argument]
        else:
            stdin = printf_command(record.body) + " | "
            parts += ["--data-binary", "@-"]
    return "".join(line + "\n" for line in notes) + stdin + " ".join(parts) + "\n"
