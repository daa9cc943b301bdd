"""Redaction: the one way a secret is hidden in history, logs and exports.

Also the test for Echo's own inspector credentials (--ui-auth), which a browser
that logged in may send along with echo requests: they are hidden wherever
they would otherwise be kept or shown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Collection

from .records import Pairs

REDACTED = "[redacted]"


def redact_pairs(pairs: Pairs, names: Collection[str]) -> Pairs:
    """`pairs` with the value of every name in `names` (lowercase) as REDACTED.

    Returns `pairs` itself when nothing is hidden, so callers can tell by
    identity that no copy was needed."""
    if not names or not any(name.lower() in names for name, _ in pairs):
        return pairs
    return tuple((name, REDACTED if name.lower() in names else value) for name, value in pairs)


def basic_credentials_match(header: str, expected: str) -> bool:
    """HTTP Basic credentials in `header` equal USER:PASS, compared in constant time.

    Both sides are hashed first so that the comparison takes as long for a
    guess of the wrong length as for one of the right length.
    """
    scheme, _, encoded = header.strip().partition(" ")
    given = b""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected.encode("utf-8")).digest())


def hide_credentials(pairs: Pairs, expected: str) -> Pairs:
    """`pairs` with any Authorization header that carries the USER:PASS `expected` as REDACTED."""
    if not expected or not any(
        name.lower() == "authorization" and basic_credentials_match(value, expected) for name, value in pairs
    ):
        return pairs
    return tuple(
        (name, REDACTED if name.lower() == "authorization" and basic_credentials_match(value, expected) else value)
        for name, value in pairs
    )
