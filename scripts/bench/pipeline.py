"""The proxy's per-request functions, for the micro-benchmarks: the one module that knows where
they live. The benchmarks call these, never a copy of them; when the pipeline moves, repoint
the lines here (each says which hook or function of the proxy it stands for).

Today's path (shield_addon.addons.gate.Gate.start and .judge, then Trail.write):
    sent_of -> base_columns -> decoded_body -> view_of -> actions.parse -> decide (rules.evaluate + built-in rules)
    -> request_event (request_columns + action_columns) -> record.seal -> journal_line
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mitmproxy import http

from shield_addon import actions, flows, paths, record, rules
from shield_addon.addons import review as _review
from shield_addon.core import hosts as _hosts
from shield_addon.core.context import Context
from shield_addon.core.decide import decide as _decide
from shield_addon.journal import Journal, journal_line, read_rows, segments
from shield_addon.record import redaction as _redaction
from shield_addon.writer import link as _link

__all__ = ["PARSERS", "Context", "Journal", "RuleSet", "Subject", "action_columns", "agent_of", "base_columns", "body_of",
           "bundled_rules", "clear_caches", "decide", "default_reviewer", "evaluate", "journal_line", "load_rules", "own_address",
           "parse", "parse_rules", "read_rows", "redactor", "request_columns", "request_event", "response_columns",
           "responseheaders", "seal", "segments", "sent_of", "view_of", "wire_line"]

RuleSet, Subject = rules.RuleSet, rules.Subject
PARSERS: dict[str, Any] = {**actions.PARSERS, "rest": actions.rest.parse}  # each parser alone: parser(view, pinned)
agent_of = flows.agent_of  # Gate.start
sent_of = flows.sent_of  # Gate.start: headers, query and content type, read out of mitmproxy once
base_columns = flows.base_columns  # Gate.start: the columns every event of a flow repeats
request_columns = flows.request_columns  # inside request_event
action_columns = flows.action_columns  # inside request_event
response_columns = flows.response_columns  # Gate.response
seal = record.seal  # the writer process: canonical form + SHA-256, in the chain
wire_line = _link.wire_line  # Trail.write / submit: the event as one line to the writer process
redact_url, headers_json, sha256 = record.redact_url, record.headers_json, record.sha256
SECRET_VALUE, SECRET_PAIR = _redaction._SECRET_VALUE, _redaction._SECRET_PAIR  # the body redactor's two scans
default_reviewer = _review.default_reviewer  # asked by the review addon's update hook
GENESIS = record.GENESIS


def body_of(f: http.HTTPFlow) -> bytes | None:
    """The request body as the gate reads it: decoded, or raw if it cannot be (Gate.judge)."""
    decoded = flows.decoded_body(f.request)
    return decoded.body if decoded.body is not None else f.request.raw_content


def view_of(f: http.HTTPFlow, body: bytes | None = None, sent: flows.Sent | None = None) -> actions.RequestView:
    return flows.view_of(f, body_of(f) if body is None else body, sent)


def parse(view: actions.RequestView, ruleset: rules.RuleSet) -> tuple[actions.Reading, ...]:
    """Every reading of the request: each parser's action, as sent and as overridden."""
    return actions.readings(view, ruleset.services)


def action(view: actions.RequestView, ruleset: rules.RuleSet) -> actions.Action:
    """The strictest action of the request: one subject, for the figures of the rules alone."""
    return actions.parse(view, ruleset.services)


def evaluate(ruleset: rules.RuleSet, subject: rules.Subject) -> rules.Verdict:
    """The rule files alone (no built-in rules)."""
    return rules.evaluate(ruleset, subject)


def decide(readings: tuple[actions.Reading, ...], ruleset: rules.RuleSet, context: Context) -> rules.Verdict:
    """The gate's judgement: the rule files over every reading, then the built-in rules."""
    return _decide(readings, ruleset, context)


def own_address(host: str, port: int, own: Iterable[tuple[str, int]]) -> bool:
    """The built-in proxy-itself check, on its own."""
    return _hosts.is_own_address(host, port, own)


def request_event(base: dict[str, Any], req: http.Request, body: bytes | None, verdict: rules.Verdict, redactor: record.Redactor,
                  ruleset_sha256: str, body_limit: int = 65536, mode: str = "enforce", sent: flows.Sent | None = None
                  ) -> dict[str, Any]:
    """The request event, as gate.request_event builds it (that one reads mitmproxy's ctx.options
    for mode and body limit; here they are arguments)."""
    enforced = verdict.enforced if mode == "enforce" else "allow"
    return {**base, "stage": "request", "decision": {"allow": "allowed", "deny": "blocked", "hold": None}[enforced],
            **flows.request_columns(req, redactor, body_limit, body, sent),
            **flows.action_columns(verdict.action, verdict, mode, ruleset_sha256)}


def responseheaders(f: http.HTTPFlow) -> None:
    """Gate.responseheaders without a tap: the flow id header and the streaming decision."""
    assert f.response is not None
    f.response.headers["x-shield-flow-id"] = f.id
    flows.should_stream(f.response)


def clear_caches() -> None:
    """The parsers' memories (the decoded body, the last SQL readings): cleared before each
    timed call, so every call pays as a new request would."""
    modules = [m for name, m in list(sys.modules.items()) if name.startswith("shield_addon.actions.")]
    for module in modules:
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == module.__name__:
                value.cache_clear()


def redactor(ruleset: rules.RuleSet | None = None) -> record.Redactor:
    return record.Redactor(b"k" * 32, ruleset.redactions if ruleset else None)


def bundled_rules() -> Path:
    return paths.bundled_rules()


def load_rules(path: Path) -> rules.RuleSet:
    return rules.load_path(path)


def parse_rules(text: str, name: str = "generated.yaml") -> rules.RuleSet:
    return rules.parse_text(text, name)
