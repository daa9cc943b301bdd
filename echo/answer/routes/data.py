"""httpbin's dynamic data family: /bytes, /stream, /stream-bytes, /delay, /drip, /range.

Sizes are bounded by --max-body, durations by --max-delay and /stream's lines
by --max-httpbin-n (SPEC section 8); httpbin clamps silently (100 KiB, 10 s,
100 lines), Echo refuses with a 400 that names the setting. Bodies that stream
are generators: the web floor sends each chunk as it comes and the recorder
counts and hashes what was sent. /delay waits through `Answer.delay` (the web
floor holds it under --max-held); only /drip and /range pause between chunks,
inside their generators, and those pauses add up to at most --max-delay.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections.abc import Iterator

from ...model.records import RequestRecord
from ..answer import Answer
from .arguments import at_most, bad, path_int, query, query_float, query_int, refusing, seconds
from .common import body_answer, json_answer, request_dict
from .table import RouteLimits, route

OCTETS = "application/octet-stream"
# What httpbin's bare werkzeug Responses (its refusals here) say they are.
PLAIN = "text/plain; charset=utf-8"
# httpbin's default chunk for /stream-bytes and /range.
CHUNK_SIZE = 10 * 1024
# /drip sends at most this many bytes per write: httpbin writes one byte at a
# time, which is the same bytes on a Content-Length framed wire but costs a
# write per byte; the pauses keep httpbin's pace (see _drip).
DRIP_WRITE = 64 * 1024
# httpbin's /delay methods (Flask adds HEAD).
_DELAY_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "TRACE"}
# /range's resource: byte i is _LETTERS[i % 26].
_LETTERS = b"abcdefghijklmnopqrstuvwxyz"


# --- seeded bytes, exactly as httpbin makes them -----------------------------
#
# httpbin seeds Python's random with `seed` and calls randint(0, 255) once per
# byte. randint(0, 255) is _randbelow(256): getrandbits(9) - the top 9 bits of
# one 32-bit Mersenne Twister word - drawn again while it is 256 or more. That
# is 1.6 s per MiB in a Python loop; the same words drawn in bulk and sifted
# with bytes.translate and itertools.compress give the same bytes about 14
# times faster. `_SIFT_MATCHES` checks the shortcut against randint itself
# when the module loads, so a Python whose random works otherwise falls back
# to randint instead of answering other bytes than httpbin would.

_SHIFTED = bytes((top << 1) & 0xFF for top in range(256))  # top byte's low 7 bits, as the value's high 7
_HIGH_BIT = bytes(next_ >> 7 for next_ in range(256))  # next byte's high bit, as the value's low bit
_KEPT = bytes(int(top < 0x80) for top in range(256))  # a 9-bit draw under 256: its top bit is 0


def _sifted(rng: random.Random, draws: int) -> bytes:
    """The randint(0, 255) values that `draws` 9-bit draws give, in order (about half of them)."""
    raw = rng.getrandbits(32 * draws).to_bytes(4 * draws, "little")  # word i is bits 32i..32i+31
    top, below = raw[3::4], raw[2::4]
    values = int.from_bytes(top.translate(_SHIFTED), "big") | int.from_bytes(below.translate(_HIGH_BIT), "big")
    return bytes(itertools.compress(values.to_bytes(draws, "big"), top.translate(_KEPT)))


def _randint_bytes(rng: random.Random, draws: int) -> bytes:
    return bytes(rng.randint(0, 255) for _ in range(draws // 2))


def _sift_matches() -> bool:
    for seed in (0, 1, 12345):
        sifted, rng = b"", random.Random(seed)
        while len(sifted) < 1000:
            sifted += _sifted(rng, 256)
        if sifted[:1000] != _randint_bytes(random.Random(seed), 2000):
            return False
    return True


_SIFT_MATCHES = _sift_matches()
# Draws per step: 64 KiB of values at a time keeps the big integers small.
_DRAWS = 2 * 64 * 1024


def seeded_chunks(seed: int, size: int, chunk_size: int) -> Iterator[bytes]:
    """`size` bytes as httpbin's random.seed(seed) + randint(0, 255) make them, in `chunk_size` pieces."""
    rng = random.Random(seed)
    draw = _sifted if _SIFT_MATCHES else _randint_bytes
    pending = bytearray()
    sent = 0
    while sent < size:
        want = min(chunk_size, size - sent)
        while len(pending) < want:
            pending += draw(rng, _DRAWS)
        chunk = bytes(pending[:want])
        del pending[:want]
        sent += want
        yield chunk


def _random_chunks(size: int, chunk_size: int) -> Iterator[bytes]:
    # Unseeded bytes are random in httpbin too; the OS's are as good and cost nothing.
    for start in range(0, size, chunk_size):
        yield os.urandom(min(chunk_size, size - start))


def _size(params: dict[str, str], name: str, limits: RouteLimits) -> int:
    size = path_int(params, name)
    at_most(name, size, limits.max_body, "max_body")
    return size


def _seed(record: RequestRecord) -> int | None:
    raw = query(record, "seed")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad("seed must be a whole number", "seed", raw) from None


def _chunk_size(record: RequestRecord) -> int:
    return max(1, query_int(record, "chunk_size", CHUNK_SIZE))  # httpbin: at least 1


@route("/bytes/{n}", {"GET"})
@refusing
def random_bytes(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    size = _size(params, "n", limits)
    seed = _seed(record)
    body = b"".join(seeded_chunks(seed, size, size or 1)) if seed is not None else os.urandom(size)
    return body_answer(200, body, OCTETS)


@route("/stream-bytes/{n}", {"GET"})
@refusing
def stream_bytes(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    size = _size(params, "n", limits)
    seed = _seed(record)
    chunk_size = _chunk_size(record)
    chunks = seeded_chunks(seed, size, chunk_size) if seed is not None else _random_chunks(size, chunk_size)
    return _streamed(200, chunks, OCTETS)


@route("/stream/{n}", {"GET"})
@refusing
def stream_lines(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    lines = path_int(params, "n")
    at_most("n", lines, limits.max_n, "max_httpbin_n")
    doc = request_dict(record, "url", "args", "headers", "origin")

    def generate() -> Iterator[bytes]:
        for number in range(lines):
            # httpbin's json.dumps: its key order, ", " and ": ", one line each.
            yield (json.dumps({**doc, "id": number}) + "\n").encode("utf-8")

    return _streamed(200, generate(), "application/json")


@route("/delay/{delay}", _DELAY_METHODS)
@refusing
def delay(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    wait = seconds(params["delay"], "delay")
    at_most("delay", wait, limits.max_delay, "max_delay")
    answer = json_answer(request_dict(record, "url", "args", "form", "data", "origin", "headers", "files"))
    answer.delay = wait
    return answer


@route("/drip", {"GET"})
@refusing
def drip(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    duration = query_float(record, "duration", 2.0)
    size = query_int(record, "numbytes", 10)
    code = query_int(record, "code", 200)
    wait = query_float(record, "delay", 0.0)
    if size <= 0:
        return body_answer(400, b"number of bytes must be positive", PLAIN)
    at_most("numbytes", size, limits.max_body, "max_body")
    at_most("duration+delay", duration + wait, limits.max_delay, "max_delay")
    if not 200 <= code <= 599:
        raise bad("code must be a status from 200 to 599", "code", code)
    answer = _streamed(code, _drip(size, duration), OCTETS, size)
    answer.delay = wait
    return answer


def _drip(size: int, duration: float) -> Iterator[bytes]:
    """httpbin's drip: a byte every duration/size seconds. Several bytes go in one
    write when their pauses are too short to matter (under 10 ms), and there is no
    pause after the last byte (httpbin has one, which a client, whose answer is
    complete by then, never sees: it only keeps the connection and the worker)."""
    pause = duration / size
    per_write = max(1, min(DRIP_WRITE, int(0.01 / pause) if pause else DRIP_WRITE))
    for start in range(0, size, per_write):
        if pause and start:
            time.sleep(pause * per_write)
        yield b"*" * min(per_write, size - start)


@route("/range/{numbytes}", {"GET"})
@refusing
def range_request(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    size = path_int(params, "numbytes")
    tags = [("ETag", f"range{size}"), ("Accept-Ranges", "bytes")]
    if size == 0:
        text = f"number of bytes must be in the range (0, {limits.max_body}]"
        return body_answer(404, text.encode("ascii"), PLAIN, tags)
    at_most("numbytes", size, limits.max_body, "max_body")
    chunk_size = _chunk_size(record)
    duration = query_float(record, "duration", 0.0)
    at_most("duration", duration, limits.max_delay, "max_delay")
    first, last = byte_range(record.header("Range"), size)
    if first > last or not 0 <= first < size or not 0 <= last < size:
        return body_answer(416, b"", PLAIN, [*tags, ("Content-Range", f"bytes */{size}")])
    headers = [*tags, ("Content-Range", f"bytes {first}-{last}/{size}")]
    status = 200 if (first, last) == (0, size - 1) else 206
    return _streamed(status, _alphabet(first, last, chunk_size, duration / size), OCTETS, last + 1 - first, headers)


def byte_range(header: str | None, size: int) -> tuple[int, int]:
    """httpbin's reading of Range: one `bytes=first-last`, either end open; what it cannot read is the whole."""
    first: int | None = None
    last: int | None = None
    text = (header or "").strip()
    parts = text.split("=")
    if text.startswith("bytes") and len(parts) == 2:
        ends = parts[1].split("-")
        first = _int_or_none(ends[0])
        last = _int_or_none(ends[1]) if len(ends) > 1 else None
    if first is None and last is None:
        return 0, size - 1
    if first is None:
        assert last is not None
        return max(0, size - last), size - 1  # the last `last` bytes
    return first, size - 1 if last is None else last


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _alphabet(first: int, last: int, chunk_size: int, pause_per_byte: float) -> Iterator[bytes]:
    """Byte i is "abc...z"[i % 26], so the resource is the same on every request and ranges join up.
    httpbin pauses after each full chunk and before a short last one; the pause
    after the last chunk is left out, as in _drip."""
    for start in range(first, last + 1, chunk_size):
        end = min(start + chunk_size, last + 1)
        if pause_per_byte and start > first:
            time.sleep(pause_per_byte * chunk_size)  # after the full chunk before this one
        if pause_per_byte and end - start < chunk_size:
            time.sleep(pause_per_byte * (end - start))
        offset = start % 26
        yield (_LETTERS * ((end - start) // 26 + 2))[offset:offset + end - start]


def _streamed(status: int, chunks: Iterator[bytes], content_type: str, length: int | None = None,
              headers: list[tuple[str, str]] | None = None) -> Answer:
    """A streamed answer: chunked, or Content-Length framed when the size is known (as httpbin does)."""
    answer = body_answer(status, b"", content_type, headers)
    answer.headers = [(name, value) for name, value in answer.headers if name.lower() != "content-length"]
    if length is not None:
        answer.headers.insert(1, ("Content-Length", str(length)))
    answer.body = chunks
    return answer
