"""The filter language (SPEC section 9): every term of the table, negation,
quotes, globs, bad input with its position, `difference`; then properties
(any text parses or raises FilterError; any `f` gets 200 or 400 from the
real server) and the API's `f=` on the list and the HAR export.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from echo.model.factory import make_exchange, make_request, make_response
from echo.model.filter import EVERYTHING, TERMS, FilterError, Glob, parse
from echo.model.records import Exchange

from support import EchoServer, call


def ex(**fields: Any) -> Exchange:
    """An exchange from make_request's keywords plus status=, rule=, json_body=."""
    status = fields.pop("status", 200)
    rule = fields.pop("rule", None)
    if "json_body" in fields:
        value = fields.pop("json_body")
        fields["json"] = value
        fields["body"] = json.dumps(value).encode()
        fields.setdefault("method", "POST")
    request = make_request(**fields)
    return make_exchange(request, make_response(status=status), rule=rule)


HEADERS = (("Host", "127.0.0.1:8080"), ("X-Event", "push"), ("Content-Type", "application/json; charset=utf-8"))
ORDER = {"order": {"id": 42, "total": 9.5, "paid": True, "note": None, "tags": ["new", "gift"],
                   "items": [{"sku": "A-1"}, {"sku": "B-2"}], "name": "two words"}}

# (filter, exchange, holds)
CASES: list[tuple[str, Exchange, bool]] = [
    # method: one or a list, case-insensitive both ways
    ("method:POST", ex(method="POST"), True),
    ("method:post", ex(method="POST"), True),
    ("METHOD:POST", ex(method="post"), True),
    ("method:POST", ex(method="GET"), False),
    ("method:PUT,PATCH", ex(method="PATCH"), True),
    ("method:PUT,PATCH", ex(method="PUT"), True),
    ("method:PUT,PATCH", ex(method="POST"), False),
    ("method:PROPFIND", ex(method="PROPFIND"), True),
    # status: a code, a class, a range
    ("status:404", ex(status=404), True),
    ("status:404", ex(status=403), False),
    ("status:4xx", ex(status=499), True),
    ("status:4XX", ex(status=400), True),
    ("status:4xx", ex(status=500), False),
    ("status:500-599", ex(status=500), True),
    ("status:500-599", ex(status=599), True),
    ("status:500-599", ex(status=499), False),
    ("status:200-200", ex(status=200), True),
    # path: a glob over the whole path
    ("path:/hooks/*", ex(path="/hooks/github"), True),
    ("path:/hooks/*", ex(path="/hooks/"), True),
    ("path:/hooks/*", ex(path="/hooks"), False),
    ("path:/hooks/*", ex(path="/api/hooks/x"), False),
    ("path:/items", ex(path="/items"), True),
    ("path:/items", ex(path="/items/1"), False),
    ("path:/items", ex(path="/Items"), False),
    ("path:*/1", ex(path="/items/1"), True),
    ("path:/a*c*e", ex(path="/abcde"), True),
    ("path:/a*c*e", ex(path="/abde"), False),
    ("path:/a*a", ex(path="/a"), False),  # the prefix and suffix may not overlap
    ("path:/a*a", ex(path="/aa"), True),
    ("path:**", ex(path="/anything"), True),
    ("path:/x/*/y/*", ex(path="/x/1/y/2"), True),
    ("path:/x/*/y/*", ex(path="/x/1/z/2"), False),
    # query: presence and value glob; names are exact
    ("query:page", ex(query="page=2&q=x"), True),
    ("query:page", ex(query="pages=2"), False),
    ("query:Page", ex(query="page=2"), False),
    ("query:page=2", ex(query="page=2"), True),
    ("query:page=2", ex(query="page=20"), False),
    ("query:page=2*", ex(query="page=20"), True),
    ("query:flag=", ex(query="flag="), True),
    ("query:flag=", ex(query="flag=1"), False),
    ("query:tag=b", ex(query="tag=a&tag=b"), True),  # any of a repeated arg
    # header: presence and value glob, the name case-insensitive
    ("header:X-Event", ex(headers=HEADERS), True),
    ("header:x-event", ex(headers=HEADERS), True),
    ("header:X-EVENT=push", ex(headers=HEADERS), True),
    ("header:X-Event=Push", ex(headers=HEADERS), False),  # values are case-sensitive
    ("header:X-Event=pu*", ex(headers=HEADERS), True),
    ("header:X-Missing", ex(headers=HEADERS), False),
    ("header:content-type=application/json*", ex(headers=HEADERS), True),
    ("header:Content-Type=application/json", ex(headers=HEADERS), False),  # whole value
    ('header:"Content-Type=application/json; charset=utf-8"', ex(headers=HEADERS), True),
    # body: the decoded body contains the text
    ("body:order_id", ex(method="POST", body=b'{"order_id": 1}'), True),
    ("body:order_id", ex(method="POST", body=b'{"order": 1}'), False),
    ("body:hello", ex(method="POST", body=b"gzipped", content=b"hello world"), True),
    ("body:gzipped", ex(method="POST", body=b"gzipped", content=b"hello world"), False),
    ('body:"two words"', ex(method="POST", body=b"has two words in it"), True),
    ("body:\u00e9t\u00e9", ex(method="POST", body="\u00e9t\u00e9".encode()), True),
    # json: dotted paths, list indexes, strings, numbers, booleans, null
    ("json:order.id", ex(json_body=ORDER), True),
    ("json:order.id=42", ex(json_body=ORDER), True),
    ("json:order.id=4*", ex(json_body=ORDER), True),
    ("json:order.id=43", ex(json_body=ORDER), False),
    ("json:order.total=9.5", ex(json_body=ORDER), True),
    ("json:order.paid=true", ex(json_body=ORDER), True),
    ("json:order.paid=false", ex(json_body=ORDER), False),
    ("json:order.note=null", ex(json_body=ORDER), True),
    ("json:order.note", ex(json_body=ORDER), True),  # present, even as null
    ("json:order.tags.1=gift", ex(json_body=ORDER), True),
    ("json:order.tags.2", ex(json_body=ORDER), False),
    ("json:order.items.0.sku=A-*", ex(json_body=ORDER), True),
    ("json:order.items.1.sku=A-*", ex(json_body=ORDER), False),
    ("json:order.tags.x", ex(json_body=ORDER), False),
    ("json:order.tags.\u00b2", ex(json_body=ORDER), False),  # a superscript two is not an index
    ('json:"order.name=two words"', ex(json_body=ORDER), True),
    ("json:order.missing", ex(json_body=ORDER), False),
    ("json:0=1", ex(json_body=[1, 2]), True),
    ("json:order", ex(method="POST", body=b"not json"), False),
    ("json:a=\"x\"", ex(json_body={"a": "x"}), True),  # quotes group; the value is x
    # bin: the exchange's bin; with a bin, path: matches bin_path
    ("bin:team-a", ex(path="/b/team-a/hook", bin="team-a", bin_path="/hook"), True),
    ("bin:team-a", ex(path="/b/team-b/hook", bin="team-b", bin_path="/hook"), False),
    ("bin:team-a", ex(path="/hook"), False),
    ("bin:team-a path:/hook", ex(path="/b/team-a/hook", bin="team-a", bin_path="/hook"), True),
    ("bin:team-a path:/b/team-a/hook", ex(path="/b/team-a/hook", bin="team-a", bin_path="/hook"), False),
    ("path:/b/team-a/hook", ex(path="/b/team-a/hook", bin="team-a", bin_path="/hook"), True),
    ("path:/hook bin:team-a", ex(path="/b/team-a/hook", bin="team-a", bin_path="/hook"), True),
    ("bin:team-a path:/hook", ex(path="/hook", bin="team-a"), True),  # X-Echo-Bin: no bin_path, the path
    ("-bin:team-a path:/b/team-b/*", ex(path="/b/team-b/x", bin="team-b", bin_path="/x"), True),
    # client: a glob over the address
    ("client:127.0.0.1", ex(), True),
    ("client:127.*", ex(), True),
    ("client:10.*", ex(), False),
    ("client:::1", ex(remote_addr="::1"), True),
    # rule: the name of the rule that answered
    ("rule:flaky", ex(rule={"name": "flaky", "id": "r1", "step": 0}), True),
    ("rule:fla*", ex(rule={"name": "flaky", "id": "r1", "step": 0}), True),
    ("rule:flaky", ex(rule={"name": "other", "id": "r2", "step": 0}), False),
    ("rule:flaky", ex(), False),
    ('rule:"fails twice"', ex(rule={"name": "fails twice", "id": "r3", "step": 1}), True),
    # check: parses; no exchange has a verdict yet
    ("check:ok", ex(), False),
    ("check:failed", ex(), False),
    ("-check:ok", ex(), True),
    # bare words: substring of path and query, case-insensitive
    ("hooks", ex(path="/api/hooks/1"), True),
    ("HOOKS", ex(path="/api/hooks/1"), True),
    ("page=2", ex(query="page=2"), True),
    ("nothere", ex(path="/items", query="a=1"), False),
    ('"a b"', ex(path="/a b"), True),
    # negation and several terms
    ("-method:GET", ex(method="POST"), True),
    ("-method:GET", ex(method="GET"), False),
    ("-status:2xx", ex(status=500), True),
    ("-header:X-Retry", ex(headers=HEADERS), True),
    ("-hooks", ex(path="/hooks/1"), False),
    ("method:POST path:/hooks/* header:X-Event=push",
     ex(method="POST", path="/hooks/gh", headers=HEADERS), True),
    ("method:POST path:/hooks/* header:X-Event=push",
     ex(method="PUT", path="/hooks/gh", headers=HEADERS), False),
    ("method:POST   -status:5xx\t path:/x", ex(method="POST", path="/x", status=201), True),
    ("", ex(), True),
    ("   ", ex(), True),
]


@pytest.mark.parametrize(("text", "exchange", "holds"), CASES, ids=[f"{i}:{c[0]}" for i, c in enumerate(CASES)])
def test_each_term_holds_as_the_table_says(text: str, exchange: Exchange, holds: bool) -> None:
    found = parse(text)
    assert found.matches(exchange) is holds
    assert (found.difference(exchange) == []) is holds


def test_every_term_of_the_table_is_covered() -> None:
    covered = {term.kind for text, _, _ in CASES for term in parse(text).terms}
    assert covered == {*TERMS, "word"}


# (text, message fragment, position)
BAD: list[tuple[str, str, int]] = [
    ("bogus:1", "unknown term 'bogus:'", 0),
    ("method:GET bogus:1", "unknown term 'bogus:'", 11),
    ("method:GET -bogus:1", "unknown term 'bogus:'", 11),
    ('"unclosed', "unclosed quote", 0),
    ('path:/a body:"two words', "unclosed quote", 13),
    ('body:"ends in a backslash\\', "unclosed quote", 5),
    ("-", "a term is empty", 0),
    ("method:GET - path:/x", "a term is empty", 11),
    ('""', "a term is empty", 0),
    ("method:", "method:", 7),
    ("method:PUT,", "method:", 7),
    ("method:G(T", "method:", 7),
    ("-method:", "method:", 8),
    ("status:abc", "status:", 7),
    ("status:600", "status:", 7),
    ("status:6xx", "status:", 7),
    ("status:099", "status:", 7),
    ("status:599-500", "status:", 7),
    ("status:40", "status:", 7),
    ("status:\u0664\u0660\u0664", "status:", 7),  # Arabic-Indic digits are not a status code
    ("x status:", "status:", 9),
    ("path:", "path:", 5),
    ("query:", "query:", 6),
    ("query:=x", "query:", 6),
    ("header:", "header:", 7),
    ("header:=x", "header:", 7),
    ("header:X(Event", "header:", 7),
    ("body:", "body:", 5),
    ("json:", "json:", 5),
    ("json:=1", "json:", 5),
    ("bin:", "bin:", 4),
    ("bin:a/b", "bin:", 4),
    ("bin:" + "a" * 65, "bin:", 4),
    ("client:", "client:", 7),
    ("rule:", "rule:", 5),
    ("check:", "check:", 6),
    ("check:maybe", "check:", 6),
    ("  status:1", "status:", 9),
]


@pytest.mark.parametrize(("text", "fragment", "position"), BAD, ids=[c[0] for c in BAD])
def test_a_bad_filter_names_the_fault_and_its_position(text: str, fragment: str, position: int) -> None:
    with pytest.raises(FilterError) as caught:
        parse(text)
    assert fragment in caught.value.message
    assert caught.value.position == position
    assert 0 <= caught.value.position <= len(text)


def test_quotes_group_spaces_and_a_backslash_takes_the_next_character() -> None:
    assert [t.text for t in parse('header:"X-Note=two words" "a b" -"c d"').terms] == [
        'header:"X-Note=two words"', '"a b"', '-"c d"']
    # Inside quotes, \" is a quote and \\ a backslash; outside, a backslash is itself.
    assert parse(r'body:"say \"hi\""').matches(ex(method="POST", body=b'say "hi"'))
    assert parse(r'body:"a\\b"').matches(ex(method="POST", body=b"a\\b"))
    assert not parse(r'body:"a\\b"').matches(ex(method="POST", body=b"a\\\\b"))
    assert parse(r"body:a\b").matches(ex(method="POST", body=b"a\\b"))
    # Quotes may sit anywhere in a term and join the parts beside them.
    assert parse('path:/a" "b').matches(ex(path="/a b"))
    assert parse('path:"/a b"*').matches(ex(path="/a b/c"))


def test_a_quoted_star_is_still_a_wildcard() -> None:
    # Quotes group spaces only: the glob's one wildcard has no escape.
    assert parse('path:"/a*"').matches(ex(path="/abc"))


def test_the_filter_remembers_its_source_terms_and_bin() -> None:
    found = parse("bin:team-a  -status:5xx path:/x")
    assert found.source == "bin:team-a  -status:5xx path:/x"
    assert [(t.kind, t.negated, t.text) for t in found.terms] == [
        ("bin", False, "bin:team-a"), ("status", True, "-status:5xx"), ("path", False, "path:/x")]
    assert found.bin == "team-a"
    assert parse("-bin:team-a").bin is None
    assert parse("method:GET").bin is None
    assert not parse("  ") and parse("  ").terms == ()
    assert EVERYTHING.matches(ex()) and not EVERYTHING


def test_a_negated_bin_does_not_move_path_to_bin_path() -> None:
    found = parse("-bin:team-b path:/b/team-a/hook")
    assert found.matches(ex(path="/b/team-a/hook", bin="team-a", bin_path="/hook"))


def test_difference_lists_the_failed_terms_as_written() -> None:
    found = parse('method:POST  path:/hooks/* -status:2xx header:"X-Event=push" hooks')
    near = ex(method="GET", path="/hooks/gh", status=200, headers=HEADERS)
    assert found.difference(near) == ["method:POST", "-status:2xx"]
    assert found.difference(ex(method="POST", path="/hooks/1", status=500, headers=HEADERS)) == []
    assert found.difference(ex(method="PUT", path="/x", status=201)) == [
        "method:POST", "path:/hooks/*", "-status:2xx", 'header:"X-Event=push"', "hooks"]


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("", "", True), ("", "a", False), ("*", "", True), ("*", "anything", True),
    ("abc", "abc", True), ("abc", "abcd", False), ("a*", "a", True), ("*c", "abc", True),
    ("a*c", "ac", True), ("a*c", "abbc", True), ("a*c", "abcb", False),
    ("*b*", "abc", True), ("*b*", "ac", False), ("a*b*c", "abc", True), ("a*b*c", "acb", False),
    ("a**b", "ab", True), ("*a*a*", "a", False), ("*a*a*", "aba", True),
    ("ab*ba", "aba", False), ("ab*ba", "abba", True),
])
def test_glob_star_is_any_run_of_characters(pattern: str, text: str, matches: bool) -> None:
    assert Glob(pattern).match(text) is matches


def glob_as_regex(pattern: str) -> str:
    return ".*".join(re.escape(part) for part in pattern.split("*"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*", max_size=8), st.text(alphabet="ab", max_size=10))
def test_glob_agrees_with_a_regular_expression(pattern: str, text: str) -> None:
    assert Glob(pattern).match(text) is bool(re.fullmatch(glob_as_regex(pattern), text, re.DOTALL))


FILTER_ALPHABET = st.sampled_from([
    *"ab-\"\\ :=,.*0123456789\t", "method:", "status:", "path:", "query:", "header:", "body:", "json:",
    "bin:", "client:", "rule:", "check:", "ok", "4xx", "500-599", "GET", "X-A", "\u00b2", "\u0664", "\ud800",
    "\u00a0", "\x00",
])
filters = st.one_of(st.text(max_size=40), st.lists(FILTER_ALPHABET, max_size=12).map("".join))

SAMPLES = [
    ex(),
    ex(json_body={"a": [1, {"b": None}], "0": True}, headers=HEADERS, query="a=1&b=",
       rule={"name": "r", "id": "1", "step": 0}, bin="b1", bin_path="/"),
    ex(json_body=[[], "x"], method="PATCH", status=599),
    ex(method="POST", body=b"\xff\xfe not utf-8", path="/\udcff"),
]


@settings(max_examples=500, deadline=None)
@given(filters)
def test_any_text_parses_or_is_a_filter_error_and_matching_never_raises(text: str) -> None:
    try:
        found = parse(text)
    except FilterError as exc:
        assert 0 <= exc.position <= len(text)
        assert exc.message
        return
    for sample in SAMPLES:
        assert found.matches(sample) is (found.difference(sample) == [])


# ---- through the real server ---------------------------------------------


def api(server: EchoServer, path: str) -> tuple[int, Any]:
    status, _, body = call(server.port, "GET", path)
    return status, json.loads(body) if body else None


@pytest.fixture(scope="module")
def seeded(live_server: EchoServer) -> EchoServer:
    assert call(live_server.port, "DELETE", "/_/api/exchanges")[0] == 204
    call(live_server.port, "POST", "/hooks/github", b'{"action": "opened", "n": [1, 2]}',
         {"X-Event": "push", "Content-Type": "application/json"})
    call(live_server.port, "POST", "/hooks/gitlab", b"{}", {"X-Event": "tag", "Content-Type": "application/json"})
    call(live_server.port, "GET", "/items?page=2")
    call(live_server.port, "PUT", "/items/1?_status=404", b"x")
    call(live_server.port, "GET", "/b/team-a/hook")
    return live_server


def paths(doc: Any) -> list[str]:
    return [x["request"]["path"] for x in doc["exchanges"]]


@pytest.mark.parametrize(("f", "expected"), [
    ("method:POST", ["/hooks/gitlab", "/hooks/github"]),
    ("method:POST header:X-Event=push", ["/hooks/github"]),
    ("json:n.1=2", ["/hooks/github"]),
    ("status:4xx", ["/items/1"]),
    ("-status:2xx", ["/items/1"]),
    ("query:page=2", ["/items"]),
    ("items", ["/items/1", "/items"]),
    ("method:PUT,GET path:/items*", ["/items/1", "/items"]),
    ("body:opened", ["/hooks/github"]),
    ("client:127.0.0.1 method:DELETE", []),
])
def test_the_api_list_takes_f(seeded: EchoServer, f: str, expected: list[str]) -> None:
    status, doc = api(seeded, "/_/api/exchanges?f=" + quote(f))
    assert status == 200
    assert paths(doc) == expected


def test_the_api_list_combines_f_with_method_status_and_q(seeded: EchoServer) -> None:
    status, doc = api(seeded, "/_/api/exchanges?method=POST&f=" + quote("path:/hooks/*") + "&q=lab")
    assert status == 200 and paths(doc) == ["/hooks/gitlab"]


@pytest.mark.parametrize(("f", "position"), [("bogus:1", 0), ("method:GET status:6xx", 18), ('path:"/x', 5)])
def test_a_bad_f_is_a_400_with_param_value_and_position(seeded: EchoServer, f: str, position: int) -> None:
    status, doc = api(seeded, "/_/api/exchanges?f=" + quote(f))
    assert status == 400
    assert doc["param"] == "f" and doc["value"] == f and doc["position"] == position
    assert doc["error"].startswith("bad filter: ")


def test_the_har_export_takes_f_method_status_and_q(seeded: EchoServer) -> None:
    status, doc = api(seeded, "/_/api/exchanges.har?f=" + quote("path:/hooks/*"))
    assert status == 200
    # Oldest first, as a HAR is.
    assert [e["request"]["url"].rsplit("/", 1)[-1] for e in doc["log"]["entries"]] == ["github", "gitlab"]
    status, doc = api(seeded, "/_/api/exchanges.har?method=PUT")
    assert status == 200 and len(doc["log"]["entries"]) == 1
    status, doc = api(seeded, "/_/api/exchanges.har?status=4xx&q=items")
    assert status == 200 and len(doc["log"]["entries"]) == 1
    status, doc = api(seeded, "/_/api/exchanges.har")
    assert status == 200 and len(doc["log"]["entries"]) == 5


def test_a_bad_f_on_the_har_export_is_a_400_before_anything_streams(seeded: EchoServer) -> None:
    status, headers, body = call(seeded.port, "GET", "/_/api/exchanges.har?f=" + quote("status:abc"))
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert "Content-Disposition" not in headers
    doc = json.loads(body)
    assert doc["param"] == "f" and doc["position"] == 7
    status, _, body = call(seeded.port, "GET", "/_/api/exchanges.har?status=7xx")
    assert status == 400 and json.loads(body)["param"] == "status"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(filters, st.text(max_size=30)))
def test_any_f_gets_200_or_400_from_the_real_server(seeded: EchoServer, text: str) -> None:
    # Lone surrogates cannot travel in a URL; everything else is percent-encoded as UTF-8.
    encoded = quote(text.encode("utf-8", "surrogatepass"), safe="")
    status, _, body = call(seeded.port, "GET", "/_/api/exchanges?f=" + encoded)
    assert status in (200, 400), body
    doc = json.loads(body)
    if status == 400:
        assert doc["param"] == "f" and isinstance(doc["position"], int)


def test_the_readme_filter_example_runs(seeded: EchoServer) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    urls = re.findall(r"curl -s '(http://127\.0\.0\.1:8080/_/api/exchanges\?f=[^']+)'", readme)
    assert urls, "the README shows a filtered list"
    for url in urls:
        status, doc = api(seeded, url.removeprefix("http://127.0.0.1:8080"))
        assert status == 200
        # method:POST path:/hooks/* -status:2xx: the seeded hooks were answered 200.
        assert paths(doc) == []
    status, doc = api(seeded, "/_/api/exchanges?f=" + quote("method:POST path:/hooks/* status:2xx"))
    assert paths(doc) == ["/hooks/gitlab", "/hooks/github"]
