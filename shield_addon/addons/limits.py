"""The memory of `limit:` rules and the clock of `when:` rules for a running proxy:
core.limits kept in `limits.jsonl` in the audit directory.

The gate asks it for the State of each judgement (the moment, and how many requests each
limit counted) and hands the State back once judged: every (rule, key) a request counted for
is remembered and appended to the file, which is read back when the audit directory opens,
so a restart keeps the counts. A rule set without `limit:` or `when:` gets no State and
writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

from mitmproxy import ctx

from shield_addon.addons.contacts import state_lines
from shield_addon.addons.rulebook import Rulebook
from shield_addon.addons.trail import Trail
from shield_addon.core import limits
from shield_addon.core.context import Context
from shield_addon.rules import RuleSet, State

log = logging.getLogger("shield")
STATEFUL = frozenset({"limit", "when"})


class LimitBook:
    def __init__(self, trail: Trail | None, rulebook: Rulebook | None, cap: int = limits.CAP) -> None:
        self.cap, self.rulebook = cap, rulebook
        self.counts = limits.Counts(cap)
        self.path: Path | None = None
        if trail is not None:  # the file lives in the audit directory, opened with it
            trail.opened.append(lambda: self.open(Path(ctx.options.shield_dir).expanduser() / limits.FILE))

    def open(self, path: Path, now: float | None = None) -> None:
        self.path, self.counts = path, limits.Counts(self.cap)
        # Forgetting errs on the lenient side here: state_lines says so loudly.
        lines = state_lines(path, "every limit counts from zero again")
        if lines is None:
            return
        wanted = self.rulebook.ruleset.limits if self.rulebook is not None else {}
        bad = self.counts.load(lines, wanted, time.time() if now is None else now)
        if bad:
            log.warning("shield: %d unreadable line(s) in %s skipped", bad, path)
        if limits.needs_compaction(len(lines), self.counts):
            self.rewrite()

    def fill(self, ruleset: RuleSet, context: Context, now: float | None = None) -> Context:
        """The context with a State, when the rules read one."""
        if not ruleset.keys & STATEFUL:
            return context
        state = State(now=time.time() if now is None else now,
                      counts=self.counts.count if "limit" in ruleset.keys else None)
        return dataclasses.replace(context, state=state)

    def settle(self, context: Context) -> None:
        """After the judgement: what the request counted for is remembered, and written down."""
        state = context.state
        if state is None or not state.counted or state.now is None:
            return
        for (rule, key), keep in state.counted.items():
            self.counts.add(rule, key, state.now, keep)
        if self.path is None:
            return
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(limits.line(rule, key, state.now) for rule, key in state.counted))
        except OSError as e:
            log.warning("shield: cannot write %s (counted until the proxy stops): %s", self.path, e)

    def rewrite(self) -> None:
        """The file from memory, replaced atomically."""
        assert self.path is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text("".join(limits.line(rule, key, t) for (rule, key), t in self.counts), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("shield: cannot compact %s: %s", self.path, e)
