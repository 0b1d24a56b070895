"""Property tests: whatever YAML arrives, the loader answers with a rule set or a RuleError."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from shield_addon import rules

KEYS = sorted(rules.TOP_KEYS | rules.RULE_KEYS | rules.MATCH_KEYS | rules.HOLD_KEYS) + ["x", "$.a", "statement"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
                    st.sampled_from(["allow", "hold", "deny", "DELETE", "*", "[", "(", "~q", "10m", "prod*", ""]),
                    st.text(max_size=12))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)


def dump(doc: object) -> str:
    out = io.StringIO()
    YAML().dump(doc, out)
    return out.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_structures_load_or_fail_with_a_rule_error(doc: object) -> None:
    try:
        rules.parse_text(dump(doc), "fuzz.yaml")
    except rules.RuleError as e:
        assert str(e).startswith("fuzz.yaml")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_loads_or_fails_with_a_rule_error(text: str) -> None:
    try:
        rules.parse_text(text, "fuzz.yaml")
    except rules.RuleError as e:
        assert str(e).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(rules.MATCH_KEYS)), scalars, max_size=4))
def test_random_match_blocks_inside_a_valid_rule(match: dict) -> None:
    doc = {"version": 1, "rules": [{"id": "r", "action": "hold", "match": match}]}
    try:
        rs = rules.parse_text(dump(doc), "fuzz.yaml")
    except rules.RuleError as e:
        assert str(e).startswith("fuzz.yaml:")
    else:
        assert rs.rules[0].id == "r"


HOSTS = ["api.example.com", "k8s.internal", "db.internal", "*.internal", "api.*"]
METHODS = ["GET", "POST", "DELETE", "PATCH"]
SERVICES_ = ["kubernetes", "sql", "api.example.com", "aws:*", "k8s.internal"]
rule_specs = st.lists(
    st.fixed_dictionaries({}, optional={"method": st.sampled_from(METHODS), "host": st.sampled_from(HOSTS),
                                        "service": st.sampled_from(SERVICES_), "action_type": st.sampled_from(["read", "delete"])}),
    min_size=1, max_size=12)


HOSTS_SEEN = ["api.example.com", "k8s.internal", "db.internal", "x.y"]


@settings(max_examples=200, deadline=None)
@given(rule_specs, st.sampled_from(METHODS), st.sampled_from(HOSTS_SEEN),
       st.sampled_from(["/api/v1/namespaces/a/pods/b", "/query", "/x"]))
def test_the_rule_index_never_hides_a_matching_rule(specs: list[dict], method: str, host: str, path: str) -> None:
    import dataclasses

    from shield_addon import ruletest

    doc = {"version": 1, "rules": [{"id": f"r{i}", "action": ["allow", "hold", "deny"][i % 3], "match": m}
                                   for i, m in enumerate(specs)]}
    indexed = rules.parse_text(dump(doc), "fuzz.yaml")
    plain = dataclasses.replace(indexed, index=None)
    request = {"method": method, "url": f"https://{host}{path}", "body": {"query": "delete from t"}}
    for other in HOSTS_SEEN:  # the index remembers candidates per request shape: warm it with others first
        ruletest.explain(indexed, {**request, "url": f"https://{other}{path}"})
    a, b = ruletest.explain(indexed, request), ruletest.explain(plain, request)
    assert (a.verdict, a.matched, a.rule) == (b.verdict, b.matched, b.rule)
    again = ruletest.explain(indexed, request)  # from the index's memory
    assert (again.verdict, again.matched, again.rule) == (a.verdict, a.matched, a.rule)
