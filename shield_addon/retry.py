"""Retry-mode holds: the agent is answered `409` at once, the reviewer decides whenever,
and the approval is bound to the exact request (agent, method, URL, body digest): the
same request retried within the approval's lifetime is forwarded exactly once.

Pure: no mitmproxy, no I/O. Every transition is a plain method called from the event
loop without an `await` in between, so two identical retries cannot both win.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PENDING, APPROVED, DENIED, TIMED_OUT, USED, EXPIRED, DELIVERED = (
    "pending", "approved", "denied", "timed_out", "used", "expired", "delivered")


def hold_key(secret: bytes, agent: str, method: str, url: str, body_sha256: str | None) -> str:
    """What an approval is bound to. Keyed, so the trail cannot be used to guess URLs."""
    msg = f"{agent}\n{method.upper()}\n{url}\n{body_sha256 or '-'}".encode("utf-8", "surrogateescape")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


@dataclass
class RetryHold:
    hold_id: str
    key: str
    agent: str
    created: float
    deadline: float | None  # pending until then
    on_timeout: str = "deny"
    approval_ttl: float = 900.0
    status: str = PENDING
    decision: str | None = None  # approved | denied | timed_out, once decided
    attempts: int = 1
    reviewer: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    expires: float | None = None  # an approval's end
    flow: Any = field(default=None, repr=False, compare=False)  # the console's representative flow
    rule_id: str | None = None


@dataclass(frozen=True)
class Answer:
    """What to do with an incoming held request."""

    kind: str  # "forward" (approval used), "refuse" (a denial delivered), "wait" (pending, 409)
    hold: RetryHold
    new: bool = False  # a new hold was opened for it
    expired: RetryHold | None = None  # an approval that lapsed unused, to record


class RetryBook:
    def __init__(self) -> None:
        self.by_key: dict[str, RetryHold] = {}  # the open (not yet used or delivered) hold per key
        self.by_id: dict[str, RetryHold] = {}

    # ------------------------------------------------------------ the agent's side

    def arrive(self, key: str, flow_id: str, agent: str, now: float, timeout: float | None,
               on_timeout: str, ttl: float, rule_id: str | None = None) -> Answer:
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
        hold = RetryHold(flow_id, key, agent, now, now + timeout if timeout else None, on_timeout, ttl, rule_id=rule_id)
        self.by_key[key] = self.by_id[flow_id] = hold
        return Answer("wait", hold, new=True, expired=expired)

    def unuse(self, hold: RetryHold) -> None:
        """The forward could not be recorded: give the approval back."""
        if hold.status == USED:
            hold.status = APPROVED
            self.by_key[hold.key] = hold

    # ------------------------------------------------------------ the reviewer's side

    def decide(self, hold: RetryHold, decision: str, reviewer: str | None, now: float, comment: str | None = None) -> bool:
        """approved | denied | timed_out; False when the hold is no longer pending."""
        self.lapse(hold, now)
        if hold.status != PENDING:
            return False
        hold.status = hold.decision = decision
        hold.reviewer, hold.decided_at, hold.comment = reviewer, now, comment
        if decision == APPROVED:
            hold.expires = now + hold.approval_ttl
        return True

    def lapse(self, hold: RetryHold, now: float) -> str | None:
        """Apply the clock: a pending hold past its deadline times out (or is approved, if
        the rule says on_timeout: allow); an approval past its lifetime expires."""
        if hold.status == PENDING and hold.deadline is not None and now >= hold.deadline:
            if hold.on_timeout == "allow":
                hold.status, hold.decided_at, hold.expires = APPROVED, now, now + hold.approval_ttl
                hold.comment = "no decision in time; allowed by rule"
            else:
                hold.status, hold.decided_at, hold.comment = TIMED_OUT, now, "no decision in time; denied by rule"
            hold.decision = TIMED_OUT
            return TIMED_OUT
        if hold.status == APPROVED and hold.expires is not None and now >= hold.expires:
            hold.status = EXPIRED
            return EXPIRED
        return None

    def tick(self, now: float) -> list[tuple[RetryHold, str]]:
        """Every open hold's clock; returns the transitions to record."""
        return [(h, t) for h in list(self.by_key.values()) if (t := self.lapse(h, now))]

    def pending(self) -> list[RetryHold]:
        return [h for h in self.by_key.values() if h.status == PENDING]

    # ------------------------------------------------------------ restart

    @classmethod
    def rebuild(cls, rows: Iterable[Mapping[str, Any]], now: float, ttl: float,
                timeout_of: Mapping[str, float | None] | None = None) -> RetryBook:
        """Replay the journal's retry-mode events (in seq order) into open holds."""
        book = cls()
        for r in rows:
            hid, key = r.get("hold_id"), r.get("hold_key")
            if not hid:
                continue
            hold = book.by_id.get(hid)
            t = r.get("_t", now)
            if r["stage"] == "request" and key:
                if hold is None:
                    timeout = (timeout_of or {}).get(r.get("rule_id") or "")
                    hold = RetryHold(hid, key, r.get("agent") or "", t, t + timeout if timeout else None, approval_ttl=ttl,
                                     rule_id=r.get("rule_id"))
                    book.by_key[key] = book.by_id[hid] = hold
                elif r.get("decision") == APPROVED:
                    hold.status = USED
                elif r.get("decision") in (DENIED, TIMED_OUT):
                    hold.status = DELIVERED
                else:
                    hold.attempts += 1
            elif r["stage"] == "decision" and hold is not None:
                d = r.get("decision")
                if d in (APPROVED, DENIED, TIMED_OUT) and hold.status == PENDING:
                    hold.status = hold.decision = d
                    hold.reviewer, hold.decided_at, hold.comment = r.get("reviewer"), t, r.get("reviewer_comment")
                    hold.expires = t + ttl if d == APPROVED else None
                elif d == EXPIRED:
                    hold.status = EXPIRED
        for key, hold in list(book.by_key.items()):
            if hold.status in (USED, DELIVERED, EXPIRED):
                del book.by_key[key]
        return book
