"""What the gate tells the core about the proxy's place, with mitmproxy's own taddons/tflow."""

from __future__ import annotations

from mitmproxy.test import taddons, tflow

from shield_addon.addons.whereabouts import Whereabouts
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
