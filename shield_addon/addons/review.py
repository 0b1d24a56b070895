"""The review addon: every hold's reviewer side. The `shield.approve`, `shield.deny` and
`shield.pending` commands, the console's markers and keys, what mitmproxy's own commands
(resume, kill) and a departing agent mean for a hold, and the clock of retry-mode holds.

The decisions themselves are taken by the pure state machine in `shield_addon.review`;
how the agent is answered (wait or retry) is in `addons.answer`.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import command, connection, ctx, http
from mitmproxy import flow as mflow
from mitmproxy.proxy import layer

from shield_addon import record, review
from shield_addon.addons import preview
from shield_addon.addons.answer import RetryAnswer, WaitAnswer
from shield_addon.addons.console import DECIDED, MARKERS, bind_keys, note, redraw, too_late
from shield_addon.addons.fleet import Fleet
from shield_addon.addons.fleet_holds import FleetHolds
from shield_addon.addons.rulebook import Rulebook
from shield_addon.addons.streams import Streams
from shield_addon.addons.trail import Trail
from shield_addon.core import previews
from shield_addon.journal import read_rows

log = logging.getLogger("shield")



@functools.cache
def default_reviewer() -> str:
    # Cached: without USER/LOGNAME (services, containers) getuser() reads /etc/passwd.
    return os.environ.get("SUDO_USER") or getpass.getuser()


def reviewer() -> str:
    """Who decides: from the reviewer's side (option or OS user), never from a request."""
    return ctx.options.shield_reviewer or default_reviewer()


def killed(f: mflow.Flow) -> bool:
    return bool(f.error and f.error.msg == mflow.Error.KILLED_MESSAGE)


class Review:
    def __init__(self, trail: Trail, rules_: Rulebook, fleet: Fleet | None = None) -> None:
        self.trail, self.rules = trail, rules_
        self.remote = fleet or Fleet()  # the fleet's other holds, shown on this console
        self.fleet = FleetHolds(self, self.remote)  # this proxy's holds in the fleet's queue
        self.book = review.Book()
        self.wakes: dict[str, asyncio.Event] = {}  # wait mode: the held hook's alarm
        self.wait, self.retry = WaitAnswer(self), RetryAnswer(self)
        self.streams = Streams()  # what an agent withdrew while held (an HTTP/2 stream reset)
        self.previews: set[asyncio.Task] = set()  # dry runs under way
        self.asking: Counter[str] = Counter()  # ... by agent
        self._ticker: asyncio.Task | None = None
        self.on_hold: list[Any] = []  # called with (flow, hold) when a hold is shown: addons.notify
        trail.opened.append(self.restore)
        trail.closing.append(self.shutdown)

    def load(self, loader: Any) -> None:
        loader.add_option("shield_hold_timeout", int, review.HOLD_TIMEOUT,
                          "Seconds a held flow waits for a reviewer (0: forever).")
        loader.add_option("shield_hold_mode", str, review.WAIT, "wait (the agent's request stays open) or retry (409 at "
                          "once; an approval lets the same request through once).", choices=[review.WAIT, review.RETRY])
        loader.add_option("shield_approval_ttl", int, int(review.APPROVAL_TTL),
                          "Retry mode: seconds an approval waits for the agent's retry.")
        loader.add_option("shield_reviewer", str, "", "Reviewer name recorded with decisions (default: OS user).")

    def running(self) -> None:
        bind_keys()
        self._ticker = asyncio.get_running_loop().create_task(self.tick())

    def update(self, flows: Sequence[mflow.Flow]) -> None:
        if self.book.waiting:  # mitmproxy calls this after every hook of every flow
            for f in flows:
                self.observe(f)
        if self.remote.remote:
            for f in flows:
                self.remote.observe(f)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        self.streams.next_layer(nextlayer)

    def client_disconnected(self, client: connection.Client) -> None:
        self.streams.client_disconnected(client.id)
        for hold in list(self.book.waiting.values()):
            if hold.flow.client_conn.id == client.id:
                self.settle(hold, review.ABANDONED, None, "client_disconnected", "the agent disconnected while held")

    @command.command("shield.approve")
    def approve(self, flows: Sequence[mflow.Flow]) -> None:
        """Approve held flows: they are forwarded once."""
        log.warning("shield: approved %d held flow(s)", self.decide(flows, review.APPROVED, "shield.approve", None))

    @command.command("shield.deny")
    def deny(self, flows: Sequence[mflow.Flow], *reason: str) -> None:
        """Deny held flows; the agent gets a 403 with the reason."""
        comment = " ".join(reason).strip() or None
        log.warning("shield: denied %d held flow(s)", self.decide(flows, review.DENIED, "shield.deny", comment))

    def decide(self, flows: Sequence[mflow.Flow], decision: str, via: str, comment: str | None) -> int:
        """This console's decision on held flows: this proxy's, and the fleet's other ones (which
        are decided in the fleet database, where the first decision wins)."""
        who, holds = reviewer(), self.undecided(flows)
        too_late(flows, via.removeprefix("shield."))
        n = self.remote.decide(flows, decision, who, comment)
        if self.fleet.on:
            self.fleet.decide(holds, decision, who, via, comment)
            return n + len(holds)
        return n + sum(self.settle(h, decision, who, via, comment) for h in holds)

    @command.command("shield.pending")
    def pending(self) -> None:
        """List held flows with their age, oldest first, in the event log."""
        now = time.time()
        holds = [h for h in self.book.pending() if h.flow is not None]
        log.warning("shield: %d held flow(s)%s", len(holds), ":" if holds else "")
        for h in holds:
            log.warning("  %4ds  %s %s  %s", now - h.created, record.safe_text(h.flow.request.method),
                        record.safe_text(h.flow.request.pretty_url), record.safe_text(h.flow.comment))
        self.remote.pending()

    def observe(self, f: mflow.Flow) -> None:
        """Turn what mitmproxy's own commands did to a held flow into a decision."""
        hold = self.book.by_flow.get(f.id)
        if hold is None or hold.mode != review.WAIT or hold.status != review.PENDING or self.withdraw(hold):
            return
        if killed(f):
            self.settle(hold, review.KILLED, reviewer(), "flow.kill")
        elif not f.intercepted and hold.needed > 1:
            f.intercept()  # one approval of several: held until the last one (counted like `y`)
            self.decide([f], review.APPROVED, "flow.resume", None)
        elif not f.intercepted:
            self.settle(hold, review.APPROVED, reviewer(), "flow.resume")

    def undecided(self, flows: Sequence[mflow.Flow]) -> list[review.Hold]:
        """The pending holds of these flows that a reviewer can still decide."""
        return [h for h in self.book.held(f.id for f in flows) if not self.withdraw(h)]

    def withdraw(self, hold: review.Hold) -> bool:
        """A wait-mode hold whose agent reset its stream ends abandoned now (mitmproxy
        itself would only drop the request once the hold ends, and tell no addon before)."""
        why = self.streams.withdrawn(hold.flow) if hold.mode == review.WAIT and hold.flow is not None else None
        if why is None:
            return False
        if not hold.flow.client_conn.state & connection.ConnectionState.CAN_READ:
            # The whole connection went (mitmproxy queues that too): the same record as
            # client_disconnected, whichever of the two sees it first.
            return self.settle(hold, review.ABANDONED, None, "client_disconnected", "the agent disconnected while held")
        return self.settle(hold, review.ABANDONED, None, "stream_reset", f"the agent withdrew the request while held: {why}")

    def settle(self, hold: review.Hold, decision: str, who: str | None, via: str, comment: str | None = None) -> bool:
        """Take a hold's one decision (or count one of the approvals it needs); False if another
        one already won, or this reviewer already approved it."""
        if decision == review.APPROVED and hold.needed > 1:
            answer = self.book.approve(hold, who, time.time(), comment, via)
            if answer == review.AGAIN:
                log.warning("shield: %s approved hold %s already: %d of %d approvals, another reviewer must approve",
                            who, hold.hold_id[:8], len(hold.approvers), hold.needed)
                return False
            if answer == review.COUNTED:
                self.counted(hold, who, via, comment)
                return True
            if answer == review.LATE:
                return False
        elif not self.book.decide(hold, decision, who, time.time(), comment, via):
            return False
        if hold.mode == review.WAIT:
            if wake := self.wakes.get(hold.hold_id):
                wake.set()  # the held hook answers the agent and records the decision
            return True
        self.trail.submit(self.event(hold, decision))
        self.fleet.report(hold)
        if hold.flow is not None:
            hold.flow.marked = MARKERS.get(decision, ":default:")
            hold.flow.metadata[DECIDED] = f"{decision} by {hold.reviewer}"
            hold.flow.comment = f"{decision} by {hold.reviewer}; " + (
                "forwarded when the agent retries" if decision == review.APPROVED else "told on the next retry")
            redraw(hold.flow)
        return True

    def counted(self, hold: review.Hold, who: str | None, via: str, comment: str | None) -> None:
        """One approval of several: its own event; the hold stays held for the next reviewer."""
        self.trail.submit(review.approval_event(hold, who, time.time(), ctx.options.shield_mode,
                                                self.rules.ruleset.sha256, via, comment))
        note(hold, f"approved by {who} ({len(hold.approvers)} of {hold.needed}): "
                   f"{hold.needed - len(hold.approvers)} more reviewer(s) must approve")
        log.warning("shield: hold %s approved by %s: %d of %d approvals", hold.hold_id[:8], who,
                    len(hold.approvers), hold.needed)

    def event(self, hold: review.Hold, decision: str, via: str | None = None,
              forwarded_request: str | None = None) -> dict[str, Any]:
        return review.decision_event(hold, decision, time.time(), ctx.options.shield_mode, self.rules.ruleset.sha256,
                                     via, forwarded_request)

    def shutdown(self) -> None:
        """Before the trail closes: a hold still waiting is abandoned, and recorded so."""
        if self._ticker:
            self._ticker.cancel()
        for hold in list(self.book.waiting.values()):
            if self.settle(hold, review.ABANDONED, None, "shutdown", "the proxy shut down while held"):
                self.trail.submit(self.event(hold, review.ABANDONED))

    def restore(self) -> None:
        """Retry-mode holds survive a restart: replay their events from the newly opened journal."""
        assert self.trail.journal_dir is not None
        needed = {r.id: r.hold.approvals for r in self.rules.ruleset.rules if r.hold.approvals > 1}
        book = rebuild(self.trail.journal_dir, float(ctx.options.shield_approval_ttl) or review.APPROVAL_TTL,
                       ctx.options.shield_hold_timeout or None, needed)
        for hold in self.book.waiting.values():
            book.by_id[hold.hold_id] = book.waiting[hold.hold_id] = book.by_flow[hold.hold_id] = hold
        self.book = book

    async def tick(self) -> None:
        """Once a second: the clock of retry-mode holds (timeouts, unused approvals)."""
        while True:
            await asyncio.sleep(1)
            for hold, change in self.book.tick(time.time()):
                self.trail.submit(self.event(hold, change, via="timeout"))
                self.fleet.report(hold)
                note(hold, "approval expired unused" if change == review.EXPIRED
                          else f"{change} (no decision in time)", MARKERS.get(change))

    def preview(self, hold: review.Hold, f: http.HTTPFlow, service: str | None) -> None:
        """The server's dry run of a held request, for the reviewer (rules with hold.preview)."""
        # An agent flooding held requests must not turn the proxy into a load on the API (or on
        # the account's EC2 request quota), nor take every other agent's previews.
        if len(self.previews) >= preview.IN_FLIGHT:
            return self.show_preview(hold, f, preview.BUSY)
        if self.asking[hold.agent] >= preview.PER_AGENT:
            return self.show_preview(hold, f, preview.AGENT_BUSY)
        self.asking[hold.agent] += 1

        async def run() -> None:
            try:
                text = await preview.ask(f, service)
            finally:
                self.asking[hold.agent] -= 1
                if not self.asking[hold.agent]:
                    del self.asking[hold.agent]
            if text is not None:
                self.show_preview(hold, f, text)

        task = asyncio.get_running_loop().create_task(run())
        self.previews.add(task)
        task.add_done_callback(self.previews.discard)

    def show_preview(self, hold: review.Hold, f: http.HTTPFlow, text: str) -> None:
        hold.preview = previews.shown(text)
        if hold.mode == review.RETRY:
            note(hold, hold.preview)
        else:
            self.annotate(f, hold.preview)
        self.fleet.annotate(hold)

    @staticmethod
    def annotate(f: http.HTTPFlow, text: str) -> None:
        if f.intercepted:
            f.comment = f"{f.comment} | {text}"
            redraw(f)

    @property
    def hold_secret(self) -> bytes:
        """What retry keys are made with: the fleet's, so a retry on any member finds its approval."""
        return self.remote.secret or self.trail.redactor.key

    def show(self, f: http.HTTPFlow, hold: review.Hold) -> None:
        """Link a flow to its hold on the console."""
        hold.flow = f
        self.book.link(f.id, hold)
        f.marked = MARKERS["held"]
        for on in self.on_hold:
            on(f, hold)


def rebuild(journal_dir: Path, ttl: float, timeout: float | None, needed: dict[str, int] | None = None) -> review.Book:
    """Replay the retry-mode events of a journal into a review book."""

    def rows() -> Any:
        # Only lines with a hold_id are parsed: a start-up on a journal of millions of rows
        # must not decode every one of them.
        for r in read_rows(journal_dir, containing=b'"hold_id":"'):
            if r.get("hold_id"):
                r["_t"] = datetime.fromisoformat(r["ts"]).replace(tzinfo=UTC).timestamp()
                yield r

    book = review.Book.rebuild(rows(), time.time(), ttl, {"": timeout}, needed)
    if book.by_key:
        log.info("shield: %d retry-mode hold(s) restored from the journal", len(book.by_key))
    return book
