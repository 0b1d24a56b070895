from __future__ import annotations

import textwrap

import pytest
from mitmproxy.test import tflow

from shield_addon import actions, paths, rules, ruletest
from shield_addon.actions import RequestView


def ruleset(body: str, name: str = "t.yaml") -> rules.RuleSet:
    return rules.parse_text(textwrap.dedent(body), name)


def verdict(rs: rules.RuleSet, method: str = "GET", url: str = "https://api.example.com/x", body: str = "",
            headers: dict[str, str] | None = None) -> rules.Verdict:
    return ruletest.explain(rs, {"method": method, "url": url, "body": body, "headers": headers or {}})


BASIC = """
version: 1
default: allow
rules:
  - id: hold-deletes
    match: {method: DELETE}
    action: hold
  - id: deny-admin
    match: {host: "admin.*", method: [DELETE, POST]}
    action: deny
    message: never
  - id: also-deletes
    match: {method: DELETE}
    action: hold
"""


def test_no_match_gives_the_default() -> None:
    v = verdict(ruleset(BASIC))
    assert (v.verdict, v.rule, v.matched) == ("allow", None, ())


def test_strictest_verdict_wins_and_every_match_is_recorded() -> None:
    v = verdict(ruleset(BASIC), "DELETE", "https://admin.example.com/u/1")
    assert v.verdict == "deny" and v.rule.id == "deny-admin"
    assert v.matched == ("hold-deletes", "deny-admin", "also-deletes")


def test_first_rule_in_file_order_is_the_rule_among_equals() -> None:
    v = verdict(ruleset(BASIC), "DELETE", "https://api.example.com/u/1")
    assert v.rule.id == "hold-deletes" and v.matched == ("hold-deletes", "also-deletes")


def test_a_stricter_default_cannot_be_weakened_by_an_allow_rule() -> None:
    rs = ruleset("""
        version: 1
        default: hold
        rules:
          - {id: ok, match: {method: GET}, action: allow}
    """)
    assert verdict(rs).verdict == "hold"


def test_path_regex_named_groups_fill_the_action() -> None:
    rs = ruleset(r"""
        version: 1
        rules:
          - id: tables
            match: {path: "^/v1/(?P<table>\\w+)$", table: users}
            action: deny
    """)
    v = verdict(rs, "POST", "https://db.example.com/v1/users")
    assert v.verdict == "deny" and v.action.tables == ("users",)
    assert verdict(rs, "POST", "https://db.example.com/v1/orders").verdict == "allow"


def test_header_body_json_and_not_matchers() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - id: h
            match: {header: {x-env: "^prod$"}, body: "(?i)refund", json: {"$.amount": "^[0-9]{4,}$"}, not: {host: "*.test"}}
            action: deny
    """)
    body = '{"amount": 12000, "note": "Refund"}'
    assert verdict(rs, "POST", "https://pay.example.com/r", body, {"x-env": "prod"}).verdict == "deny"
    assert verdict(rs, "POST", "https://pay.test/r", body, {"x-env": "prod"}).verdict == "allow"
    assert verdict(rs, "POST", "https://pay.example.com/r", body, {"x-env": "staging"}).verdict == "allow"
    assert verdict(rs, "POST", "https://pay.example.com/r", '{"amount": 12}', {"x-env": "prod"}).verdict == "allow"


def test_filter_matcher_uses_mitmproxy_filter_expressions() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: f, match: {filter: "~m DELETE & ~d k8s"}, action: hold}
    """)
    assert verdict(rs, "DELETE", "https://k8s.internal/api/v1/pods").verdict == "hold"
    assert verdict(rs, "DELETE", "https://other.internal/x").verdict == "allow"


def test_filter_matcher_without_a_flow_does_not_match() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: f, match: {filter: "~m DELETE"}, action: hold}
    """)
    view = RequestView("DELETE", "https", "a", 443, "/")
    assert rules.evaluate(rs, rules.Subject(view, actions.parse(view))).verdict == "allow"
    f = tflow.tflow()
    f.request.method = "DELETE"
    assert rules.evaluate(rs, rules.Subject(view, actions.parse(view), f)).verdict == "hold"


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("version: 1\nrules:\n  - id: a\n    match: {method: GET}\n    action: allow\n    colour: red\n", 6, "colour: unknown key"),
        ("version: 1\nrules:\n  - id: a\n    match: {path: '(unclosed'}\n    action: allow\n", 4, "bad regex"),
        ("version: 1\nrules:\n  - id: a\n    match: {filter: '~nonsense ('}\n    action: allow\n", 4, "bad filter expression"),
        ("version: 1\nrules:\n  - id: a\n    match: {}\n    action: allow\n  - id: a\n    match: {}\n    action: deny\n", 6,
         "duplicate rule id"),
        ("version: 1\nrules:\n  - id: a\n    match: {methd: GET}\n    action: allow\n", 4, "methd: unknown key"),
        ("version: 1\nrules:\n  - id: a\n    match: {}\n    action: maybe\n", 5, "must be one of allow, hold, deny"),
        ("version: 1\nrules:\n  - id: a\n    match: {host: 'a[b'}\n    action: allow\n", 4, "bad glob"),
        ("version: 2\nrules: []\n", 1, "version: must be 1"),
        ("version: 1\nrules: []\n---\nversion: 1\n", None, "exactly one YAML document"),
        ("version: 1\nversion: 1\n", 2, "duplicate key"),
    ],
)
def test_bad_rule_files_are_refused_with_file_line_and_key(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(rules.RuleError) as e:
        rules.parse_text(text, "bad.yaml")
    assert fragment in str(e.value)
    assert str(e.value).startswith(f"bad.yaml:{line}:" if line else "bad.yaml")


def test_durations() -> None:
    assert rules.parse_duration("10m") == 600
    assert rules.parse_duration(30) == 30
    assert rules.parse_duration("never") is None
    with pytest.raises(ValueError):
        rules.parse_duration("soon")


def test_hold_policy_is_read_from_the_rule() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: h, match: {}, action: hold, hold: {timeout: 10m, on_timeout: allow}}
    """)
    assert rs.rules[0].hold == rules.HoldPolicy(600.0, "allow", None)


def test_ruleset_hash_changes_with_the_text() -> None:
    a = ruleset("version: 1\nrules: []\n")
    b = ruleset("version: 1\nrules: []\n# comment\n")
    assert a.sha256 != b.sha256 and len(a.sha256) == 64


def test_bundled_rules_load_and_their_tests_pass() -> None:
    rs = rules.load_path(paths.bundled_rules())
    results = list(ruletest.run_tests(rs))
    assert results and all(r is None for _, _, r in results), results


def test_bundled_rules_hold_destructive_calls_and_allow_reads() -> None:
    rs = rules.load_path(paths.bundled_rules())
    assert verdict(rs, "DELETE", "https://k8s.example/apis/apps/v1/namespaces/dev/deployments/web").verdict == "hold"
    assert verdict(rs, "POST", "https://db.example/sql", '{"sql": "TRUNCATE orders"}',
                   {"content-type": "application/json"}).verdict == "hold"
    assert verdict(rs, "DELETE", "https://api.example/v1/items/1").verdict == "hold"
    assert verdict(rs, "GET", "https://k8s.example/api/v1/namespaces/dev/pods").verdict == "allow"
    assert verdict(rs, "POST", "https://db.example/sql", '{"sql": "select 1"}',
                   {"content-type": "application/json"}).verdict == "allow"


def test_services_pin_a_parser_to_hosts() -> None:
    rs = ruleset("""
        version: 1
        services: {kubernetes: ["*.k8s.internal"]}
        rules:
          - {id: k, match: {service: kubernetes, action_type: delete}, action: deny}
    """)
    assert verdict(rs, "DELETE", "https://api.k8s.internal/api/v1/widgets/w").verdict == "deny"
    assert verdict(rs, "DELETE", "https://api.example.com/api/v1/widgets/w").verdict == "allow"


def test_unknown_service_pin_is_refused_with_its_line() -> None:
    with pytest.raises(rules.RuleError, match="t.yaml:4:3: services.kubernets: unknown service"):
        ruleset("""
            version: 1
            services:
              kubernets: ["*"]
        """)


def test_sql_rules_see_sql_carried_by_an_mcp_tool_call() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: drop, match: {sql: {statement: [drop]}}, action: deny}
    """)
    call = '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "query", "arguments": {"sql": "DROP TABLE users"}}}'
    v = verdict(rs, "POST", "https://mcp.example.com/mcp", call, {"content-type": "application/json"})
    assert v.verdict == "deny" and v.action.service == "mcp"


def test_query_agent_and_resource_matchers() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: q, match: {query: {force: "^(true|1)$"}, agent: "ci-*", resource: deployments}, action: deny}
    """)
    url = "https://k8s.example/apis/apps/v1/namespaces/a/deployments/web?force=true"
    subject = lambda agent, u=url: rules.Subject(*_view_action(rs, "DELETE", u), agent=agent)  # noqa: E731
    assert rules.evaluate(rs, subject("ci-bot")).verdict == "deny"
    assert rules.evaluate(rs, subject("alice")).verdict == "allow"
    assert rules.evaluate(rs, subject("ci-bot", url.replace("force=true", "force=false"))).verdict == "allow"
    assert rules.evaluate(rs, subject("ci-bot", url.replace("deployments", "pods"))).verdict == "allow"


def _view_action(rs: rules.RuleSet, method: str, url: str):
    view = actions.request_view(method, url)
    return view, actions.parse(view, rs.services)


def test_shadow_rules_are_recorded_but_never_enforced() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: hold-deletes, match: {method: DELETE}, action: hold}
          - {id: deny-deletes-next-week, match: {method: DELETE}, action: deny, mode: shadow}
    """)
    v = verdict(rs, "DELETE", "https://api.example.com/x")
    assert (v.verdict, v.rule.id) == ("deny", "deny-deletes-next-week")
    assert (v.enforced, v.enforced_rule.id) == ("hold", "hold-deletes") and v.shadowed
    v = verdict(rs, "GET", "https://api.example.com/x")
    assert not v.shadowed and v.enforced == "allow"


def test_explain_says_which_field_failed() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: r, match: {method: DELETE, host: "*.prod"}, action: hold}
    """)
    view, action = _view_action(rs, "DELETE", "https://db.staging/x")
    assert rs.rules[0].predicate.explain(rules.Subject(view, action)) == [("method", True), ("host", False)]


def test_port_matches_the_real_destination_port() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: p, match: {host: "127.0.0.1", port: [8081, 9090]}, action: deny}
    """)
    assert verdict(rs, "GET", "http://127.0.0.1:8081/flows").verdict == "deny"
    assert verdict(rs, "GET", "http://127.0.0.1:8080/flows").verdict == "allow"
    with pytest.raises(rules.RuleError, match="is not a port number"):
        ruleset("version: 1\nrules:\n  - {id: p, match: {port: http}, action: deny}\n")
