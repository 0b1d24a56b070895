"""The first-contact memory of a running proxy: core.contacts kept in `contacts.jsonl`.

The gate asks it before each judgement (is this agent's request the first to this host:port?)
and tells it how each flow ended; a destination is written down once a request to it was
forwarded. Kept only for a rule set that reads `first_contact:`, so other proxies write nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from mitmproxy import ctx

from shield_addon.actions import RequestView
from shield_addon.addons.trail import Trail
from shield_addon.core import contacts
from shield_addon.core.context import Context
from shield_addon.rules import RuleSet

log = logging.getLogger("shield")
MAX_PENDING = 10_000  # flows judged as first contacts and not yet ended


class ContactBook:
    def __init__(self, trail: Trail | None, cap: int = contacts.CAP) -> None:
        self.cap = cap
        self.memory = contacts.Memory(cap)
        self.path: Path | None = None
        self.pending: dict[str, contacts.Contact] = {}  # flow id -> the contact it would make
        if trail is not None:  # the file lives in the audit directory, opened with it
            trail.opened.append(lambda: self.open(Path(ctx.options.shield_dir).expanduser() / contacts.FILE))

    def open(self, path: Path) -> None:
        self.path, self.memory, self.pending = path, contacts.Memory(self.cap), {}
        # Forgetting errs on the strict side: every destination is a first contact again.
        lines = state_lines(path, "every destination is a first contact again")
        if lines is None:
            return
        bad = self.memory.load(lines)
        if bad:
            log.warning("shield: %d unreadable line(s) in %s skipped", bad, path)
        if contacts.needs_compaction(len(lines), self.memory):
            self.rewrite()

    def fill(self, flow_id: str, ruleset: RuleSet, view: RequestView, context: Context) -> Context:
        """The context with `first_contact` set, when the rules read it."""
        if "first_contact" not in ruleset.keys:
            return context
        contact = (context.agent, view.host, view.port)
        if self.memory.known(contact):
            return context
        if len(self.pending) >= MAX_PENDING:
            self.pending.pop(next(iter(self.pending)))  # a flow that never ended: it teaches nothing
        self.pending[flow_id] = contact
        return dataclasses.replace(context, first_contact=True)

    def settle(self, flow_id: str, forwarded: bool) -> None:
        """How a flow ended: only a forwarded one makes its destination known."""
        contact = self.pending.pop(flow_id, None)
        if contact is None or not forwarded or not self.memory.remember(contact):
            return
        if self.path is not None:
            try:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(contacts.line(contact, time.time()))
            except OSError as e:
                log.warning("shield: cannot write %s (known until the proxy stops): %s", self.path, e)

    def rewrite(self) -> None:
        """The file from memory, replaced atomically."""
        assert self.path is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        now = time.time()
        try:
            tmp.write_text("".join(contacts.line(c, now) for c in self.memory), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("shield: cannot compact %s: %s", self.path, e)


def state_lines(path: Path, forgotten: str) -> list[str] | None:
    """The lines of a memory file kept beside the journal; None (and a warning saying what is
    `forgotten`) when it cannot be read, None quietly when there is none yet."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return f.readlines()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("shield: cannot read %s, %s: %s", path, forgotten, e)
        return None
