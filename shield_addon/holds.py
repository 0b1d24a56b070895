"""The life of a held flow: intercept, wait, one decision, timeout.

The hook waits on its own event instead of `flow.wait_for_resume()`, because mitmproxy's
`kill()` never wakes that (notes/mitmproxy.md §1, issue #8045): a killed hold must end
at once, not hang the agent. Exactly one decision wins; later ones are refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import flow as mflow
from mitmproxy import http

from shield_addon.flows import FlowState, snapshot

POLL = 0.25  # `d` kills a flow without telling addons; look this often


@dataclass
class Hold:
    flow: http.HTTPFlow
    state: FlowState
    deadline: float | None
    on_timeout: str
    before: Any
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    decision: str | None = None
    reviewer: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    via: str | None = None


def killed(f: mflow.Flow) -> bool:
    return bool(f.error and f.error.msg == mflow.Error.KILLED_MESSAGE)


class Holds:
    def __init__(self) -> None:
        self.pending: dict[str, Hold] = {}

    def start(self, f: http.HTTPFlow, state: FlowState, timeout: float | None, on_timeout: str) -> Hold:
        hold = Hold(f, state, time.monotonic() + timeout if timeout else None, on_timeout, snapshot(f.request))
        self.pending[f.id] = hold
        f.intercept()
        return hold

    def decide(self, hold: Hold, decision: str, reviewer: str | None, via: str, comment: str | None = None) -> bool:
        """Record the one decision of a hold; False if another one already won."""
        if hold.decision is not None:
            return False
        hold.decision, hold.reviewer, hold.via, hold.comment = decision, reviewer, via, comment
        hold.decided_at = time.time()
        hold.wake.set()
        return True

    def observe(self, f: mflow.Flow, reviewer: str) -> None:
        """Turn what mitmproxy's own commands did to a held flow into a decision."""
        hold = self.pending.get(f.id)
        if hold is None or hold.decision is not None:
            return
        if killed(f):
            self.decide(hold, "killed", reviewer, "flow.kill")
        elif not f.intercepted:
            self.decide(hold, "approved", reviewer, "flow.resume")

    def update(self, flows: Iterable[mflow.Flow], reviewer: str) -> None:
        for f in flows:
            self.observe(f, reviewer)

    def client_gone(self, client_id: str) -> list[Hold]:
        gone = [h for h in self.pending.values() if h.flow.client_conn.id == client_id]
        for hold in gone:
            self.decide(hold, "abandoned", None, "client_disconnected", "the agent disconnected while held")
        return gone

    async def wait(self, hold: Hold, reviewer: str) -> None:
        """Until the hold has its decision: a reviewer's, a timeout, or the agent leaving."""
        waiter = asyncio.ensure_future(hold.wake.wait())
        try:
            while hold.decision is None:
                timeout = POLL
                if hold.deadline is not None:
                    remaining = hold.deadline - time.monotonic()
                    if remaining <= 0:
                        self.decide(hold, "timed_out", None, "timeout", f"no decision in time; {hold.on_timeout} by rule")
                        break
                    timeout = min(timeout, remaining)
                # asyncio.wait, not wait_for: 3.11's wait_for can swallow the
                # cancellation at shutdown and hang mitmproxy (notes/mitmproxy.md §7).
                await asyncio.wait({waiter}, timeout=timeout)
                self.observe(hold.flow, reviewer)
        finally:
            waiter.cancel()
            self.pending.pop(hold.flow.id, None)

    def edited(self, hold: Hold) -> bool:
        return snapshot(hold.flow.request) != hold.before
