"""HAR export: a valid HAR 1.2 log of the history, as browsers' dev tools import it.

`check_har` walks the document against HAR 1.2's required fields and their
types (http://www.softwareishard.com/blog/har-12-spec/), plus what Chromium's
importer does with them: dates parse, numbers are numbers, postData has text.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

import pytest

from support import call

NUMBER = (int, float)

# object kind -> {field: type} for every field HAR 1.2 requires.
REQUIRED: dict[str, dict[str, Any]] = {
    "log": {"version": str, "creator": dict, "entries": list},
    "creator": {"name": str, "version": str},
    "entry": {"startedDateTime": str, "time": NUMBER, "request": dict, "response": dict, "cache": dict,
              "timings": dict},
    "request": {"method": str, "url": str, "httpVersion": str, "cookies": list, "headers": list,
                "queryString": list, "headersSize": int, "bodySize": int},
    "response": {"status": int, "statusText": str, "httpVersion": str, "cookies": list, "headers": list,
                 "content": dict, "redirectURL": str, "headersSize": int, "bodySize": int},
    "cookie": {"name": str, "value": str},
    "pair": {"name": str, "value": str},
    "postData": {"mimeType": str, "params": list, "text": str},
    "param": {"name": str},
    "content": {"size": int, "mimeType": str},
    "timings": {"send": NUMBER, "wait": NUMBER, "receive": NUMBER},
}
# Optional fields that, when present, must have this type.
OPTIONAL: dict[str, dict[str, Any]] = {
    "log": {"pages": list, "comment": str},
    "cookie": {"path": str, "domain": str, "expires": str, "httpOnly": bool, "secure": bool},
    "param": {"value": str, "fileName": str, "contentType": str},
    "content": {"text": str, "encoding": str, "compression": int, "comment": str},
    "postData": {"comment": str},
    "timings": {"blocked": NUMBER, "dns": NUMBER, "connect": NUMBER, "ssl": NUMBER},
}


def check(kind: str, obj: Any, where: str) -> None:
    assert isinstance(obj, dict), f"{where} is not an object"
    for name, kind_type in REQUIRED.get(kind, {}).items():
        assert name in obj, f"{where}.{name} is required"
        value = obj[name]
        assert isinstance(value, kind_type) and not (kind_type is int and isinstance(value, bool)), \
            f"{where}.{name} = {value!r} is not {kind_type}"
    for name, kind_type in OPTIONAL.get(kind, {}).items():
        if name in obj:
            assert isinstance(obj[name], kind_type), f"{where}.{name} = {obj[name]!r} is not {kind_type}"


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_har(doc: Any) -> None:
    assert set(doc) == {"log"}
    log = doc["log"]
    check("log", log, "log")
    assert log["version"] == "1.2"
    check("creator", log["creator"], "log.creator")
    for i, entry in enumerate(log["entries"]):
        where = f"log.entries[{i}]"
        check("entry", entry, where)
        iso(entry["startedDateTime"])
        assert entry["time"] >= 0
        for part in ("request", "response"):
            check(part, entry[part], f"{where}.{part}")
            for cookie in entry[part]["cookies"]:
                check("cookie", cookie, f"{where}.{part}.cookies")
                if "expires" in cookie:
                    iso(cookie["expires"])
            for header in entry[part]["headers"]:
                check("pair", header, f"{where}.{part}.headers")
        for pair in entry["request"]["queryString"]:
            check("pair", pair, f"{where}.request.queryString")
        if "postData" in entry["request"]:
            post = entry["request"]["postData"]
            check("postData", post, f"{where}.request.postData")
            for param in post["params"]:
                check("param", param, f"{where}.request.postData.params")
        content = entry["response"]["content"]
        check("content", content, f"{where}.response.content")
        if "encoding" in content:
            assert content["encoding"] == "base64"
            base64.b64decode(content["text"], validate=True)
        timings = entry["timings"]
        check("timings", timings, f"{where}.timings")
        for name in ("send", "wait", "receive"):
            assert timings[name] >= 0, f"{where}.timings.{name} must not be negative"
        for name in ("blocked", "dns", "connect", "ssl"):
            assert timings.get(name, -1) >= -1
        spent = sum(timings[name] for name in ("send", "wait", "receive"))
        assert abs(spent - entry["time"]) < 0.01, "time is the sum of the timings"
        for name in entry:
            assert name in REQUIRED["entry"] or name in ("pageref", "serverIPAddress", "connection", "comment") \
                or name.startswith("_"), f"{where}.{name} is not a HAR field (custom ones start with _)"



def har(port: int) -> tuple[Any, Any]:
    status, headers, body = call(port, "GET", "/_/api/exchanges.har")
    assert status == 200
    doc = json.loads(body)
    check_har(doc)
    return headers, doc


@pytest.fixture
def port(live_server: Any) -> int:
    assert call(live_server.port, "DELETE", "/_/api/exchanges")[0] == 204
    return live_server.port


def test_an_empty_history_is_a_valid_empty_log(port: int) -> None:
    headers, doc = har(port)
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Disposition"] == 'attachment; filename="echo-history.har"'
    assert doc["log"]["entries"] == []
    assert doc["log"]["creator"]["name"] == "Echo"


def test_entries_run_oldest_first_and_carry_the_exchange(port: int) -> None:
    ids = [call(port, "GET", f"/step/{i}?n={i}&n=x")[1]["X-Echo-Id"] for i in range(3)]
    _, doc = har(port)
    entries = doc["log"]["entries"]
    assert [e["_id"] for e in entries] == ids
    first = entries[0]
    assert first["request"]["method"] == "GET"
    assert first["request"]["url"] == f"http://127.0.0.1:{port}/step/0?n=0&n=x"
    assert first["request"]["queryString"] == [{"name": "n", "value": "0"}, {"name": "n", "value": "x"}]
    assert "postData" not in first["request"]
    assert first["response"]["status"] == 200 and first["response"]["statusText"] == "OK"
    assert json.loads(first["response"]["content"]["text"])["path"] == "/step/0"
    assert first["response"]["content"]["size"] == first["response"]["bodySize"]
    assert {"name": "X-Echo-Id", "value": ids[0]} in first["response"]["headers"]
    assert iso(entries[0]["startedDateTime"]) <= iso(entries[2]["startedDateTime"])


def test_json_and_form_bodies_are_post_data(port: int) -> None:
    call(port, "POST", "/json", b'{"a": [1, 2]}', {"Content-Type": "application/json"})
    call(port, "POST", "/form", b"a=1&a=2&b=%24x", {"Content-Type": "application/x-www-form-urlencoded"})
    _, doc = har(port)
    posted_json, posted_form = (e["request"]["postData"] for e in doc["log"]["entries"])
    assert posted_json == {"mimeType": "application/json", "params": [], "text": '{"a": [1, 2]}'}
    assert posted_form["params"] == [{"name": "a", "value": "1"}, {"name": "a", "value": "2"},
                                     {"name": "b", "value": "$x"}]
    assert posted_form["text"] == "a=1&a=2&b=%24x"


def test_uploaded_files_are_params_with_file_names(port: int) -> None:
    body = (b"--B\r\nContent-Disposition: form-data; name=\"who\"\r\n\r\nAda\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"pic\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n\x89PNG\r\n--B--\r\n")
    call(port, "POST", "/upload", body, {"Content-Type": "multipart/form-data; boundary=B"})
    _, doc = har(port)
    params = doc["log"]["entries"][0]["request"]["postData"]["params"]
    assert params == [{"name": "who", "value": "Ada"}, {"name": "pic", "fileName": "a.png", "contentType": "image/png"}]


def test_binary_request_bodies_are_base64(port: int) -> None:
    data = bytes(range(256))
    call(port, "PUT", "/bin", data, {"Content-Type": "application/octet-stream"})
    _, doc = har(port)
    put = doc["log"]["entries"][0]
    assert base64.b64decode(put["request"]["postData"]["text"]) == data
    assert put["request"]["postData"]["comment"] == "base64-encoded body"
    assert put["request"]["bodySize"] == 256


def test_a_chosen_response_body_is_the_content(port: int) -> None:
    call(port, "GET", "/raw?_body=%3Cp%3Ehi%3C/p%3E&_content_type=text/html")
    _, doc = har(port)
    content = doc["log"]["entries"][0]["response"]["content"]
    assert content == {"size": 9, "mimeType": "text/html", "text": "<p>hi</p>"}


def test_set_cookie_redirects_and_statuses(port: int) -> None:
    call(port, "GET", "/r?_status=302&_header=Location:%20/next"
                      "&_cookie=sid%3Dabc%3B%20Path%3D/%3B%20HttpOnly%3B%20Secure"
                      "&_cookie=theme%3Ddark%3B%20Domain%3Dexample.com%3B%20Expires%3DWed,%2021%20Oct%202037%2007:28:00%20GMT")
    _, doc = har(port)
    response = doc["log"]["entries"][0]["response"]
    assert response["status"] == 302 and response["statusText"] == "Found"
    assert response["redirectURL"] == "/next"
    sid, theme = response["cookies"]
    assert sid == {"name": "sid", "value": "abc", "path": "/", "httpOnly": True, "secure": True}
    assert theme["domain"] == "example.com" and iso(theme["expires"]).year == 2037


def test_head_and_bodyless_answers(port: int) -> None:
    call(port, "HEAD", "/head")
    call(port, "GET", "/nc?_status=204")
    _, doc = har(port)
    for entry in doc["log"]["entries"]:
        assert entry["response"]["bodySize"] == 0
        assert entry["response"]["content"]["size"] == 0


def test_request_cookies_are_listed(port: int) -> None:
    call(port, "GET", "/c", headers={"Cookie": "a=1; b=two"})
    _, doc = har(port)
    assert doc["log"]["entries"][0]["request"]["cookies"] == [{"name": "a", "value": "1"}, {"name": "b", "value": "two"}]


def test_redaction_and_the_keep_body_cut_apply(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--redact", "Authorization,Cookie,Set-Cookie", "--keep-body", "4")
    body = b"0123456789"
    call(server.port, "POST", "/s?_cookie=k%3Dv", body, {"Authorization": "Bearer secret", "Cookie": "sid=secret",
                                                          "Content-Type": "text/plain"})
    _, doc = har(server.port)
    text = json.dumps(doc)
    assert "secret" not in text
    request = doc["log"]["entries"][0]["request"]
    assert {"name": "Authorization", "value": "[redacted]"} in request["headers"]
    assert request["cookies"] == [{"name": "sid", "value": "[redacted]"}]
    assert request["bodySize"] == 10
    assert request["postData"]["text"] == "0123"
    assert "cut" in request["postData"]["comment"]
    response = doc["log"]["entries"][0]["response"]
    assert {"name": "Set-Cookie", "value": "[redacted]"} in response["headers"]
    assert response["cookies"] == []
    assert hashlib.sha256(body).hexdigest() in call(server.port, "GET", "/_/api/exchanges")[2].decode()


def test_over_limit_bodies_are_still_valid_har(echo_server: Any) -> None:
    server = echo_server("--log", "off", "--max-body", "8")
    status, _, _ = call(server.port, "POST", "/big", b"x" * 9, {"Content-Type": "text/plain"})
    assert status == 413
    _, doc = har(server.port)
    entry = doc["log"]["entries"][0]
    assert entry["response"]["status"] == 413
    assert entry["response"]["statusText"] in ("Content Too Large", "Request Entity Too Large")  # by Python version
    assert entry["request"]["bodySize"] == 9
