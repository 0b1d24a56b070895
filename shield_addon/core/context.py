"""What the proxy knows about a request beyond its bytes, gathered at the edge (the addon) and
handed to the pure decision core: who sent it, where the proxy itself listens, what else names
the destination, whether its body could be read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shield_addon.core.hosts import IP
from shield_addon.rules.model import State


@dataclass(frozen=True)
class Context:
    agent: str = ""
    flow: Any = None  # the mitmproxy flow, for `filter:` rules only
    own: frozenset[tuple[str, int]] = frozenset()  # the proxy's listen addresses (and mitmweb's)
    local_ips: frozenset[IP] = frozenset()  # this machine's addresses
    resolved: tuple[str, ...] = ()  # what the request's host resolves to, when that matters
    destinations: tuple[tuple[str, int], ...] = ()  # other names of the server: Host, SNI
    came_back: bool = False  # the request already passed through this proxy
    unreadable: str | None = None  # why the body could not be decoded
    first_contact: bool = False  # this agent never had a request to this host:port forwarded
    state: State | None = None  # the moment judged and the `limit:` memory (addons.limits)
