"""The notify addon: a new hold reaches the reviewer where they are (apprise: Slack, Teams,
ntfy, email, JSON webhooks, ...), again when it waits too long (a rule's `escalate:`), and
optionally when it is decided; the console rings the terminal bell on a new hold.

Sending never blocks or changes a flow: apprise's notify is blocking, so each send runs on
this addon's own small thread pool (never the event loop's default executor, which
mitmproxy's DNS look-ups use), with socket timeouts, and a send that fails or outlasts its
timeout is logged, counted and journaled (a `notice` event, after the fact: never waited
for), nothing more; the `shield.notifications` command reports the counts and the last failure.

Holds are learnt from Review.on_hold (called where a hold is shown on the console);
decisions and escalations by watching the hold objects on a quarter-second clock, so
neither the review addon nor the answers know this addon exists.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mitmproxy import command, ctx, exceptions, http

from shield_addon import review, rules
from shield_addon.addons.console import describe, ring
from shield_addon.addons.trail import proxy_name
from shield_addon.core import notices

if TYPE_CHECKING:
    from shield_addon.addons.gate import Gate
    from shield_addon.addons.review import Review

log = logging.getLogger("shield")
TICK = 0.25  # seconds between looks at the watched holds (escalations, decisions)
WORKERS = 2  # threads that talk to notification services
QUEUED = 64  # sends waiting or under way; beyond that a send is dropped (and counted failed)
PER_AGENT = QUEUED // 2  # ... of one agent's holds: its flood of holds cannot crowd out the others' notices
NOTIFY_TYPES = {notices.HOLD: "info", notices.ESCALATION: "warning", notices.DECISION: "success"}


@dataclass
class Watch:
    """A hold someone was (or will be) told of: until its decision."""

    hold: review.Hold
    facts: notices.HoldFacts
    urls: list[str]  # told of the hold, and of its decision
    escalate_at: float | None = None
    escalate_urls: list[str] = field(default_factory=list)


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    last_failure: str = ""


class Notify:
    def __init__(self, review_: Review, gate: Gate) -> None:
        self.review, self.gate = review_, gate
        self.targets = notices.Targets()
        self.watched: dict[str, Watch] = {}
        self.tally = Tally()
        self.queued_by: Counter[str | None] = Counter()  # sends waiting or under way, by the hold's agent
        self.pool: ThreadPoolExecutor | None = None
        self.tasks: set[asyncio.Future[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        review_.on_hold.append(self.held)

    @property
    def queued(self) -> int:
        return sum(self.queued_by.values())

    def load(self, loader: Any) -> None:
        loader.add_option("shield_notify", Sequence[str], [],
                          "Apprise URLs told of every new hold (comma- or space-separated, or a list); "
                          "name=URL defines a target only rules that name it use (notify: [name]).")
        loader.add_option("shield_notify_decisions", bool, False,
                          "Also announce each notified hold's decision (approved, denied, timed out, ...).")
        loader.add_option("shield_notify_timeout", int, 10,
                          "Seconds one notification may take (connect and read) before it counts as failed.")
        loader.add_option("shield_bell", bool, True, "The console rings the terminal bell on a new hold.")

    def configure(self, updated: set[str]) -> None:
        if "shield_notify" in updated:
            try:
                targets = notices.parse_targets(ctx.options.shield_notify)
            except ValueError as e:
                raise exceptions.OptionsError(f"shield: shield_notify: {e}") from e
            for url in [*targets.every, *(u for us in targets.named.values() for u in us)]:
                if plugin(url) is None:
                    raise exceptions.OptionsError(f"shield: shield_notify: {scheme(url)}://... is not a URL apprise "
                                                  "can send to (see apprise's list of services)")
            self.targets = targets

    def running(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self.tick())

    def done(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        if self.pool:
            self.pool.shutdown(wait=False, cancel_futures=True)

    @command.command("shield.notifications")
    def notifications(self) -> None:
        """Notifications sent and failed since the proxy started, and the last failure, in the event log."""
        t = self.tally
        log.warning("shield: notifications: %d sent, %d failed, %d under way, %d hold(s) watched%s", t.sent, t.failed,
                    self.queued, len(self.watched), f"; last failure: {t.last_failure}" if t.last_failure else "")

    # ------------------------------------------------------------ holds

    def held(self, f: http.HTTPFlow, hold: review.Hold) -> None:
        """Review.on_hold: a hold is shown on the console (a new one, or a retry-mode hold's
        first flow since a restart). Called inside the hold's path: nothing here may stop it."""
        try:
            self.announce(f, hold)
        except Exception:  # noqa: BLE001 - a notification bug must never change what happens to the flow
            log.exception("shield: could not notify of hold %s", hold.hold_id[:8])
            self.tally.failed += 1

    def announce(self, f: http.HTTPFlow, hold: review.Hold) -> None:
        if hold.hold_id in self.watched:
            return
        ring()
        state = self.gate.state.get(f.id)
        rule = state.verdict.enforced_rule if state and state.verdict else None
        urls = self.urls([*self.targets.every], rule.notify if rule else (), rule)
        escalation = rule.escalate if rule else None
        if not urls and escalation is None:
            return
        facts = self.facts(hold, state.verdict.action if state and state.verdict else None, rule)
        watch = Watch(hold, facts, urls)
        if escalation is not None:
            watch.escalate_at = hold.created + escalation.after
            watch.escalate_urls = self.urls([], escalation.notify, rule)
        self.watched[hold.hold_id] = watch
        self.send(urls, notices.hold_notice(facts, time.time()), hold)

    def urls(self, base: list[str], wanted: Sequence[str], rule: rules.Rule | None) -> list[str]:
        found, unknown = self.targets.resolve(wanted)
        if unknown:
            log.warning("shield: rule %s names notification target(s) %s that shield_notify does not define "
                        "(name=URL)", rule.id if rule else "-", ", ".join(unknown))
            self.tally.failed += len(unknown)
            self.tally.last_failure = f"rule {rule.id if rule else '-'}: unknown target(s) {', '.join(unknown)}"
        return notices.unique([*base, *found])

    def facts(self, hold: review.Hold, action: Any, rule: rules.Rule | None) -> notices.HoldFacts:
        """What the notices say, from the hold's recorded (redacted) columns."""
        base = hold.base
        redact = self.review.trail.redactor.text
        return notices.HoldFacts(
            proxy=proxy_name(), hold_id=hold.hold_id, agent=str(base.get("agent") or hold.agent),
            method=str(base.get("method") or ""), url=str(base.get("url") or ""),
            action=redact(describe(action)) if action is not None else "", rule_id=rule.id if rule else None,
            severity=rule.severity if rule else None, rule_message=rule.message if rule else "",
            created=hold.created, deadline=hold.deadline, on_timeout=hold.on_timeout, mode=hold.mode,
            fleet=bool(getattr(ctx.options, "shield_fleet", "")), needed=hold.needed)

    async def tick(self) -> None:
        """Escalate holds still undecided after their `after`; announce decisions; forget decided holds."""
        while True:
            await asyncio.sleep(TICK)
            try:
                self.look(time.time())
            except Exception:  # noqa: BLE001 - one bad hold must not stop every later escalation
                log.exception("shield: notifications: could not look at the watched holds")

    def look(self, now: float) -> None:
        for hid, w in list(self.watched.items()):
            h = w.hold
            if h.decision is not None:
                del self.watched[hid]
                if ctx.options.shield_notify_decisions and w.urls:
                    self.send(w.urls, notices.decision_notice(w.facts, h.decision, h.reviewer, h.via, h.comment,
                                                                  h.decided_at or now), h)
            elif w.escalate_at is not None and now >= w.escalate_at and h.status == review.PENDING:
                w.escalate_at = None
                self.send(w.escalate_urls, notices.escalation_notice(w.facts, now, h.approvers), h)
                w.urls = notices.unique([*w.urls, *w.escalate_urls])  # they hear of the decision too
            elif w.escalate_at is None and not w.urls:
                del self.watched[hid]

    # ------------------------------------------------------------ sending

    def send(self, urls: list[str], notice: notices.Notice, hold: review.Hold) -> None:
        """Off the event loop, each target on its own: one slow service delays no other."""
        if not urls:
            return
        redact = self.review.trail.redactor.text  # again, the finished text: nothing secret-shaped leaves
        title, body = redact(notice.title), redact(notice.body)
        if self.pool is None:
            self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="shield-notify")
        timeout = max(1, ctx.options.shield_notify_timeout)
        for url in urls:
            if self.queued >= QUEUED:
                self.failure(hold, notice.kind, url, f"{QUEUED} notifications already under way: dropped")
                continue
            if self.queued_by[hold.agent] >= PER_AGENT:
                self.failure(hold, notice.kind, url, f"{PER_AGENT} of this agent's notifications already under way: "
                                                     "dropped")
                continue
            self.queued_by[hold.agent] += 1
            task = asyncio.get_running_loop().create_task(self.deliver(url, title, body, notice.kind, timeout, hold))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def deliver(self, url: str, title: str, body: str, kind: str, timeout: int, hold: review.Hold) -> None:
        assert self.pool is not None
        fut = asyncio.get_running_loop().run_in_executor(self.pool, deliver, url, title, body, NOTIFY_TYPES[kind], timeout)
        try:
            # Connect and read are bounded by the socket timeouts; this bounds what the proxy
            # waits to call it failed (a service that trickles its answer, a slow DNS look-up).
            done, _ = await asyncio.wait({fut}, timeout=2 * timeout + 1)
            if not done:
                fut.cancel()  # still waiting for a worker: it must not be sent late, nor pile up
                problem: str | None = f"no answer within {2 * timeout + 1}s"
            elif (e := fut.exception()) is not None:
                problem = f"{type(e).__name__}: {e}"
            else:
                problem = fut.result()
        finally:
            self.queued_by[hold.agent] -= 1
            if not self.queued_by[hold.agent]:
                del self.queued_by[hold.agent]
        if problem:
            self.failure(hold, kind, url, problem)
        else:
            self.tally.sent += 1
            self.record(hold, kind, self.shown(url), None)

    def failure(self, hold: review.Hold, kind: str, url: str, problem: str) -> None:
        where = self.shown(url)
        problem = notices.without_secrets(problem, url, where)
        log.warning("shield: %s notification of hold %s to %s failed: %s", kind, hold.hold_id[:8], where, problem)
        self.tally.failed += 1
        self.tally.last_failure = f"{time.strftime('%H:%M:%S')} {kind} of hold {hold.hold_id[:8]} to {where}: {problem}"
        self.record(hold, kind, where, problem)

    def shown(self, url: str) -> str:
        """A target as the log, the counts and the trail show it (core.notices.target_shown)."""
        return notices.target_shown(private(url), self.review.trail.redactor.mark(url))

    def record(self, hold: review.Hold, kind: str, where: str, problem: str | None) -> None:
        """Into the trail, after the fact: a notice never waits for the journal."""
        redact = self.review.trail.redactor.text
        self.review.trail.submit(notices.notice_event(hold.hold_id, hold.agent, hold.rule_id, kind, redact(where),
                                                      redact(problem) if problem else None))


# ---------------------------------------------------------------- on the pool's threads


class Reasons(logging.Handler):
    """What apprise logged about a failed send (its notify returns only False), per thread:
    its warning, and the socket error it logs at debug level (a read timeout, a refused connection)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.said: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING or text.startswith("Socket Exception"):
            self.said.setdefault(record.thread or 0, []).append(" ".join(text.split())[:300])

    def take(self) -> str | None:
        said = self.said.pop(threading.get_ident(), None)
        return " - ".join(said) if said else None


REASONS = Reasons()
_apprise_log = logging.getLogger("apprise")
_apprise_log.addHandler(REASONS)
if _apprise_log.level == logging.NOTSET:
    _apprise_log.setLevel(logging.DEBUG)  # its socket errors are debug records; the event log shows its own level only


def deliver(url: str, title: str, body: str, notify_type: str, timeout: float) -> str | None:
    """One notification to one target; None when it was accepted, else why not. The plugin's
    own notify, not Apprise.notify: that one may hand the send to threads of its own, and
    what apprise logs about a failure is told apart by the thread that sent it."""
    server = plugin(url)
    if server is None:
        return "not a URL apprise can send to"
    # apprise's plugins pass these to requests: no connect or read outlasts the option's timeout.
    server.socket_connect_timeout = server.socket_read_timeout = float(timeout)
    REASONS.take()
    # Plain text, said so: a target that can send plain text does (an email is text/plain, not
    # HTML an agent's URL could add tags to); one that cannot gets it escaped for its markup.
    from apprise import NotifyFormat

    ok = server.notify(body=body, title=title, notify_type=notify_type, body_format=NotifyFormat.TEXT)
    reason = REASONS.take()
    return None if ok else (reason or "apprise could not send it")


def plugin(url: str) -> Any:
    import apprise

    return apprise.Apprise.instantiate(url)


def scheme(url: str) -> str:
    return url.split("://", 1)[0][:40]


def private(url: str) -> str:
    """A target as logs may show it: apprise's own masked form (tokens and passwords hidden)."""
    server = plugin(url)
    return server.url(privacy=True) if server is not None else f"{scheme(url)}://..."


# ---------------------------------------------------------------- the console


