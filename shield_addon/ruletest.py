"""The `tests:` of rule files: a request and what the rules must say about it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from mitmproxy import connection, http

from shield_addon import actions, rules
from shield_addon.flows import judged_flow, view_of

REQUEST_KEYS = {"method", "url", "headers", "body", "agent", "first_contact"}
EXPECT_KEYS = {"action", "rule", "matched", "service", "action_type", "operation", "namespace",
               "resource_type", "resource_name", "table"}


def flow_for(request: Mapping[str, Any]) -> http.HTTPFlow:
    """A mitmproxy flow for a request given as {method, url, headers, body}, so `filter:`
    matchers see what the proxy would see. Headers: a mapping or a list of pairs; a body
    that is not text is sent as JSON (and says so, unless a content-type is given). Text is
    encoded by its Content-Encoding; bytes (`!!binary` in YAML) are sent as they are."""
    body = request.get("body") or ""
    raw = request.get("headers") or {}
    headers = [(str(k), str(v)) for k, v in (raw.items() if isinstance(raw, Mapping) else raw)]
    if isinstance(body, bytes):
        content = body
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
    fields = [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers]
    # Bytes are the body as it travels: make() would encode them again, or drop a
    # Content-Encoding it cannot apply (`identity, gzip`).
    raw = isinstance(body, bytes)
    req = http.Request.make(str(request.get("method", "GET")).upper(), str(request["url"]), b"" if raw else content, fields)
    if raw:
        req.headers = http.Headers(fields)
        req.raw_content = body
    client = connection.Client(peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0), timestamp_start=0.0)
    f = http.HTTPFlow(client, connection.Server(address=(req.host, req.port)))
    f.request = req
    return f


def subjects_for(ruleset: rules.RuleSet, request: Mapping[str, Any]) -> list[rules.Subject]:
    """One subject per reading of the request: each action it carries, as sent and as any
    method override names it."""
    f = flow_for(request)
    agent = str(request.get("agent") or "")
    # first_contact: what the proxy's memory would say; a test's host is known unless it says so.
    first = request.get("first_contact") is True
    view = view_of(f)
    judged = judged_flow(f, view)  # what the proxy's `filter:` matchers see (whereabouts.context)
    return [rules.Subject(r.request, r.action, judged, agent, first) for r in actions.readings(view, ruleset.services)]


def explain(ruleset: rules.RuleSet, request: Mapping[str, Any]) -> rules.Verdict:
    subjects = subjects_for(ruleset, request)
    readings = [actions.Reading(s.request, s.action) for s in subjects]
    return rules.judge(ruleset, readings, subjects[0].flow, subjects[0].agent, subjects[0].first_contact)


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
        unknown = [f"expect.{k}" for k in set(expect) - EXPECT_KEYS] + [f"request.{k}" for k in set(request) - REQUEST_KEYS]
        if unknown:
            yield file, line, f"unknown key(s): {', '.join(sorted(unknown))}"
            continue
        try:
            yield file, line, check(explain(ruleset, request), expect)
        except ValueError as e:
            yield file, line, f"bad request: {e}"


def recorded_request(row: Mapping[str, Any]) -> dict[str, Any]:
    """A request as the audit trail kept it, for replay. Secrets stay redacted and bodies
    stay cut at shield_body_limit, so rules that look at those see what the trail saw."""
    body = row.get("request_body") or ""
    if body.startswith("base64:"):
        import base64

        body = base64.b64decode(body[len("base64:"):])
    return {
        "method": row["method"],
        "url": row["url"],
        "headers": [tuple(h) for h in json.loads(row["request_headers"] or "[]")],
        "body": body,
        "agent": row.get("agent") or "",
    }
