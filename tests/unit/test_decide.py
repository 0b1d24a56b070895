"""decide(): the rule files' verdict, made stricter by the built-in rules, never weaker."""

from __future__ import annotations

import pytest

from shield_addon import actions, rules
from shield_addon.actions import RequestView
from shield_addon.core.context import Context
from shield_addon.core.decide import decide

RULES = rules.parse_text("""\
version: 1
default: allow
rules:
  - {id: hold-deletes, match: {method: DELETE}, action: hold}
  - {id: allow-legacy, match: {host: legacy.example.com}, action: allow}
""")
OWN = frozenset({("127.0.0.1", 8080)})


def judge(view: RequestView, **ctx: object) -> rules.Verdict:
    return decide(actions.readings(view), RULES, Context(own=OWN, **ctx))  # type: ignore[arg-type]


def view(host: str = "api.example.com", port: int = 443, method: str = "GET", headers: tuple = ()) -> RequestView:
    return RequestView(method, "https", host, port, "/x", headers=headers)


def test_without_a_built_in_the_rules_decide() -> None:
    v = judge(view(method="DELETE"))
    assert (v.verdict, v.rule.id if v.rule else None) == ("hold", "hold-deletes")


@pytest.mark.parametrize("host", ["127.0.0.1", "0177.0.0.1", "2130706433", "localhost", "[::ffff:127.0.0.1]"])
def test_the_proxy_itself_is_refused_however_spelled(host: str) -> None:
    v = judge(view(host, 8080, "DELETE"))
    assert (v.verdict, v.enforced, v.rule.id) == ("deny", "deny", "builtin:proxy-itself")
    assert "hold-deletes" in v.matched  # what the rule files said is kept in the record


def test_a_name_that_resolves_to_the_proxy_is_the_proxy() -> None:
    assert judge(view("proxy.internal", 8080), resolved=("127.0.0.1",)).rule.id == "builtin:proxy-itself"
    assert judge(view("proxy.internal", 8080), resolved=("10.9.9.9",)).verdict == "allow"


def test_a_request_that_came_back_is_refused() -> None:
    assert judge(view(), came_back=True).rule.id == "builtin:proxy-itself"


def test_a_header_with_a_line_break_is_malformed() -> None:
    assert judge(view(headers=(("x-a", "1\r\nX-Admin: yes"),))).rule.id == "builtin:malformed-header"


def test_host_and_sni_must_name_the_target() -> None:
    assert judge(view("api.example.com"), destinations=(("API.example.com.", 443),)).verdict == "allow"
    v = judge(view("140.82.112.3"), destinations=(("api.github.com", 443),))
    assert (v.verdict, v.rule.id) == ("deny", "builtin:destination-mismatch")


def test_an_unreadable_body_is_refused_unless_an_allow_rule_names_it() -> None:
    assert judge(view(), unreadable="unknown content coding 'compress'").rule.id == "builtin:unreadable"
    assert judge(view("legacy.example.com"), unreadable="unknown content coding 'compress'").verdict == "allow"


def test_an_allow_rule_never_lifts_the_other_built_ins() -> None:
    assert judge(view("legacy.example.com"), destinations=(("other.example.com", 443),)).verdict == "deny"


@pytest.mark.parametrize("host", ["169.254.169.254", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518",
                                  "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]",
                                  "[fd00:ec2::254]", "[fe80::1]", "169.254.170.2", "100.100.100.200",
                                  "metadata.google.internal", "METADATA.Google.Internal.", "metadata", "instance-data",
                                  "１６９.２５４.１６９.２５４"])
def test_the_cloud_metadata_service_is_refused_however_spelled(host: str) -> None:
    v = judge(view(host, 80))
    assert (v.verdict, v.rule.id, v.rule.severity) == ("deny", "builtin:cloud-metadata", "critical")


@pytest.mark.parametrize("host", ["api.example.com", "10.0.0.1", "100.100.100.201", "169.255.0.1", "metadata.example.com"])
def test_other_hosts_are_not_the_metadata_service(host: str) -> None:
    assert judge(view(host, 80)).verdict == "allow"


def test_a_name_that_resolves_to_the_metadata_service_is_refused_like_it() -> None:
    assert judge(view("imds.attacker.example", 80), resolved=("169.254.169.254",)).rule.id == "builtin:cloud-metadata"
    assert judge(view("imds.attacker.example", 80), resolved=("93.184.216.34",)).verdict == "allow"
