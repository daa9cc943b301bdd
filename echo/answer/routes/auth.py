"""httpbin's auth family: Basic, hidden Basic, Bearer and Digest challenges.

/basic-auth/{user}/{passwd}, /hidden-basic-auth/{user}/{passwd}, /bearer,
/digest-auth/{qop}/{user}/{passwd}[/{algorithm}[/{stale_after}]].

Digest keeps its state where httpbin keeps it, in cookies the client sends
back: `stale_after` (how many more answers before the nonce goes stale, or
`never`), `last_nonce` (a nonce seen with a failed or stale answer, which is
stale when it comes again) and `fake` (for `?require-cookie=1`, which checks
that the client keeps the cookies of a challenge).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import urlsplit

from werkzeug.datastructures import Authorization

from ...model.records import RequestRecord
from ..answer import Answer, Headers
from .common import json_answer, refused
from .cookies import cookie_problem
from .status import empty_answer
from .table import RouteLimits, route

REALM = "me@kennethreitz.com"  # httpbin's, which clients' tests expect
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}
_QOPS = ("auth", "auth-int")
_BASIC_CHALLENGE = ("WWW-Authenticate", 'Basic realm="Fake Realm"')


def _basic_ok(record: RequestRecord, user: str, passwd: str) -> bool:
    # werkzeug's parsing, as httpbin's request.authorization: "Basic" in any
    # case, base64 of UTF-8 "user:password".
    auth = Authorization.from_header(record.header("Authorization"))
    return auth is not None and auth.type == "basic" and auth.username == user and auth.password == passwd


@route("/basic-auth/{user}/{passwd}", {"GET"})
def basic_auth(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    if not _basic_ok(record, params["user"], params["passwd"]):
        return empty_answer(401, [_BASIC_CHALLENGE])
    return json_answer({"authenticated": True, "user": params["user"]})


@route("/hidden-basic-auth/{user}/{passwd}", {"GET"})
def hidden_basic_auth(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    if not _basic_ok(record, params["user"], params["passwd"]):
        return empty_answer(404)
    return json_answer({"authenticated": True, "user": params["user"]})


@route("/bearer", {"GET"})
def bearer(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    authorization = record.header("Authorization") or ""
    if not authorization.startswith("Bearer "):  # as httpbin: case-sensitive, any token, even empty
        return empty_answer(401, [("WWW-Authenticate", "Bearer")])
    return json_answer({"authenticated": True, "token": authorization[len("Bearer "):]})


def digest_hash(data: bytes, algorithm: str | None) -> str:
    """httpbin's H: SHA-256 or SHA-512 by name, MD5 for anything else."""
    return _HASHES.get(algorithm or "MD5", hashlib.md5)(data).hexdigest()


def _challenge(record: RequestRecord, qop: str | None, algorithm: str, stale: bool, cookies: Headers) -> Answer:
    # RFC 7616 leaves the nonce to the server; httpbin hashes the client's
    # address, the time and random bytes, and so does this.
    nonce = digest_hash(f"{record.remote_addr}:{time.time()}:".encode() + os.urandom(10), algorithm)
    opaque = digest_hash(os.urandom(10), algorithm)
    offered = ", ".join(_QOPS) if qop is None else qop
    challenge = (
        f'Digest realm="{REALM}", nonce="{nonce}", opaque="{opaque}", qop="{offered}", '
        f"algorithm={algorithm}, stale={'TRUE' if stale else 'FALSE'}"
    )
    return empty_answer(401, [("WWW-Authenticate", challenge), *cookies])


def _set_cookie(name: str, value: str) -> tuple[str, str]:
    return ("Set-Cookie", f"{name}={value}; Path=/")


def _request_uri(record: RequestRecord) -> str:
    parts = urlsplit(record.url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def digest_response(credentials: dict[str, str], password: str, method: str, uri: str, body: bytes) -> str | None:
    """The response a client that knows the password computes (RFC 7616 3.4.1; RFC 2069 without qop),
    or None when the credentials lack what their qop needs."""
    algorithm = credentials.get("algorithm")
    qop = credentials.get("qop")
    ha1 = digest_hash(f"{credentials.get('username', '')}:{credentials.get('realm', '')}:{password}".encode(), algorithm)
    if qop in (None, "auth"):
        ha2 = digest_hash(f"{method}:{uri}".encode(), algorithm)
    elif qop == "auth-int":
        ha2 = digest_hash(f"{method}:{uri}:{digest_hash(body, algorithm)}".encode(), algorithm)
    else:
        return None
    nonce = credentials.get("nonce", "")
    if qop is None:
        return digest_hash(f"{ha1}:{nonce}:{ha2}".encode(), algorithm)
    if any(key not in credentials for key in ("nonce", "nc", "cnonce")):
        return None
    return digest_hash(f"{ha1}:{nonce}:{credentials['nc']}:{credentials['cnonce']}:{qop}:{ha2}".encode(), algorithm)


def _next_stale_after(value: str) -> str:
    try:
        return str(int(value) - 1)
    except ValueError:
        return "never"


def _digest(record: RequestRecord, qop: str | None, user: str, passwd: str, algorithm: str, stale_after: str) -> Answer:
    # httpbin answers an unknown algorithm with MD5 and an unknown qop by offering both.
    algorithm = algorithm if algorithm in _HASHES else "MD5"
    qop = qop if qop in _QOPS else None
    problem = cookie_problem("stale_after", stale_after)
    if problem:
        return refused(400, f"stale_after is kept in a cookie: {problem}", param="stale_after", value=stale_after)
    require_cookie = next((v for k, v in record.args if k == "require-cookie"), "").lower() in ("1", "t", "true")
    cookies = dict(record.cookies[::-1])  # the first of each name, as werkzeug's request.cookies.get
    fake = _set_cookie("fake", "fake_value")
    auth = Authorization.from_header(record.header("Authorization"))
    if auth is None or auth.type != "digest" or (require_cookie and not record.header("Cookie")):
        return _challenge(record, qop, algorithm, False, [_set_cookie("stale_after", stale_after), fake])
    if require_cookie and cookies.get("fake") != "fake_value":
        return json_answer({"errors": ["missing cookie set on challenge"]}, 403, [fake])
    credentials = {key: value for key, value in auth.parameters.items() if value is not None}
    nonce = credentials.get("nonce", "")
    if cookie_problem("last_nonce", nonce):
        # httpbin keeps the nonce in a cookie; one no cookie can hold was not ours.
        return refused(400, "the nonce holds a character a cookie cannot", param="nonce", value=nonce)
    again = [_set_cookie("stale_after", stale_after), _set_cookie("last_nonce", nonce), fake]
    stale_after_value = cookies.get("stale_after")
    if ("last_nonce" in cookies and nonce == cookies["last_nonce"]) or stale_after_value == "0":
        return _challenge(record, qop, algorithm, True, again)
    expected = digest_response(credentials, passwd, record.method, _request_uri(record), record.decoded)
    given = credentials.get("response", "")
    # httpbin hashes whatever user name the client sent; the route's user is checked here too.
    if expected is None or credentials.get("username") != user or not hmac.compare_digest(expected, given):
        return _challenge(record, qop, algorithm, False, again)
    headers = [fake]
    if stale_after_value:
        headers.append(_set_cookie("stale_after", _next_stale_after(stale_after_value)))
    return json_answer({"authenticated": True, "user": user}, headers=headers)


@route("/digest-auth/{qop}/{user}/{passwd}", {"GET"})
def digest_auth(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _digest(record, params["qop"], params["user"], params["passwd"], "MD5", "never")


@route("/digest-auth/{qop}/{user}/{passwd}/{algorithm}", {"GET"})
def digest_auth_algorithm(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _digest(record, params["qop"], params["user"], params["passwd"], params["algorithm"], "never")


@route("/digest-auth/{qop}/{user}/{passwd}/{algorithm}/{stale_after}", {"GET"})
def digest_auth_stale_after(record: RequestRecord, params: dict[str, str], limits: RouteLimits) -> Answer:
    return _digest(record, params["qop"], params["user"], params["passwd"], params["algorithm"], params["stale_after"])
