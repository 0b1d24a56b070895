"""One state machine for every hold. Pure: no mitmproxy, no I/O, the clock is an argument.

A hold is pending until exactly one decision wins: a reviewer's (approved, denied,
killed), the clock's (timed_out), or the agent's or proxy's going away (abandoned).
Wait and retry are two ways of answering the agent, not two machines:

- wait: the agent's request stays open; the decision releases or refuses it.
- retry: the agent is answered `409` at once; the approval is bound to what the request
  means (`hold_key`: agent, method, URL, body digest, every parsed action and the headers
  that can change what the server does) and the same request retried within the
  approval's lifetime is forwarded exactly once. These holds are rebuilt from the journal
  after a restart.

Every transition is a plain method called from the event loop without an `await` in
between, so two decisions (or two identical retries) cannot both win.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shield_addon import record
from shield_addon.core import credentials
from shield_addon.core.model import Decision, Stage

# Defaults, each written once.
APPROVAL_TTL = 900.0  # retry mode: seconds an approval waits for the agent's retry
HOLD_TIMEOUT = 300  # seconds a hold waits for a reviewer (0: forever)
RETRY_AFTER = 30  # retry mode: the Retry-After the agent is given (rules.HoldPolicy's default)

PENDING, USED, DELIVERED = "pending", "used", "delivered"
APPROVED, DENIED, TIMED_OUT, EXPIRED = (Decision.APPROVED.value, Decision.DENIED.value,
                                        Decision.TIMED_OUT.value, Decision.EXPIRED.value)
KILLED, ABANDONED = Decision.KILLED.value, Decision.ABANDONED.value
WAIT, RETRY = "wait", "retry"
COUNTED, RELEASED, AGAIN, LATE = "counted", "released", "again", "late"  # Book.approve's answers


def hold_key(secret: bytes, agent: str, method: str, url: str, body_sha256: str | None, meaning: str = "") -> str:
    """What a retry-mode approval is bound to. Keyed, so the trail cannot be used to guess URLs."""
    msg = f"{agent}\n{method.upper()}\n{url}\n{body_sha256 or '-'}\n{meaning}".encode("utf-8", "surrogateescape")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


# Headers that differ between two sends of the same request without changing what it
# does: clocks, signatures over them (the credential they are made with is bound, see
# `meaning`), tracing, SDK attempt counters, transport. Every other header is part of
# what an approval is bound to (X-Amz-Target, Content-Type, method overrides, x-amz-acl,
# If-Match, Destination...): an unknown header on a retry costs a new hold, never a wrong
# approval.
VOLATILE_HEADERS = frozenset({
    "date", "authorization", "proxy-authorization", "user-agent", "content-length", "host", "connection",
    "keep-alive", "te", "accept-encoding", "expect", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
    "x-amz-user-agent", "x-amz-sdk-checksum-algorithm", "x-amz-checksum-crc32", "traceparent", "tracestate", "baggage",
    "x-request-id", "x-correlation-id", "x-amzn-trace-id", "b3", "sentry-trace", "idempotency-key",
    "x-goog-api-client", "x-goog-request-params",
})
VOLATILE_PREFIXES = ("amz-sdk-", "x-stainless-", "x-datadog-", "x-b3-", "x-shield-", "x-ms-client-request-id")


def meaning(headers: Iterable[tuple[str, str]], readings: Iterable[tuple[str, Any]]) -> str:
    """The parts of a request that a retry must repeat for an approval to cover it, beyond
    method, URL and body: the non-volatile headers (sorted: their order changes nothing) and
    every action the parsers read, with the method each was read under. And the credential the
    request acts with (who the token or signing key is, not its signature): another credential
    is another request to approve."""
    headers = tuple(headers)
    # By name only: the order of a repeated header's values can change what a server takes.
    kept = sorted(((k.lower(), v) for k, v in headers
                   if k.lower() not in VOLATILE_HEADERS and not k.lower().startswith(VOLATILE_PREFIXES)),
                  key=lambda kv: kv[0])
    parts = [f"{k}: {v}" for k, v in kept]
    parts += [f"credential {k}: {v}" for k, v in credentials.credentials(headers)]
    for method, a in readings:
        parts.append(f"{method} {a.service} {a.action_type} {a.operation} {a.resource_type} {a.namespace} "
                     f"{a.resource_name} {','.join(a.tables)} {','.join(a.statements)} {','.join(sorted(a.flags))}")
    return "\n".join(parts)


@dataclass
class Hold:
    hold_id: str  # the flow_id of the held attempt
    agent: str
    created: float
    deadline: float | None  # pending until then (None: forever)
    on_timeout: str = "deny"
    approval_ttl: float = APPROVAL_TTL
    key: str | None = None  # retry mode only
    rule_id: str | None = None
    verdict: str | None = "hold"
    status: str = PENDING
    decision: str | None = None  # the one decision, once taken
    via: str | None = None  # what took it: shield.approve, flow.kill, timeout, ...
    attempts: int = 1
    reviewer: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    expires: float | None = None  # retry mode: an approval's end
    needed: int = 1  # distinct approvals that release it (the two-person rule: 2)
    approvers: list[str] = field(default_factory=list)  # who approved so far, in order
    preview: str | None = None  # the server's dry run of the request, in one line
    base: dict[str, Any] = field(default_factory=dict, repr=False)  # the columns its events repeat
    flow: Any = field(default=None, repr=False, compare=False)  # the console's flow for it
    before: Any = field(default=None, repr=False, compare=False)  # wait mode: the request as held

    @property
    def mode(self) -> str:
        return RETRY if self.key is not None else WAIT

    @property
    def forward(self) -> bool:
        """Does the decision let the request through (an approval, or a timeout the rule allows)?"""
        return self.status in (APPROVED, USED)


@dataclass(frozen=True)
class Answer:
    """What to do with an incoming retry-mode request."""

    kind: str  # "forward" (approval used), "refuse" (a denial delivered), "wait" (pending, 409)
    hold: Hold
    new: bool = False  # a new hold was opened for it
    expired: Hold | None = None  # an approval that lapsed unused, to record


class Book:
    """Every hold of this proxy, by id, by retry key and by the console flow that shows it."""

    def __init__(self) -> None:
        self.by_id: dict[str, Hold] = {}  # every hold this process knows
        self.by_flow: dict[str, Hold] = {}  # the console's flow (its id) of each hold
        self.by_key: dict[str, Hold] = {}  # retry mode: the open (not yet used or delivered) hold per key
        self.waiting: dict[str, Hold] = {}  # wait mode: holds whose request is still open

    # ------------------------------------------------------------ the agent's side

    def open(self, hold_id: str, agent: str, now: float, timeout: float | None, on_timeout: str,
             rule_id: str | None = None, verdict: str | None = "hold", needed: int = 1) -> Hold:
        """Wait mode: the request is held open until the hold is decided."""
        hold = Hold(hold_id, agent, now, now + timeout if timeout else None, on_timeout,
                    rule_id=rule_id, verdict=verdict, needed=needed)
        self.by_id[hold_id] = self.waiting[hold_id] = hold
        return hold

    def close(self, hold: Hold) -> None:
        """Wait mode: the held request went on (or was refused); the hold is history."""
        self.waiting.pop(hold.hold_id, None)
        self.by_id.pop(hold.hold_id, None)
        if self.by_flow.get(hold.hold_id) is hold:
            del self.by_flow[hold.hold_id]

    def link(self, flow_id: str, hold: Hold) -> None:
        """The flow that shows the hold on the console (its commands name flows, not holds)."""
        self.by_flow[flow_id] = hold

    def held(self, flow_ids: Iterable[str]) -> list[Hold]:
        """The pending holds shown by these flows."""
        return [h for i in flow_ids if (h := self.by_flow.get(i)) and h.status == PENDING]

    def arrive(self, key: str, flow_id: str, agent: str, now: float, timeout: float | None,
               on_timeout: str, ttl: float = APPROVAL_TTL, rule_id: str | None = None, needed: int = 1) -> Answer:
        """Retry mode: a request arrives; answer it from the open hold for its key, or open one."""
        hold = self.by_key.get(key)
        expired = None
        if hold is not None:
            self.lapse(hold, now)
            if hold.status == APPROVED:
                hold.status = USED
                del self.by_key[key]
                return Answer("forward", hold)
            if hold.status in (DENIED, TIMED_OUT):
                hold.status = DELIVERED
                del self.by_key[key]
                return Answer("refuse", hold)
            if hold.status == PENDING:
                hold.attempts += 1
                return Answer("wait", hold)
            expired = hold if hold.status == EXPIRED else None
            del self.by_key[key]
        hold = Hold(flow_id, agent, now, now + timeout if timeout else None, on_timeout, ttl, key, rule_id,
                    needed=needed)
        self.by_key[key] = self.by_id[flow_id] = hold
        return Answer("wait", hold, new=True, expired=expired)

    def used_elsewhere(self, hold: Hold) -> bool:
        """A fleet: another proxy delivered this retry-mode hold's answer (used its approval)."""
        if hold.key is None or self.by_key.get(hold.key) is not hold:
            return False
        hold.status = USED if hold.status == APPROVED else DELIVERED
        del self.by_key[hold.key]
        return True

    def unuse(self, hold: Hold) -> None:
        """The forward could not be recorded: give the approval back."""
        if hold.status == USED:
            hold.status = APPROVED
            self.by_key[hold.key or ""] = hold

    # ------------------------------------------------------------ the reviewer's side

    def approve(self, hold: Hold, reviewer: str | None, now: float, comment: str | None = None,
                via: str | None = None) -> str:
        """One reviewer's approval of a hold that needs several: COUNTED (more are needed),
        RELEASED (that was the last one: the hold is approved), AGAIN (this reviewer approved
        it already: counted once) or LATE (no longer pending)."""
        self.lapse(hold, now)
        if hold.status != PENDING:
            return LATE
        who = reviewer or "-"
        if who in hold.approvers:
            return AGAIN
        hold.approvers.append(who)
        if len(hold.approvers) < hold.needed:
            return COUNTED
        self.decide(hold, APPROVED, reviewer, now, comment, via)
        return RELEASED

    def decide(self, hold: Hold, decision: str, reviewer: str | None, now: float, comment: str | None = None,
               via: str | None = None) -> bool:
        """The hold's one decision; False when it is no longer pending (another one won).
        An approval of a hold that needs several goes through `approve`."""
        self.lapse(hold, now)
        if hold.status != PENDING:
            return False
        hold.status = hold.decision = decision
        hold.reviewer, hold.decided_at, hold.comment, hold.via = reviewer, now, comment, via
        if decision == APPROVED:
            hold.expires = now + hold.approval_ttl
        return True

    def lapse(self, hold: Hold, now: float) -> str | None:
        """Apply the clock: a pending hold past its deadline times out (an approval, if the
        rule says on_timeout: allow); an approval past its lifetime expires (retry mode)."""
        if hold.status == PENDING and hold.deadline is not None and now >= hold.deadline:
            allow = hold.on_timeout == "allow"
            hold.status = APPROVED if allow else TIMED_OUT
            hold.decision, hold.decided_at, hold.via, hold.reviewer = TIMED_OUT, now, "timeout", None
            hold.expires = now + hold.approval_ttl if allow else None
            hold.comment = timeout_comment(hold)
            return TIMED_OUT
        if hold.key is not None and hold.status == APPROVED and hold.expires is not None and now >= hold.expires:
            hold.status = EXPIRED
            return EXPIRED
        return None

    def tick(self, now: float) -> list[tuple[Hold, str]]:
        """Every open retry-mode hold's clock; returns the transitions to record.
        (A wait-mode hold's own waiter applies its clock.)"""
        return [(h, t) for h in list(self.by_key.values()) if (t := self.lapse(h, now))]

    def pending(self) -> list[Hold]:
        """Undecided holds, oldest first."""
        return sorted((h for h in self.by_id.values() if h.status == PENDING), key=lambda h: h.created)

    # ------------------------------------------------------------ restart

    @classmethod
    def rebuild(cls, rows: Iterable[Mapping[str, Any]], now: float, ttl: float = APPROVAL_TTL,
                timeout_of: Mapping[str, float | None] | None = None,
                needed_of: Mapping[str, int] | None = None) -> Book:
        """Replay the journal's retry-mode events (in seq order) into open holds. `needed_of`:
        the approvals each rule asks for, where more than one."""
        review = cls()
        for r in rows:
            hid, key = r.get("hold_id"), r.get("hold_key")
            if hid:
                review._replay(r, hid, key, r.get("_t", now), ttl, timeout_of or {}, needed_of or {})
        for key, hold in list(review.by_key.items()):
            if hold.status in (USED, DELIVERED, EXPIRED):
                del review.by_key[key]
                del review.by_id[hold.hold_id]
        return review

    def _replay(self, r: Mapping[str, Any], hid: str, key: str | None, t: float, ttl: float,
                timeout_of: Mapping[str, float | None], needed_of: Mapping[str, int]) -> None:
        hold = self.by_id.get(hid)
        if r["stage"] == Stage.REQUEST and key:
            if hold is None:
                timeout = timeout_of.get(r.get("rule_id") or "")
                hold = Hold(hid, r.get("agent") or "", t, t + timeout if timeout else None, approval_ttl=ttl,
                            key=key, rule_id=r.get("rule_id"), needed=needed_of.get(r.get("rule_id") or "", 1))
                self.by_key[key] = self.by_id[hid] = hold
            elif r.get("decision") == APPROVED:
                hold.status = USED
            elif r.get("decision") in (DENIED, TIMED_OUT):
                hold.status = DELIVERED
            else:
                hold.attempts += 1
        elif r["stage"] == Stage.DECISION and hold is not None:
            d = r.get("decision")
            if d == APPROVED and hold.status == PENDING and hold.needed > 1 and r.get("operation") != "timeout":
                # Each approval of a two-person hold is an event of its own: count distinct reviewers.
                if (who := r.get("reviewer") or "-") not in hold.approvers:
                    hold.approvers.append(who)
                if len(hold.approvers) < hold.needed:
                    return
            if d in (APPROVED, DENIED, TIMED_OUT) and hold.status == PENDING:
                hold.status = hold.decision = d
                hold.reviewer, hold.decided_at, hold.comment = r.get("reviewer"), t, r.get("reviewer_comment")
                hold.expires = t + ttl if d == APPROVED else None
            elif d == EXPIRED:
                hold.status = EXPIRED


def timeout_comment(hold: Hold) -> str:
    if hold.mode == WAIT:
        return f"no decision in time; {hold.on_timeout} by rule"
    return "no decision in time; " + ("allowed by rule" if hold.on_timeout == "allow" else "denied by rule")


def approval_event(hold: Hold, reviewer: str | None, now: float, mode: str, ruleset_sha256: str,
                   via: str | None, comment: str | None) -> dict[str, Any]:
    """One approval of a hold that needs several, not the last: its own decision event
    (`approved`, with how many of how many), the hold still pending."""
    event = decision_event(hold, APPROVED, now, mode, ruleset_sha256, via)
    count = f"approval {len(hold.approvers)} of {hold.needed}"
    event.update(reviewer=reviewer, decided_at=record.utc_text(now),
                 reviewer_comment=f"{count}: {comment}" if comment else count)
    return event


def decision_event(hold: Hold, decision: str, now: float, mode: str, ruleset_sha256: str,
                   via: str | None = None, forwarded_request: str | None = None) -> dict[str, Any]:
    """The one `decision` event of a hold (or, in retry mode, of an approval's expiry).
    `via`: what caused it, when not the hold's decision (an expiry); `forwarded_request`:
    what a reviewer's edit turned the request into, when it changed."""
    lapsed = decision in (TIMED_OUT, EXPIRED)
    retry = hold.key is not None
    event = {
        "agent": hold.agent, **hold.base, "stage": Stage.DECISION.value, "decision": decision,
        "reviewer": None if lapsed else hold.reviewer,
        "decided_at": record.utc_text(hold.decided_at or now),
        "reviewer_comment": hold.comment, "edited": forwarded_request is not None,
        "forwarded_request": forwarded_request,
        "rule_id": hold.rule_id, "verdict": hold.verdict, "mode": mode,
        "ruleset_sha256": ruleset_sha256, "operation": via or hold.via, "preview": hold.preview,
    }
    if retry:
        event.update(flow_id=hold.hold_id, hold_id=hold.hold_id, hold_key=hold.key)
    return event
