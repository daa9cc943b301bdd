"""Library log lines in text mode are inert: a client's escape sequences quoted by a
waitress warning reach the reader's terminal as visible escapes, never as codes."""

from __future__ import annotations

import logging

from echo.observe.logs import TextLogFormatter


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("waitress", logging.WARNING, __file__, 1, message, args, None)


def test_escape_sequences_in_a_library_warning_are_made_visible() -> None:
    line = TextLogFormatter().format(record("bad header %r: %s", "x", "\x1b]0;owned\x07\x1b[2J"))
    assert "\x1b" not in line and "\x07" not in line
    assert "\\x1b]0;owned\\x07\\x1b[2J" in line
    assert " WARNING waitress: bad header 'x': " in line


def test_a_traceback_keeps_its_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        entry = logging.LogRecord("echo", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    lines = TextLogFormatter().format(entry).split("\n")
    assert len(lines) > 2 and lines[-1] == "ValueError: boom"
