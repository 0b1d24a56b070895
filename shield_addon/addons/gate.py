"""The gate's addon: every request (and WebSocket message) is judged before it goes anywhere.

Hooks only gather what the pure core needs (the view, the context) and act on its verdict:
forward, refuse with a 403, or hand the flow to the review addon.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from shield_addon import actions, record
from shield_addon.actions.messages import binary_message_view, message_view
from shield_addon.addons.answer import policy
from shield_addon.addons.console import MARKERS
from shield_addon.addons.contacts import ContactBook
from shield_addon.addons.limits import LimitBook
from shield_addon.addons.review import Review
from shield_addon.addons.rulebook import Rulebook
from shield_addon.addons.trail import Trail
from shield_addon.addons.whereabouts import CONNECT_REFUSED, Whereabouts
from shield_addon.core.budget import TRAIL_BUDGET
from shield_addon.core.builtin import TCP
from shield_addon.core.decide import decide
from shield_addon.core.hosts import canonical_host
from shield_addon.flows import (
    FlowState,
    Sent,
    Tap,
    action_columns,
    agent_of,
    base_columns,
    decoded_body,
    forget_password,
    message_columns,
    refuse,
    request_columns,
    response_columns,
    sent_of,
    should_stream,
    view_of,
)

log = logging.getLogger("shield")
VIA_HEADER = "x-shield-via"
BRIEF = 256  # bytes of each value (path, URL, host) recorded of a request refused for the agent's trail budget


class Gate:
    def __init__(self, trail: Trail, rulebook: Rulebook, review: Review) -> None:
        self.trail, self.rulebook, self.review = trail, rulebook, review
        self.state: dict[str, FlowState] = {}
        self.taps: dict[str, Tap] = {}
        self.where = Whereabouts(lambda: review.remote.members)
        self.contacts = ContactBook(trail)  # first contact: what each agent has reached before
        self.limits = LimitBook(trail, rulebook)  # `limit:` counts and the clock of `when:`
        # Stamped on every request this proxy lets through: one that arrives carrying it came
        # back through the proxy (a route to itself no address check saw) and is refused.
        self.via = secrets.token_hex(8)

    def configure(self, updated: set[str]) -> None:
        self.where.configure(updated)
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            # A streamed request reaches upstream before the request hook: no gate could hold it.
            raise exceptions.OptionsError("shield: stream_large_bodies would send requests before the rules run; "
                                          "use body_size_limit instead")

    def http_connect(self, f: http.HTTPFlow) -> None:
        forget_password(f)

    def requestheaders(self, f: http.HTTPFlow) -> None:
        forget_password(f)

    async def request(self, f: http.HTTPFlow) -> None:
        await self.gate(f)

    def responseheaders(self, f: http.HTTPFlow) -> None:
        if f.response is not None:
            f.response.headers["x-shield-flow-id"] = f.id  # lower case: HTTP/2 requires it
            if should_stream(f.response) and not f.response.stream:
                f.response.stream = self.taps[f.id] = Tap(ctx.options.shield_body_limit)

    def response(self, f: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        state = self.state.pop(f.id, None) or self.untracked(f)
        if f.response is not None and f.response.status_code == 101 and f.websocket is None:
            # Awaited by mitmproxy before the 101 goes on (a hook may return an awaitable);
            # every other response stays a plain call, with no coroutine per request.
            return self.upgrade(f, state)
        self.answered(f, state)
        return None

    async def upgrade(self, f: http.HTTPFlow, state: FlowState) -> None:
        await self.judge_upgrade(f, state)
        self.answered(f, state)

    def answered(self, f: http.HTTPFlow, state: FlowState) -> None:
        outcome = "refused" if state.refused else "forwarded"
        self.contacts.settle(f.id, forwarded=not state.refused)
        self.trail.submit({**state.base, "stage": "response", "outcome": outcome, **response_columns(
            f, self.trail.redactor, ctx.options.shield_body_limit, self.taps.pop(f.id, None))})

    def error(self, f: http.HTTPFlow) -> None:
        tap = self.taps.pop(f.id, None)
        state = self.state.pop(f.id, None) or self.untracked(f)
        self.contacts.settle(f.id, forwarded=False)
        if tap is not None and f.response is not None:
            # A streamed response the agent stopped reading (an SDK hangs up at `[DONE]`):
            # it got what the tap saw; record that, with why the stream ended early.
            self.trail.submit({**state.base, "stage": "response", "outcome": "forwarded",
                               "error": error_text(f),
                               **response_columns(f, self.trail.redactor, ctx.options.shield_body_limit, tap)})
            return
        refused = state.refused or state.decided.get("decision") in ("killed", "abandoned", "denied", "blocked") \
            or CONNECT_REFUSED in (f.error.msg if f.error else "")
        self.trail.submit({**state.base, "stage": "error", "outcome": "refused" if refused else "error",
                           "error": error_text(f),
                           "duration_ms": round((f.error.timestamp - f.request.timestamp_start) * 1000, 3) if f.error
                           else None})

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if (why := await self.where.refusal(data.server)) is not None:
            log.warning("shield: %s", record.safe_text(why))
            data.server.error = why  # mitmproxy does not connect, and the flow's error says why

    async def websocket_message(self, f: http.HTTPFlow) -> None:
        """Each WebSocket message after the (rule-checked) handshake. What the agent sends is
        judged like a request and written before it is delivered; a message the rules deny or
        hold is not delivered (a WebSocket cannot wait for a reviewer: held is refused), and the
        agent is told why in a text message."""
        if f.websocket is None or not f.websocket.messages:
            return
        msg = f.websocket.messages[-1]
        agent = agent_of(f)
        if msg.from_client and not msg.injected and not self.trail.allows(agent):
            self.message_over_budget(f, msg, agent)
            return
        event = {**base_columns(f, agent, self.trail.redactor), "stage": "message"}
        if not msg.from_client or msg.injected:
            self.trail.submit({**event, **message_columns(msg, self.trail.redactor, ctx.options.shield_body_limit)})
            return
        ruleset = self.rulebook.ruleset
        handshake = view_of(f, b"")
        view = message_view(handshake, msg.text) if msg.is_text else binary_message_view(handshake, msg.content)
        context = self.limits.fill(ruleset, self.where.context(f, agent, view, None))
        verdict = decide(actions.readings(view, ruleset.services), ruleset, context)
        self.limits.settle(context)
        enforced = verdict.enforced if ctx.options.shield_mode == "enforce" else "allow"
        event.update(action_columns(verdict.action, verdict, ctx.options.shield_mode, ruleset.sha256),
                     decision="allowed" if enforced == "allow" else "blocked",
                     **message_columns(msg, self.trail.redactor, ctx.options.shield_body_limit))
        if not await self.trail.write(event) or enforced != "allow":
            msg.drop()
            rule = verdict.enforced_rule if enforced != "allow" else None
            notice = {"error": "message not delivered", "decision": "blocked" if rule else "refused", "flow_id": f.id,
                      "rule": rule.id if rule else None, "message": rule.message if rule else "audit journal unavailable"}
            ctx.master.commands.call("inject.websocket", f, True, json.dumps(notice).encode(), True)

    def message_over_budget(self, f: http.HTTPFlow, msg: Any, agent: str) -> None:
        """A message from an agent that spent its share of the trail: not delivered, and
        recorded small (its size and digest)."""
        msg.drop()
        rule = TRAIL_BUDGET
        self.trail.submit({**base_columns(f, agent, self.trail.redactor, limit=BRIEF), "stage": "message",
                           "operation": "client->server", "decision": "blocked", "verdict": "deny", "rule_id": rule.id,
                           "matched_rules": [rule.id], "severity": rule.severity, "mode": "enforce",
                           "request_body_size": len(msg.content), "request_sha256": record.sha256(msg.content)})
        notice = {"error": "message not delivered", "decision": "blocked", "flow_id": f.id, "rule": rule.id,
                  "message": rule.message}
        ctx.master.commands.call("inject.websocket", f, True, json.dumps(notice).encode(), True)

    async def judge_upgrade(self, f: http.HTTPFlow, state: FlowState) -> None:
        """A 101 to anything but a WebSocket turns the connection into a raw stream that
        mitmproxy relays byte for byte: judged like raw TCP through a tunnel (builtin:raw-tcp
        unless a rule allows `method: TCP` there), and refused before the 101 reaches the agent.
        An allowed stream's event is on disk before the 101 goes on, or it is refused (503)."""
        ruleset = self.rulebook.ruleset
        view = actions.RequestView(TCP, "tcp", canonical_host(f.request.host), f.request.port, f.request.path)
        context = self.limits.fill(ruleset, self.where.context(f, state.agent, view, None))
        verdict = decide(actions.readings(view, ruleset.services), ruleset, context)
        self.limits.settle(context)
        enforced = verdict.enforced if ctx.options.shield_mode == "enforce" else "allow"
        event = {**state.base, **action_columns(verdict.action, verdict, ctx.options.shield_mode, ruleset.sha256),
                 "stage": "tcp", "method": TCP, "operation": "upgrade",
                 "decision": "allowed" if enforced == "allow" else "blocked"}
        if enforced != "allow":
            self.trail.submit(event)
            state.refused = True
            refuse(f, 403, "blocked", "upgrade to a raw stream refused by rule", verdict.enforced_rule)
        elif not await self.trail.write(event, f):
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: upgrade refused, nothing was relayed")

    # ------------------------------------------------------------ the gate

    async def gate(self, f: http.HTTPFlow) -> None:
        if not self.trail.allows(agent_of(f)):
            await self.over_budget(f)
            return
        state = self.start(f)
        if f.response is not None:
            # Answered before the rules (proxyauth's 407): record the attempt, hold nothing.
            state.refused = True
            self.trail.submit({**state.base, "stage": "request", "decision": "blocked", "verdict": "deny",
                               "error": f"answered by the proxy before the rules: HTTP {f.response.status_code}",
                               **request_columns(f.request, self.trail.redactor, ctx.options.shield_body_limit,
                                                 sent=state.sent)})
            state.sent = None
            return
        resolved = await self.where.resolved(f.request.host, f.request.port)
        try:
            event = self.judge(f, state, resolved)
        except Exception as e:  # noqa: BLE001 - a bug of ours must refuse the flow, not crash the proxy
            log.exception("shield: could not evaluate %s", f.request.url)
            state.refused = True
            self.trail.submit({**state.base, "stage": "error", "outcome": "refused", "error": f"shield: {e!r}"})
            refuse(f, 403, "blocked", "request refused: the guard could not evaluate it")
            return
        enforced = state.verdict.enforced if ctx.options.shield_mode == "enforce" and state.verdict else "allow"
        if enforced == "hold" and policy(state.verdict.enforced_rule)[0].mode == "retry":
            await self.review.retry.answer(f, state, event)
            return
        if not await self.trail.write(event, f):
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: request refused, nothing was forwarded")
            return
        if enforced == "deny":
            state.refused, state.decided = True, {"decision": "blocked"}
            refuse(f, 403, "blocked", "request blocked by rule", state.verdict.enforced_rule)
            f.marked = MARKERS["blocked"]
        elif enforced == "hold":
            await self.review.wait.hold(f, state)

    async def over_budget(self, f: http.HTTPFlow) -> None:
        """An agent that spent its share of the trail: refused 429 before the rules, and
        recorded small (no headers or body, each value cut at BRIEF bytes)."""
        state = self.start(f, BRIEF)
        state.sent = None
        state.refused, state.decided = True, {"decision": "blocked"}
        rule = TRAIL_BUDGET
        await self.trail.write({**state.base, "stage": "request", "decision": "blocked", "verdict": "deny",
                                "rule_id": rule.id, "matched_rules": [rule.id], "severity": rule.severity,
                                "mode": "enforce"}, f)
        if f.response is None:  # not answered before the rules (proxyauth's 407 stays)
            refuse(f, 429, "blocked", "request refused: this agent's share of the audit trail is spent", rule)
            assert f.response is not None
            f.response.headers["retry-after"] = str(max(1, self.trail.retry_after(state.agent)))
        f.marked = MARKERS["blocked"]

    def start(self, f: http.HTTPFlow, limit: int = record.VALUE_LIMIT) -> FlowState:
        agent = agent_of(f)
        sent = sent_of(f.request)
        state = FlowState(agent, base_columns(f, agent, self.trail.redactor, sent, limit), sent=sent)
        if f.is_replay == "request":
            # A reviewer's replay sends the same mitmproxy flow again: in the trail it is a new
            # attempt with an id of its own, so every flow_id has one request event, its first.
            state.base["flow_id"] = f"{f.id}-replay-{secrets.token_hex(4)}"
        self.state[f.id] = state
        return state

    def judge(self, f: http.HTTPFlow, state: FlowState, resolved: tuple[str, ...] = ()) -> dict[str, Any]:
        """View, actions, verdict, and the request event built once from them."""
        decoded = decoded_body(f.request)
        body = decoded.body if decoded.body is not None else f.request.raw_content
        sent, state.sent = state.sent or sent_of(f.request), None
        view = view_of(f, body, sent)
        ruleset = self.rulebook.ruleset
        readings = actions.readings(view, ruleset.services)
        unreadable = decoded.problem if f.request.raw_content else None
        if f.is_replay == "request":  # a reviewer's replay carries the mark of its first pass
            f.request.headers.pop(VIA_HEADER, None)
            sent.headers = tuple(f.request.headers.items(multi=True))
        came_back = self.via in f.request.headers.get_all(VIA_HEADER)
        f.request.headers.add(VIA_HEADER, self.via)  # before the record: upstream gets nothing the trail lacks
        sent.headers += ((VIA_HEADER, self.via),)  # Headers.add appends: the record's headers are the request's
        context = self.where.context(f, state.agent, view, unreadable, came_back, resolved)
        context = self.limits.fill(ruleset, self.contacts.fill(f.id, ruleset, view, context))
        verdict = decide(readings, ruleset, context)
        self.limits.settle(context)
        state.action, state.verdict = verdict.action, verdict
        return request_event(state, f.request, body, verdict, self.trail.redactor, ruleset.sha256, sent)

    def untracked(self, f: http.HTTPFlow) -> FlowState:
        """A flow that never reached the request hook (too large, malformed, TLS failure)."""
        agent = agent_of(f)
        return FlowState(agent, base_columns(f, agent, self.trail.redactor))


def error_text(f: http.HTTPFlow) -> str | None:
    """mitmproxy's reason for an error, which may quote the request (its host, its line)."""
    return record.cut(f.error.msg, record.VALUE_LIMIT, f.error.msg) if f.error else None


def request_event(state: FlowState, req: http.Request, body: bytes | None, verdict: Any, redactor: record.Redactor,
                  ruleset_sha256: str, sent: Sent | None = None) -> dict[str, Any]:
    """The flow's request event, from the view's body, headers and query, and the verdict."""
    mode = ctx.options.shield_mode
    enforced = verdict.enforced if mode == "enforce" else "allow"
    return {**state.base, "stage": "request", "decision": {"allow": "allowed", "deny": "blocked", "hold": None}[enforced],
            **request_columns(req, redactor, ctx.options.shield_body_limit, body, sent),
            **action_columns(verdict.action, verdict, mode, ruleset_sha256)}
