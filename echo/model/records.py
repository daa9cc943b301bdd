"""Typed records: what arrived, what was planned, what was sent, and their ids.

Records hold raw facts (bytes, pairs in arrival order); the JSON, HTML, HAR and
curl views are derived from them on demand by `documents`, `har` and `curl`, so
the hot path never serialises anything it does not send.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Pairs = tuple[tuple[str, str], ...]


class _JSONFromBody:
    """The `json` of a kept request whose JSON is parsed again from its body on read."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "JSON_FROM_BODY"


# Parsed JSON costs several times its text in Python objects (a 1 KiB webhook is
# ~4.5 KB in ~45 objects, a 64 KiB document of small objects ~300 KiB of dicts),
# so history keeps the body alone.
JSON_FROM_BODY = _JSONFromBody()


class ParsedJSON:
    """The `json` of a captured request: its body parsed once, for the answer.

    It says that the value came from the body itself, so history may keep
    JSON_FROM_BODY in its place (`RequestRecord.kept_json`) without copying
    the record: the record's fields never change.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"ParsedJSON({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParsedJSON) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def _quick_init(cls: type[Any]) -> type[Any]:
    """The frozen record with an `__init__` that sets its slots directly.

    A frozen dataclass's own `__init__` goes through `object.__setattr__` for
    every field, the longest step of building the records of each request
    (about 6 us of a RequestRecord's 24 fields, against 2.6 us this way). The
    signature and defaults are the dataclass's; the record stays frozen to
    everything else. A class with a default factory or `__post_init__` keeps
    the dataclass's `__init__`.
    """
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(f.default_factory is not dataclasses.MISSING for f in fields):
        return cls
    names = [f.name for f in fields]
    space: dict[str, Any] = {f"_set_{name}": cls.__dict__[name].__set__ for name in names}
    lines = [f"def __init__(self, {', '.join(names)}):", *(f"    _set_{name}(self, {name})" for name in names)]
    exec("\n".join(lines), space)  # noqa: S102 - the source is built from the class's own field names
    init = space["__init__"]
    init.__defaults__ = tuple(f.default for f in fields if f.default is not dataclasses.MISSING) or None
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init
    return cls


@_quick_init
@dataclass(frozen=True, slots=True)
class FileInfo:
    """One uploaded file: its metadata and digest (the bytes stay in the body)."""

    field: str
    filename: str
    content_type: str
    size: int
    sha256: str


@_quick_init
@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Everything that arrived with one request, parsed once."""

    id: str
    started: float  # epoch seconds
    method: str
    url: str
    path: str
    query_string: str
    http_version: str
    remote_addr: str
    args: Pairs
    headers: Pairs
    cookies: Pairs
    form: Pairs
    files: tuple[FileInfo, ...]
    json: Any
    body: bytes  # bytes on the wire (possibly cut to --keep-body in history)
    body_size: int  # full size on the wire
    body_sha256: str  # of the full bytes on the wire
    content: bytes | None  # decoded bytes when Content-Encoding was undone, else None
    content_encoding: str | None
    errors: tuple[str, ...]
    truncated: bool = False
    too_large: bool = False
    bin: str | None = None  # the bin of /b/{bin}/... or X-Echo-Bin (section 9)
    bin_path: str | None = None  # the path below /b/{bin} ("/" when nothing follows)

    @property
    def decoded(self) -> bytes:
        """The body after Content-Encoding was undone (the wire bytes when none was)."""
        return self.body if self.content is None else self.content

    def json_value(self) -> Any:
        """The parsed JSON body; parsed again from the kept body when history left it out.
        Capture parsed these very bytes once already, so this cannot fail."""
        value = self.json.value if isinstance(self.json, ParsedJSON) else self.json
        if value is JSON_FROM_BODY:
            return json.loads(self.decoded.decode("utf-8-sig"))
        return value

    @property
    def kept_json(self) -> Any:
        """The `json` history keeps: JSON_FROM_BODY for a body capture parsed,
        which is parsed again on read, else the value as it is."""
        return JSON_FROM_BODY if isinstance(self.json, ParsedJSON) else self.json

    def header(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return default


@_quick_init
@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """What was sent back. `body` is None when it is the echo document, which is
    rebuilt from the request record on read instead of being stored twice."""

    status: int
    headers: Pairs
    body: bytes | None
    body_size: int
    body_sha256: str
    content_type: str
    truncated: bool = False


@_quick_init
@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, as kept in history."""

    request: RequestRecord
    response: ResponseRecord
    controls: Mapping[str, Any]  # the `controls` of the echo document: what was applied
    duration_ms: float
    rule: Mapping[str, Any] | None = None  # {"name", "id", "step"} of the rule that answered, if one did

    @property
    def id(self) -> str:
        return self.request.id


# 16 hex digits of microseconds, 8 of the process, 4 of a sequence (see IdSource).
ID_LENGTH = 28
ID_PATTERN = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")


@dataclass
class IdSource:
    """Ids that are unique across processes and sort as strings in arrival order.

    16 hex digits of microseconds since the epoch (strictly increasing within a
    process, even when the clock stalls or steps back) followed by 8 random hex
    digits drawn per process, plus a 4-digit per-process sequence: two replicas
    that start in the same microsecond still never collide.
    """

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: int = 0
    _node: str = field(default_factory=lambda: os.urandom(4).hex())
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def next(self) -> tuple[str, float]:
        """A new id and its time in epoch seconds."""
        now = time.time_ns() // 1000
        with self._lock:
            if now <= self._last:
                now = self._last + 1
            self._last = now
            seq = next(self._seq) & 0xFFFF
        return f"{now:016x}{self._node}{seq:04x}", now / 1_000_000

