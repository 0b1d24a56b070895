"""The reviewer's addon: held flows, the approve / deny / pending commands, console markers.

Wait mode keeps the agent's request open until a decision; retry mode answers 409 at once and
lets the same request through once after an approval. Both answer from the same decisions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import command, connection, ctx, hooks, http
from mitmproxy import flow as mflow

from shield_addon import actions, record, retry, rules
from shield_addon.addons.rulebook import Rulebook
from shield_addon.addons.trail import Trail
from shield_addon.flows import FlowState, base_columns, forwarded_request, refuse
from shield_addon.holds import Hold, Holds
from shield_addon.journal import read_rows

log = logging.getLogger("shield")

MARKERS = {
    "held": ":hourglass:", "approved": ":white_check_mark:", "denied": ":no_entry:", "expired": ":alarm_clock:",
    "blocked": ":no_entry:", "killed": ":x:", "timed_out": ":alarm_clock:", "abandoned": ":ghost:",
}
KEYS = (  # (key, command...): keys that are free in mitmproxy 11 and 12's flow list
    ("y", "shield.approve", "@focus"),
    ("Y", "shield.approve", "@all"),
    ("N", "console.command", "shield.deny", "@focus", ""),
    ("p", "shield.pending"),
)
APPROVAL_TTL = 900  # retry mode: seconds an approval waits for the agent's retry, unless a rule says


@functools.cache
def default_reviewer() -> str:
    # Cached: without USER/LOGNAME (services, containers) getuser() reads /etc/passwd.
    return os.environ.get("SUDO_USER") or getpass.getuser()


class Review:
    def __init__(self, trail: Trail, rulebook: Rulebook) -> None:
        self.trail, self.rulebook = trail, rulebook
        self.holds = Holds()
        self.book = retry.RetryBook()
        self.retry_flows: dict[str, retry.RetryHold] = {}
        self._ticker: asyncio.Task | None = None
        trail.on_open.append(self.restore)

    def load(self, loader: Any) -> None:
        loader.add_option("shield_hold_timeout", int, 300, "Seconds a held flow waits for a reviewer (0: forever).")
        loader.add_option("shield_hold_mode", str, "wait", "wait (the agent's request stays open) or retry (409 at once; "
                          "an approval lets the same request through once).", choices=["wait", "retry"])
        loader.add_option("shield_approval_ttl", int, APPROVAL_TTL,
                          "Retry mode: seconds an approval waits for the agent's retry.")
        loader.add_option("shield_reviewer", str, "", "Reviewer name recorded with decisions (default: OS user).")

    def restore(self, journal: Any) -> None:
        self.book = rebuild_retry_holds(journal.dir, float(ctx.options.shield_approval_ttl),
                                        ctx.options.shield_hold_timeout or None)

    def running(self) -> None:
        if "console.key.bind" in ctx.master.commands.commands:
            for key, *cmd in KEYS:
                ctx.master.commands.call("console.key.bind", ["flowlist", "flowview"], key, *cmd)
        self._ticker = asyncio.get_running_loop().create_task(self.tick())

    def done(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        for hold in list(self.holds.pending.values()):
            if self.holds.decide(hold, "abandoned", None, "shutdown", "the proxy shut down while held"):
                self.trail.submit(self.decision_event(hold))

    async def tick(self) -> None:
        """Once a second: retry-mode holds whose time ran out."""
        while True:
            await asyncio.sleep(1)
            for hold, change in self.book.tick(time.time()):
                self.trail.submit(self.retry_decision_event(hold, change, "timeout"))
                self.note(hold, "approval expired unused" if change == retry.EXPIRED else f"{change} (no decision in time)",
                          MARKERS.get(change))

    def update(self, flows: Sequence[mflow.Flow]) -> None:
        if self.holds.pending:  # mitmproxy calls this after every hook of every flow
            self.holds.update(flows, self.reviewer())

    def client_disconnected(self, client: connection.Client) -> None:
        self.holds.client_gone(client.id)

    # ------------------------------------------------------------ commands

    @command.command("shield.approve")
    def approve(self, flows: Sequence[mflow.Flow]) -> None:
        """Approve held flows: they are forwarded once."""
        n = sum(self.holds.decide(h, "approved", self.reviewer(), "shield.approve") for h in self.held(flows))
        n += sum(self.retry_decide(h, "approved", "shield.approve") for h in self.retry_held(flows))
        log.warning("shield: approved %d held flow(s)", n)

    @command.command("shield.deny")
    def deny(self, flows: Sequence[mflow.Flow], *reason: str) -> None:
        """Deny held flows; the agent gets a 403 with the reason."""
        comment = " ".join(reason).strip() or None
        n = sum(self.holds.decide(h, "denied", self.reviewer(), "shield.deny", comment) for h in self.held(flows))
        n += sum(self.retry_decide(h, "denied", "shield.deny", comment) for h in self.retry_held(flows))
        log.warning("shield: denied %d held flow(s)", n)

    @command.command("shield.pending")
    def pending(self) -> None:
        """List held flows with their age, oldest first, in the event log."""
        now = time.monotonic()
        holds = sorted(self.holds.pending.values(), key=lambda h: h.started)
        log.warning("shield: %d held flow(s)%s", len(holds), ":" if holds else "")
        for h in holds:
            log.warning("  %4ds  %s %s  %s", now - h.started, h.flow.request.method,
                        record.safe_text(h.flow.request.pretty_url), record.safe_text(h.flow.comment))

    # ------------------------------------------------------------ holding a flow

    def policy(self, rule: rules.Rule | None) -> tuple[rules.HoldPolicy, float | None]:
        """The rule's hold policy with the proxy's defaults filled in, and its timeout."""
        p = rule.hold if rule else rules.HoldPolicy()
        p = dataclasses.replace(p, mode=p.mode or ctx.options.shield_hold_mode,
                                approval_ttl=p.approval_ttl or float(ctx.options.shield_approval_ttl))
        return p, p.timeout if p.timeout is not None else (ctx.options.shield_hold_timeout or None)

    async def hold(self, f: http.HTTPFlow, state: FlowState) -> None:
        """Wait mode: the agent's request stays open until a decision."""
        rule = state.verdict.enforced_rule if state.verdict else None
        policy, timeout = self.policy(rule)
        hold = self.holds.start(f, state, timeout, policy.on_timeout)
        f.marked = MARKERS["held"]
        f.comment = hold_comment(state, rule, timeout, policy.on_timeout)
        ctx.master.addons.trigger(hooks.UpdateHook([f]))
        await self.holds.wait(hold, self.reviewer())
        await self.finish(hold)

    async def retry_hold(self, f: http.HTTPFlow, state: FlowState, event: dict[str, Any]) -> None:
        """Retry mode: answer at once, bind a later approval to this exact request."""
        rule = state.verdict.enforced_rule if state.verdict else None
        policy, timeout = self.policy(rule)
        key = retry.hold_key(self.trail.redactor.key, state.agent, f.request.method, f.request.url, event["request_sha256"])
        ans = self.book.arrive(key, f.id, state.agent, time.time(), timeout, policy.on_timeout,
                               policy.approval_ttl or APPROVAL_TTL, rule.id if rule else None)
        if ans.expired is not None:
            self.trail.submit(self.retry_decision_event(ans.expired, "expired", "expiry"))
        hold = ans.hold
        event.update(hold_id=hold.hold_id, hold_key=key, decision={"forward": "approved", "refuse": hold.decision,
                                                                   "wait": None}[ans.kind])
        state.base["hold_id"] = hold.hold_id  # the response of this attempt belongs to the hold's story
        if not await self.trail.write(event, f):
            if ans.kind == "forward":
                self.book.unuse(hold)
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: request refused, nothing was forwarded")
            return
        if ans.kind == "forward":
            f.comment = f"approved retry of hold {hold.hold_id[:8]} (approved by {hold.reviewer or 'rule'})"
            f.marked = MARKERS["approved"]
            self.note(hold, f"approved by {hold.reviewer or 'rule'}; used by retry {f.id[:8]} "
                            f"after {hold.attempts} attempt(s)")
            return
        state.refused = True
        if ans.kind == "refuse":
            refuse(f, 403, hold.decision or "denied", "request denied by reviewer" if hold.decision == "denied"
                   else "no reviewer decided in time", rule, comment=hold.comment, extra={"hold_id": hold.hold_id})
            return
        self.ask_to_retry(f, state, hold, ans.new, policy, timeout)

    def ask_to_retry(self, f: http.HTTPFlow, state: FlowState, hold: retry.RetryHold, new: bool,
                     policy: rules.HoldPolicy, timeout: float | None) -> None:
        rule = state.verdict.enforced_rule if state.verdict else None
        refuse(f, 409, "pending", "held for a reviewer: retry the same request later", rule,
               extra={"hold_id": hold.hold_id, "retry_after": policy.retry_after})
        f.response.headers["retry-after"] = str(policy.retry_after)
        if hold.flow is None or new:
            hold.flow = f
            self.retry_flows[f.id] = hold
            f.marked = MARKERS["held"]
        hold.flow.comment = f"{hold_comment(state, rule, timeout, policy.on_timeout)} | retry mode, " \
                            f"{hold.attempts} attempt(s): approve with y, deny with N"
        ctx.master.addons.trigger(hooks.UpdateHook([hold.flow]))

    def retry_decide(self, hold: retry.RetryHold, decision: str, via: str, comment: str | None = None) -> bool:
        if not self.book.decide(hold, decision, self.reviewer(), time.time(), comment):
            return False
        self.trail.submit(self.retry_decision_event(hold, decision, via))
        if hold.flow is not None:
            hold.flow.marked = MARKERS.get(decision, ":default:")
            hold.flow.comment = f"{decision} by {hold.reviewer}; " + (
                "forwarded when the agent retries" if decision == "approved" else "told on the next retry")
            ctx.master.addons.trigger(hooks.UpdateHook([hold.flow]))
        return True

    def note(self, hold: retry.RetryHold, text: str, marker: str | None = None) -> None:
        """Keep the console's line for a retry-mode hold up to date."""
        if hold.flow is not None:
            hold.flow.comment = record.safe_text(f"{text} | {hold.flow.comment}")
            if marker:
                hold.flow.marked = marker
            ctx.master.addons.trigger(hooks.UpdateHook([hold.flow]))

    async def finish(self, hold: Hold) -> None:
        f, state = hold.flow, hold.state
        rule = state.verdict.enforced_rule if state.verdict else None
        forward = hold.decision == "approved" or (hold.decision == "timed_out" and hold.on_timeout == "allow")
        if hold.decision in ("denied", "timed_out") and not forward:
            error = "request denied by reviewer" if hold.decision == "denied" else "no reviewer decided in time"
            refuse(f, 403, hold.decision, error, rule, comment=hold.comment)
        elif hold.decision == "abandoned" and f.killable:
            f.kill()  # never send it, even if someone resumes it later
        state.refused = not forward
        event = self.decision_event(hold)
        state.decided = event
        if not await self.trail.write(event, f) and forward:
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: approved request not forwarded")
        f.marked = MARKERS.get(hold.decision or "", ":default:")
        why = f": {record.safe_text(hold.comment)}" if hold.comment else ""
        f.comment = f"{hold.decision} by {hold.reviewer or hold.via}{why} | {f.comment}"
        if f.intercepted:
            f.resume()
        ctx.master.addons.trigger(hooks.UpdateHook([f]))

    # ------------------------------------------------------------ decision events

    def decision_columns(self, decision: str | None, reviewer: str | None, decided_at: float | None,
                         comment: str | None, rule_id: str | None, verdict: str | None, via: str) -> dict[str, Any]:
        """The columns every decision event has, in wait and retry mode alike."""
        return {"stage": "decision", "decision": decision, "reviewer": reviewer,
                "decided_at": record.utc_text(decided_at) if decided_at else None, "reviewer_comment": comment,
                "rule_id": rule_id, "verdict": verdict, "mode": ctx.options.shield_mode,
                "ruleset_sha256": self.rulebook.ruleset.sha256, "operation": via}

    def decision_event(self, hold: Hold) -> dict[str, Any]:
        state, f = hold.state, hold.flow
        verdict = state.verdict
        edited = hold.decision == "approved" and self.holds.edited(hold)
        return {**state.base, **self.decision_columns(
            hold.decision, hold.reviewer, hold.decided_at, hold.comment, verdict.rule.id if verdict and verdict.rule else None,
            verdict.verdict if verdict else None, hold.via),
            "edited": edited,
            "forwarded_request": forwarded_request(f.request, self.trail.redactor, ctx.options.shield_body_limit)
            if edited else None}

    def retry_decision_event(self, hold: retry.RetryHold, decision: str, via: str) -> dict[str, Any]:
        f = hold.flow
        base = base_columns(f, hold.agent, self.trail.redactor) if f is not None else {"agent": hold.agent}
        reviewer = hold.reviewer if decision in ("approved", "denied") else None
        return {**base, **self.decision_columns(decision, reviewer, hold.decided_at or time.time(), hold.comment,
                                                hold.rule_id, "hold", via),
                "flow_id": hold.hold_id, "hold_id": hold.hold_id, "hold_key": hold.key, "edited": False}

    # ------------------------------------------------------------ helpers

    def held(self, flows: Sequence[mflow.Flow]) -> list[Hold]:
        return [h for f in flows if (h := self.holds.pending.get(f.id))]

    def retry_held(self, flows: Sequence[mflow.Flow]) -> list[retry.RetryHold]:
        return [h for f in flows if (h := self.retry_flows.get(f.id)) and h.status == retry.PENDING]

    def reviewer(self) -> str:
        return ctx.options.shield_reviewer or default_reviewer()


def rebuild_retry_holds(journal_dir: Path, ttl: float, timeout: float | None) -> retry.RetryBook:
    """Retry-mode holds survive a restart: replay their events from the journal."""
    def rows() -> Any:
        # Only lines with a hold_id are parsed: a start-up on a journal of millions of rows
        # must not decode every one of them.
        for r in read_rows(journal_dir, containing=b'"hold_id":"'):
            if r.get("hold_id"):
                r["_t"] = datetime.fromisoformat(r["ts"]).replace(tzinfo=UTC).timestamp()
                yield r

    book = retry.RetryBook.rebuild(rows(), time.time(), ttl, {"": timeout})
    if book.by_key:
        log.info("shield: %d retry-mode hold(s) restored from the journal", len(book.by_key))
    return book


def hold_comment(state: FlowState, rule: rules.Rule | None, timeout: float | None = None,
                 on_timeout: str = "deny") -> str:
    """What the reviewer reads first, as a sentence: 'agent deploy-bot wants kubernetes
    delete deployments/web in prod | rule k8s-delete-in-prod (critical): ... | deny at 14:05:09'."""
    a = state.verdict.action if state.verdict else None
    rule_text = f"rule {rule.id} ({rule.severity})" + (f": {rule.message}" if rule.message else "") if rule \
        else "the default verdict"
    deadline = time.strftime("%H:%M:%S", time.localtime(time.time() + timeout)) if timeout else None
    parts = [f"agent {state.agent} wants {describe(a)}" if a else f"agent {state.agent}", rule_text,
             f"{on_timeout} at {deadline} unless decided" if deadline else "waits for a decision"]
    return record.safe_text(" | ".join(parts))


def describe(a: actions.Action) -> str:
    what = " ".join(x for x in (a.service, a.operation) if x)
    target = "/".join(x for x in (a.resource_type, a.resource_name) if x)
    text = f"{what} {target}".strip()
    if a.namespace:
        text += f" in {a.namespace}"
    if a.tables:
        text += " on " + ",".join(a.tables)
    return text
