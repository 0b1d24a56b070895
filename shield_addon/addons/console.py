"""What the reviewer sees on mitmproxy's console: markers, key binds, a hold's one-line story."""

from __future__ import annotations

import time

from mitmproxy import ctx, hooks
from mitmproxy import flow as mflow

from shield_addon import actions, record, review, rules
from shield_addon.flows import FlowState

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
