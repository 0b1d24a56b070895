"""Requests mitmproxy cannot handle are recorded, and their connection is ended, not left hanging.

Most malformed requests are refused by mitmproxy itself (400, or the connection closed)
and reach the `error` hook, where the gate records them. A few shapes make it raise inside
its own protocol layers instead: an HTTP/1 chunked body with trailers ("HTTP trailers are
not implemented yet", mitmproxy 11.0 and 12.3). It then logs "mitmproxy has crashed!" and
leaves that connection's layers half-updated: neither the `request` nor the `error` hook
runs for the flow, nothing is answered, and the client waits until it gives up; nothing
would be recorded. No addon can make those layers answer. So we notice the crash (logged
with the client's address), record every request that was under way on that connection,
answer a plain-HTTP/1 client with a 400 ourselves (through TLS only mitmproxy's layers
could), and close the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mitmproxy import connection, ctx, http

from shield_addon import record
from shield_addon.addons.trail import Trail
from shield_addon.flows import ANONYMOUS, agent_of, base_columns

log = logging.getLogger("shield")
CRASHED = "mitmproxy has crashed!"  # server.py's message, the same in 11 and 12
SERVER_LOG = "mitmproxy.proxy.server"
GRACE = 0.5  # seconds a crash waits for the hooks mitmproxy scheduled before it
# What mitmproxy's HTTP/1 reader says of a request head it cannot parse (net/http/http1/read.py).
UNPARSED_HEAD = ("Bad HTTP request line", "Invalid header line", "Invalid headers", "Unknown HTTP version")


class Crashes:
    def __init__(self, trail: Trail) -> None:
        self.trail = trail
        self.underway: dict[str, http.HTTPFlow] = {}  # headers read, request hook not yet run
        self.watch = CrashLog(self.crashed, self.refused)

    def running(self) -> None:
        logging.getLogger(SERVER_LOG).addHandler(self.watch)

    def done(self) -> None:
        logging.getLogger(SERVER_LOG).removeHandler(self.watch)

    # Listed before the gate: `request` is seen before a hold can make it wait.
    def requestheaders(self, f: http.HTTPFlow) -> None:
        self.underway[f.id] = f

    def request(self, f: http.HTTPFlow) -> None:
        self.underway.pop(f.id, None)

    def error(self, f: http.HTTPFlow) -> None:
        self.underway.pop(f.id, None)

    def client_disconnected(self, client: connection.Client) -> None:
        for f in [f for f in self.underway.values() if f.client_conn.id == client.id]:
            del self.underway[f.id]

    def refused(self, peer: Any, reason: str) -> None:
        event = refused_event(peer, reason, self.trail.redactor)
        if self.trail.allows(event["agent"]):  # a flood of junk lines spends its address's share, no more
            self.trail.submit(event)

    def crashed(self, peer: Any, reason: str, late: bool = False) -> None:
        """mitmproxy's layers raised on the connection from `peer`."""
        flows = [f for f in self.underway.values() if f.client_conn.peername == peer]
        handler = connection_handler(peer)
        if not flows and not late and handler is not None:
            # The request's `requestheaders` hook may still be queued behind the crash:
            # give mitmproxy's scheduled hooks a moment before ending the connection.
            asyncio.get_running_loop().call_later(GRACE, self.crashed, peer, reason, True)
            return
        for f in flows:
            del self.underway[f.id]
            self.trail.submit({**base_columns(f, agent_of(f), self.trail.redactor), "stage": "error",
                               "outcome": "refused", "error": f"mitmproxy could not handle the request: {reason}"})
        if not flows:  # the attempt is still an attempt: record it without a flow
            self.trail.submit({"flow_id": None, "client_ip": peer[0] if peer else None, "stage": "error",
                               "outcome": "error", "error": f"mitmproxy crashed on this connection: {reason}"})
        if handler is None:
            return
        log.warning("shield: mitmproxy could not handle a request from %s (%s): connection closed", peer, reason)
        client = handler.client
        writer = handler.transports[client].writer if client in handler.transports else None
        if writer is not None and not client.tls and flows and all(f.request.http_version.startswith("HTTP/1")
                                                                   for f in flows):
            writer.write(bad_request(flows[-1].id, reason))
        handler.close_connection(client)


class CrashLog(logging.Handler):
    """Hands each "mitmproxy has crashed!" record, with its client, to `on_crash` on the loop,
    and each request head mitmproxy refused before it became a flow to `on_refused`."""

    def __init__(self, on_crash: Any, on_refused: Any = None) -> None:
        super().__init__(logging.INFO)
        self.on_crash, self.on_refused = on_crash, on_refused

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == CRASHED and record.exc_info:
            exc = record.exc_info[1]
            self.later(self.on_crash, getattr(record, "client", None), f"{type(exc).__name__}: {exc}")
        elif self.on_refused is not None and record.levelno == logging.INFO and isinstance(record.msg, str) \
                and (reason := unparsed_head(record.msg)) is not None:
            self.later(self.on_refused, getattr(record, "client", None), reason)

    @staticmethod
    def later(fn: Any, *args: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # Not now: the record is logged from inside mitmproxy's event handling.
        loop.call_soon(fn, *args)


def unparsed_head(message: str) -> str | None:
    """mitmproxy's "<client>: <why>" for a request head it could not read (it answered 400 and
    closed the connection, and no flow, no hook, saw the request), as the why; else None."""
    _, sep, why = message.partition(": ")
    return why if sep and why.startswith(UNPARSED_HEAD) else None


def refused_event(peer: Any, reason: str, redactor: Any) -> dict[str, Any]:
    """A request mitmproxy answered 400 before it was a flow: an attempt all the same, recorded
    under the only identity it showed (its address), its request line redacted and cut."""
    ip = peer[0] if peer else "unknown"
    return {"flow_id": None, "agent": ANONYMOUS.format(ip=ip), "client_ip": ip, "stage": "error", "outcome": "refused",
            "error": record.cut(redactor.text(f"mitmproxy refused a request it could not read (400): {reason}"),
                                record.VALUE_LIMIT, reason)}


def connection_handler(peer: Any) -> Any:
    """mitmproxy's handler of the client connection from `peer`, if it is still open."""
    server = ctx.master.addons.get("proxyserver")
    for handler in list(getattr(server, "connections", {}).values()):
        if handler.client.peername == peer:
            return handler
    return None


def bad_request(flow_id: str, reason: str) -> bytes:
    body = json.dumps({"error": "request refused: the proxy could not parse it", "decision": "refused",
                       "flow_id": flow_id, "message": reason}).encode()
    return (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"x-shield-decision: refused\r\nx-shield-flow-id: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (flow_id.encode(), len(body), body))
