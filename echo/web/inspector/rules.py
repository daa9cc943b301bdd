"""The rules API (SPEC section 10): list rules with their hits, add one, remove them.

`GET /api/rules` lists every rule in precedence order (API rules newest first,
then the file's) with `hits` and the `step` that answers next; `POST` adds an
API rule (`201` with its `id`); `DELETE /api/rules/{id}` removes one and
`DELETE /api/rules` every API rule (of one `bin` with `?bin=`). File rules
change only with the file (SIGHUP). A rule that does not check out gets `400`
naming the field, as `respond[0].headers.Retry-After`.
"""

from __future__ import annotations

import json

from flask import Response, request

from ...answer.rules import RULE_ID, RuleBook, RuleError, new_api_id, parse_rule, rule_document
from ...config import flag
from ...model.filter import BIN_PATTERN
from ..services import services
from .common import api_error, bad_param, bp, json_response


def _book() -> RuleBook:
    found = services().rules
    assert found is not None, "create_app always builds a rule book"
    return found


@bp.get("/api/rules")
def api_rules() -> Response:
    book = _book()
    rules = book.rules
    hits = book.hits(rules)
    return json_response({"rules": [rule_document(rule, count) for rule, count in zip(rules, hits, strict=True)]})


@bp.post("/api/rules")
def api_add_rule() -> Response:
    book = _book()
    limit = book.limits.max_body
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        return api_error(413, "the rule is larger than the body limit", limit=limit, setting=flag("max_body"))
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return api_error(400, f"the body must be one rule as a JSON object: {exc}", param="body")
    try:
        rule = parse_rule(raw, source="api", limits=book.limits, rule_id=new_api_id())
    except RuleError as exc:
        return api_error(400, f"{exc.field}: {exc.message}", param=exc.field)
    if not book.add(rule):
        return api_error(409, f"{book.max_api_rules} API rules are held already; remove some first",
                         limit=book.max_api_rules, setting=flag("max_rules"))
    response = json_response(rule_document(rule, 0), 201)
    response.headers["Location"] = f"{services().options.prefix}api/rules/{rule.id}"
    return response


@bp.delete("/api/rules/<rule_id>")
def api_remove_rule(rule_id: str) -> Response:
    book = _book()
    if not RULE_ID.fullmatch(rule_id):
        return api_error(404, "no such rule", id=rule_id)
    if book.remove(rule_id) is not None:
        return Response(status=204)
    if book.get(rule_id) is not None:
        return api_error(409, f"rule {rule_id} is from the {flag('rules')} file; edit the file and send SIGHUP",
                         id=rule_id)
    return api_error(404, "no such rule", id=rule_id)


@bp.delete("/api/rules")
def api_clear_rules() -> Response:
    bin_name = request.args.get("bin")
    if bin_name is not None and not BIN_PATTERN.fullmatch(bin_name):
        return bad_param("bin", bin_name, "a bin is 1 to 64 of A-Z a-z 0-9 _ -")
    _book().clear(bin_name)
    return Response(status=204)
