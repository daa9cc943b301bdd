"""Curl: a recorded request -> a bash command that sends the same request again.

Every argument is single-quoted (with ' written as '\\''), so quotes, $,
backticks and backslashes reach curl untouched. Bodies that hold bytes an
argument cannot carry (NUL) or are not text are piped in through printf with
octal escapes.
"""

from __future__ import annotations

from .records import RequestRecord

# Headers curl derives from the URL and body itself; sending them again would
# duplicate or contradict what it computes.
_DERIVED = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _printf_format(data: bytes) -> str:
    out = []
    for byte in data:
        char = chr(byte)
        if char == "%":
            out.append("%%")
        elif char == "\\":
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def curl_command(record: RequestRecord) -> str:
    """One shell command; a note on a comment line first when it cannot be exact."""
    notes = []
    parts = ["curl", "--globoff", "--path-as-is", "--silent", "--show-error"]
    if record.method == "HEAD":
        parts.append("--head")
    elif record.method != "GET" or record.body_size:
        parts += ["--request", quote(record.method)]
    parts.append(quote(record.url))
    for name, value in record.headers:
        if name.lower() in _DERIVED:
            continue
        parts += ["--header", quote(f"{name};" if value == "" else f"{name}: {value}")]
        if value == "[redacted]":
            notes.append(f"# {name} was redacted in history; put the real value back before running this")
    if record.truncated:
        notes.append(f"# the body was cut to {len(record.body)} of {record.body_size} bytes in history")
    stdin = ""
    if record.body:
        data = record.body
        try:
            text = data.decode("utf-8")
            plain = "\x00" not in text and "\r" not in text
        except UnicodeDecodeError:
            plain = False
        if plain:
            parts += ["--data-binary", quote(text)]
        else:
            stdin = f"printf {quote(_printf_format(data))} | "
            parts += ["--data-binary", "@-"]
    elif record.method in ("POST", "PUT", "PATCH") and record.body_size == 0:
        parts += ["--data-binary", "''"]
    return "".join(line + "\n" for line in notes) + stdin + " ".join(parts) + "\n"
