"""What the gate tells the core about the proxy's place, with mitmproxy's own taddons/tflow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from mitmproxy import connection
from mitmproxy.test import taddons, tflow

from shield_addon.addons.whereabouts import CONNECT_REFUSED, Whereabouts
from shield_addon.flows import view_of


def test_the_host_header_is_checked_against_the_target_unless_the_proxy_is_a_reverse_one() -> None:
    w = Whereabouts()
    f = tflow.tflow()
    f.request.headers["host"] = "other.example:8080"
    with taddons.context(w) as tctx:
        tctx.configure(w, mode=["regular"])
        assert ("other.example", 8080) in w.context(f, "agent-1", view_of(f, b""), None).destinations
        tctx.configure(w, mode=["reverse:http://upstream.example"])  # its Host names the proxy itself
        assert w.context(f, "agent-1", view_of(f, b""), None).destinations == ()
        tctx.configure(w, mode=["regular"])
        assert ("other.example", 8080) in w.context(f, "agent-1", view_of(f, b""), None).destinations


def resolver(answer: tuple[str, ...] | None) -> Callable[[str, float], Awaitable[tuple[str, ...] | None]]:
    """A resolver that gives this answer (None: it did not answer in time), for the names no
    DNS of a test machine has."""
    async def look(name: str, timeout: float) -> tuple[str, ...] | None:
        return answer
    return look


def refusal(address: tuple[str, int], answer: tuple[str, ...] | None, via: bool = False) -> str | None:
    server = connection.Server(address=address)
    if via:
        server.via = ("http", ("corp-proxy.example", 3128))
    return asyncio.run(Whereabouts().refusal(server, resolver(answer)))


def test_a_connection_to_a_name_that_now_resolves_to_the_metadata_service_is_refused() -> None:
    why = refusal(("169.254.169.254.nip.example", 80), ("93.184.216.34", "169.254.169.254"))
    assert why is not None and why.startswith(CONNECT_REFUSED) and "builtin:cloud-metadata" in why
    assert refusal(("imds.example", 80), ("fd00:ec2::254",)) is not None


def test_a_resolver_too_slow_to_answer_is_refused_not_trusted() -> None:
    why = refusal(("slow.example", 443), None)
    assert why is not None and "did not resolve within" in why


def test_other_connections_open() -> None:
    assert refusal(("api.example.com", 443), ("93.184.216.34",)) is None
    assert refusal(("gone.example", 443), ()) is None  # mitmproxy says it does not resolve
    assert refusal(("169.254.169.254", 80), None) is None  # an address is judged with its request
    assert refusal(("imds.example", 80), ("169.254.169.254",), via=True) is None  # the upstream proxy resolves


def test_a_name_is_looked_up_once_for_its_requests_and_again_after_a_while() -> None:
    w = Whereabouts()
    first = asyncio.run(w.resolved("localhost", 80))
    assert "127.0.0.1" in first and w.names["localhost"][1] == first
    w.names["localhost"] = (time.monotonic() + 60, ("192.0.2.1",))
    assert asyncio.run(w.resolved("localhost", 80)) == ("192.0.2.1",)  # remembered: not asked again
    w.names["localhost"] = (0.0, ("192.0.2.1",))  # expired: asked again
    assert asyncio.run(w.resolved("localhost", 80)) == first
    assert asyncio.run(w.resolved("127.0.0.1", 80)) == ()  # an address needs no look-up


def test_behind_an_upstream_proxy_names_are_not_resolved_here() -> None:
    w = Whereabouts()
    with taddons.context(w) as tctx:
        tctx.configure(w, mode=["upstream:http://corp-proxy.example:3128"])
        assert asyncio.run(w.resolved("localhost", 80)) == () and w.names == {}
        tctx.configure(w, mode=["regular"])
        assert "127.0.0.1" in asyncio.run(w.resolved("localhost", 80))
