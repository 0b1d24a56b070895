"""This proxy's holds in the fleet's queue: published when opened, decided in the database
first (the first decision wins fleet-wide), decisions taken on other consoles applied here,
and retry-mode approvals found and used across the fleet.

While the database is away, everything is decided here, as a proxy alone would, and told to
the fleet when it is back (a decision already there wins, and the conflict is logged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shield_addon import review
from shield_addon.addons.console import note
from shield_addon.fleet import FleetError

if TYPE_CHECKING:
    from shield_addon.addons.fleet import Fleet
    from shield_addon.addons.review import Review

log = logging.getLogger("shield")

FLEET_VIA = "fleet"  # a decision event's `operation` for a decision taken on another console: fleet:<console>


class FleetHolds:
    def __init__(self, owner: Review, fleet: Fleet) -> None:
        self.owner, self.fleet = owner, fleet
        self.published: set[str] = set()  # holds the fleet has (a hold opened while it was away is not there)
        # A decision taken here while the fleet was away, told to it first thing when it is
        # back (else the row stays pending and another console can decide it again).
        self.untold: dict[str, review.Hold] = {}
        # Holds opened while the fleet was away: it has never seen them, so no other proxy can
        # have used their approval; only these may be used here without asking it.
        self.unseen: set[str] = set()
        fleet.syncs.append(self.sync)

    @property
    def on(self) -> bool:
        return self.fleet.active

    def publish(self, hold: review.Hold, summary: str) -> None:
        if self.fleet.queue is None:
            return
        if not self.on:
            self.unseen.add(hold.hold_id)
        self.fleet.spawn(self.send(hold, summary))

    async def send(self, hold: review.Hold, summary: str) -> None:
        base = hold.base
        await self.fleet.queue.publish(
            hold.hold_id, hold.mode, hold.key, hold.agent, base.get("method") or "", base.get("url") or "", summary,
            hold.rule_id, hold.deadline, hold.approval_ttl if hold.key else None, hold.needed, hold.approvers)
        self.published.add(hold.hold_id)
        self.unseen.discard(hold.hold_id)
        if hold.preview:  # it came before the row did
            await self.fleet.queue.annotate(hold.hold_id, hold.preview)

    def annotate(self, hold: review.Hold) -> None:
        """A hold's dry run arrived: every console of the fleet shows it (once the hold is
        published; before that, send() carries it)."""
        if self.fleet.queue is not None and hold.preview and hold.hold_id in self.published:
            self.fleet.spawn(self.fleet.queue.annotate(hold.hold_id, hold.preview))

    def decide(self, holds: list[review.Hold], decision: str, who: str, via: str, comment: str | None) -> None:
        for hold in holds:
            self.fleet.spawn(self.decide_first(hold, decision, who, via, comment))

    async def decide_first(self, hold: review.Hold, decision: str, who: str, via: str, comment: str | None) -> None:
        """This console's decision on one of this proxy's holds: in the database first."""
        try:
            outcome = await self.fleet.queue.decide(hold.hold_id, decision, who, comment)
        except FleetError:
            outcome = None
        if outcome is not None and not outcome.won and outcome.row is not None:
            row = outcome.row
            if row.decision is None:  # this reviewer's approval was counted before
                self.owner.settle(hold, decision, who, via, comment)  # says so
                return
            log.warning("shield: hold %s was already %s by %s on %s: this %s is ignored", hold.hold_id[:8],
                        row.decision, row.reviewer or "the proxy", row.decided_on, decision)
            self.apply(row)
            return
        self.owner.settle(hold, decision, who, via, comment)
        if outcome is None:
            self.report(hold)  # the database was away or had not seen the hold yet

    def report(self, hold: review.Hold) -> None:
        """A decision taken here without the database (a timeout, a departed agent, a kill):
        tell the fleet, so no console keeps showing the hold as pending."""
        if self.fleet.queue is None or not hold.decision or (hold.via or "").startswith(FLEET_VIA):
            return

        self.untold[hold.hold_id] = hold
        self.fleet.spawn(self.tell(hold))

    async def tell(self, hold: review.Hold) -> None:
        """One decision taken here, to the fleet; kept for the next sync while it is away."""
        try:
            outcome = await self.fleet.queue.decide(hold.hold_id, hold.decision or "", hold.reviewer, hold.comment)
        except FleetError:
            return
        self.untold.pop(hold.hold_id, None)
        if not outcome.won and outcome.row is not None and outcome.row.decision != hold.decision:
            log.warning("shield: hold %s was %s here while the fleet database was away, but %s by %s on %s "
                        "there first", hold.hold_id[:8], hold.decision, outcome.row.decision,
                        outcome.row.reviewer, outcome.row.decided_on)

    def apply(self, row: Any) -> None:
        """A decision taken on another console, for one of this proxy's holds (with each approval
        counted so far, for a hold that needs several)."""
        hold = self.owner.book.by_id.get(row.hold_id)
        via = f"{FLEET_VIA}:{row.decided_on}"
        for who in row.approvers if hold is not None and hold.needed > 1 else ():
            if who not in hold.approvers and hold.status == review.PENDING:
                self.owner.settle(hold, review.APPROVED, who, via, row.reason if who == row.reviewer else None)
        if hold is not None and hold.status == review.PENDING and row.decision:
            self.owner.settle(hold, row.decision, row.reviewer, via, row.reason)

    async def sync(self) -> None:
        queue = self.fleet.queue
        for hold in list(self.untold.values()):
            await self.tell(hold)
        for hold in self.owner.book.pending():  # opened while the database was away: the fleet sees them now
            if hold.hold_id not in self.published and hold.flow is not None:
                await self.send(hold, hold.flow.comment)
        self.published &= {h.hold_id for h in self.owner.book.by_id.values()}
        self.unseen &= {h.hold_id for h in self.owner.book.by_id.values()}
        rows = await queue.to_apply()
        for row in rows:
            self.apply(row)
        await queue.applied([r.hold_id for r in rows])
        book = self.owner.book
        answered = [h.hold_id for h in book.by_key.values() if h.status in (review.APPROVED, review.DENIED,
                                                                           review.TIMED_OUT)]
        for row in await queue.used_elsewhere(answered):
            if (hold := book.by_id.get(row.hold_id)) is not None and book.used_elsewhere(hold):
                note(hold, f"answer delivered to a retry on proxy {row.used_by}")

    # ------------------------------------------------------------ retry mode

    async def elsewhere(self, key: str) -> tuple[str, Any] | None:
        """A retry whose key has no open hold here: the fleet's answer for it, if another
        proxy holds it: ("forward"|"refuse", row) taken for this proxy, or ("wait", row)."""
        if not self.on or key in self.owner.book.by_key:
            return None
        queue = self.fleet.queue
        try:
            row = await queue.find(key)
            if row is None or row.chain_id == queue.chain_id or row.used_by is not None:
                return None
            if row.decision is None:
                return "wait", row
            taken = await queue.claim(row.hold_id)
        except FleetError:
            return None
        if taken is None:
            return None
        return ("forward" if taken.decision == review.APPROVED else "refuse"), taken

    async def use(self, hold: review.Hold) -> bool | None:
        """This proxy is about to forward a retry on its own approval: take it fleet-wide first.
        False when a retry on another proxy took it already; None when the fleet cannot be
        asked and may have given it out (a partition looks like an outage from here)."""
        queue = self.fleet.queue
        if queue is None:
            return True  # no fleet
        try:
            if not self.on:
                raise FleetError("the fleet database is away")
            if await queue.claim(hold.hold_id) is not None:
                return True
            return not await queue.rows([hold.hold_id])  # never published: this proxy's alone
        except FleetError:
            return True if hold.hold_id in self.unseen else None
