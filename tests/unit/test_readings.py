"""Every parser reads every request, and a method override is a second reading: no parser
hides another, no override hides the method a framework will act on. The rules judge
every reading and the strictest verdict wins."""

from __future__ import annotations

import json

import pytest

from shield_addon import actions, rules, ruletest
from shield_addon.actions import request_view
from shield_addon.flows import actions_json

RULES = rules.parse_text("""\
version: 1
default: allow
rules:
  - {id: aws-delete, match: {service: "aws:*", action_type: delete}, action: hold}
  - {id: sql-drop, match: {sql: {statement: [drop]}}, action: deny}
  - {id: http-delete, match: {method: DELETE}, action: hold}
  - {id: shadow-reads, match: {action_type: read}, action: deny, mode: shadow}
""")
JSON_CT = [("Content-Type", "application/json")]
DYNAMO = [("X-Amz-Target", "DynamoDB_20120810.DeleteTable"), ("Content-Type", "application/x-amz-json-1.0")]


def test_a_decoy_sql_field_no_longer_hides_the_aws_operation() -> None:
    view = request_view("POST", "https://dynamodb.us-east-1.amazonaws.com/", DYNAMO,
                        json.dumps({"TableName": "orders", "query": "SELECT 1"}))
    found = actions.parse_all(view)
    assert [a.service for a in found] == ["sql", "aws:dynamodb"]
    assert actions.parse(view).operation == "DeleteTable"  # the strictest, for callers wanting one
    verdict = rules.judge(RULES, actions.readings(view))
    assert (verdict.enforced, verdict.enforced_rule.id, verdict.action.operation) == ("hold", "aws-delete", "DeleteTable")


def test_the_strictest_verdict_wins_and_every_matching_rule_is_recorded() -> None:
    view = request_view("POST", "https://dynamodb.us-east-1.amazonaws.com/", DYNAMO,
                        json.dumps({"TableName": "orders", "query": "DROP TABLE users"}))
    verdict = rules.judge(RULES, actions.readings(view))
    assert (verdict.verdict, verdict.rule.id, verdict.action.service) == ("deny", "sql-drop", "sql")
    assert set(verdict.matched) == {"aws-delete", "sql-drop"}
    assert [(m, a.service) for m, a in verdict.actions] == [("POST", "sql"), ("POST", "aws:dynamodb")]


def test_a_shadow_rule_shows_in_the_verdict_but_the_enforced_reading_decides_the_columns() -> None:
    view = request_view("POST", "https://dynamodb.us-east-1.amazonaws.com/", DYNAMO,
                        json.dumps({"TableName": "orders", "query": "SELECT * FROM t"}))
    verdict = rules.judge(RULES, actions.readings(view))
    assert (verdict.verdict, verdict.rule.id) == ("deny", "shadow-reads")
    assert (verdict.enforced, verdict.enforced_rule.id, verdict.action.operation) == ("hold", "aws-delete", "DeleteTable")


@pytest.mark.parametrize(("where", "headers", "url", "body"), [
    ("header", [("X-HTTP-Method-Override", "DELETE")], "https://api.example.com/v1/users/7", ""),
    ("x-http-method", [("X-HTTP-Method", "delete")], "https://api.example.com/v1/users/7", ""),
    ("x-method-override", [("X-Method-Override", " Delete ")], "https://api.example.com/v1/users/7", ""),
    ("query", [], "https://api.example.com/v1/users/7?_method=DELETE", ""),
    ("form", [("Content-Type", "application/x-www-form-urlencoded")], "https://api.example.com/v1/users/7",
     "name=x&_method=delete"),
    ("json", [("Content-Type", "application/json")], "https://api.example.com/v1/users/7", '{"_method": "DELETE"}'),
    ("a list", [("X-HTTP-Method-Override", "PATCH, DELETE")], "https://api.example.com/v1/users/7", ""),
    ("underscores", [("X_HTTP_METHOD_OVERRIDE", "DELETE")], "https://api.example.com/v1/users/7", ""),
    ("multipart", [("Content-Type", "multipart/form-data; boundary=zz")], "https://api.example.com/v1/users/7",
     '--zz\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--zz--\r\n'),
])
def test_a_method_override_is_judged_as_the_method_it_names(where: str, headers: list, url: str, body: str) -> None:
    view = request_view("POST", url, headers, body)
    assert "DELETE" in actions.overrides(view)
    verdict = rules.judge(RULES, actions.readings(view))
    assert (verdict.enforced, verdict.enforced_rule.id) == ("hold", "http-delete")
    assert [m for m, _ in verdict.actions][0] == "POST" and "DELETE" in [m for m, _ in verdict.actions]


@pytest.mark.parametrize("value", ["POST", "", "DELETE; rm -rf", "x" * 40, "\x1b[31mDELETE"])
def test_an_override_naming_the_same_method_or_no_method_adds_no_reading(value: str) -> None:
    view = request_view("POST", "https://api.example.com/v1/users", [("X-HTTP-Method-Override", value)])
    assert actions.overrides(view) == ()
    assert len(actions.readings(view)) == 1


def test_an_unrelated_underscore_header_or_a_multipart_file_named_method_adds_no_reading() -> None:
    # Only the override names count, and a file part is an upload, not a form field.
    body = '--zz\r\nContent-Disposition: form-data; name="_method"; filename="m"\r\n\r\nDELETE\r\n--zz--\r\n'
    headers = [("X_Audit_Action", "DELETE"), ("Content-Type", "multipart/form-data; boundary=zz")]
    view = request_view("POST", "https://api.example.com/v1/users", headers, body)
    assert actions.overrides(view) == ()


def test_without_override_or_second_parser_there_is_one_reading() -> None:
    view = request_view("GET", "https://api.example.com/v1/users")
    [reading] = actions.readings(view)
    assert reading.request is view and reading.action.action_type == "read"


def test_a_host_pinned_to_rest_is_read_by_method_alone() -> None:
    view = request_view("POST", "https://dynamodb.internal/", DYNAMO, json.dumps({"TableName": "t", "query": "DROP TABLE x"}))
    assert [a.service for a in actions.parse_all(view, {"rest": ["dynamodb.internal"]})] == ["dynamodb.internal"]


def test_the_recorded_actions_list_every_reading_with_the_overridden_method() -> None:
    view = request_view("POST", "https://dynamodb.us-east-1.amazonaws.com/", [*DYNAMO, ("X-HTTP-Method-Override", "PUT")],
                        json.dumps({"TableName": "orders", "query": "DROP TABLE users"}))
    recorded = json.loads(actions_json(rules.judge(RULES, actions.readings(view))))
    assert recorded[0] == {"service": "sql", "action_type": "delete", "operation": "DROP", "tables": ["users"],
                           "statements": ["drop"]}
    assert recorded[1]["operation"] == "DeleteTable" and "method" not in recorded[1]
    assert {r.get("method") for r in recorded[2:]} == {"PUT"}


def test_rules_explain_and_rule_tests_judge_every_reading() -> None:
    request = {"method": "POST", "url": "https://dynamodb.us-east-1.amazonaws.com/", "headers": dict(DYNAMO),
               "body": {"TableName": "orders", "query": "SELECT 1"}}
    enforced_only = rules.parse_text("version: 1\nrules:\n  - {id: aws-delete, match: {action_type: delete}, action: hold}\n")
    assert len(ruletest.subjects_for(enforced_only, request)) == 2
    verdict = ruletest.explain(enforced_only, request)
    assert ruletest.check(verdict, {"action": "hold", "rule": "aws-delete", "operation": "DeleteTable"}) is None


def test_a_flag_rule_matches_any_flag_a_parser_set() -> None:
    rs = rules.parse_text("version: 1\nrules:\n  - {id: dry, match: {flag: [dry_*]}, action: deny}\n")
    dry = request_view("POST", "https://k8s.example.com/api/v1/namespaces/a/pods?dryRun=All", JSON_CT, "{}")
    real = request_view("POST", "https://k8s.example.com/api/v1/namespaces/a/pods", JSON_CT, "{}")
    assert rules.judge(rs, actions.readings(dry)).verdict == "deny"
    assert rules.judge(rs, actions.readings(real)).verdict == "allow"


def test_yaml_padded_past_the_reading_limit_is_held_not_read_as_harmless() -> None:
    from shield_addon import paths
    from shield_addon.actions import common

    bundled = rules.load_path(paths.bundled_rules())
    padding = "".join(f"# {i:08d} padding a manifest past what the rules read\n" for i in range(400))
    body = padding + "spec:\n  replicas: 0\n"
    assert len(body) > common.YAML_LIMIT
    request = {"method": "PUT", "url": "https://k8s.internal:6443/apis/apps/v1/namespaces/dev/deployments/web",
               "headers": {"content-type": "application/yaml"}, "body": body}
    verdict = ruletest.explain(bundled, request)
    assert (verdict.verdict, verdict.rule.id) == ("hold", "k8s-unreadable-body")
    assert {"body_too_large", "body_unparsed"} <= verdict.action.flags


def test_every_reading_of_repeated_json_keys_is_judged() -> None:
    from shield_addon.actions import common

    view = request_view("PATCH", "https://api.example.com/x", JSON_CT, '{"a": {"n": 0, "n": 3}, "a": {"m": 1}}')
    last, first, merged = common.json_documents(view)
    assert (last, first, merged) == ({"a": {"m": 1}}, {"a": {"n": 0}}, {"a": {"n": 3, "m": 1}})
    assert "duplicate_keys" in actions.parse(view).flags
    plain = request_view("PATCH", "https://api.example.com/x", JSON_CT, '{"a": {"n": 0}}')
    assert common.json_documents(plain) == ({"a": {"n": 0}},)


@pytest.mark.parametrize(("sent", "routed"), [
    ("/v1/%72efunds", "/v1/refunds"), ("/%7Euser/%2D%2E%5F", "/~user/-._"), ("/a%2Fb", "/a%2Fb"), ("/a%20b", "/a%20b"),
])
def test_escapes_of_unreserved_characters_are_decoded_as_every_server_does(sent: str, routed: str) -> None:
    assert request_view("POST", "https://api.stripe.com" + sent).path == routed


def test_a_path_with_dot_segments_is_also_judged_resolved() -> None:
    rs = rules.parse_text('version: 1\nrules:\n  - {id: refunds, match: {path: "^/v1/refunds$"}, action: deny}\n')
    view = request_view("POST", "https://api.stripe.com/v1/charges/../refunds")
    assert [r.request.path for r in actions.readings(view)] == ["/v1/charges/../refunds", "/v1/refunds"]
    assert rules.judge(rs, actions.readings(view)).verdict == "deny"
    assert len(actions.readings(request_view("POST", "https://api.stripe.com/v1/refunds"))) == 1
    for twin in ("/v1//refunds", "/v1/refunds/", "/v1/refunds;jsessionid=1", "/v1/./refunds", "/v1;a=b/refunds"):
        assert rules.judge(rs, actions.readings(request_view("POST", "https://api.stripe.com" + twin))).verdict == "deny", twin


def test_a_path_with_escaped_slashes_backslashes_or_a_fragment_is_also_judged_as_lenient_servers_route_it() -> None:
    """Go's URL.Path, which the Kubernetes API server routes by, decodes `%2F`: the escaped twin
    of a path a rule names is judged as that path too."""
    rs = rules.parse_text('version: 1\nrules:\n  - {id: refunds, match: {path: "^/v1/refunds/[^/]+$"}, action: deny}\n')
    for twin in ("/v1%2Frefunds%2Fre_1", "/v1/refunds%2fre_1", "/v1/refunds/re_1#x", "/v1/charges%2F..%2Frefunds/re_1",
                 "/v1\\refunds\\re_1", "/v1/x\\..\\refunds/re_1", "/v1%5Crefunds/re_1"):
        assert rules.judge(rs, actions.readings(request_view("POST", "https://api.stripe.com" + twin))).verdict == "deny", twin


@pytest.mark.parametrize(("target", "split"), [
    ("/api/v1/pods", (None, "/api/v1/pods")),
    ("https://kube.example/api/v1/pods", ("kube.example", "/api/v1/pods")),
    ("HTTPS://user:pw@kube.example:6443/api", ("kube.example:6443", "/api")),
    ("http://kube.example", ("kube.example", "/")),
    ("https://kube.example?x", ("kube.example", "/?x")),
    ("api/v1/pods", (None, "api/v1/pods")),
    ("*", (None, "*")),
])
def test_a_request_target_in_absolute_form_is_split_into_its_authority_and_the_path_servers_route(
        target: str, split: tuple[str | None, str]) -> None:
    from shield_addon.actions.common import split_target

    assert split_target(target) == split


def test_filter_rules_see_the_canonical_host_and_path_while_the_flow_is_sent_as_written(tmp_path) -> None:
    from shield_addon.flows import judged_flow, view_of

    (tmp_path / "r.yaml").write_text(
        'version: 1\nrules:\n  - {id: gh, match: {filter: \'~d "^api\\\\.github\\\\.com$" & ~u "/v1/refunds"\'}, action: hold}\n')
    rs = rules.load_path(str(tmp_path / "r.yaml"))
    request = {"method": "POST", "url": "https://API.github.com./v1/%72efunds?x=1"}
    assert ruletest.explain(rs, request).verdict == "hold"
    f = ruletest.flow_for(request)
    judged = judged_flow(f, view_of(f))
    assert (judged.request.host, judged.request.path) == ("api.github.com", "/v1/refunds?x=1")
    assert (f.request.host, f.request.path) == ("api.github.com.", "/v1/%72efunds?x=1")
    plain = ruletest.flow_for({"method": "GET", "url": "https://api.github.com/v1/x"})
    assert judged_flow(plain, view_of(plain)) is plain



def multipart(*parts: tuple[str, str, bytes]) -> tuple[list[tuple[str, str]], bytes]:
    """(headers, body) of a form whose parts are (disposition params, content type, bytes)."""
    body = b"".join(b"--B0und\r\nContent-Disposition: form-data; " + p.encode() + b"\r\n"
                    + (f"Content-Type: {t}\r\n".encode() if t else b"") + b"\r\n" + v + b"\r\n" for p, t, v in parts)
    return [("Content-Type", "multipart/form-data; boundary=B0und")], body + b"--B0und--\r\n"


def test_each_multipart_part_is_read_as_a_body_and_an_untyped_file_only_where_a_service_is_pinned() -> None:
    drop = rules.parse_text("version: 1\nrules:\n  - {id: sql-drop, match: {sql: {statement: [drop]}}, action: deny}\n")
    headers, body = multipart(('name="file"; filename="q.sql"', "", b"DROP TABLE users;"))
    untyped = request_view("POST", "https://db.example.com/import", headers, body)
    assert rules.judge(drop, actions.readings(untyped)).verdict == "allow"  # a .sql file sent to storage is data
    pinned = {"sql": ["db.example.com"]}
    assert rules.judge(drop, actions.readings(untyped, pinned)).verdict == "deny"  # a SQL service runs what it gets
    headers, body = multipart(('name="file"; filename="q.sql"', "application/sql", b"DROP TABLE users;"))
    declared = request_view("POST", "https://db.example.com/import", headers, body)
    assert rules.judge(drop, actions.readings(declared)).verdict == "deny"


def test_a_multipart_body_with_more_parts_than_are_read_says_so() -> None:
    from shield_addon.actions import common

    headers, body = multipart(*[('name="f"', "", b"x")] * (common.MULTIPART_FIELDS + 1))
    assert "body_unparsed" in actions.parse(request_view("POST", "https://api.example.com/x", headers, body)).flags
    headers, body = multipart(*[('name="f"', "", b"x")] * 3)
    assert "body_unparsed" not in actions.parse(request_view("POST", "https://api.example.com/x", headers, body)).flags
