"""What a notification about a hold says, and who it goes to. Pure: no mitmproxy, no I/O.

A notice is built only from what the trail records of the hold, already redacted (the
stored URL, the agent's name, the rule), and from the words the console uses for the
action: never from the request's raw headers or body. The addon passes the finished text
through the trail's redactor once more before it leaves the proxy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from shield_addon.core.model import Outcome, Stage
from shield_addon.record.text import safe_text

HOLD, ESCALATION, DECISION = "hold", "escalation", "decision"
URL_SHOWN = 300  # characters of the request's URL a notice carries: a chat line, not a record

# One entry of shield_notify: `scheme://...` (told of every hold) or `name=scheme://...`
# (told only when a rule names it).
_NAMED = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*)=([A-Za-z][A-Za-z0-9+.-]*://.*)", re.S)
# Entries are split at commas or spaces only where the next entry begins (a URL or name=URL):
# an apprise URL may itself carry commas (mailto://...?to=a@x,b@y).
_SPLIT = re.compile(r"[\s,]+(?=(?:[A-Za-z0-9][A-Za-z0-9_.-]*=)?[A-Za-z][A-Za-z0-9+.-]*://)")


@dataclass(frozen=True)
class Targets:
    """The proxy's notification targets: told of every hold, and named ones for rules."""

    every: tuple[str, ...] = ()
    named: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def resolve(self, wanted: Iterable[str]) -> tuple[list[str], list[str]]:
        """A rule's `notify:` items as URLs (a name may stand for several), and the unknown names."""
        urls: list[str] = []
        unknown: list[str] = []
        for item in wanted:
            if "://" in item:
                urls.append(item)
            elif item in self.named:
                urls += self.named[item]
            else:
                unknown.append(item)
        return urls, unknown


def parse_targets(values: Iterable[str]) -> Targets:
    """shield_notify's entries (each may hold several, comma- or space-separated); ValueError
    for an entry that is neither `scheme://...` nor `name=scheme://...`."""
    every: list[str] = []
    named: dict[str, list[str]] = {}
    for value in values:
        for entry in _SPLIT.split(value.strip()):
            if not entry:
                continue
            if m := _NAMED.fullmatch(entry):
                named.setdefault(m.group(1), []).append(m.group(2))
            elif "://" in entry and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", entry):
                every.append(entry)
            else:
                raise ValueError(f"{entry.split('://')[0][:40]!r}... is not an apprise URL (scheme://...) "
                                 "or name=URL")
    return Targets(tuple(dict.fromkeys(every)), {k: tuple(dict.fromkeys(v)) for k, v in named.items()})


def unique(urls: Iterable[str]) -> list[str]:
    """Each target once, in order: a rule naming a default target does not send twice."""
    return list(dict.fromkeys(urls))


@dataclass(frozen=True)
class HoldFacts:
    """What a notice says about one hold: recorded, redacted fields only."""

    proxy: str
    hold_id: str
    agent: str
    method: str
    url: str  # as the trail stores it (secrets redacted)
    action: str  # the console's words for it ("kubernetes delete deployments/web in prod"); "" if none
    rule_id: str | None
    severity: str | None
    rule_message: str
    created: float
    deadline: float | None
    on_timeout: str
    mode: str  # wait | retry
    fleet: bool  # decided through the fleet's queue (`shield review --fleet`)
    needed: int = 1  # distinct reviewers who must approve (the two-person rule: 2)


@dataclass(frozen=True)
class Notice:
    kind: str  # hold | escalation | decision
    title: str
    body: str


def when(t: float) -> str:
    """A time anyone reading from another timezone can place."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def span(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def how_to_decide(f: HoldFacts) -> str:
    console = f"on the console of proxy {f.proxy}: y approves, N denies (mitmproxy's X kills)"
    if f.fleet:
        return f"with `shield review --fleet` (any reviewer of the fleet), or {console}"
    return console


def deadline_text(f: HoldFacts, now: float) -> str:
    if f.deadline is None:
        return "none: it waits until someone decides"
    return f"{f.on_timeout} at {when(f.deadline)} (in {span(f.deadline - now)}) unless decided"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inert(text: str) -> str:
    """What the agent chose (its name, its URL, what the parsers read of it) as a chat shows it
    without acting on it: a Markdown code span, where Slack, Mattermost, Discord, Teams and
    Matrix draw no link, image, heading or emphasis (a `[Approve](https://...)` in a path stays
    text); its own backticks replaced so it cannot end the span; and each `@` followed by a
    zero-width space, so an `@everyone`, `@channel` or `@here` in it mentions no one."""
    return "`" + text.replace("`", "'").replace("@", "@\u200b") + "`"


def _facts(f: HoldFacts, now: float) -> list[str]:
    rule = f"{f.rule_id} ({f.severity})" + (f": {f.rule_message}" if f.rule_message else "") if f.rule_id \
        else "the rule set's default verdict"
    return [
        f"Proxy: {f.proxy}",
        f"Agent: {inert(f.agent)}",
        f"Action: {inert(f.action) if f.action else 'not read (no parser knows this API)'}",
        f"Request: {inert(f.method + ' ' + _clip(f.url, URL_SHOWN))}",
        f"Rule: {rule}",
        f"Held since: {when(f.created)} ({f.mode} mode)",
        f"Deadline: {deadline_text(f, now)}",
        f"Hold: {f.hold_id}",
    ] + ([f"Approvals: {f.needed} distinct reviewers must approve"] if f.needed > 1 else [])


def _what(f: HoldFacts) -> str:
    return (f"agent {inert(f.agent)} wants {inert(f.action)}" if f.action
            else f"agent {inert(f.agent)}: {inert(f.method + ' ' + _clip(f.url, 80))}")


def hold_notice(f: HoldFacts, now: float) -> Notice:
    title = f"Held on {f.proxy}: {_what(f)}"
    body = _facts(f, now) + [f"Decide: {how_to_decide(f)}"]
    return _notice(HOLD, title, body)


def escalation_notice(f: HoldFacts, now: float, approvers: Iterable[str] = ()) -> Notice:
    title = f"Still undecided after {span(now - f.created)} on {f.proxy}: {_what(f)}"
    so_far = list(approvers)
    body = _facts(f, now) + ([f"Approved so far by: {', '.join(so_far)}"] if so_far else []) + \
        [f"Decide: {how_to_decide(f)}"]
    return _notice(ESCALATION, title, body)


def decision_notice(f: HoldFacts, decision: str, reviewer: str | None, via: str | None, comment: str | None,
                    now: float) -> Notice:
    by = f" by {reviewer}" if reviewer else ""
    title = f"Hold {decision}{by} on {f.proxy}: {_what(f)}"
    body = [f"Decision: {decision}{by}" + (f" ({via})" if via else "")]
    if comment:
        body.append(f"Comment: {comment}")
    body += [f"Decided: {when(now)}, {span(now - f.created)} after the hold"]
    body += [line for line in _facts(f, now) if not line.startswith("Deadline:")]
    return _notice(DECISION, title, body)


def _notice(kind: str, title: str, lines: list[str]) -> Notice:
    # safe_text: nothing an agent chose (its URL, a resource name) can carry control
    # characters into a terminal-based chat client or a mail reader.
    title = _clip(safe_text(title), 250)
    if title.count("`") % 2:  # the cut fell inside a code span: close it, or what follows it is live
        title += "`"
    return Notice(kind, title, "\n".join(safe_text(x) for x in lines))


# requests' and urllib3's errors quote the path they asked for ("Max retries exceeded with url: /x").
_QUOTED_PATH = re.compile(r"(with url: )\S+")
_URL_PIECES = re.compile(r"[/?&=:@#,;+]")
_SECRET_PIECE = 6  # characters: shorter pieces of a target URL are ports, flags, words


def without_secrets(reason: str, url: str, shown: str) -> str:
    """What a failed send said, without the target's secret parts: apprise masks the tokens of
    a target (`mmost://host/a...1`) when it is shown, but a plugin's error quotes the URL it
    posted to, token and all. Every piece of the target that the masked form does not show
    is hidden, and so is any path quoted by the HTTP client."""
    pieces = {p for p in _URL_PIECES.split(url.split("://", 1)[-1]) if len(p) >= _SECRET_PIECE and p not in shown}
    pieces |= {unquote(p) for p in pieces}
    for piece in sorted(pieces, key=len, reverse=True):
        reason = reason.replace(piece, "…")
    return _QUOTED_PATH.sub(r"\1…", reason)


def target_shown(masked: str, fingerprint: str) -> str:
    """A notification target as it may be shown and kept: apprise's masked scheme and host,
    and for the rest a fingerprint (the same target, the same one). A generic webhook's path is
    often its secret, and apprise's masked form shows json://, form:// and xml:// paths whole."""
    scheme, _, rest = masked.partition("://")
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return f"{scheme}://{host}" + (f"/{fingerprint}" if rest.rstrip("/") != host else "")


def notice_event(hold_id: str, agent: str | None, rule_id: str | None, kind: str, target: str,
                 problem: str | None) -> dict[str, str | None]:
    """The trail's record of one notification: which hold, what kind, to which target (as
    apprise masks it), and whether it went (a flow-less event: it belongs to the hold)."""
    return {"stage": Stage.NOTICE, "hold_id": hold_id, "agent": agent, "rule_id": rule_id, "operation": kind,
            "url": target, "outcome": Outcome.FAILED if problem else Outcome.SENT, "error": problem}
