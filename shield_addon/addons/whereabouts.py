"""Where the proxy is, as the decision core needs to know it: its own listen addresses,
this machine's addresses, what a name on its ports resolves to, and the other names a request
gives its server (Host, SNI). Gathered here, at the edge, so decide() stays pure."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable

from mitmproxy import connection, ctx, http

from shield_addon import actions
from shield_addon.actions.common import split_target
from shield_addon.core import hosts
from shield_addon.core.builtin import CLOUD_METADATA
from shield_addon.core.context import Context
from shield_addon.fleet import fleet_url
from shield_addon.flows import judged_flow

RESOLVE_SECONDS = 2.0
NAME_TTL = 30.0  # seconds a name's addresses are reused by the request checks
NAMES_KEPT = 4096
# Longer than the request's look-up: a resolver slower than this is refused, not trusted to
# answer mitmproxy's own look-up a moment later with what it would not tell us.
CONNECT_RESOLVE_SECONDS = 5.0
CONNECT_REFUSED = "shield refused the connection"
LISTEN_OPTIONS = {"listen_host", "listen_port", "mode", "web_host", "web_port", "shield_fleet"}


async def lookup(name: str, timeout: float = RESOLVE_SECONDS) -> tuple[str, ...] | None:
    """The addresses a name resolves to now (none: it does not resolve); None when the
    resolver did not answer within `timeout`."""
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(name, None), timeout)
    except TimeoutError:
        return None
    except (OSError, UnicodeError):
        return ()
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


class Whereabouts:
    def __init__(self, members: Callable[[], frozenset[tuple[str, int]]] = frozenset) -> None:
        self._own: frozenset[tuple[str, int]] | None = None
        self.members = members  # where the fleet's other members listen, as they last said
        self._fleet: list[tuple[str, int]] = []
        self.reverse = False  # a reverse proxy's Host names the proxy, not its upstream
        self.upstream = False
        self.names: dict[str, tuple[float, tuple[str, ...]]] = {}  # name -> (until, its addresses)

    def configure(self, updated: set[str]) -> None:
        if updated & LISTEN_OPTIONS:
            self._own = None
        if "shield_fleet" in updated:  # resolved here, at start, never on a request's way
            url = fleet_url(ctx.options.shield_fleet)
            self._fleet = fleet_addresses(url) if url else []
        if "mode" in updated:
            self.reverse = any(str(m).startswith("reverse") for m in ctx.options.mode)
            # Behind an upstream proxy the names are its to resolve (this host may have no DNS).
            self.upstream = any(str(m).startswith("upstream") for m in ctx.options.mode)

    def context(self, f: http.HTTPFlow | None, agent: str, view: actions.RequestView, unreadable: str | None,
                came_back: bool = False, resolved: tuple[str, ...] = ()) -> Context:
        own = self.own_addresses()
        judged = judged_flow(f, view) if f is not None else None  # as `filter:` rules see it
        return Context(agent=agent, flow=judged, own=own, local_ips=local_ips(), resolved=resolved, unreadable=unreadable,
                       destinations=destinations(f, view.port) if f is not None and not self.reverse else (), came_back=came_back)

    async def resolved(self, host: str, port: int) -> tuple[str, ...]:
        """What a name resolves to, for the checks that go by address (a name for the proxy
        itself or for the cloud metadata service is refused like the address): off the event
        loop, bounded (a slow resolver delays that request, never the proxy), and remembered
        for NAME_TTL seconds. The connection is asked again as it opens (lookup())."""
        if self.upstream or hosts.ip_of(host) is not None:
            return ()
        now = time.monotonic()
        known = self.names.get(host)
        if known is not None and known[0] > now:
            return known[1]
        found = await lookup(host) or ()
        if len(self.names) >= NAMES_KEPT:
            self.names.clear()
        self.names[host] = (now + NAME_TTL, found)
        return found

    async def refusal(self, server: connection.Server, look: Callable[[str, float], Awaitable[tuple[str, ...] | None]]
                      = lookup) -> str | None:
        """Why a server connection about to open must not, or None. Its name is looked up again
        here, moments before mitmproxy's own look-up: a name that now resolves to the cloud
        metadata service (a wildcard DNS name for 169.254.169.254, a changed record) is refused
        although the request was judged by its name."""
        if server.via is not None or not server.address:  # an upstream proxy resolves, not this host
            return None
        host = str(server.address[0])
        if hosts.ip_of(host) is not None:
            return None  # an address: judged with the request, in every spelling
        found = await look(host, CONNECT_RESOLVE_SECONDS)
        if found is None:
            return f"{CONNECT_REFUSED}: {host} did not resolve within {CONNECT_RESOLVE_SECONDS:g}s"
        bad = [a for a in found if hosts.is_metadata(a)]
        if bad:
            return f"{CONNECT_REFUSED}: {host} resolves to {bad[0]}, the cloud metadata service ({CLOUD_METADATA.id})"
        return None

    def own_addresses(self) -> frozenset[tuple[str, int]]:
        """Where the proxy and its controls listen: its own ports and mitmweb's. Asked once per
        request, so kept until the listen options change."""
        if self._own is None:
            addrs: list[tuple[str, int]] = []
            server = ctx.master.addons.get("proxyserver")
            try:
                addrs = [(a[0], a[1]) for a in server.listen_addrs()] if server else []
            except Exception:  # noqa: BLE001 - not listening (tests, shutdown): nothing to protect
                pass
            if "web_port" in ctx.options:  # mitmweb: through it an agent could approve its own holds
                addrs.append((ctx.options.web_host or "127.0.0.1", ctx.options.web_port))
            addrs += self._fleet  # ... and through the fleet's database too
            self._own = frozenset(addrs) if addrs else None
        members = self.members()
        return (self._own or frozenset()) | members if members else self._own or frozenset()


def fleet_addresses(url: str) -> list[tuple[str, int]]:
    """The fleet database as an agent could spell it: the names its URL gives, the addresses
    they resolve to, and, when it is on this machine, every local address on its port (which
    of them it listens on is the database's business: a name for loopback or for this host
    must not leave 127.0.0.1 open)."""
    from shield_addon.fleet.db import addresses

    found: list[tuple[str, int]] = []
    for host, port in addresses(url):
        found.append((host, port))
        ips = {hosts.ip_of(host)} if hosts.ip_of(host) is not None else set(resolve(host))
        if hosts.is_loopback_name(host):
            ips.add(hosts.LOOPBACK)
        found += [(str(ip), port) for ip in ips if ip is not None]
        if any(ip is not None and (ip.is_loopback or ip.is_unspecified or ip in local_ips()) for ip in ips):
            found.append(("", port))  # an empty host: every address of this machine
    return found


def resolve(name: str) -> list[hosts.IP]:
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return []
    return [ip for info in infos if (ip := hosts.ip_of(str(info[4][0]).split("%")[0])) is not None]


def destinations(f: http.HTTPFlow, port: int) -> tuple[tuple[str, int], ...]:
    """The other names of the server this request goes to: the Host header (or HTTP/2's
    :authority), the authority of a target in absolute form and the TLS SNI. Each must name the connection's target, or a request sent to
    one server would be judged, and recorded, as another's. (Not asked of a reverse proxy.)"""
    found = []
    authority = split_target(f.request.path)[0]
    if authority:  # HTTP/2's :path in absolute form names a server too
        found.append(hosts.split_authority(authority, f.request.scheme, default=port))
    if f.request.host_header:
        # A Host without a port names the server, not the port: clients leave the port out.
        found.append(hosts.split_authority(f.request.host_header, f.request.scheme, default=port))
    if f.client_conn.sni:
        found.append((f.client_conn.sni, port))
    return tuple(found)


@functools.cache
def local_ips() -> frozenset[hosts.IP]:
    """This machine's addresses, as far as its own name tells (loopback is always local)."""
    found: set[hosts.IP] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    except (OSError, ValueError):
        pass
    return frozenset(found)


