"""The fleet's approval queue, as a proxy (or a reviewer's console) sees it: the `holds` table.

A proxy publishes each hold; any reviewer of the fleet decides it with one UPDATE that only
an undecided hold matches, so the first decision wins fleet-wide whichever console it came
from; the proxy that holds the flow applies it. NOTIFY wakes every member at once; a poll
every POLL seconds is the fallback, and the state always comes from the table, never from a
notification's payload. No mitmproxy here: the addon (addons/fleet.py) turns rows into flows.

Every call is bounded by TIMEOUT and fails with FleetError: a database that is away must
cost a held flow a local decision, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shield_addon.fleet import FleetError, schema, shown
from shield_addon.fleet.db import CONNECT_TIMEOUT, first_line

log = logging.getLogger("shield")

POLL = 1.0  # seconds: the longest a decision or a new hold waits when a notification is lost
TIMEOUT = 3.0  # seconds any one database call may take
RETRY_MAX = 5.0
APPROVED = "approved"
# Wait-mode holds of an earlier run of this proxy: their requests died with it.
ORPHANS = ("UPDATE holds SET decision = 'abandoned', decided_at = now(), applied_at = now(), "
           "reason = 'the proxy restarted while held', decided_on = %s "
           "WHERE chain_id = %s AND mode = 'wait' AND decision IS NULL")


@dataclass(frozen=True)
class Row:
    """A hold as the fleet knows it."""

    hold_id: str
    chain_id: str
    proxy: str
    mode: str
    agent: str | None
    method: str | None
    url: str | None
    summary: str | None
    created_at: datetime
    decision: str | None = None
    reviewer: str | None = None
    reason: str | None = None
    decided_on: str | None = None
    used_by: str | None = None
    approvals_needed: int = 1
    approvers: tuple[str, ...] = ()
    owner_silent_s: float | None = None  # seconds since the holding proxy's last heartbeat (pending() only)

    @classmethod
    def of(cls, r: dict[str, Any]) -> Row:
        fields = {k: r[k] for k in cls.__dataclass_fields__ if k in r}
        fields["approvers"] = tuple(r.get("approvers") or ())
        return cls(**fields)


@dataclass(frozen=True)
class Outcome:
    """What became of a decision sent to the fleet: won, or the decision that won before."""

    won: bool
    row: Row | None  # None: the fleet does not know the hold (not published yet, or the database is away)


class Queue:
    """One member's connection to the queue. `chain_id` is the member's own chain ("" for a
    reviewer's console, which holds nothing); `on_sync` runs after each wake-up."""

    def __init__(self, url: str, chain_id: str, name: str, on_sync: Callable[[], Awaitable[None]]) -> None:
        self.url, self.chain_id, self.name, self.on_sync = url, chain_id, name, on_sync
        self.con: psycopg.AsyncConnection | None = None
        self.listener: psycopg.AsyncConnection | None = None
        self.lock = asyncio.Lock()  # one statement at a time on `con`
        self.error: str | None = None
        self.connected_once = False
        self.listen = ""  # where this member listens, once known

    @property
    def up(self) -> bool:
        return self.con is not None and not self.con.closed

    # ------------------------------------------------------------ the connection

    async def run(self) -> None:
        """Listen and sync until cancelled; reconnect with a backoff while the database is away."""
        try:
            await self._run()
        finally:
            await self.close()

    async def _run(self) -> None:
        wait = 0.0
        while True:
            try:
                if self.listener is None:
                    await self.connect()
                await self.on_sync()
                async for _ in self.listener.notifies(timeout=POLL, stop_after=1):  # type: ignore[union-attr]
                    pass
                wait = 0.0
            except (TimeoutError, psycopg.Error, FleetError, OSError) as e:
                await self.drop(e)
                wait = min(RETRY_MAX, max(0.5, wait * 2))
                await asyncio.sleep(wait)
            except Exception:  # a bug of ours on one wake-up must not end the queue for good
                log.exception("shield: fleet approval queue: sync failed")
                await asyncio.sleep(POLL)

    async def connect(self) -> None:
        """Both connections, and this run's setup done on them before either is the queue's:
        until then `up` is false and nothing is published, so ORPHANS cannot take a hold of
        this run for one of an earlier run's."""
        async def one() -> psycopg.AsyncConnection:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                                         application_name="agent-shield review", row_factory=dict_row)

        opened: list[psycopg.AsyncConnection] = []
        try:
            opened.append(con := await one())
            opened.append(listener := await one())
            await asyncio.wait_for(listener.execute(f"LISTEN {schema.HOLDS_CHANNEL}"), TIMEOUT)
            await asyncio.wait_for(self.setup(con), TIMEOUT)
        except BaseException as e:
            for c in opened:
                with contextlib.suppress(psycopg.Error):
                    await c.close()
            if isinstance(e, psycopg.Error):
                raise FleetError(f"cannot reach the fleet database {shown(self.url)}: {first_line(e)}") from e
            raise
        self.con, self.listener = con, listener
        if self.error is not None:
            log.warning("shield: fleet approval queue back")
        self.error = None
        self.connected_once = True

    async def setup(self, con: psycopg.AsyncConnection) -> None:
        if self.chain_id and self.listen:
            await con.execute("UPDATE proxies SET listen = %s WHERE chain_id = %s", (self.listen, self.chain_id))
        if self.chain_id and not self.connected_once:
            await con.execute(ORPHANS, (self.name, self.chain_id))

    async def drop(self, e: BaseException) -> None:
        text = first_line(e)
        if text != self.error:
            log.warning("shield: fleet approval queue unavailable (holds are decided here meanwhile): %s", text)
        self.error = text
        await self.close()

    async def close(self) -> None:
        for c in (self.con, self.listener):
            if c is not None:
                try:
                    await c.close()
                except psycopg.Error:
                    pass
        self.con = self.listener = None

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """One statement, bounded; its rows. FleetError when the database is away."""
        if self.con is None:
            raise FleetError(self.error or "the fleet database is not connected")
        try:
            async with self.lock:
                cur = await asyncio.wait_for(self.con.execute(sql, params), TIMEOUT)  # type: ignore[arg-type]
                return await cur.fetchall() if cur.description else []
        except (TimeoutError, psycopg.Error, OSError) as e:
            await self.drop(e)
            raise FleetError(first_line(e)) from e

    async def notify(self, what: str, hold_id: str) -> None:
        await self.execute("SELECT pg_notify(%s, %s)", (schema.HOLDS_CHANNEL, f"{what}:{hold_id}"))

    # ------------------------------------------------------------ the owner's side

    async def publish(self, hold_id: str, mode: str, hold_key: str | None, agent: str, method: str, url: str,
                      summary: str, rule_id: str | None, deadline: float | None, approval_ttl: float | None,
                      approvals: int = 1, approvers: Sequence[str] = ()) -> None:
        await self.execute(
            """INSERT INTO holds (hold_id, chain_id, proxy, mode, hold_key, agent, method, url, summary, rule_id,
                                  deadline, approval_ttl, approvals_needed, approvers)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s), %s, %s, %s) ON CONFLICT DO NOTHING""",
            (hold_id, self.chain_id, self.name, mode, hold_key, agent, method, url, summary, rule_id, deadline,
             approval_ttl, approvals, list(approvers)))
        await self.notify("new", hold_id)

    async def annotate(self, hold_id: str, text: str) -> None:
        await self.execute("UPDATE holds SET summary = summary || ' | ' || %s WHERE hold_id = %s", (text, hold_id))
        await self.notify("new", hold_id)

    async def to_apply(self) -> list[Row]:
        """Decisions taken elsewhere for this proxy's holds, not applied yet, and the approvals
        so far of its holds that need several."""
        rows = await self.execute("SELECT * FROM holds WHERE chain_id = %s AND applied_at IS NULL AND "
                                  "(decision IS NOT NULL OR cardinality(approvers) > 0) ORDER BY decided_at",
                                  (self.chain_id,))
        return [Row.of(r) for r in rows]

    async def applied(self, hold_ids: Sequence[str]) -> None:
        if hold_ids:
            await self.execute("UPDATE holds SET applied_at = now() WHERE hold_id = ANY(%s)", (list(hold_ids),))

    async def used_elsewhere(self, hold_ids: Sequence[str]) -> list[Row]:
        """Of these retry-mode holds of ours, the ones whose answer another proxy delivered."""
        if not hold_ids:
            return []
        rows = await self.execute("SELECT * FROM holds WHERE hold_id = ANY(%s) AND used_at IS NOT NULL "
                                  "AND used_by IS DISTINCT FROM %s", (list(hold_ids), self.name))
        return [Row.of(r) for r in rows]

    # ------------------------------------------------------------ every reviewer's side

    async def decide(self, hold_id: str, decision: str, reviewer: str | None, reason: str | None) -> Outcome:
        """The hold's one decision, fleet-wide: won, or what won before. An approval of a hold
        that needs several is counted once per reviewer (the row comes back still undecided)
        until the last one decides it."""
        # The right-hand sides see the row as it was: `cardinality(approvers) + 1` counts this approval.
        rows = await self.execute(
            """UPDATE holds SET
                   approvers = CASE WHEN %(d)s = 'approved' THEN array_append(approvers, coalesce(%(who)s, '-'))
                                    ELSE approvers END,
                   decision = CASE WHEN %(d)s <> 'approved' OR cardinality(approvers) + 1 >= approvals_needed
                                   THEN %(d)s END,
                   reviewer = %(who)s, reason = %(reason)s, decided_on = %(me)s, decided_at = now(),
                   applied_at = CASE WHEN chain_id = %(chain)s THEN now() END,
                   expires_at = CASE WHEN %(d)s = 'approved' AND mode = 'retry'
                                     AND cardinality(approvers) + 1 >= approvals_needed
                                     THEN now() + make_interval(secs => coalesce(approval_ttl, 900)) END
               WHERE hold_id = %(hold)s AND decision IS NULL
                 AND NOT (%(d)s = 'approved' AND coalesce(%(who)s, '-') = ANY(approvers)) RETURNING *""",
            {"d": decision, "who": reviewer, "reason": reason, "me": self.name, "chain": self.chain_id,
             "hold": hold_id})
        if rows:
            await self.notify("decided", hold_id)
            return Outcome(True, Row.of(rows[0]))
        rows = await self.execute("SELECT * FROM holds WHERE hold_id = %s", (hold_id,))
        return Outcome(False, Row.of(rows[0]) if rows else None)

    async def pending(self) -> list[Row]:
        """Undecided holds of the other members, oldest first."""
        rows = await self.execute(
            "SELECT h.*, extract(epoch FROM now() - p.last_seen)::float8 AS owner_silent_s "
            "FROM holds h LEFT JOIN proxies p USING (chain_id) WHERE h.decision IS NULL AND h.chain_id <> %s "
            "ORDER BY h.created_at", (self.chain_id,))
        return [Row.of(r) for r in rows]

    async def members(self) -> list[str]:
        """Where the other members listen (`proxies.listen`: proxy ports and web consoles)."""
        rows = await self.execute("SELECT listen FROM proxies WHERE chain_id <> %s AND listen IS NOT NULL",
                                  (self.chain_id,))
        return [r["listen"] for r in rows]

    async def rows(self, hold_ids: Sequence[str]) -> list[Row]:
        rows = await self.execute("SELECT * FROM holds WHERE hold_id = ANY(%s)", (list(hold_ids),))
        return [Row.of(r) for r in rows]

    # ------------------------------------------------------------ retry mode across the fleet

    async def find(self, hold_key: str) -> Row | None:
        """The newest hold of the fleet for this retry key, if any."""
        rows = await self.execute("SELECT * FROM holds WHERE hold_key = %s ORDER BY created_at DESC LIMIT 1",
                                  (hold_key,))
        return Row.of(rows[0]) if rows else None

    async def claim(self, hold_id: str) -> Row | None:
        """Take the hold's answer for this proxy, once fleet-wide: an unexpired approval to
        forward, or a denial to deliver. None when another proxy took it first (or it lapsed)."""
        rows = await self.execute(
            """UPDATE holds SET used_at = now(), used_by = %s
               WHERE hold_id = %s AND decision IS NOT NULL AND used_at IS NULL
                 AND (decision <> 'approved' OR expires_at IS NULL OR expires_at > now()) RETURNING *""",
            (self.name, hold_id))
        if rows:
            await self.notify("used", hold_id)
        return Row.of(rows[0]) if rows else None
