"""The bundled rule packs (rules/NN-domain.yaml): loaded as one rule set, every rule
tested both ways, every pack documented, and everyday agent traffic left alone."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from shield_addon import rules, ruletest

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"
PACKS = sorted([*RULES_DIR.glob("*.yaml"), *RULES_DIR.glob("*.yml")])
RULESET = rules.load_path(RULES_DIR)
TESTS = list(RULESET.tests)  # (file, line, {"request": ..., "expect": ...})
HEADER_SECTIONS = ("Guards:", "Why:", "Adapt:", "Hosts:")


def _test_id(t: tuple[str, int, Mapping[str, Any]]) -> str:
    return f"{Path(t[0]).name}:{t[1]}"


def _verdict(method: str, url: str, body: Any = "", headers: Mapping[str, str] | None = None) -> rules.Verdict:
    return ruletest.explain(RULESET, {"method": method, "url": url, "body": body, "headers": dict(headers or {})})


def _where(request: Mapping[str, Any]) -> tuple[str, str, str]:
    """(service, host, path) a test request is about, to tell a near miss from a far one."""
    flow = ruletest.flow_for(request)
    action = ruletest.explain(RULESET, request).action
    return action.service, flow.request.host, flow.request.path.split("?", 1)[0]


# ---------------------------------------------------------------- the packs as files


def test_the_folder_holds_the_domain_packs_and_nothing_else() -> None:
    names = [p.name for p in PACKS]
    assert names == sorted(names)
    assert "default.yaml" not in names, "default.yaml was split into the packs; keeping it duplicates rule ids"
    for name in names:
        prefix, _, rest = name.partition("-")
        assert prefix.isdigit() and len(prefix) == 2 and rest, f"{name}: packs are named NN-domain.yaml"
    assert len(RULESET.files) == len(PACKS)


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_every_pack_has_a_header_comment(pack: Path) -> None:
    header = []
    for line in pack.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert header and header[0].startswith("#"), f"{pack.name}: must start with a comment"
    assert sum(1 for line in header if line.startswith("#")) >= 8, f"{pack.name}: header comment is too short"
    missing = [s for s in HEADER_SECTIONS if s not in text]
    assert not missing, f"{pack.name}: header comment lacks {missing}"


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_every_pack_defaults_to_allow(pack: Path) -> None:
    # A file's default can only make the whole set stricter: one `default: hold`
    # would hold every request the other packs meant to let through.
    doc = YAML(typ="safe").load(pack.read_text(encoding="utf-8"))
    assert doc.get("default", "allow") == "allow", f"{pack.name}: packs must say default: allow"
    assert doc.get("tests"), f"{pack.name}: a pack carries its own tests"


@pytest.mark.parametrize("pack", PACKS, ids=lambda p: p.name)
def test_every_rule_is_written_for_a_reviewer(pack: Path) -> None:
    doc = YAML(typ="safe").load(pack.read_text(encoding="utf-8"))
    for rule in doc.get("rules", []):
        rid = rule["id"]
        assert rule.get("description"), f"{rid}: needs a description"
        assert rule.get("message") and len(rule["message"]) <= 80, f"{rid}: needs a short message"
        assert "severity" in rule, f"{rid}: say the severity, do not rely on the default"
        if rule["action"] == "allow":
            assert rule["severity"] == "info", f"{rid}: an allow rule only records; severity info"


# ---------------------------------------------------------------- the tests: in the files


def test_the_rule_set_is_the_default_allow_union_of_the_packs() -> None:
    assert RULESET.default == "allow"
    assert len({r.id for r in RULESET.rules}) == len(RULESET.rules)
    assert len(TESTS) >= 2 * len(RULESET.rules)


@pytest.mark.parametrize("test", TESTS, ids=_test_id)
def test_every_rule_file_test_passes(test: tuple[str, int, Mapping[str, Any]]) -> None:
    file, line, body = test
    results = list(ruletest.run_tests(dataclasses.replace(RULESET, tests=(test,))))
    assert results == [(file, line, None)], f"{file}:{line}: {results[0][2]}\n{json.dumps(body, indent=1)}"


def test_run_tests_over_the_whole_folder_has_no_failure() -> None:
    failures = [(Path(f).name, line, why) for f, line, why in ruletest.run_tests(RULESET) if why is not None]
    assert not failures


@pytest.mark.parametrize("rule", RULESET.rules, ids=lambda r: r.id)
def test_every_rule_has_a_positive_test_expecting_it(rule: rules.Rule) -> None:
    positives = [t for t in TESTS if t[2].get("expect", {}).get("rule") == rule.id]
    assert positives, f"{rule.id}: no test expects this rule"
    assert any(t[0] == rule.file for t in positives), f"{rule.id}: its positive test belongs in {rule.file}"


@pytest.mark.parametrize("rule", RULESET.rules, ids=lambda r: r.id)
def test_every_rule_has_a_near_miss_test(rule: rules.Rule) -> None:
    """A request in the rule's own file that the rule does NOT match, about the same
    service, host or path as one it does: the edge of the rule is pinned down."""
    positives = [t for t in TESTS if t[2]["expect"].get("rule") == rule.id]
    near = set()
    for _, _, t in positives:
        near.update(_where(t["request"]))
    misses = []
    for file, line, t in TESTS:
        if file != rule.file:
            continue
        if rule.id in ruletest.explain(RULESET, t["request"]).matched:
            continue
        if near & set(_where(t["request"])):
            misses.append(line)
    assert misses, f"{rule.id}: add a near-miss test (same service, host or path; rule does not match)"


# ---------------------------------------------------------------- everyday traffic

K8S = "https://k8s.internal:6443"
SIGV4 = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=00"
JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}
MCP = {**JSON, "accept": "application/json, text/event-stream", "mcp-session-id": "s-1"}

def _p(label: str, method: str, url: str, body: Any = "", headers: Mapping[str, str] | None = None) -> Any:
    return pytest.param(method, url, body, dict(headers or {}), id=label)


EVERYDAY = [
    _p("kubectl get pods in prod", "GET", f"{K8S}/api/v1/namespaces/prod-payments/pods?limit=500"),
    _p("kubectl get deployment", "GET", f"{K8S}/apis/apps/v1/namespaces/dev/deployments/web"),
    _p("kubectl apply new image", "PATCH", f"{K8S}/apis/apps/v1/namespaces/dev/deployments/web?fieldManager=kubectl-client-side-apply",
       {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:1.4.3"}]}}}},
       {"content-type": "application/strategic-merge-patch+json"}),
    _p("kubectl logs", "GET", f"{K8S}/api/v1/namespaces/dev/pods/web-1/log?container=app"),
    _p("SQL SELECT", "POST", "https://ep-calm-sun-123456.us-east-2.aws.neon.tech/sql",
       {"query": "SELECT id, status FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 20", "params": [7]}, JSON),
    _p("SQL INSERT", "POST", "https://db.internal/v1/sql", "INSERT INTO events (kind, at) VALUES ('deploy', now())",
       {"content-type": "application/sql"}),
    _p("SQL UPDATE with WHERE", "POST", "https://db.internal/v1/sql", "UPDATE orders SET status = 'shipped' WHERE id = 42",
       {"content-type": "application/sql"}),
    _p("GitHub GET repo", "GET", "https://api.github.com/repos/acme/web", "", {"accept": "application/vnd.github+json"}),
    _p("GitHub list pulls", "GET", "https://api.github.com/repos/acme/web/pulls?state=open&per_page=50"),
    _p("GitHub comment", "POST", "https://api.github.com/repos/acme/web/issues/42/comments", {"body": "Fixed in #43"}, JSON),
    _p("GitHub open PR", "POST", "https://api.github.com/repos/acme/web/pulls",
       {"title": "Fix typo", "head": "fix-typo", "base": "main"}, JSON),
    _p("GitHub GraphQL query", "POST", "https://api.github.com/graphql",
       {"query": "query { repository(owner: \"acme\", name: \"web\") { issues(first: 10) { nodes { title } } } }"}, JSON),
    _p("S3 list objects", "GET", "https://reports-prod.s3.us-east-1.amazonaws.com/?list-type=2&prefix=2026%2F", "",
       {"authorization": SIGV4.format("s3")}),
    _p("S3 get object", "GET", "https://reports-prod.s3.us-east-1.amazonaws.com/2026/q1.csv", "",
       {"authorization": SIGV4.format("s3")}),
    _p("S3 put object", "PUT", "https://reports-prod.s3.us-east-1.amazonaws.com/2026/q2.csv", "a,b\n1,2\n",
       {"authorization": SIGV4.format("s3")}),
    _p("EC2 describe instances", "POST", "https://ec2.us-east-1.amazonaws.com/", "Action=DescribeInstances&Version=2016-11-15",
       {**FORM, "authorization": SIGV4.format("ec2")}),
    _p("DynamoDB query", "POST", "https://dynamodb.us-east-1.amazonaws.com/",
       {"TableName": "orders", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "c#7"}}},
       {"content-type": "application/x-amz-json-1.0", "x-amz-target": "DynamoDB_20120810.Query",
        "authorization": SIGV4.format("dynamodb")}),
    _p("STS get caller identity", "POST", "https://sts.amazonaws.com/", "Action=GetCallerIdentity&Version=2011-06-15",
       {**FORM, "authorization": SIGV4.format("sts")}),
    _p("OpenAI chat completions", "POST", "https://api.openai.com/v1/chat/completions",
       {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Why did the deploy fail? DELETE FROM logs?"}]}, JSON),
    _p("Anthropic messages", "POST", "https://api.anthropic.com/v1/messages",
       {"model": "claude-sonnet-4-5", "max_tokens": 512, "messages": [{"role": "user", "content": "hi"}]},
       {**JSON, "anthropic-version": "2023-06-01"}),
    _p("Stripe payment intent", "POST", "https://api.stripe.com/v1/payment_intents", "amount=2000&currency=usd", FORM),
    _p("Stripe list charges", "GET", "https://api.stripe.com/v1/charges?limit=10"),
    _p("Slack read channel", "POST", "https://slack.com/api/conversations.history", "channel=C0123456789&limit=20", FORM),
    _p("MCP tools/list", "POST", "https://mcp.acme.example/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, MCP),
    _p("MCP read-only tool", "POST", "https://mcp.acme.example/mcp",
       {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"q": "rollback"}}}, MCP),
]


@pytest.mark.parametrize("method,url,body,headers", EVERYDAY)
def test_everyday_requests_are_allowed(method: str, url: str, body: Any, headers: dict[str, str]) -> None:
    v = _verdict(method, url, body, headers)
    assert (v.verdict, v.enforced) == ("allow", "allow"), f"{method} {url}: {v.verdict} by {v.rule and v.rule.id}"


@pytest.mark.parametrize("rule,method,url,body,headers,verdict", [
    pytest.param("k8s-delete-in-prod", "DELETE", f"{K8S}/api/v1/namespaces/prod-a/pods/web-1", "", {}, "hold", id="k8s"),
    pytest.param("sql-drop-truncate", "POST", "https://db.internal/query", {"sql": "drop table users"}, JSON, "hold", id="sql"),
    pytest.param("gh-repo-delete", "DELETE", "https://api.github.com/repos/acme/web", "", {}, "hold", id="github"),
    pytest.param("aws-terminate", "POST", "https://ec2.us-east-1.amazonaws.com/",
                 "Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-1", {**FORM, "authorization": SIGV4.format("ec2")},
                 "hold", id="aws"),
    pytest.param("pay-refund", "POST", "https://api.stripe.com/v1/refunds", "charge=ch_1", FORM, "deny", id="payments"),
    pytest.param("msg-slack", "POST", "https://slack.com/api/chat.postMessage", {"channel": "C1", "text": "hi"}, JSON, "hold",
                 id="messaging"),
    pytest.param("proxy-mitmweb", "GET", "http://127.0.0.1:8081/flows", "", {}, "deny", id="proxy-control"),
    pytest.param("http-delete", "DELETE", "https://api.example.com/v1/items/7", "", {}, "hold", id="generic"),
])
def test_one_request_per_domain_is_stopped(rule: str, method: str, url: str, body: Any, headers: dict[str, str],
                                           verdict: str) -> None:
    v = _verdict(method, url, body, headers)
    assert (v.verdict, v.rule and v.rule.id) == (verdict, rule)
