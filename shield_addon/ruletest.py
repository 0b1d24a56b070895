"""The `tests:` of rule files: a request and what the rules must say about it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from mitmproxy import http
from mitmproxy.test import tflow

from shield_addon import actions, rules
from shield_addon.flows import view_of

EXPECT_KEYS = {"action", "rule", "matched", "service", "action_type", "operation", "namespace",
               "resource_type", "resource_name", "table"}


def flow_for(request: Mapping[str, Any]) -> http.HTTPFlow:
    """A mitmproxy flow for a test request, so `filter:` matchers see what the proxy sees."""
    body = request.get("body", "")
    if not isinstance(body, str):
        body = json.dumps(body)
    headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
    req = http.Request.make(str(request.get("method", "GET")).upper(), str(request["url"]), body.encode(), headers)
    f = tflow.tflow()
    f.request = req
    return f


def explain(ruleset: rules.RuleSet, request: Mapping[str, Any]) -> rules.Verdict:
    f = flow_for(request)
    view = view_of(f)
    return rules.evaluate(ruleset, rules.Subject(view, actions.parse(view, ruleset.services), f))


def check(verdict: rules.Verdict, expect: Mapping[str, Any]) -> str | None:
    """None if the verdict is as expected, else what differs."""
    a = verdict.action
    got = {
        "action": verdict.verdict, "rule": verdict.rule.id if verdict.rule else None,
        "service": a.service, "action_type": a.action_type, "operation": a.operation,
        "namespace": a.namespace, "resource_type": a.resource_type, "resource_name": a.resource_name,
    }
    wrong = []
    for key, want in expect.items():
        if key == "matched":
            if sorted(want) != sorted(verdict.matched):
                wrong.append(f"matched: expected {sorted(want)}, got {sorted(verdict.matched)}")
        elif key == "table":
            if want not in a.tables:
                wrong.append(f"table: expected {want!r} in {list(a.tables)}")
        elif got.get(key) != want:
            wrong.append(f"{key}: expected {want!r}, got {got.get(key)!r}")
    return "; ".join(wrong) or None


def run_tests(ruleset: rules.RuleSet) -> Iterator[tuple[str, int, str | None]]:
    for file, line, test in ruleset.tests:
        request, expect = test.get("request"), test.get("expect")
        if not isinstance(request, Mapping) or "url" not in request or not isinstance(expect, Mapping):
            yield file, line, "a test needs request: {method, url, ...} and expect: {action, rule, ...}"
            continue
        unknown = set(expect) - EXPECT_KEYS
        if unknown:
            yield file, line, f"unknown expect key(s): {', '.join(sorted(unknown))}"
            continue
        try:
            yield file, line, check(explain(ruleset, request), expect)
        except ValueError as e:
            yield file, line, f"bad request: {e}"
