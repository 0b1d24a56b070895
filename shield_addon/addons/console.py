"""What the reviewer sees on mitmproxy's console: markers, key binds, a hold's one-line story."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from mitmproxy import ctx, hooks
from mitmproxy import flow as mflow

from shield_addon import actions, record, review, rules
from shield_addon.flows import FlowState

log = logging.getLogger("shield")

MARKERS = {
    "held": ":hourglass:", "approved": ":white_check_mark:", "denied": ":no_entry:", "expired": ":alarm_clock:",
    "blocked": ":no_entry:", "killed": ":x:", "timed_out": ":alarm_clock:", "abandoned": ":ghost:",
}
DECIDED = "shield_decided"  # a flow's metadata: "approved by alice", once its hold is decided
KEYS = (  # (key, command...): keys that are free in mitmproxy 11 and 12's flow list
    ("y", "shield.approve", "@focus"),
    ("Y", "shield.approve", "@all"),
    ("N", "console.command", "shield.deny", "@focus", ""),
    ("p", "shield.pending"),
)


def bind_keys() -> None:
    """The reviewer's keys, on a console (mitmdump has none)."""
    if "console.key.bind" in ctx.master.commands.commands:
        for key, *cmd in KEYS:
            ctx.master.commands.call("console.key.bind", ["flowlist", "flowview"], key, *cmd)


def too_late(flows: Sequence[mflow.Flow], decision: str) -> None:
    """Say so when a key decides a hold that another decision (here or on another console) ended."""
    for f in flows:
        if done := f.metadata.get(DECIDED):
            log.warning("shield: flow %s was already %s: this %s is ignored", f.id[:8], done, decision)


def ring() -> None:
    """The terminal bell on a new hold, on a console only (shield_bell): BEL moves no cursor, so
    urwid's screen is untouched; mitmdump and mitmweb have no terminal screen and never ring."""
    if "shield_bell" in ctx.options and not ctx.options.shield_bell:
        return
    screen = getattr(ctx.master, "ui", None)
    if screen is not None and hasattr(screen, "write") and hasattr(screen, "flush"):
        try:
            screen.write("\a")
            screen.flush()
        except (OSError, ValueError):  # a closed terminal rings nothing, and stops nothing
            pass


def redraw(f: mflow.Flow) -> None:
    ctx.master.addons.trigger(hooks.UpdateHook([f]))


def note(hold: review.Hold, text: str, marker: str | None = None) -> None:
    """Keep the console's line for a retry-mode hold up to date."""
    if hold.flow is not None:
        hold.flow.comment = record.safe_text(f"{text} | {hold.flow.comment}")
        if marker:
            hold.flow.marked = marker
        redraw(hold.flow)


def hold_comment(state: FlowState, rule: rules.Rule | None, timeout: float | None = None,
                 on_timeout: str = "deny", credential: str | None = None) -> str:
    """What the reviewer reads first, as a sentence: 'agent deploy-bot wants kubernetes
    delete deployments/web in prod | rule k8s-delete-in-prod (critical): ... | deny at 14:05:09';
    `credential`: who the request acts as at its server (credentials.describe)."""
    a = state.verdict.action if state.verdict else None
    rule_text = f"rule {rule.id} ({rule.severity})" + (f": {rule.message}" if rule.message else "") if rule \
        else "the default verdict"
    deadline = time.strftime("%H:%M:%S", time.localtime(time.time() + timeout)) if timeout else None
    who = f"agent {state.agent}" + (f" as {credential}" if credential else "")
    parts = [f"{who} wants {describe(a)}" if a else who, rule_text,
             f"{on_timeout} at {deadline} unless decided" if deadline else "waits for a decision"]
    if rule and rule.hold.approvals > 1:
        parts.append(f"needs {rule.hold.approvals} reviewers' approvals")
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
