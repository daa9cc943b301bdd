"""httpbin mode, auth family: Basic, hidden Basic, Bearer and Digest.

Against the real server with --httpbin: httpbin 0.10's challenges and
documents, Digest answered by requests' HTTPDigestAuth and by responses
computed here by hand (RFC 7616, RFC 2069 without qop), and the state
httpbin keeps in cookies (stale_after, last_nonce, fake).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth

from support import EchoServer, call, start_echo

HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}


@pytest.fixture(scope="module")
def httpbin() -> Iterator[EchoServer]:
    server = start_echo("--log", "off", "--httpbin")
    yield server
    server.stop()


def base(server: EchoServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(("headers", "ok"), [
    (basic("user", "pass"), True),
    ({"Authorization": "basic " + base64.b64encode(b"user:pass").decode()}, True),  # the scheme in any case
    (basic("user", "wrong"), False),
    (basic("other", "pass"), False),
    ({}, False),
    ({"Authorization": "Basic !!!not-base64"}, False),
    ({"Authorization": "Bearer user:pass"}, False),
])
def test_basic_auth(httpbin: EchoServer, headers: dict[str, str], ok: bool) -> None:
    status, answer_headers, raw = call(httpbin.port, "GET", "/basic-auth/user/pass", headers=headers)
    if ok:
        assert status == 200 and json.loads(raw) == {"authenticated": True, "user": "user"}
    else:
        assert status == 401 and raw == b""
        assert answer_headers["WWW-Authenticate"] == 'Basic realm="Fake Realm"'


def test_basic_auth_takes_non_ascii_credentials_from_the_path(httpbin: EchoServer) -> None:
    status, _, raw = call(httpbin.port, "GET", "/basic-auth/us%C3%A9r/p%20w", headers=basic("usér", "p w"))
    assert status == 200 and json.loads(raw)["user"] == "usér"


def test_hidden_basic_auth_answers_404_without_a_challenge(httpbin: EchoServer) -> None:
    status, headers, raw = call(httpbin.port, "GET", "/hidden-basic-auth/user/pass", headers=basic("user", "no"))
    assert status == 404 and raw == b"" and "WWW-Authenticate" not in headers
    status, _, raw = call(httpbin.port, "GET", "/hidden-basic-auth/user/pass", headers=basic("user", "pass"))
    assert status == 200 and json.loads(raw) == {"authenticated": True, "user": "user"}


@pytest.mark.parametrize(("authorization", "token"), [
    ("Bearer abc.def", "abc.def"),
    ("Bearer ", None),  # the server trims the trailing space (RFC 9110 5.5), so no "Bearer " is left
    ("Bearer a b", "a b"),
    (None, None),
    ("bearer abc", None),  # httpbin's check is case-sensitive
    ("Basic abc", None),
    ("Bearer", None),
])
def test_bearer(httpbin: EchoServer, authorization: str | None, token: str | None) -> None:
    status, headers, raw = call(httpbin.port, "GET", "/bearer",
                                headers={"Authorization": authorization} if authorization is not None else {})
    if token is None:
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and raw == b""
    else:
        assert status == 200 and json.loads(raw) == {"authenticated": True, "token": token}


# Digest


def challenge_of(headers: Any) -> dict[str, str]:
    value = headers["WWW-Authenticate"]
    assert value.startswith("Digest ")
    return {key: quoted or bare for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', value)}


def cookies_of(headers: Any) -> dict[str, str]:
    return dict(line.split(";")[0].split("=", 1) for line in headers.get_all("Set-Cookie") or [])


def digest_header(challenge: dict[str, str], user: str, password: str, method: str, uri: str,
                  qop: str | None = "auth", algorithm: str = "MD5", body: bytes = b"") -> str:
    """The Authorization a client computes, by RFC 7616 3.4.1 (RFC 2069 when qop is None)."""
    def h(data: str | bytes) -> str:
        return HASHES[algorithm](data.encode() if isinstance(data, str) else data).hexdigest()

    ha1 = h(f"{user}:{challenge['realm']}:{password}")
    ha2 = h(f"{method}:{uri}:{h(body)}") if qop == "auth-int" else h(f"{method}:{uri}")
    nonce, nc, cnonce = challenge["nonce"], "00000001", "0a4f113b"
    if qop is None:
        response = h(f"{ha1}:{nonce}:{ha2}")
        extra = ""
    else:
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        extra = f', qop={qop}, nc={nc}, cnonce="{cnonce}"'
    return (f'Digest username="{user}", realm="{challenge["realm"]}", nonce="{nonce}", uri="{uri}", '
            f'algorithm={algorithm}, response="{response}", opaque="{challenge["opaque"]}"{extra}')


@pytest.mark.parametrize(("path", "qop", "algorithm", "digits"), [
    ("/digest-auth/auth/user/pass", "auth", "MD5", 32),
    ("/digest-auth/auth-int/user/pass", "auth-int", "MD5", 32),
    ("/digest-auth/auth/user/pass/SHA-256", "auth", "SHA-256", 64),
    ("/digest-auth/auth/user/pass/SHA-512/never", "auth", "SHA-512", 128),
    ("/digest-auth/bogus/user/pass/SHA-1", "auth, auth-int", "MD5", 32),  # httpbin: MD5, and both qops
])
def test_the_digest_challenge_is_httpbins(httpbin: EchoServer, path: str, qop: str, algorithm: str,
                                          digits: int) -> None:
    status, headers, raw = call(httpbin.port, "GET", path)
    assert status == 401 and raw == b""
    challenge = challenge_of(headers)
    assert challenge["realm"] == "me@kennethreitz.com" and challenge["qop"] == qop
    assert challenge["algorithm"] == algorithm and challenge["stale"] == "FALSE"
    assert re.fullmatch(f"[0-9a-f]{{{digits}}}", challenge["nonce"]) and len(challenge["opaque"]) == digits
    assert cookies_of(headers) == {"stale_after": path.split("/")[6] if path.count("/") == 6 else "never",
                                   "fake": "fake_value"}
    assert challenge_of(call(httpbin.port, "GET", path)[1])["nonce"] != challenge["nonce"]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "SHA-512"])
@pytest.mark.parametrize("qop", ["auth", "auth-int"])
def test_a_hand_computed_digest_is_accepted(httpbin: EchoServer, algorithm: str, qop: str) -> None:
    path = f"/digest-auth/{qop}/user/pass/{algorithm}?q=1"
    assert call(httpbin.port, "POST", path)[0] == 405  # GET only, as httpbin
    challenge = challenge_of(call(httpbin.port, "GET", path)[1])
    authorization = digest_header(challenge, "user", "pass", "GET", path, qop, algorithm)
    status, headers, raw = call(httpbin.port, "GET", path, headers={"Authorization": authorization})
    assert status == 200 and json.loads(raw) == {"authenticated": True, "user": "user"}
    assert cookies_of(headers) == {"fake": "fake_value"}


def test_digest_without_qop_is_rfc_2069(httpbin: EchoServer) -> None:
    path = "/digest-auth/none/user/pass"
    challenge = challenge_of(call(httpbin.port, "GET", path)[1])
    status, _, _ = call(httpbin.port, "GET", path,
                        headers={"Authorization": digest_header(challenge, "user", "pass", "GET", path, None)})
    assert status == 200


@pytest.mark.parametrize(("user", "password", "uri", "method_in_hash"), [
    ("user", "wrong", None, "GET"),
    ("other", "pass", None, "GET"),  # httpbin hashes any user name it is sent; the route's is checked here
    ("user", "pass", "/digest-auth/auth/user/pass/MD5/elsewhere", "GET"),
    ("user", "pass", None, "POST"),
])
def test_a_wrong_digest_gets_a_fresh_challenge_and_the_nonce_cookie(httpbin: EchoServer, user: str, password: str,
                                                                    uri: str | None, method_in_hash: str) -> None:
    path = "/digest-auth/auth/user/pass"
    challenge = challenge_of(call(httpbin.port, "GET", path)[1])
    authorization = digest_header(challenge, user, password, method_in_hash, uri or path)
    status, headers, _ = call(httpbin.port, "GET", path, headers={"Authorization": authorization})
    assert status == 401 and challenge_of(headers)["stale"] == "FALSE"
    assert cookies_of(headers) == {"stale_after": "never", "last_nonce": challenge["nonce"], "fake": "fake_value"}


def test_a_nonce_that_failed_once_is_stale_next_time(httpbin: EchoServer) -> None:
    path = "/digest-auth/auth/user/pass"
    challenge = challenge_of(call(httpbin.port, "GET", path)[1])
    good = digest_header(challenge, "user", "pass", "GET", path)
    status, headers, _ = call(httpbin.port, "GET", path,
                              headers={"Authorization": good, "Cookie": f"last_nonce={challenge['nonce']}"})
    assert status == 401 and challenge_of(headers)["stale"] == "TRUE"
    assert cookies_of(headers)["last_nonce"] == challenge["nonce"]


@pytest.mark.parametrize(("cookie", "status", "next_value"), [
    ("stale_after=3", 200, "2"),
    ("stale_after=1", 200, "0"),
    ("stale_after=never", 200, "never"),
    ("stale_after=0", 401, None),  # stale: a challenge with stale=TRUE
    ("", 200, None),
])
def test_stale_after_counts_down_in_its_cookie(httpbin: EchoServer, cookie: str, status: int,
                                               next_value: str | None) -> None:
    path = "/digest-auth/auth/user/pass/MD5/3"
    challenge = challenge_of(call(httpbin.port, "GET", path)[1])
    headers = {"Authorization": digest_header(challenge, "user", "pass", "GET", path)}
    if cookie:
        headers["Cookie"] = cookie
    got, answer_headers, _ = call(httpbin.port, "GET", path, headers=headers)
    assert got == status
    if status == 401:
        assert challenge_of(answer_headers)["stale"] == "TRUE"
        assert cookies_of(answer_headers)["stale_after"] == "3"
    else:
        assert cookies_of(answer_headers).get("stale_after") == next_value


@pytest.mark.parametrize("path", [
    "/digest-auth/auth/user/pass",
    "/digest-auth/auth/user/pass/MD5",
    "/digest-auth/auth/user/pass/SHA-256",
    "/digest-auth/auth/user/pass/SHA-512/never",
    "/digest-auth/auth/user/pass/MD5/2",
    "/digest-auth/auth/user/pass?require-cookie=1",  # httpbin 0.10.4 answers 500 here (a bytes query)
])
def test_requests_digest_auth_logs_in(httpbin: EchoServer, path: str) -> None:
    session = requests.Session()
    answer = session.get(base(httpbin) + path, auth=HTTPDigestAuth("user", "pass"), timeout=10)
    assert answer.status_code == 200 and answer.json() == {"authenticated": True, "user": "user"}
    answer = requests.get(base(httpbin) + path, auth=HTTPDigestAuth("user", "nope"), timeout=10)
    assert answer.status_code == 401


def test_require_cookie_refuses_a_client_that_drops_cookies(httpbin: EchoServer) -> None:
    path = "/digest-auth/auth/user/pass?require-cookie=1"
    challenge = challenge_of(call(httpbin.port, "GET", path)[1])
    authorization = digest_header(challenge, "user", "pass", "GET", path)
    status, headers, _ = call(httpbin.port, "GET", path, headers={"Authorization": authorization})
    assert status == 401  # no Cookie header at all: challenged again
    status, headers, raw = call(httpbin.port, "GET", path, headers={"Authorization": authorization, "Cookie": "x=1"})
    assert status == 403 and json.loads(raw) == {"errors": ["missing cookie set on challenge"]}
    assert cookies_of(headers) == {"fake": "fake_value"}
    status, _, _ = call(httpbin.port, "GET", path, headers={"Authorization": authorization, "Cookie": "fake=fake_value"})
    assert status == 200


@pytest.mark.parametrize(("path", "authorization", "param"), [
    ("/digest-auth/auth/user/pass/MD5/a%20b", None, "stale_after"),
    ("/digest-auth/auth/user/pass/MD5/a;b", None, "stale_after"),
    ("/digest-auth/auth/user/pass", 'Digest username="user", nonce="a;b", response="x"', "nonce"),
])
def test_what_cannot_be_kept_in_a_cookie_is_refused(httpbin: EchoServer, path: str, authorization: str | None,
                                                     param: str) -> None:
    status, headers, raw = call(httpbin.port, "GET", path,
                                headers={"Authorization": authorization} if authorization else {})
    assert status == 400 and "Set-Cookie" not in headers and json.loads(raw)["param"] == param


def test_broken_digest_credentials_get_a_challenge_not_an_error(httpbin: EchoServer) -> None:
    for authorization in ("Digest", 'Digest username="user"', 'Digest qop=auth, nonce="n", response="r"',
                          'Digest qop=weird, nonce="n", username="user", response="r"'):
        status, headers, _ = call(httpbin.port, "GET", "/digest-auth/auth/user/pass",
                                  headers={"Authorization": authorization})
        assert status == 401 and challenge_of(headers)["realm"] == "me@kennethreitz.com"
