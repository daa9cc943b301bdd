"""The pure controls step, table-driven: query/headers -> ResponsePlan or ControlError."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from echo.answer.controls import ControlError, ControlLimits, ResponsePlan, plan
from echo.formats.documents import dumps

LIMITS = ControlLimits(max_delay=10)


def ok(args: list[tuple[str, str]], headers: list[tuple[str, str]] | None = None, **kw: Any) -> ResponsePlan:
    result = plan(tuple(args), tuple(headers or ()), LIMITS, **kw)
    assert isinstance(result, ResponsePlan), result
    return result


def bad(args: list[tuple[str, str]], headers: list[tuple[str, str]] | None = None) -> ControlError:
    result = plan(tuple(args), tuple(headers or ()), LIMITS)
    assert isinstance(result, ControlError), result
    return result


@pytest.mark.parametrize(("value", "status"), [("200", 200), ("404", 404), ("599", 599), (" 201 ", 201)])
def test_status_ok(value: str, status: int) -> None:
    assert ok([("_status", value)]).status == status


@pytest.mark.parametrize("value", ["199", "600", "abc", "", "20x", "-200", "200.0", "200,", "200:x", "200:0,503:0"])
def test_status_bad(value: str) -> None:
    error = bad([("_status", value)])
    assert error.param == "_status" and error.value == value
    assert "200 to 599" in error.message


def test_status_random_pick_uses_every_choice() -> None:
    seen = {ok([("_status", "200,503")], rng=random.Random(seed)).status for seed in range(40)}
    assert seen == {200, 503}


def test_status_weighted_pick_follows_weights() -> None:
    rng = random.Random(7)
    picks = [ok([("_status", "200:9,503:1")], rng=rng).status for _ in range(2000)]
    share = picks.count(503) / len(picks)
    assert 0.06 < share < 0.14
    assert {ok([("_status", "200:0,503:1")], rng=rng).status for _ in range(50)} == {503}


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("X-A: 1", ("X-A", "1")),
        ("X-A:1", ("X-A", "1")),
        ("Content-Type: text/csv", ("Content-Type", "text/csv")),
        ("Location: /x?a=b:c", ("Location", "/x?a=b:c")),
        ("X-Empty:", ("X-Empty", "")),
        ("X-Unicode: é", ("X-Unicode", "é")),
    ],
)
def test_header_ok(value: str, header: tuple[str, str]) -> None:
    assert ok([("_header", value)]).headers == (header,)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("no colon", "Name: Value"),
        ("Bad Name: 1", "not a valid header name"),
        (": 1", "not a valid header name"),
        ("X-A: 1\r\nX-B: 2", "control character"),
        ("X-A: 1\nSet-Cookie: x=1", "control character"),
        ("X-A: a\x00b", "control character"),
        ("Content-Length: 5", "cannot be set"),
        ("transfer-encoding: chunked", "cannot be set"),
        ("Connection: close", "cannot be set"),
        ("Keep-Alive: 5", "cannot be set"),
        ("Upgrade: h2c", "cannot be set"),
        ("TE: trailers", "cannot be set"),
        ("Trailer: X", "cannot be set"),
    ],
)
def test_header_bad(value: str, why: str) -> None:
    error = bad([("_header", value)])
    assert error.param == "_header" and why in error.message


def test_same_header_twice_gives_two_lines() -> None:
    assert ok([("_header", "X-A: 1"), ("_header", "X-A: 2")]).headers == (("X-A", "1"), ("X-A", "2"))


@pytest.mark.parametrize(
    ("value", "cookie"),
    [
        ("a=b", "a=b"),
        ("a=", "a="),
        ('a="quoted"', 'a="quoted"'),
        ("sid=abc; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax", "sid=abc; Path=/; Max-Age=60; HttpOnly; Secure; SameSite=Lax"),
        ("sid=abc; path=/x; httponly; samesite=strict", "sid=abc; Path=/x; HttpOnly; SameSite=Strict"),
        ("s=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "s=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
        ("s=1; Domain=example.com; Partitioned; Secure", "s=1; Domain=example.com; Partitioned; Secure"),
    ],
)
def test_cookie_ok(value: str, cookie: str) -> None:
    assert ok([("_cookie", value)]).cookies == (cookie,)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("novalue", "name=value"),
        ("bad name=1", "not a valid cookie name"),
        ("a=b c", "RFC 6265 forbids"),
        ("a=b,c", "RFC 6265 forbids"),
        ('a=b"c', "RFC 6265 forbids"),
        ("a=b\\c", "RFC 6265 forbids"),
        ("a=é", "RFC 6265 forbids"),
        ("a=b\r\nX-Evil: 1", "control character"),
        ("a=b; Max-Age=soon", "Max-Age"),
        ("a=b; Expires=tomorrow", "Expires"),
        ("a=b; SameSite=Sometimes", "SameSite"),
        ("a=b; Path=x", "Path"),
        ("a=b; Domain=exa mple.com", "Domain"),
        ("a=b; HttpOnly=yes", "takes no value"),
        ("a=b; Color=blue", "unknown cookie attribute"),
    ],
)
def test_cookie_bad(value: str, why: str) -> None:
    error = bad([("_cookie", value)])
    assert error.param == "_cookie" and why in error.message, error.message


def test_delete_cookie_expires_it_on_its_path() -> None:
    assert ok([("_delete_cookie", "sid")]).cookies == ("sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/",)
    assert ok([("_delete_cookie", "sid; Path=/api")]).cookies == (
        "sid=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/api",
    )
    assert bad([("_delete_cookie", "bad name")]).param == "_delete_cookie"


@pytest.mark.parametrize(("value", "delay"), [("0", 0.0), ("1.5", 1.5), (".25", 0.25), ("10", 10.0), ("10.0", 10.0)])
def test_delay_ok_up_to_the_limit(value: str, delay: float) -> None:
    assert ok([("_delay", value)]).delay == delay


@pytest.mark.parametrize("value", ["10.001", "11", "-1", "abc", "nan", "inf", "1e3", "", "1_0", "0x10"])
def test_delay_bad(value: str) -> None:
    error = bad([("_delay", value)])
    assert error.param == "_delay" and "0 to 10" in error.message


def test_body_and_content_type() -> None:
    decided = ok([("_body", "<h1>hi</h1>"), ("_content_type", "text/html")])
    assert decided.body == b"<h1>hi</h1>" and decided.content_type == "text/html"
    assert ok([("_body", "")]).body == b""
    assert bad([("_content_type", "text/html\r\nX: 1")]).param == "_content_type"
    assert bad([("_content_type", "nonsense")]).param == "_content_type"


@pytest.mark.parametrize(("value", "fmt"), [("json", "json"), ("HTML", "html")])
def test_format(value: str, fmt: str) -> None:
    assert ok([("_format", value)]).format == fmt


def test_format_bad() -> None:
    assert "json or html" in bad([("_format", "xml")]).message


@pytest.mark.parametrize("param", ["_status", "_delay", "_body", "_content_type", "_format"])
def test_single_controls_given_twice_are_refused(param: str) -> None:
    error = bad([(param, "json"), (param, "json")])
    assert error.param == param and "once" in error.message


def test_headers_carry_controls_and_the_query_wins() -> None:
    decided = ok([], [("X-Echo-Status", "418"), ("X-Echo-Header", "X-A: 1"), ("X-Echo-Delay", "0")])
    assert decided.status == 418 and decided.headers == (("X-A", "1"),)
    assert ok([("_status", "201")], [("X-Echo-Status", "418")]).status == 201
    assert bad([], [("X-Echo-Status", "abc")]).param == "_status"


def test_joined_repeated_control_headers_are_split_at_names() -> None:
    decided = ok([], [("X-Echo-Header", "X-A: 1, 2, X-B: 3"), ("X-Echo-Cookie", "a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT, b=2")])
    assert decided.headers == (("X-A", "1, 2"), ("X-B", "3"))
    assert decided.cookies == ("a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT", "b=2")


def as_json(summary: Any) -> Any:
    """The summary as the echo document shows it."""
    return json.loads(dumps(dict(summary)))


def test_no_controls_is_the_default_plan() -> None:
    decided = ok([("a", "1"), ("_other", "x")])
    assert decided == ResponsePlan()
    assert as_json(decided.summary()) == {"status": 200, "headers": [], "cookies": [], "delay": 0.0}


def test_the_default_summary_is_one_shared_object_that_stays_default() -> None:
    first, second = ok([]).summary(), ok([("a", "1")]).summary()
    assert first is second  # history keeps a summary per exchange; most are this one
    ok([("_status", "201"), ("_header", "X-A: 1"), ("_cookie", "a=b")]).summary()
    assert as_json(ok([]).summary()) == {"status": 200, "headers": [], "cookies": [], "delay": 0.0}
    # Shared, so read-only: no exchange can change what every other one shows.
    with pytest.raises(TypeError):
        first["status"] = 500  # type: ignore[index]
    # A plan that changes anything gets its own summary, never the shared one.
    for pairs in ([("_status", "200"), ("_format", "json")], [("_delay", "0.1")], [("_body", "x")]):
        assert ok(pairs).summary() is not first


def test_summary_reports_what_was_applied() -> None:
    decided = ok([("_status", "201"), ("_header", "X-A: 1"), ("_cookie", "a=b"), ("_delay", "0.5")])
    assert decided.summary() == {
        "status": 201,
        "headers": [{"name": "X-A", "value": "1"}],
        "cookies": ["a=b"],
        "delay": 0.5,
    }
