"""Built-in rules: refusals no rule file can turn off, recorded like any rule (`builtin:<name>`).

Each is a rule and a check on the request and what the proxy knows about its connection (the
decision context). Adding one is adding a row to BUILTINS, not a branch in a hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shield_addon.actions import RequestView
from shield_addon.core import hosts
from shield_addon.core.context import Context
from shield_addon.rules import Rule

TCP = "TCP"  # the method of a raw TCP stream's view: rules allow one with `method: TCP`, host and port
CONNECT = "CONNECT"

PROXY_ITSELF = Rule(id="builtin:proxy-itself", action="deny", severity="critical",
                    message="Agents may not send requests to the proxy, its web UI or its fleet database")
CLOUD_METADATA = Rule(id="builtin:cloud-metadata", action="deny", severity="critical",
                      message="Agents may not reach the instance metadata service: it hands out the proxy "
                              "host's cloud credentials")
MALFORMED = Rule(id="builtin:malformed-header", action="deny", severity="high",
                 message="A header value contains CR, LF or NUL")
DESTINATION_MISMATCH = Rule(id="builtin:destination-mismatch", action="deny", severity="high",
                            message="The connection target, TLS SNI and Host must name the same server")
RAW_TCP = Rule(id="builtin:raw-tcp", action="deny", severity="high",
               message="A tunnel that speaks neither HTTP nor TLS is refused unless a rule allows it (method: TCP)")
UNREADABLE = Rule(id="builtin:unreadable", action="deny", severity="high",
                  message="The body cannot be decoded, so it cannot be judged")


def targets_proxy(view: RequestView, ctx: Context) -> bool:
    """Its own addresses however spelled, names that resolve to them, and requests that
    already passed through this proxy once (they would loop)."""
    if ctx.came_back:
        return True
    if not ctx.own:
        return False
    return any(hosts.is_own_address(h, view.port, ctx.own, ctx.local_ips) for h in (view.host, *ctx.resolved))


def targets_metadata(view: RequestView, ctx: Context) -> bool:
    """Through the proxy, the metadata service answers as the proxy's machine: its instance
    role's keys would become the agent's, whatever identity the agent was given."""
    return any(hosts.is_metadata(h) for h in (view.host, *ctx.resolved))


def malformed(view: RequestView, ctx: Context) -> bool:
    # RFC 9110 §5.5: a CR inside a value can end the line for the upstream, smuggling a
    # header past the rules.
    return any(ch in v for _, v in view.headers for ch in "\r\n\x00")


def mismatched(view: RequestView, ctx: Context) -> bool:
    target = (view.host, view.port)  # the view's host is already canonical
    return any(other != target and not hosts.same_server(target, other) for other in ctx.destinations)


def raw_tcp(view: RequestView, ctx: Context) -> bool:
    return view.method == TCP


def unreadable(view: RequestView, ctx: Context) -> bool:
    return ctx.unreadable is not None


@dataclass(frozen=True)
class Builtin:
    rule: Rule
    check: Callable[[RequestView, Context], bool]
    # An explicit allow rule that matches lifts it (a destination known to take a coding the
    # proxy cannot undo); the others hold whatever the rule files say.
    overridable: bool = False


BUILTINS: tuple[Builtin, ...] = (
    Builtin(PROXY_ITSELF, targets_proxy),
    Builtin(CLOUD_METADATA, targets_metadata),
    Builtin(MALFORMED, malformed),
    Builtin(DESTINATION_MISMATCH, mismatched),
    Builtin(UNREADABLE, unreadable, overridable=True),
    Builtin(RAW_TCP, raw_tcp, overridable=True),
)
