"""The answer type: what a handler decides to send, as a value.

Capture, controls, rules and routes never write to the socket; they return an
`Answer`, and the web floor sends it. A body is bytes, or an iterable of byte
chunks for answers that stream (`/stream`, `/drip`, forwarding); the recorder
counts and hashes the chunks as they are actually sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Headers = list[tuple[str, str]]


@dataclass
class Answer:
    """Status, header lines in order, and the body (bytes or chunks)."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes | Iterable[bytes] = b""
    # The body is the echo JSON of the request, which history rebuilds from the
    # record on read instead of keeping it twice.
    rebuildable: bool = False
    # Seconds to wait before sending (httpbin's /delay): the web floor waits
    # them out under the --max-held budget, never the handler.
    delay: float = 0.0

    @property
    def streams(self) -> bool:
        return not isinstance(self.body, bytes)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)
