"""The audit trail's addon: the audit writer, and writing events.

A flow's request event is durable before the flow goes on; when it cannot be written the flow
is refused (shield_fail=closed) or forwarded and marked NOT RECORDED (open). The journal, its
checkpoints and the DuckDB ingest run in the writer (shield_addon/writer/), a process of its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from shield_addon import record
from shield_addon.core.budget import Budget
from shield_addon.core.durations import parse_duration
from shield_addon.core.model import AuditDir
from shield_addon.fleet import fleet_url
from shield_addon.journal import JournalError
from shield_addon.writer import process
from shield_addon.writer.link import WriterLink

log = logging.getLogger("shield")


class Trail:
    def __init__(self) -> None:
        self.link: WriterLink | None = None
        self.journal_dir: Path | None = None
        self.redactor = record.Redactor(b"")
        self.redactions = record.Redactions()
        self.opened: list[Callable[[], None]] = []  # called once the journal is open
        self.closing: list[Callable[[], None]] = []  # called at shutdown, before it closes
        self.budget = Budget(0, time.monotonic)

    def load(self, loader: Any) -> None:
        loader.add_option("shield_dir", str, "./shield-audit", "Audit directory: journal, audit.duckdb.")
        loader.add_option("shield_body_limit", int, 65536, "Bytes of each body stored (digest and size always).")
        loader.add_option("shield_agent_budget", int, 64 << 20,
                          "Bytes of journal each agent may fill a minute; past it its requests are refused 429 "
                          "(0: no limit).")
        loader.add_option("shield_fail", str, "closed", "When the journal cannot be written: closed (refuse 503) or open.",
                          choices=["closed", "open"])
        loader.add_option("shield_durability", str, process.FSYNC,
                          "Before a flow goes on, its request event is: fsync'd (fsync), or written to the OS and "
                          "fsync'd within shield_sync_interval (write: survives a proxy crash, not a power loss).",
                          choices=[process.FSYNC, process.WRITE])
        # A string: mitmproxy's --set parses no float option (0.5 and 2s both work here).
        loader.add_option("shield_sync_interval", str, "1",
                          "With shield_durability=write: seconds between fsyncs (e.g. 0.5 or 2s).")
        loader.add_option("shield_writer", str, "process",
                          "Where the journal writer runs: a process of its own, or a thread of the proxy.",
                          choices=["process", "thread"])
        loader.add_option("shield_ingest_interval", int, 1, "Seconds between journal -> audit.duckdb batches.")
        loader.add_option("shield_checkpoint_events", int, 1000, "Sign the chain's head at least every N events.")
        loader.add_option("shield_checkpoint_seconds", int, 60, "... and every N seconds while events arrive.")

    def configure(self, updated: set[str]) -> None:
        if "confdir" in updated:
            self.redact_with(self.redactions)
        if "shield_agent_budget" in updated:
            if ctx.options.shield_agent_budget < 0:
                raise exceptions.OptionsError("shield: shield_agent_budget must be 0 (no limit) or more bytes")
            self.budget = Budget(ctx.options.shield_agent_budget, time.monotonic)
        if updated & WRITER_OPTIONS:
            self.open(AuditDir(Path(ctx.options.shield_dir).expanduser()))

    def redact_with(self, redactions: record.Redactions) -> None:
        """The rule files' redact: block joins the built-in detectors."""
        self.redactions = redactions
        self.redactor = record.Redactor(redaction_key(Path(ctx.options.confdir).expanduser()), redactions)

    def open(self, audit: AuditDir) -> None:
        self.close()
        o = ctx.options
        try:
            sync_interval = parse_duration(o.shield_sync_interval)
        except ValueError as e:
            raise exceptions.OptionsError(f"shield: shield_sync_interval: {e}") from None
        if sync_interval <= 0:
            raise exceptions.OptionsError("shield: shield_sync_interval must be more than 0 seconds")
        args = process.arguments(audit.root.absolute(), Path(o.confdir).expanduser().absolute(), o.shield_durability,
                                 sync_interval, o.shield_checkpoint_events, o.shield_checkpoint_seconds,
                                 o.shield_ingest_interval)
        env = None
        if url := fleet_url(o.shield_fleet):
            args += process.fleet_arguments(proxy_name(), listen_text())
            env = {process.FLEET_ENV: url}
        link = WriterLink(audit.journal, args, in_thread=o.shield_writer == "thread", env=env)
        try:
            link.start()
        except JournalError as e:
            raise exceptions.OptionsError(f"shield: {e}") from e
        self.link, self.journal_dir = link, audit.journal
        for fn in self.opened:
            fn()

    def close(self) -> None:
        if self.link:
            self.link.close()  # the writer signs the tail and brings audit.duckdb up to date
        self.link = None

    def running(self) -> None:
        if self.link:
            self.link.attach()
        # asyncio delivers SIGTERM as one byte through the loop's self-pipe, which a burst
        # of log lines can fill: the signal is then lost and the proxy runs on. A plain
        # handler is called by the interpreter itself.
        signal.signal(signal.SIGTERM, lambda *_: ctx.master.shutdown())

    def done(self) -> None:
        for fn in self.closing:
            fn()
        self.close()

    async def write(self, event: dict[str, Any], f: http.HTTPFlow | None = None) -> bool:
        """Durably journal an event; False means the flow must not go on (fail closed)."""
        try:
            if self.link is None:
                raise JournalError("the audit journal is not open")
            written = self.link.submit_async(event)
            self.charge(event)
            await written
            return True
        except Exception as e:  # noqa: BLE001 - not only JournalError: whatever keeps an event off disk refuses its flow
            if not isinstance(e, JournalError):
                log.exception("shield: could not send an event to the audit writer")
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
        try:
            if self.link is not None:
                self.link.submit(event)
                self.charge(event)
        except JournalError as e:
            log.error("shield: %s: event not recorded (%s)", e, event.get("stage"))

    def allows(self, agent: str) -> bool:
        """May this agent's next request be written, or has it spent its share of the trail?"""
        return self.budget.allows(budget_key(agent))

    def retry_after(self, agent: str) -> int:
        return self.budget.retry_after(budget_key(agent))

    def charge(self, event: dict[str, Any]) -> None:
        """The event just queued counts against its agent's budget, with the columns the
        journal line adds (chain, time, every column unset)."""
        if self.budget.on and event.get("agent") and self.link is not None:
            self.budget.charge(event["agent"], self.link.last_line + JOURNAL_LINE_EXTRA)


WRITER_OPTIONS = {"shield_dir", "shield_durability", "shield_sync_interval", "shield_writer", "shield_ingest_interval",
                  "shield_checkpoint_events", "shield_checkpoint_seconds", "shield_fleet", "shield_proxy_name"}


# A journal line is the event as sent to the writer plus seq, chain_id, prev_hash, row_hash, ts
# and every column the event leaves unset, as null (measured: 630 to 720 bytes a line).
JOURNAL_LINE_EXTRA = 700


def budget_key(agent: str) -> str:
    """The agent as its events record it (a name past the cap is cut and marked)."""
    return record.cut(agent, record.VALUE_LIMIT, agent)


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


def listen_text() -> str:
    return ", ".join(ctx.options.mode) + f" on {ctx.options.listen_host or '*'}:{ctx.options.listen_port or 'default'}"


def proxy_name() -> str:
    """The proxy's name in the fleet: the option, or this host and its listen port."""
    return ctx.options.shield_proxy_name or f"{socket.gethostname()}:{ctx.options.listen_port or 8080}"
