"""The mitmproxy addon: options, hooks and commands. Thin: the work is in plain functions.

Load it with `mitmproxy -s <this file>` (`shield run` does that for you).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import ipaddress
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from mitmproxy import command, connection, ctx, exceptions, hooks, http
from mitmproxy import flow as mflow

from shield_addon import actions, checkpoints, paths, record, retry, rules, store
from shield_addon.addons.identity import Identity
from shield_addon.flows import (
    FlowState,
    Tap,
    action_columns,
    agent_of,
    base_columns,
    forget_password,
    forwarded_request,
    message_columns,
    refuse,
    request_columns,
    response_columns,
    should_stream,
    view_of,
)
from shield_addon.holds import Hold, Holds
from shield_addon.journal import Journal, JournalError, read_rows

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


@functools.cache
def default_reviewer() -> str:
    # Cached: without USER/LOGNAME (services, containers) getuser() reads /etc/passwd.
    return os.environ.get("SUDO_USER") or getpass.getuser()


class Shield:
    def __init__(self) -> None:
        self.ruleset = rules.RuleSet()
        self.rules_mtimes: dict[str, float] = {}
        self.journal: Journal | None = None
        self.ingester: store.Ingester | None = None
        self.checkpointer: checkpoints.Checkpointer | None = None
        self.redactor = record.Redactor(b"")
        self.holds = Holds()
        self.state: dict[str, FlowState] = {}
        self.taps: dict[str, Tap] = {}
        self.book = retry.RetryBook()
        self.retry_flows: dict[str, retry.RetryHold] = {}
        self._watcher: asyncio.Task | None = None
        self._listen: list[tuple[str, int]] | None = None

    # ------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        loader.add_option("shield_rules", str, "", "Rule file or folder (default: the bundled rules).")
        loader.add_option("shield_dir", str, "./shield-audit", "Audit directory: journal, audit.duckdb.")
        loader.add_option("shield_mode", str, "enforce", "enforce, or shadow (record verdicts, forward everything).",
                          choices=["enforce", "shadow"])
        loader.add_option("shield_hold_timeout", int, 300, "Seconds a held flow waits for a reviewer (0: forever).")
        loader.add_option("shield_hold_mode", str, "wait", "wait (the agent's request stays open) or retry (409 at once; "
                          "an approval lets the same request through once).", choices=["wait", "retry"])
        loader.add_option("shield_approval_ttl", int, 900, "Retry mode: seconds an approval waits for the agent's retry.")
        loader.add_option("shield_reviewer", str, "", "Reviewer name recorded with decisions (default: OS user).")
        loader.add_option("shield_body_limit", int, 65536, "Bytes of each body stored (digest and size always).")
        loader.add_option("shield_fail", str, "closed", "When the journal cannot be written: closed (refuse 503) or open.",
                          choices=["closed", "open"])
        loader.add_option("shield_ingest_interval", int, 1, "Seconds between journal -> audit.duckdb batches.")
        loader.add_option("shield_checkpoint_events", int, 1000, "Sign the chain's head at least every N events.")
        loader.add_option("shield_checkpoint_seconds", int, 60, "... and every N seconds while events arrive.")

    def configure(self, updated: set[str]) -> None:
        if updated & {"listen_host", "listen_port", "mode", "web_host", "web_port"}:
            self._listen = None
        if "stream_large_bodies" in updated and ctx.options.stream_large_bodies:
            # A streamed request reaches upstream before the request hook: no gate could hold it.
            raise exceptions.OptionsError("shield: stream_large_bodies would send requests before the rules run; "
                                          "use body_size_limit instead")
        if "shield_rules" in updated:
            self.load_rules(initial=True)
        if "confdir" in updated or "shield_rules" in updated:
            self.redactor = record.Redactor(redaction_key(Path(ctx.options.confdir).expanduser()), self.ruleset.redactions)
        if "shield_dir" in updated:
            self.open_store(Path(ctx.options.shield_dir).expanduser())

    def load_rules(self, initial: bool = False) -> None:
        source = ctx.options.shield_rules or str(paths.bundled_rules())
        try:
            ruleset = rules.load_path(source)
        except rules.RuleError as e:
            if initial:
                raise exceptions.OptionsError(f"shield: {e}") from e
            log.error("shield: rule change refused, keeping the old rules: %s", e)
            self.submit({"stage": "ruleset", "path": source, "ruleset_sha256": self.ruleset.sha256, "error": str(e)})
            return
        self.ruleset = ruleset
        self.redactor = record.Redactor(self.redactor.key, ruleset.redactions)
        self.rules_mtimes = rule_mtimes(source)
        log.info("shield: %d rules from %s (sha256 %s)", len(ruleset.rules), source, ruleset.sha256[:12])
        self.submit({"stage": "ruleset", "path": source, "ruleset_sha256": ruleset.sha256})

    def open_store(self, audit_dir: Path) -> None:
        self.close_store()
        confdir = Path(ctx.options.confdir).expanduser()
        try:
            key = checkpoints.load_or_create_key(confdir)
            journal = Journal(audit_dir / store.JOURNAL_DIR)
            journal.open()
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"shield: cannot open the audit trail in {audit_dir} "
                                          f"(signing key in {confdir}): {e}") from e
        self.checkpointer = checkpoints.Checkpointer(
            audit_dir / checkpoints.LOG_FILE, key, journal.chain_id,
            ctx.options.shield_checkpoint_events, ctx.options.shield_checkpoint_seconds)
        journal.on_commit = self.checkpointer.on_commit
        self.journal = journal
        self.book = rebuild_retry_holds(journal.dir, float(ctx.options.shield_approval_ttl),
                                        ctx.options.shield_hold_timeout or None)
        self.ingester = store.Ingester(audit_dir, lambda: journal.seq, ctx.options.shield_ingest_interval)
        self.ingester.start()
        self.submit({"stage": "ruleset", "path": ctx.options.shield_rules or "bundled",
                     "ruleset_sha256": self.ruleset.sha256})

    def close_store(self) -> None:
        if self.ingester:
            self.ingester.stop(final=False)
        if self.journal:
            self.journal.close()
            if self.checkpointer:
                self.checkpointer.checkpoint(*self.journal.tip)  # a clean shutdown signs the tail
        if self.ingester:
            self.ingester.once()
        self.journal = self.ingester = self.checkpointer = None

    # ------------------------------------------------------------ lifecycle

    def running(self) -> None:
        if "console.key.bind" in ctx.master.commands.commands:
            for key, *cmd in KEYS:
                ctx.master.commands.call("console.key.bind", ["flowlist", "flowview"], key, *cmd)
        self._watcher = asyncio.get_running_loop().create_task(self.tick())
        # asyncio delivers SIGTERM as one byte through the loop's self-pipe, which a burst
        # of log lines can fill: the signal is then lost and the proxy runs on. A plain
        # handler is called by the interpreter itself.
        signal.signal(signal.SIGTERM, lambda *_: ctx.master.shutdown())

    def done(self) -> None:
        if self._watcher:
            self._watcher.cancel()
        for hold in list(self.holds.pending.values()):
            if self.holds.decide(hold, "abandoned", None, "shutdown", "the proxy shut down while held"):
                self.submit(self.decision_event(hold))
        self.close_store()

    async def tick(self) -> None:
        """Once a second: reload changed rules, sign a head that waited long enough."""
        while True:
            await asyncio.sleep(1)
            source = ctx.options.shield_rules or str(paths.bundled_rules())
            if rule_mtimes(source) != self.rules_mtimes:
                self.load_rules()
            for hold, change in self.book.tick(time.time()):
                self.submit(self.retry_decision_event(hold, change, "timeout"))
                self.note(hold, "approval expired unused" if change == retry.EXPIRED else f"{change} (no decision in time)",
                          MARKERS.get(change))
            if self.checkpointer and self.journal:
                await asyncio.get_running_loop().run_in_executor(None, self.checkpointer.tick, *self.journal.tip)

    # ------------------------------------------------------------ hooks

    def http_connect(self, f: http.HTTPFlow) -> None:
        forget_password(f)

    def requestheaders(self, f: http.HTTPFlow) -> None:
        forget_password(f)

    async def request(self, f: http.HTTPFlow) -> None:
        await self.gate(f)

    def responseheaders(self, f: http.HTTPFlow) -> None:
        if f.response is not None:
            f.response.headers["x-shield-flow-id"] = f.id  # lower case: HTTP/2 requires it
            if should_stream(f.response) and not f.response.stream:
                f.response.stream = self.taps[f.id] = Tap(ctx.options.shield_body_limit)

    def response(self, f: http.HTTPFlow) -> None:
        state = self.state.pop(f.id, None) or self.untracked(f)
        outcome = "refused" if state.refused else "forwarded"
        self.submit({**state.base, "stage": "response", "outcome": outcome,
                     **response_columns(f, self.redactor, ctx.options.shield_body_limit, self.taps.pop(f.id, None))})

    def error(self, f: http.HTTPFlow) -> None:
        tap = self.taps.pop(f.id, None)
        state = self.state.pop(f.id, None) or self.untracked(f)
        if tap is not None and f.response is not None:
            # A streamed response the agent stopped reading (an SDK hangs up at `[DONE]`):
            # it got what the tap saw; record that, with why the stream ended early.
            self.submit({**state.base, "stage": "response", "outcome": "forwarded", "error": f.error.msg if f.error else None,
                         **response_columns(f, self.redactor, ctx.options.shield_body_limit, tap)})
            return
        refused = state.refused or state.decided.get("decision") in ("killed", "abandoned", "denied", "blocked")
        self.submit({**state.base, "stage": "error", "outcome": "refused" if refused else "error",
                     "error": f.error.msg if f.error else None,
                     "duration_ms": round((f.error.timestamp - f.request.timestamp_start) * 1000, 3) if f.error else None})

    def websocket_message(self, f: http.HTTPFlow) -> None:
        """Each WebSocket message after the (rule-checked) handshake: direction, size, digest."""
        if f.websocket is None or not f.websocket.messages:
            return
        agent = agent_of(f)
        self.submit({**base_columns(f, agent, self.redactor), "stage": "message",
                     **message_columns(f.websocket.messages[-1], self.redactor, ctx.options.shield_body_limit)})

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

    # ------------------------------------------------------------ the gate

    async def gate(self, f: http.HTTPFlow) -> None:
        agent = agent_of(f)
        state = FlowState(agent, base_columns(f, agent, self.redactor))
        if f.is_replay == "request":
            # A reviewer's replay sends the same mitmproxy flow again: in the trail it is a new
            # attempt with an id of its own, so every flow_id has one request event, its first.
            state.base["flow_id"] = f"{f.id}-replay-{secrets.token_hex(4)}"
        self.state[f.id] = state
        if f.response is not None:
            # Answered before the rules (proxyauth's 407): record the attempt, hold nothing.
            state.refused = True
            self.submit({**state.base, "stage": "request", "decision": "blocked", "verdict": "deny",
                         "error": f"answered by the proxy before the rules: HTTP {f.response.status_code}",
                         **request_columns(f.request, self.redactor, ctx.options.shield_body_limit)})
            return
        mode = ctx.options.shield_mode
        try:
            view = view_of(f)
            action = actions.parse(view, self.ruleset.services)
            verdict = rules.evaluate(self.ruleset, rules.Subject(view, action, f, agent))
            if targets_proxy(view.host, view.port, self.listen_addrs()):
                verdict = rules.Verdict("deny", PROXY_ITSELF, (PROXY_ITSELF.id,), action, "deny", PROXY_ITSELF)
            elif any(ch in v for _, v in f.request.headers.items(multi=True) for ch in "\r\n\x00"):
                # RFC 9110 §5.5: a CR inside a value can end the line for the upstream,
                # smuggling a header past the rules. Refuse it.
                verdict = rules.Verdict("deny", MALFORMED, (MALFORMED.id,), action, "deny", MALFORMED)
        except Exception as e:  # noqa: BLE001 - a bug of ours must refuse the flow, not crash the proxy
            log.exception("shield: could not evaluate %s", f.request.url)
            state.refused = True
            self.submit({**state.base, "stage": "error", "outcome": "refused", "error": f"shield: {e!r}"})
            refuse(f, 403, "blocked", "request refused: the guard could not evaluate it")
            return
        state.action, state.verdict = action, verdict
        enforced = verdict.enforced if mode == "enforce" else "allow"
        decision = {"allow": "allowed", "deny": "blocked", "hold": None}[enforced]
        event = {**state.base, "stage": "request", "decision": decision,
                 **request_columns(f.request, self.redactor, ctx.options.shield_body_limit, view.body),
                 **action_columns(action, verdict, mode, self.ruleset.sha256)}
        if enforced == "hold" and self.policy(verdict.enforced_rule)[0].mode == "retry":
            await self.retry_gate(f, state, event)
            return
        if not await self.write(event, f):
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: request refused, nothing was forwarded")
            return
        if enforced == "deny":
            state.refused, state.decided = True, {"decision": "blocked"}
            refuse(f, 403, "blocked", "request blocked by rule", verdict.enforced_rule)
            f.marked = MARKERS["blocked"]
        elif enforced == "hold":
            await self.hold(f, state)

    def policy(self, rule: rules.Rule | None) -> tuple[rules.HoldPolicy, float | None]:
        """The rule's hold policy with the proxy's defaults filled in, and its timeout."""
        p = rule.hold if rule else rules.HoldPolicy()
        p = dataclasses.replace(p, mode=p.mode or ctx.options.shield_hold_mode,
                                approval_ttl=p.approval_ttl or float(ctx.options.shield_approval_ttl))
        return p, p.timeout if p.timeout is not None else (ctx.options.shield_hold_timeout or None)

    async def hold(self, f: http.HTTPFlow, state: FlowState) -> None:
        rule = state.verdict.enforced_rule if state.verdict else None
        policy, timeout = self.policy(rule)
        hold = self.holds.start(f, state, timeout, policy.on_timeout)
        f.marked = MARKERS["held"]
        f.comment = hold_comment(state, rule, timeout, policy.on_timeout)
        ctx.master.addons.trigger(hooks.UpdateHook([f]))  # redraw the console now
        await self.holds.wait(hold, self.reviewer())
        await self.finish(hold)

    async def retry_gate(self, f: http.HTTPFlow, state: FlowState, event: dict[str, Any]) -> None:
        """Retry mode: answer at once, bind a later approval to this exact request."""
        rule = state.verdict.enforced_rule if state.verdict else None
        policy, timeout = self.policy(rule)
        key = retry.hold_key(self.redactor.key, state.agent, f.request.method, f.request.url, event["request_sha256"])
        ans = self.book.arrive(key, f.id, state.agent, time.time(), timeout, policy.on_timeout,
                               policy.approval_ttl or 900.0, rule.id if rule else None)
        if ans.expired is not None:
            self.submit(self.retry_decision_event(ans.expired, "expired", "expiry"))
        hold = ans.hold
        decision = {"forward": "approved", "refuse": hold.decision, "wait": None}[ans.kind]
        event.update(hold_id=hold.hold_id, hold_key=key, decision=decision)
        state.base["hold_id"] = hold.hold_id  # the response of this attempt belongs to the hold's story
        if not await self.write(event, f):
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
        refuse(f, 409, "pending", "held for a reviewer: retry the same request later", rule,
               extra={"hold_id": hold.hold_id, "retry_after": policy.retry_after})
        f.response.headers["retry-after"] = str(policy.retry_after)
        if hold.flow is None or ans.new:
            hold.flow = f
            self.retry_flows[f.id] = hold
            f.marked = MARKERS["held"]
        hold.flow.comment = f"{hold_comment(state, rule, timeout, policy.on_timeout)} | retry mode, " \
                            f"{hold.attempts} attempt(s): approve with y, deny with N"
        ctx.master.addons.trigger(hooks.UpdateHook([hold.flow]))

    def retry_decide(self, hold: retry.RetryHold, decision: str, via: str, comment: str | None = None) -> bool:
        if not self.book.decide(hold, decision, self.reviewer(), time.time(), comment):
            return False
        self.submit(self.retry_decision_event(hold, decision, via))
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

    def retry_decision_event(self, hold: retry.RetryHold, decision: str, via: str) -> dict[str, Any]:
        f = hold.flow
        base = base_columns(f, hold.agent, self.redactor) if f is not None else {"agent": hold.agent}
        return {**base, "flow_id": hold.hold_id, "stage": "decision", "decision": decision, "hold_id": hold.hold_id,
                "hold_key": hold.key, "reviewer": hold.reviewer if decision in ("approved", "denied") else None,
                "decided_at": record.utc_text(hold.decided_at or time.time()), "reviewer_comment": hold.comment,
                "rule_id": hold.rule_id, "verdict": "hold", "mode": ctx.options.shield_mode,
                "ruleset_sha256": self.ruleset.sha256, "operation": via,
                "edited": False}

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
        if not await self.write(event, f) and forward:
            state.refused = True
            refuse(f, 503, "refused", "audit journal unavailable: approved request not forwarded")
        f.marked = MARKERS.get(hold.decision or "", ":default:")
        why = f": {record.safe_text(hold.comment)}" if hold.comment else ""
        f.comment = f"{hold.decision} by {hold.reviewer or hold.via}{why} | {f.comment}"
        if f.intercepted:
            f.resume()
        ctx.master.addons.trigger(hooks.UpdateHook([f]))

    def decision_event(self, hold: Hold) -> dict[str, Any]:
        state, f = hold.state, hold.flow
        verdict = state.verdict
        edited = hold.decision == "approved" and self.holds.edited(hold)
        return {
            **state.base, "stage": "decision", "decision": hold.decision, "reviewer": hold.reviewer,
            "decided_at": record.utc_text(hold.decided_at) if hold.decided_at else None,
            "reviewer_comment": hold.comment, "edited": edited,
            "forwarded_request": forwarded_request(f.request, self.redactor, ctx.options.shield_body_limit) if edited else None,
            "rule_id": verdict.rule.id if verdict and verdict.rule else None,
            "verdict": verdict.verdict if verdict else None, "mode": ctx.options.shield_mode,
            "ruleset_sha256": self.ruleset.sha256, "operation": hold.via,
        }

    # ------------------------------------------------------------ helpers

    def held(self, flows: Sequence[mflow.Flow]) -> list[Hold]:
        return [h for f in flows if (h := self.holds.pending.get(f.id))]

    def retry_held(self, flows: Sequence[mflow.Flow]) -> list[retry.RetryHold]:
        return [h for f in flows if (h := self.retry_flows.get(f.id)) and h.status == retry.PENDING]

    def listen_addrs(self) -> list[tuple[str, int]]:
        """Where the proxy and its controls listen: its own ports and mitmweb's. Asked
        once per request, so kept until the listen options change."""
        if self._listen is None:
            self._listen = self.find_listen_addrs() or None
        return self._listen or []

    def find_listen_addrs(self) -> list[tuple[str, int]]:
        addrs = []
        server = ctx.master.addons.get("proxyserver")
        try:
            addrs = [(a[0], a[1]) for a in server.listen_addrs()] if server else []
        except Exception:  # noqa: BLE001 - not listening (tests, shutdown): nothing to protect
            pass
        if "web_port" in ctx.options:  # mitmweb: through it an agent could approve its own holds
            addrs.append((ctx.options.web_host or "127.0.0.1", ctx.options.web_port))
        return addrs

    def reviewer(self) -> str:
        return ctx.options.shield_reviewer or default_reviewer()

    def untracked(self, f: http.HTTPFlow) -> FlowState:
        """A flow that never reached the request hook (too large, malformed, TLS failure)."""
        agent = agent_of(f)
        return FlowState(agent, base_columns(f, agent, self.redactor))

    async def write(self, event: dict[str, Any], f: http.HTTPFlow | None = None) -> bool:
        """Durably journal an event; False means the flow must not go on (fail closed)."""
        try:
            if self.journal is None:
                raise JournalError("the audit journal is not open")
            await self.journal.submit_async(event)
            return True
        except JournalError as e:
            if ctx.options.shield_fail == "open":
                log.error("shield: %s: flow %s forwarded NOT RECORDED (shield_fail=open)", e, event.get("flow_id"))
                if f is not None:
                    f.marked, f.comment = ":warning:", f"NOT RECORDED: {e}"
                return True
            log.error("shield: %s: flow refused (503)", e)
            if f is not None:
                f.comment = f"refused: {e}"
            return False

    def submit(self, event: dict[str, Any]) -> None:
        """Journal an event without waiting (it follows a request event already on disk)."""
        if self.journal is not None:
            self.journal.submit(event).add_done_callback(_log_failure)


def _log_failure(fut: Any) -> None:
    if fut.exception():
        log.error("shield: %s", fut.exception())


# Requests through the proxy to the proxy itself would reach its controls (and loop).
PROXY_ITSELF = rules.Rule(id="builtin:proxy-itself", action="deny", severity="critical",
                          message="Agents may not send requests to the proxy or its web UI")


MALFORMED = rules.Rule(id="builtin:malformed-header", action="deny", severity="high",
                       message="A header value contains CR, LF or NUL")


def targets_proxy(host: str, port: int, listen: list[tuple[str, int]]) -> bool:
    """Is host:port one of the addresses the proxy listens on?"""
    for lhost, lport in listen:
        if port != lport:
            continue
        if host == lhost or host in ("localhost", socket.gethostname().lower()):
            return True
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            continue
        if ip.is_loopback or ip.is_unspecified or ipaddress.ip_address(lhost or "0.0.0.0").is_unspecified and _is_local(ip):
            return True
    return False


def _is_local(ip: object) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if getattr(ip, "version", 4) == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((str(ip), 0))  # binds only to an address of this machine
        return True
    except OSError:
        return False


def rebuild_retry_holds(journal_dir: Path, ttl: float, timeout: float | None) -> retry.RetryBook:
    """Retry-mode holds survive a restart: replay their events from the journal."""
    from datetime import datetime

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


def rule_mtimes(source: str) -> dict[str, float]:
    p = Path(source)
    files = [*p.glob("*.yaml"), *p.glob("*.yml")] if p.is_dir() else [p]
    out = {}
    for f in files:
        try:
            out[str(f)] = f.stat().st_mtime
        except OSError:
            out[str(f)] = -1
    return out


def redaction_key(confdir: Path) -> bytes:
    """The key of the redaction fingerprints lives in the confdir, never in the audit dir."""
    path = confdir / "shield-redaction.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    confdir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


addons = [Shield(), Identity()]
