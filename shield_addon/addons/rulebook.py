"""The rules' addon: loads the rule files, reloads them when they change, journals each load."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import ctx, exceptions

from shield_addon import paths, rules
from shield_addon.actions import aws_catalogue
from shield_addon.addons.trail import Trail

log = logging.getLogger("shield")


class Rulebook:
    def __init__(self, trail: Trail) -> None:
        self.trail = trail
        self.ruleset = rules.RuleSet()
        self.mtimes: dict[str, float] = {}
        self._watcher: asyncio.Task | None = None
        trail.opened.append(lambda: self.journal_load(ctx.options.shield_rules or "bundled"))

    def load(self, loader: Any) -> None:
        loader.add_option("shield_rules", str, "", "Rule file or folder (default: the bundled rules).")
        loader.add_option("shield_mode", str, "enforce", "enforce, or shadow (record verdicts, forward everything).",
                          choices=["enforce", "shadow"])

    def configure(self, updated: set[str]) -> None:
        if "shield_rules" in updated:
            self.reload(initial=True)

    def running(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self.watch())
        # The AWS catalogue takes ~100 ms to load: at start, not in the first AWS request's path.
        aws_catalogue.catalogue()

    def done(self) -> None:
        if self._watcher:
            self._watcher.cancel()

    def source(self) -> str:
        return ctx.options.shield_rules or str(paths.bundled_rules())

    def reload(self, initial: bool = False) -> None:
        source = self.source()
        try:
            ruleset = rules.load_path(source)
        except rules.RuleError as e:
            if initial:
                raise exceptions.OptionsError(f"shield: {e}") from e
            log.error("shield: rule change refused, keeping the old rules: %s", e)
            self.trail.submit({"stage": "ruleset", "path": source, "ruleset_sha256": self.ruleset.sha256, "error": str(e)})
            return
        self.ruleset = ruleset
        self.trail.redact_with(ruleset.redactions)
        self.mtimes = rule_mtimes(source)
        log.info("shield: %d rules from %s (sha256 %s)", len(ruleset.rules), source, ruleset.sha256[:12])
        self.journal_load(source)

    def journal_load(self, path: str) -> None:
        self.trail.submit({"stage": "ruleset", "path": path, "ruleset_sha256": self.ruleset.sha256})

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(1)
            if rule_mtimes(self.source()) != self.mtimes:
                self.reload()


def rule_mtimes(source: str) -> dict[str, float]:
    """When each rule file last changed: the same files load_path reads."""
    try:
        files = rules.rule_files(source)
    except rules.RuleError:
        return {source: -1}  # gone or empty: a change, which the reload reports
    out = {}
    for f in files:
        try:
            out[str(f)] = f.stat().st_mtime
        except OSError:
            out[str(f)] = -1
    return out
