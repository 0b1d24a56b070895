"""The audit trail's addon: the journal, its ingester and checkpoints, and writing events.

A flow's request event is durable before the flow goes on; when it cannot be written the flow
is refused (shield_fail=closed) or forwarded and marked NOT RECORDED (open).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from shield_addon import checkpoints, record, store
from shield_addon.core.model import AuditDir
from shield_addon.journal import Journal, JournalError

log = logging.getLogger("shield")


class Trail:
    def __init__(self) -> None:
        self.journal: Journal | None = None
        self.ingester: store.Ingester | None = None
        self.checkpointer: checkpoints.Checkpointer | None = None
        self.redactor = record.Redactor(b"")
        self.redactions = record.Redactions()
        self.opened: list[Callable[[], None]] = []  # called once the journal is open
        self.closing: list[Callable[[], None]] = []  # called at shutdown, before it closes
        self._ticker: asyncio.Task | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("shield_dir", str, "./shield-audit", "Audit directory: journal, audit.duckdb.")
        loader.add_option("shield_body_limit", int, 65536, "Bytes of each body stored (digest and size always).")
        loader.add_option("shield_fail", str, "closed", "When the journal cannot be written: closed (refuse 503) or open.",
                          choices=["closed", "open"])
        loader.add_option("shield_ingest_interval", int, 1, "Seconds between journal -> audit.duckdb batches.")
        loader.add_option("shield_checkpoint_events", int, 1000, "Sign the chain's head at least every N events.")
        loader.add_option("shield_checkpoint_seconds", int, 60, "... and every N seconds while events arrive.")

    def configure(self, updated: set[str]) -> None:
        if "confdir" in updated:
            self.redact_with(self.redactions)
        if "shield_dir" in updated:
            self.open(AuditDir(Path(ctx.options.shield_dir).expanduser()))

    def redact_with(self, redactions: record.Redactions) -> None:
        """The rule files' redact: block joins the built-in detectors."""
        self.redactions = redactions
        self.redactor = record.Redactor(redaction_key(Path(ctx.options.confdir).expanduser()), redactions)

    def open(self, audit: AuditDir) -> None:
        self.close()
        confdir = Path(ctx.options.confdir).expanduser()
        try:
            key = checkpoints.load_or_create_key(confdir)
            journal = Journal(audit.journal)
            journal.open()
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"shield: cannot open the audit trail in {audit.root} "
                                          f"(signing key in {confdir}): {e}") from e
        self.checkpointer = checkpoints.Checkpointer(
            audit.checkpoints, key, journal.chain_id,
            ctx.options.shield_checkpoint_events, ctx.options.shield_checkpoint_seconds)
        journal.on_commit = self.checkpointer.on_commit
        self.journal = journal
        self.ingester = store.Ingester(audit.root, lambda: journal.seq, ctx.options.shield_ingest_interval)
        self.ingester.start()
        for fn in self.opened:
            fn()

    def close(self) -> None:
        if self.ingester:
            self.ingester.stop(final=False)
        if self.journal:
            self.journal.close()
            if self.checkpointer:
                self.checkpointer.checkpoint(*self.journal.tip)  # a clean shutdown signs the tail
        if self.ingester:
            self.ingester.once()
        self.journal = self.ingester = self.checkpointer = None

    def running(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self.tick())
        # asyncio delivers SIGTERM as one byte through the loop's self-pipe, which a burst
        # of log lines can fill: the signal is then lost and the proxy runs on. A plain
        # handler is called by the interpreter itself.
        signal.signal(signal.SIGTERM, lambda *_: ctx.master.shutdown())

    def done(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        for fn in self.closing:
            fn()
        self.close()

    async def tick(self) -> None:
        """Once a second: sign a head that waited long enough."""
        while True:
            await asyncio.sleep(1)
            if self.checkpointer and self.journal:
                await asyncio.get_running_loop().run_in_executor(None, self.checkpointer.tick, *self.journal.tip)

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
