"""The `tests:` of rule files: a request and what the rules must say about it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from mitmproxy import connection, http

from shield_addon import actions, rules
from shield_addon.core import contacts, limits
from shield_addon.core.context import Context
from shield_addon.core.decide import decide
from shield_addon.flows import judged_flow, view_of

REQUEST_KEYS = {"method", "url", "headers", "body", "agent", "first_contact"}
STATE_KEYS = {"count", "seen_hosts", "now"}
TEST_KEYS = {"name", "request", "expect", "state"}
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


def subjects_for(ruleset: rules.RuleSet, request: Mapping[str, Any], given: Mapping[str, Any] | None = None,
                 state: rules.State | None = None) -> list[rules.Subject]:
    """One subject per reading of the request: each action it carries, as sent and as any
    method override names it. `given`: a test's `state:` (what the proxy's memory would hold)."""
    f = flow_for(request)
    agent = str(request.get("agent") or "")
    view = view_of(f)
    # first_contact: what the proxy's memory would say; a test's host is known unless it says so.
    first = request.get("first_contact") is True
    seen = (given or {}).get("seen_hosts")
    if seen is not None:
        first = not {view.host, f"{view.host}:{view.port}"} & {str(h).lower() for h in seen}
    judged = judged_flow(f, view)  # what the proxy's `filter:` matchers see (whereabouts.context)
    state = state if state is not None else state_for(given or {})
    return [rules.Subject(r.request, r.action, judged, agent, first, state=state)
            for r in actions.readings(view, ruleset.services)]


def state_for(given: Mapping[str, Any]) -> rules.State:
    """A test's `state: {count: 5, now: "2026-12-04T18:00:00+01:00"}` as what the proxy would
    hold: every `limit:` sees `count` requests already counted (0 when absent), every `when:`
    the moment `now` (the current time when absent). ValueError when a value is wrong."""
    count = given.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"state.count must be a whole number, not {count!r}")
    return rules.State(now=moment(given["now"]) if "now" in given else time.time(),
                       counts=lambda rule, key, per, now: count)


def moment(value: Any) -> float:
    """An ISO 8601 time with its offset (YAML may already have read it as a datetime)."""
    when = value if isinstance(value, datetime) else None
    if when is None:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"now: {value!r} is not an ISO time like 2026-12-04T18:00:00+01:00") from None
    if when.tzinfo is None:
        raise ValueError(f"now: {value!r} needs its offset from UTC (+01:00, Z)")
    return when.timestamp()


def explain(ruleset: rules.RuleSet, request: Mapping[str, Any], given: Mapping[str, Any] | None = None,
            state: rules.State | None = None) -> rules.Verdict:
    subjects = subjects_for(ruleset, request, given, state)
    readings = [actions.Reading(s.request, s.action) for s in subjects]
    # The built-in rules too: what the proxy would do, not only what the files say (a test of
    # a request to the metadata service passes only if it expects the refusal the proxy gives).
    first = subjects[0]
    return decide(readings, ruleset, Context(agent=first.agent, flow=first.flow, first_contact=first.first_contact,
                                             state=first.state))


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
        given = test.get("state") or {}
        if not isinstance(given, Mapping):
            yield file, line, "state: must be a mapping {count, seen_hosts, now}"
            continue
        unknown = ([f"expect.{k}" for k in set(expect) - EXPECT_KEYS] + [f"request.{k}" for k in set(request) - REQUEST_KEYS]
                   + [f"state.{k}" for k in set(given) - STATE_KEYS] + [str(k) for k in set(test) - TEST_KEYS])
        if unknown:
            yield file, line, f"unknown key(s): {', '.join(sorted(unknown))}"
            continue
        try:
            yield file, line, check(explain(ruleset, request, given), expect)
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


class History:
    """What a proxy would have remembered while the recorded requests arrived, for `rules
    replay`: each is judged at its recorded time, with the `limit:` counts of the requests
    replayed before it and the hosts each agent reached before it (a destination is reached
    when the candidate rules allow the request: a hold's outcome under them is unknown)."""

    def __init__(self) -> None:
        self.counts = limits.Counts()
        self.reached = contacts.Memory()

    def judge(self, ruleset: rules.RuleSet, row: Mapping[str, Any]) -> rules.Verdict:
        request = recorded_request(row)
        contact = (request["agent"], str(row.get("host") or ""), int(row.get("port") or 0))
        request["first_contact"] = not self.reached.known(contact)
        state = rules.State(now=recorded_time(row["ts"]), counts=self.counts.count)
        verdict = explain(ruleset, request, state=state)
        for (rule, key), keep in state.counted.items():
            self.counts.add(rule, key, state.now or 0.0, keep)
        if verdict.enforced == "allow":
            self.reached.remember(contact)
        return verdict


def recorded_time(ts: Any) -> float:
    """A trail time (UTC, without an offset, as DuckDB gives it) as epoch seconds."""
    when = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
    return when.replace(tzinfo=when.tzinfo or UTC).timestamp()
