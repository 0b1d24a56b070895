"""The fleet addon: this proxy's (or a reviewer console's) membership of a fleet's approval queue.

It publishes this proxy's holds, applies decisions taken on other consoles to them, and shows
the other members' pending holds as flows of this console (a `fleet` marker, the proxy's
name in the comment), so the same keys decide them: `y`, `N`+reason, `X`, `a`. Which hold
a key decides and whether it won fleet-wide is `fleet.queue`'s business; applying a decision
to a held request stays the review addon's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import command, connection, ctx, exceptions, http
from mitmproxy import flow as mflow

from shield_addon import record
from shield_addon.addons.console import DECIDED, MARKERS, bind_keys, redraw, ring, too_late
from shield_addon.fleet import FleetError, fleet_url

log = logging.getLogger("shield")

REMOTE = "shield_fleet_hold"  # a remote flow's metadata key: the hold it shows
# Seconds without a heartbeat (one a second, from the proxy's writer) before its holds are
# shown as possibly gone: past a catch-up batch of shipping, well short of a reviewer's wait.
SILENT = 15


def remote_flow(row: Any) -> http.HTTPFlow:
    """A flow that stands for another proxy's hold: the request line only, never sent anywhere.
    The method is the agent's (mitmproxy takes any bytes but whitespace there): shown escaped."""
    client = connection.Client(peername=("0.0.0.0", 0), sockname=("0.0.0.0", 0),
                               timestamp_start=row.created_at.timestamp())
    f = http.HTTPFlow(client, connection.Server(address=None), live=True)
    f.request = http.Request.make(record.safe_text(row.method or "GET"), row.url or "http://unknown/")
    f.request.timestamp_start = row.created_at.timestamp()
    f.metadata[REMOTE] = row.hold_id
    f.intercepted = True
    f.marked = MARKERS["held"]
    return f


def remote_comment(row: Any, now: float) -> str:
    """'on proxy b, held 12s: agent deploy-bot wants …' — the same line its own console shows."""
    if row.decision:
        return record.safe_text(f"{row.decision} by {row.reviewer or 'the proxy'} on {row.decided_on or row.proxy}"
                                + (f": {row.reason}" if row.reason else "") + f" | on proxy {row.proxy}: {row.summary}")
    age = max(0, int(now - row.created_at.timestamp()))
    approved = (f" | approved by {', '.join(row.approvers)} ({len(row.approvers)} of {row.approvals_needed})"
                if getattr(row, "approvers", ()) else "")
    return record.safe_text(f"on proxy {row.proxy}, held {age}s: {row.summary}{approved}{silence(row)}")


def silence(row: Any) -> str:
    """A wait-mode hold lives in its proxy's memory: if that proxy stopped beating, the agent's
    request may be gone with it (a retry-mode approval is kept by the fleet and still usable)."""
    silent = getattr(row, "owner_silent_s", None)
    if silent is None or silent < SILENT or row.mode != "wait":
        return ""
    return f" | proxy {row.proxy} silent for {int(silent)}s: the agent's request may be gone"


class Fleet:
    def __init__(self, chain_id: Callable[[], str] = lambda: "") -> None:
        self.chain_id = chain_id
        self.url = ""
        self.secret: bytes | None = None
        self.queue: Any = None  # fleet.queue.Queue, once running (psycopg is imported only for a fleet)
        self.task: asyncio.Task | None = None
        self.remote: dict[str, mflow.Flow] = {}  # hold_id -> the flow that shows another member's hold
        self.syncs: list[Callable[[], Awaitable[None]]] = []  # the review addon's part of each wake-up
        self.tasks: set[asyncio.Task] = set()
        # Where the other members listen: as much the proxy itself as its own ports (another
        # member's web console decides this proxy's holds too).
        self.members: frozenset[tuple[str, int]] = frozenset()

    def load(self, loader: Any) -> None:
        loader.add_option("shield_fleet", str, "",
                          "PostgreSQL URL of a fleet to join (default: $SHIELD_FLEET; empty: this proxy stands alone).")
        loader.add_option("shield_proxy_name", str, "", "This proxy's name in the fleet (default: host:port).")

    def configure(self, updated: set[str]) -> None:
        if "shield_fleet" in updated:
            self.url = fleet_url(ctx.options.shield_fleet)
            self.secret = fetch_secret(self.url) if self.url else None

    @property
    def active(self) -> bool:
        return self.queue is not None and self.queue.up

    def running(self) -> None:
        if not self.url:
            return
        from shield_addon.addons.trail import proxy_name
        from shield_addon.fleet.queue import Queue

        name = proxy_name() if self.chain_id() else f"review console on {socket.gethostname()}"
        self.queue = Queue(self.url, self.chain_id(), name, self.sync)
        self.queue.listen = listening()
        self.task = asyncio.get_running_loop().create_task(self.queue.run())

    def done(self) -> None:
        if self.task:
            self.task.cancel()  # the queue closes its connections as it ends

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Fire and forget, but keep a reference (asyncio holds tasks weakly) and log failures."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (e := task.exception()) and not isinstance(e, FleetError):
            log.error("shield: fleet task failed: %r", e)

    # ------------------------------------------------------------ every wake-up

    async def sync(self) -> None:
        """After a notification or POLL seconds: this proxy's part, then the other members' holds."""
        for fn in self.syncs:
            await fn()
        if self.queue.chain_id:  # a proxy (a review console guards no one)
            self.members = frozenset(a for text in await self.queue.members() for a in addresses(text))
        pending = await self.queue.pending()
        now = time.time()
        for row in pending:
            self.show(row, now)
        gone = [h for h in self.remote if h not in {r.hold_id for r in pending} and self.remote[h].intercepted]
        for row in await self.queue.rows(gone) if gone else ():
            self.settled(row)

    def show(self, row: Any, now: float) -> None:
        f = self.remote.get(row.hold_id)
        if f is None:
            f = self.remote[row.hold_id] = remote_flow(row)
            view = ctx.master.addons.get("view")
            if view is not None:  # a console (mitmdump has no view); an empty View is falsy
                view.add([f])
                ring()
        if f.intercepted:
            f.comment = remote_comment(row, now)
            redraw(f)

    def settled(self, row: Any) -> None:
        """A remote hold was decided (anywhere): show it so, and let go of it."""
        f = self.remote.get(row.hold_id)
        if f is None or not f.intercepted and not f.live:
            return
        f.marked = MARKERS.get(row.decision or "", ":default:")
        f.comment = remote_comment(row, time.time())
        f.metadata[DECIDED] = f"{row.decision} by {row.reviewer or 'the proxy'} on {row.decided_on or row.proxy}"
        f.intercepted, f.live = False, False
        redraw(f)

    def pending(self) -> None:
        """The other members' pending holds, for `shield.pending` (this proxy's are listed before)."""
        held = [f for f in self.remote.values() if f.intercepted]
        if held:
            log.warning("shield: %d held flow(s) on other proxies of the fleet:", len(held))
        for f in held:
            log.warning("  %s %s  %s", record.safe_text(f.request.method), record.safe_text(f.request.pretty_url),
                        record.safe_text(f.comment))

    # ------------------------------------------------------------ a reviewer's keys on remote flows

    def hold_of(self, f: mflow.Flow) -> str | None:
        return f.metadata.get(REMOTE)

    def decide(self, flows: Sequence[mflow.Flow], decision: str, reviewer: str, reason: str | None) -> int:
        """Send this console's decision on remote flows to the fleet; how many were sent."""
        targets = [f for f in flows if (hid := self.hold_of(f)) and self.remote.get(hid) is f and f.intercepted]
        for f in targets:
            self.spawn(self.decide_remote(f, decision, reviewer, reason))
        return len(targets)

    async def decide_remote(self, f: mflow.Flow, decision: str, reviewer: str, reason: str | None) -> None:
        hold_id = self.hold_of(f) or ""
        try:
            outcome = await self.queue.decide(hold_id, decision, reviewer, reason)
        except FleetError as e:
            log.warning("shield: hold %s is on another proxy and the fleet database is away: not decided (%s)",
                        hold_id[:8], e)
            f.intercepted, f.live = True, True  # a kill or resume that did not happen: still pending
            f.metadata.pop("shield_sent", None)
            f.error = None
            redraw(f)
            return
        row = outcome.row
        if row is not None and row.decision is None:  # one approval of several: counted, or counted before
            if outcome.won:
                log.warning("shield: hold %s approved by %s: %d of %d approvals", hold_id[:8], reviewer,
                            len(row.approvers), row.approvals_needed)
            else:
                log.warning("shield: %s approved hold %s already: %d of %d approvals, another reviewer must approve",
                            reviewer, hold_id[:8], len(row.approvers), row.approvals_needed)
            f.intercepted, f.live = True, True  # still held (a resume or kill that was counted as an approval)
            f.metadata.pop("shield_sent", None)
            self.show(row, time.time())
        elif row is not None:
            if not outcome.won:
                log.warning("shield: hold %s was already %s by %s on %s: this %s is ignored", hold_id[:8],
                            row.decision, row.reviewer or "the proxy", row.decided_on, decision)
            self.settled(row)

    def observe(self, f: mflow.Flow) -> None:
        """mitmproxy's own commands on a remote flow: kill (X) kills the hold, resume (a) approves it."""
        hold_id = self.hold_of(f)
        if hold_id is None or self.remote.get(hold_id) is not f or f.metadata.get("shield_sent"):
            return
        from shield_addon.addons.review import killed, reviewer

        if killed(f):
            f.metadata["shield_sent"] = True
            self.spawn(self.decide_remote(f, "killed", reviewer(), None))
        elif not f.intercepted and f.live:
            f.metadata["shield_sent"] = True
            self.spawn(self.decide_remote(f, "approved", reviewer(), None))


def listening() -> str:
    """The addresses the proxy is bound to, mitmweb's included, as `host:port, ...` (empty for
    a console that holds nothing). The other members keep their agents away from all of them."""
    server = ctx.master.addons.get("proxyserver")
    try:
        addrs = [(a[0], a[1]) for a in server.listen_addrs()] if server else []
    except Exception:  # noqa: BLE001 - not listening (server=false): nothing to say
        addrs = []
    if addrs and "web_port" in ctx.options:
        addrs.append((ctx.options.web_host or "127.0.0.1", ctx.options.web_port))
    return ", ".join(f"{h}:{p}" for h, p in addrs)


def addresses(listen: str) -> list[tuple[str, int]]:
    """`proxies.listen` as (host, port) pairs; what is not one (a proxy that has not bound yet
    says 'regular on *:8080') is left out."""
    found = []
    for item in listen.split(","):
        host, _, port = item.strip().rpartition(":")
        if port.isdigit() and int(port) > 0 and " " not in host:
            found.append((host.strip("[]"), int(port)))
    return found


def fetch_secret(url: str) -> bytes | None:
    """The fleet's key for retry-mode approvals, so that a retry on any member finds its
    approval. A database that is away at start costs fleet-wide retries, not the proxy."""
    from shield_addon.fleet import db

    try:
        with db.connect(url) as con:
            db.migrate(con)
            return db.fleet_secret(con)
    except (FleetError, OSError) as e:
        log.warning("shield: %s; retry-mode approvals stay on this proxy until it restarts with the fleet up", e)
        return None
    except Exception as e:  # noqa: BLE001 - psycopg's errors (rights, a broken schema): say so, not a traceback
        raise exceptions.OptionsError(f"shield: shield_fleet: {db.first_line(e)}") from e


class FleetReviewer:
    """`shield review --fleet`: a console that holds nothing itself and decides the fleet's holds."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def load(self, loader: Any) -> None:
        loader.add_option("shield_reviewer", str, "", "Reviewer name recorded with decisions (default: OS user).")

    def running(self) -> None:
        if not self.fleet.url:
            raise exceptions.OptionsError("shield review: give the fleet's URL (--fleet URL or SHIELD_FLEET)")
        bind_keys()

    def update(self, flows: Sequence[mflow.Flow]) -> None:
        for f in flows:
            self.fleet.observe(f)

    @command.command("shield.approve")
    def approve(self, flows: Sequence[mflow.Flow]) -> None:
        """Approve held flows of the fleet: each is forwarded once, by the proxy that holds it."""
        from shield_addon.addons.review import reviewer

        too_late(flows, "approve")
        log.warning("shield: approved %d held flow(s)", self.fleet.decide(flows, "approved", reviewer(), None))

    @command.command("shield.deny")
    def deny(self, flows: Sequence[mflow.Flow], *reason: str) -> None:
        """Deny held flows of the fleet; each agent gets a 403 with the reason."""
        from shield_addon.addons.review import reviewer

        comment = " ".join(reason).strip() or None
        too_late(flows, "deny")
        log.warning("shield: denied %d held flow(s)", self.fleet.decide(flows, "denied", reviewer(), comment))

    @command.command("shield.pending")
    def pending(self) -> None:
        """List the fleet's held flows in the event log."""
        self.fleet.pending()
