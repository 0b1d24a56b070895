"""The two ways of answering an agent whose request is held (one review machine decides both).

- `WaitAnswer`: the request stays open (intercepted) until the hold's decision.
- `RetryAnswer`: the agent gets `409` at once; an approval lets the same request through once.

The held hook waits on its own event instead of `flow.wait_for_resume()`, because
mitmproxy's `kill()` never wakes that: a killed hold must end at once, not hang the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from mitmproxy import ctx, http

from shield_addon import record, review, rules
from shield_addon.addons.console import DECIDED, MARKERS, hold_comment, note, redraw
from shield_addon.core import credentials
from shield_addon.flows import FlowState, forwarded_request, refuse, snapshot

if TYPE_CHECKING:
    from shield_addon.addons.review import Review

POLL = 0.25  # `d` kills a flow without telling addons; look this often


def policy(rule: rules.Rule | None) -> tuple[rules.HoldPolicy, float | None]:
    """The rule's hold policy with the proxy's defaults filled in, and its timeout."""
    p = rule.hold if rule else rules.HoldPolicy()
    p = dataclasses.replace(p, mode=p.mode or ctx.options.shield_hold_mode,
                            approval_ttl=p.approval_ttl or float(ctx.options.shield_approval_ttl) or review.APPROVAL_TTL)
    return p, p.timeout if p.timeout is not None else (ctx.options.shield_hold_timeout or None)


class WaitAnswer:
    def __init__(self, owner: Review) -> None:
        self.owner = owner

    async def hold(self, f: http.HTTPFlow, state: FlowState) -> None:
        o = self.owner
        verdict = state.verdict
        rule = verdict.enforced_rule if verdict else None
        p, timeout = policy(rule)
        hold = o.book.open(f.id, state.agent, time.time(), timeout, p.on_timeout,
                           verdict.rule.id if verdict and verdict.rule else None, verdict.verdict if verdict else None,
                           p.approvals)
        hold.base, hold.before = state.base, snapshot(f.request)
        o.show(f, hold)
        o.wakes[hold.hold_id] = asyncio.Event()
        f.intercept()
        f.comment = hold_comment(state, rule, timeout, p.on_timeout,
                                 credentials.describe(f.request.headers.items(multi=True), o.trail.redactor.mark))
        redraw(f)  # the console shows it now
        o.fleet.publish(hold, f.comment)
        if p.preview:
            o.preview(hold, f, verdict.action.service if verdict else None)
        try:
            await self.wait(hold, f)
        finally:
            o.wakes.pop(hold.hold_id, None)
            o.book.close(hold)
        o.fleet.report(hold)
        await self.finish(hold, f, state, rule)
        f.marked = MARKERS.get(hold.decision or "", ":default:")
        why = f": {record.safe_text(hold.comment)}" if hold.comment else ""
        f.comment = f"{hold.decision} by {hold.reviewer or hold.via}{why} | {f.comment}"
        f.metadata[DECIDED] = f"{hold.decision} by {hold.reviewer or hold.via}"
        if f.intercepted:
            f.resume()
        redraw(f)

    async def wait(self, hold: review.Hold, f: http.HTTPFlow) -> None:
        """Until the hold has its decision: a reviewer's, a timeout, or the agent leaving."""
        waiter = asyncio.ensure_future(self.owner.wakes[hold.hold_id].wait())
        try:
            while not self.owner.book.lapse(hold, time.time()) and hold.status == review.PENDING:
                timeout = POLL if hold.deadline is None else min(POLL, hold.deadline - time.time())
                # asyncio.wait, not wait_for: 3.11's wait_for can swallow the
                # cancellation at shutdown and hang mitmproxy.
                await asyncio.wait({waiter}, timeout=max(timeout, 0))
                self.owner.observe(f)
        finally:
            waiter.cancel()

    async def finish(self, hold: review.Hold, f: http.HTTPFlow, state: FlowState, rule: rules.Rule | None) -> None:
        """Answer the agent and record the decision (before the request goes on)."""
        o = self.owner
        forward = hold.forward
        if hold.decision in (review.DENIED, review.TIMED_OUT) and not forward:
            error = "request denied by reviewer" if hold.decision == review.DENIED else "no reviewer decided in time"
            refuse(f, 403, hold.decision, error, rule, comment=hold.comment)
        elif hold.decision in (review.ABANDONED, review.KILLED) and f.killable:
            f.kill()  # never send it, even if someone resumes it later (a kill from another console of the fleet)
        state.refused = not forward
        edited = hold.decision == review.APPROVED and snapshot(f.request) != hold.before
        limit = ctx.options.shield_body_limit
        event = o.event(hold, hold.decision or "", None,
                        forwarded_request(f.request, o.trail.redactor, limit) if edited else None)
        state.decided = event
        if not await o.trail.write(event, f) and forward:
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: approved request not forwarded")


class RetryAnswer:
    def __init__(self, owner: Review) -> None:
        self.owner = owner

    async def answer(self, f: http.HTTPFlow, state: FlowState, event: dict[str, Any]) -> None:
        """Answer at once; bind a later approval to this exact request."""
        o = self.owner
        rule = state.verdict.enforced_rule if state.verdict else None
        p, timeout = policy(rule)
        meaning = review.meaning(f.request.headers.items(multi=True), state.verdict.actions if state.verdict else ())
        key = review.hold_key(o.hold_secret, state.agent, f.request.method, f.request.url,
                              event["request_sha256"], meaning)
        if elsewhere := await o.fleet.elsewhere(key):
            return await self.from_fleet(f, state, event, key, *elsewhere)
        ans = o.book.arrive(key, f.id, state.agent, time.time(), timeout, p.on_timeout,
                            p.approval_ttl or review.APPROVAL_TTL, rule.id if rule else None, p.approvals)
        unsure = False  # an approval the fleet knows, and the fleet cannot be asked: kept, not used
        if ans.kind == "forward" and not (usable := await o.fleet.use(ans.hold)):
            if usable is None:
                o.book.unuse(ans.hold)
                unsure = True
            else:
                note(ans.hold, "approval used by a retry on another proxy of the fleet")
                ans = o.book.arrive(key, f.id, state.agent, time.time(), timeout, p.on_timeout,
                                    p.approval_ttl or review.APPROVAL_TTL, rule.id if rule else None, p.approvals)
        if ans.expired is not None:
            o.trail.submit(o.event(ans.expired, review.EXPIRED, via="expiry"))
        hold = ans.hold
        event.update(hold_id=hold.hold_id, hold_key=key, decision=None if unsure else {
            "forward": review.APPROVED, "refuse": hold.decision, "wait": None}[ans.kind])
        state.base["hold_id"] = hold.hold_id  # the response of this attempt belongs to the hold's story
        if not await o.trail.write(event, f):
            if ans.kind == "forward":
                o.book.unuse(hold)
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: request refused, nothing was forwarded")
            return
        if unsure:
            state.refused = True
            refuse(f, 503, "pending", "approved, but the fleet database is away and another proxy may have used "
                   "this approval: retry later", rule, extra={"hold_id": hold.hold_id, "retry_after": p.retry_after})
            assert f.response is not None
            f.response.headers["retry-after"] = str(p.retry_after)
            return
        if ans.kind == "forward":
            f.comment = f"approved retry of hold {hold.hold_id[:8]} (approved by {hold.reviewer or 'rule'})"
            f.marked = MARKERS["approved"]
            note(hold, f"approved by {hold.reviewer or 'rule'}; used by retry {f.id[:8]} after {hold.attempts} attempt(s)")
            return
        state.refused = True
        if ans.kind == "refuse":
            refuse(f, 403, hold.decision or "denied", "request denied by reviewer" if hold.decision == review.DENIED
                   else "no reviewer decided in time", rule, comment=hold.comment, extra={"hold_id": hold.hold_id})
            return
        self.pending(f, state, hold, ans.new, rule, p, timeout)

    async def from_fleet(self, f: http.HTTPFlow, state: FlowState, event: dict[str, Any], key: str, kind: str,
                         row: Any) -> None:
        """A retry whose hold is on another proxy of the fleet: its approval used here, its
        denial delivered here, or still pending there."""
        o = self.owner
        rule = state.verdict.enforced_rule if state.verdict else None
        event.update(hold_id=row.hold_id, hold_key=key,
                     decision={"forward": review.APPROVED, "refuse": row.decision, "wait": None}[kind])
        state.base["hold_id"] = row.hold_id
        if not await o.trail.write(event, f):
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: request refused, nothing was forwarded")
            return
        by = f"{row.reviewer or 'rule'} on {row.decided_on or row.proxy}"
        if kind == "forward":
            f.comment = record.safe_text(f"approved retry of hold {row.hold_id[:8]} of proxy {row.proxy} (approved by {by})")
            f.marked = MARKERS["approved"]
            return
        state.refused = True
        if kind == "refuse":
            refuse(f, 403, row.decision or "denied", "request denied by reviewer" if row.decision == review.DENIED
                   else "no reviewer decided in time", rule, comment=row.reason, extra={"hold_id": row.hold_id})
            return
        p, _ = policy(rule)
        refuse(f, 409, "pending", "held for a reviewer: retry the same request later", rule,
               extra={"hold_id": row.hold_id, "retry_after": p.retry_after})
        assert f.response is not None
        f.response.headers["retry-after"] = str(p.retry_after)
        f.comment = record.safe_text(f"retry of hold {row.hold_id[:8]}, pending on proxy {row.proxy}")

    def pending(self, f: http.HTTPFlow, state: FlowState, hold: review.Hold, new: bool, rule: rules.Rule | None,
                p: rules.HoldPolicy, timeout: float | None) -> None:
        """Still undecided: 409 with Retry-After; the console shows the hold on its first flow."""
        refuse(f, 409, "pending", "held for a reviewer: retry the same request later", rule,
               extra={"hold_id": hold.hold_id, "retry_after": p.retry_after})
        assert f.response is not None
        f.response.headers["retry-after"] = str(p.retry_after)
        if hold.flow is None or new:
            hold.base = {k: v for k, v in state.base.items() if k != "hold_id"}
            self.owner.show(f, hold)
        credential = credentials.describe(f.request.headers.items(multi=True), self.owner.trail.redactor.mark)
        hold.flow.comment = f"{hold_comment(state, rule, timeout, p.on_timeout, credential)} | retry mode, " \
                            f"{hold.attempts} attempt(s): approve with y, deny with N"
        redraw(hold.flow)
        if new:
            self.owner.fleet.publish(hold, hold.flow.comment)
            if p.preview:
                self.owner.preview(hold, f, state.verdict.action.service if state.verdict else None)
