"""Tunnels are attempts too: every CONNECT is judged and recorded, and a tunnel that speaks
neither HTTP nor TLS (raw TCP to a database, ssh) is closed unless a rule allows it.

With mitmproxy's lazy connection strategy (set by `shield run`) a CONNECT contacts nothing:
the server is reached only when the first request inside was allowed, or, for raw TCP, when a
rule allowed the stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

from mitmproxy import ctx, http, tcp
from mitmproxy.proxy import commands, events, layer, layers

from shield_addon import actions
from shield_addon.actions import RequestView
from shield_addon.addons.console import MARKERS
from shield_addon.addons.gate import Gate
from shield_addon.core.budget import TRAIL_BUDGET
from shield_addon.core.builtin import CONNECT, TCP
from shield_addon.core.decide import decide
from shield_addon.flows import ANONYMOUS, agent_of, refuse


class Closed(layer.Layer):
    """A connection the rules refused: closed before anything is relayed."""

    def _handle_event(self, event: events.Event) -> Generator[commands.Command, Any, None]:
        if isinstance(event, events.Start):
            yield commands.CloseConnection(self.context.client)


class Tunnel:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.agents: dict[str, str] = {}  # client connection id -> the agent its CONNECT named

    def http_connect(self, f: http.HTTPFlow) -> None:
        agent = agent_of(f)
        self.agents[f.client_conn.id] = agent
        view = RequestView(CONNECT, "https", f.request.host.lower(), f.request.port, "")
        verdict, event = self.judge(view, agent, f.client_conn.peername, f.client_conn.id)
        if f.response is not None:  # proxyauth's 407: answered before the rules
            event.update(decision="blocked", error=f"answered by the proxy before the rules: HTTP {f.response.status_code}")
        elif not self.gate.trail.allows(agent):
            event.update(flow_id=f.client_conn.id, decision="blocked", verdict="deny", rule_id=TRAIL_BUDGET.id,
                         matched_rules=[TRAIL_BUDGET.id], severity=TRAIL_BUDGET.severity)
            refuse(f, 429, "blocked", "tunnel refused: this agent's share of the audit trail is spent", TRAIL_BUDGET)
            f.marked = MARKERS["blocked"]
        elif verdict.enforced == "deny" and ctx.options.shield_mode == "enforce":
            refuse(f, 403, "blocked", "tunnel blocked by rule", verdict.enforced_rule)
            f.marked = MARKERS["blocked"]
        self.gate.trail.submit(event)

    async def next_layer(self, nextlayer: layer.NextLayer) -> None:
        # Script addons are asked before mitmproxy's own NextLayer: let it choose first (it
        # leaves a layer another addon set alone), then judge what it chose.
        chooser = ctx.master.addons.get("nextlayer")
        if nextlayer.layer is None and chooser is not None:
            chooser.next_layer(nextlayer)
        if not isinstance(nextlayer.layer, layers.TCPLayer) or nextlayer.layer.flow is None:
            return
        context = nextlayer.context
        host, port = context.server.address or ("", 0)
        agent = self.agents.get(context.client.id, ANONYMOUS.format(ip=context.client.peername[0]))
        verdict, event = self.judge(RequestView(TCP, "tcp", str(host).lower(), port, ""), agent, context.client.peername,
                                    nextlayer.layer.flow.id)
        over = not self.gate.trail.allows(agent)
        if over:
            event.update(decision="blocked", verdict="deny", rule_id=TRAIL_BUDGET.id, matched_rules=[TRAIL_BUDGET.id],
                         severity=TRAIL_BUDGET.severity)
        if over or verdict.enforced == "deny" and ctx.options.shield_mode == "enforce":
            nextlayer.layer = Closed(context)
            event["outcome"] = "refused"
            self.gate.trail.submit(event)
            return
        # The stream's request event: on disk before a byte is relayed, like an HTTP request's.
        if not await self.gate.trail.write(event):
            nextlayer.layer = Closed(context)

    def tcp_end(self, f: tcp.TCPFlow) -> None:
        """An allowed raw stream, recorded per direction: size, digest and its redacted start."""
        for from_client, side in ((True, "request"), (False, "response")):
            data = b"".join(m.content for m in f.messages if m.from_client == from_client)
            self.gate.trail.submit({"flow_id": f.id, "agent": self.agents.get(f.client_conn.id), "stage": "tcp",
                                    "method": TCP, "scheme": "tcp", "path": "", "outcome": "forwarded",
                                    "host": f.server_conn.address[0] if f.server_conn.address else None,
                                    "port": f.server_conn.address[1] if f.server_conn.address else None,
                                    "operation": "client->server" if from_client else "server->client",
                                    f"{side}_body_size": len(data), f"{side}_sha256": hashlib.sha256(data).hexdigest(),
                                    f"{side}_body": self.gate.trail.redactor.body(data, "application/octet-stream",
                                                                                  ctx.options.shield_body_limit)})

    def tls_start_client(self, tls_start: Any) -> None:
        """Lazy connections leave mitmproxy no server ALPN to mirror, so it takes the client's
        first choice, and clients such as httpx list http/1.1 before h2. Offer h2 when the
        client can speak it, as the eager strategy would for an h2 server: mitmproxy relays
        HTTP/2 to an HTTP/1 server itself."""
        tlsconfig = ctx.master.addons.get("tlsconfig")
        if tls_start.ssl_conn is None and tlsconfig is not None:
            tlsconfig.tls_start_client(tls_start)  # script addons are asked first; it skips a prepared one
        conn = tls_start.ssl_conn
        data = conn.get_app_data() if conn is not None else None
        if (isinstance(data, dict) and data.get("client_alpn") is None and data.get("server_alpn") is None
                and data.get("http2") and b"h2" in (tls_start.context.client.alpn_offers or ())):
            data["client_alpn"] = b"h2"

    def client_disconnected(self, client: Any) -> None:
        self.agents.pop(client.id, None)

    def judge(self, view: RequestView, agent: str, peer: Any, flow_id: str) -> tuple[Any, dict[str, Any]]:
        ruleset = self.gate.rulebook.ruleset
        verdict = decide(actions.readings(view, ruleset.services), ruleset, self.gate.where.context(None, agent, view, None))
        enforced = verdict.enforced if ctx.options.shield_mode == "enforce" else "allow"
        rule = verdict.rule
        # A refused tunnel is an attempt of its own in the timeline; an allowed one is an event
        # without a flow (its requests are the flows), so rollups count requests, not tunnels.
        event = {"flow_id": None if enforced == "allow" and view.method == CONNECT else flow_id,
                 "agent": agent, "client_ip": peer[0] if peer else None, "stage":
                 "connect" if view.method == CONNECT else "tcp", "method": view.method, "scheme": view.scheme,
                 "host": view.host, "port": view.port, "path": "", "url": f"{view.scheme}://{view.host}:{view.port}",
                 "rule_id": rule.id if rule else None, "verdict": verdict.verdict, "matched_rules": list(verdict.matched),
                 "severity": rule.severity if rule else None, "ruleset_sha256": ruleset.sha256,
                 "decision": "allowed" if enforced == "allow" else "blocked", "mode": ctx.options.shield_mode}
        return verdict, event
