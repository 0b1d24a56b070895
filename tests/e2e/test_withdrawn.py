"""Requests an agent withdraws or mangles still leave a record, through a real mitmdump:
an HTTP/2 stream reset while held ends the hold at once (abandoned, never forwarded), and a
request mitmproxy cannot parse (trailers, bad chunk framing, a body cut short) is answered
or closed without a hang and recorded with its client, agent and reason."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from typing import Any

import pytest

from shield_addon.journal import read_rows
from tests.e2e.harness import Proxy, Upstream, wait_for
from tests.e2e.protocols.clients import H2Conn, open_tunnel

DEADLINE = 5.0  # seconds an answer (or the end of the connection) may take


def journal(proxy: Proxy) -> list[dict[str, Any]]:
    return list(read_rows(proxy.audit_dir / "journal"))


def rows_for(proxy: Proxy, path: str, stage: str) -> list[dict[str, Any]]:
    return [r for r in journal(proxy) if r.get("path") == path and r["stage"] == stage]


def tunnel(proxy: Proxy, upstream: Upstream, agent: str, alpn: str) -> ssl.SSLSocket:
    """A TLS connection to the upstream's name, through a CONNECT the agent authenticated."""
    s = open_tunnel(proxy.port, "localhost", upstream.https_port, agent, DEADLINE)
    ctx = ssl.create_default_context(cafile=str(proxy.ca))
    ctx.set_alpn_protocols([alpn])
    tls = ctx.wrap_socket(s, server_hostname="localhost")
    assert tls.selected_alpn_protocol() == alpn
    return tls


def delete(conn: H2Conn, upstream: Upstream, path: str) -> int:
    return conn.send([(":method", "DELETE"), (":authority", f"localhost:{upstream.https_port}"), (":scheme", "https"),
                      (":path", path)])


def pending_listing(proxy: Proxy) -> str:
    """What `shield.pending` writes to the event log now."""
    log_before = len(proxy.log.read_text())
    port = int(proxy.control_file.read_text())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(json.dumps({"cmd": "shield.pending", "flows": False}).encode() + b"\n")
        assert json.loads(s.makefile().readline())["ok"]

    def listing() -> str | None:
        new = proxy.log.read_text()[log_before:]
        head = new.find("held flow(s)")
        if head < 0:
            return None
        n = int(new[:head].split()[-1])
        lines = new[head:].splitlines()[1:]
        return "\n".join(lines[:n]) if len(lines) >= n else None

    return wait_for(listing, 10, "the shield.pending listing")


def test_a_reset_stream_ends_its_hold_abandoned_at_once_and_is_never_forwarded(proxy: Proxy, upstream: Upstream) -> None:
    agent = H2Conn(proxy.port, "agent-withdraws", "localhost", upstream.https_port, str(proxy.ca), DEADLINE)
    try:
        kept = delete(agent, upstream, "/hold/withdraw-kept")
        withdrawn = {f"/hold/withdraw-{i}": delete(agent, upstream, f"/hold/withdraw-{i}") for i in range(3)}
        proxy.wait_held("~u /hold/withdraw-", n=4)
        for sid in withdrawn.values():  # stacked on one connection, which stays open
            agent.reset(sid)

        def abandoned() -> list[dict[str, Any]] | None:
            found = [r for r in journal(proxy) if r["stage"] == "decision" and r["path"] in withdrawn]
            return found if len(found) == len(withdrawn) else None

        decisions = wait_for(abandoned, 1.0, "every withdrawn hold's decision within a second")
        assert {d["decision"] for d in decisions} == {"abandoned"}
        assert {d["operation"] for d in decisions} == {"stream_reset"}
        assert all("stream reset by client" in d["reviewer_comment"] for d in decisions)
        assert all(d["reviewer"] is None and d["agent"] == "agent-withdraws" for d in decisions)

        listing = pending_listing(proxy)
        assert "/hold/withdraw-kept" in listing
        assert not [p for p in withdrawn if p in listing], listing
        assert proxy.held("~u /hold/withdraw-kept") == 1

        # Too late for a reviewer: approving or resuming a withdrawn hold sends nothing.
        proxy.command("shield.approve", "~u /hold/withdraw-[0-9]")
        proxy.command("flow.resume", "~u /hold/withdraw-[0-9]")
        proxy.command("shield.approve", "~u /hold/withdraw-kept")
        assert agent.response(kept, DEADLINE)[0] == 200, "the connection and its other held stream carry on"
    finally:
        agent.close()
    assert len(upstream.hits_for("/hold/withdraw-kept")) == 1
    for path in withdrawn:
        assert upstream.hits_for(path) == []
        [d] = rows_for(proxy, path, "decision")
        assert d["decision"] == "abandoned", "the later approval left no second decision"
        [err] = wait_for(lambda p=path: rows_for(proxy, p, "error"), 10, f"the error event of {path}")
        assert err["outcome"] == "refused"


# ---------------------------------------------------------------- requests mitmproxy cannot parse


def send_raw(proxy: Proxy, upstream: Upstream, tls: bool, agent: str, path: str, head: bytes, body: bytes,
             cut: bool = False, keep_open: bool = False) -> Any:
    """One HTTP/1 request as raw bytes, plain through the proxy or inside CONNECT/TLS; `cut`
    hangs up right after sending, `keep_open` returns the open socket. Otherwise returns what
    came back before the connection ended, failing if it did not end within DEADLINE (a hang)."""
    if tls:
        sock: socket.socket = tunnel(proxy, upstream, agent, "http/1.1")
        host = f"localhost:{upstream.https_port}"
        start = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
    else:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=DEADLINE)
        host = f"127.0.0.1:{upstream.http_port}"
        auth = base64.b64encode(f"{agent}:x".encode()).decode()
        start = f"POST http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic {auth}\r\n"
    if keep_open:
        sock.sendall(start.encode() + head + b"\r\n" + body)
        return sock
    with sock:
        sock.sendall(start.encode() + head + b"\r\n" + body)
        if cut:
            return b""
        out, deadline = b"", time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                return out
            if not chunk:
                return out
            out += chunk
    raise AssertionError(f"no answer and no end of the connection within {DEADLINE}s: {out[:200]!r}")


def recorded_error(proxy: Proxy, path: str) -> dict[str, Any]:
    [err] = wait_for(lambda: rows_for(proxy, path, "error"), 10, f"the error event of {path}")
    return err


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_an_http1_agent_that_hangs_up_while_held_is_recorded_as_disconnected(proxy: Proxy, upstream: Upstream,
                                                                             tls: bool) -> None:
    """mitmproxy queues a hang-up behind the hold like a stream reset; it is still recorded as
    the agent's disconnection, whichever of the two notices first."""
    path = f"/hold/withdraw-gone-{tls}"
    sock = send_raw(proxy, upstream, tls, "agent-gone", path, b"Content-Length: 0\r\n", b"", keep_open=True)
    proxy.wait_held(f"~u {path}")
    sock.close()
    [d] = wait_for(lambda: rows_for(proxy, path, "decision"), 10, "the abandoned decision")
    assert d["decision"] == "abandoned" and d["operation"] == "client_disconnected"
    proxy.command("shield.approve", f"~u {path}")
    assert upstream.hits_for(path) == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_chunked_body_with_trailers_is_answered_and_recorded(proxy: Proxy, upstream: Upstream, tls: bool) -> None:
    """mitmproxy raises on HTTP/1 request trailers and leaves the client hanging; the shield
    records the request and ends the connection (with a 400 where it can write one)."""
    path = f"/allowed/trailers-{tls}"
    out = send_raw(proxy, upstream, tls, "agent-trailers", path, b"Transfer-Encoding: chunked\r\n",
                   b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n")
    if not tls:  # through TLS only mitmproxy's own layers could write an answer
        assert out.startswith(b"HTTP/1.1 400"), out[:200]
        assert json.loads(out.split(b"\r\n\r\n", 1)[1])["decision"] == "refused"
    err = recorded_error(proxy, path)
    assert err["outcome"] == "refused" and "trailers" in err["error"]
    assert err["agent"] == "agent-trailers" and err["client_ip"] == "127.0.0.1"
    assert upstream.hits_for(path) == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_bad_chunk_size_ends_the_connection_and_is_recorded(proxy: Proxy, upstream: Upstream, tls: bool) -> None:
    path = f"/allowed/bad-chunk-{tls}"
    send_raw(proxy, upstream, tls, "agent-bad-chunk", path, b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n")
    err = recorded_error(proxy, path)
    assert err["outcome"] == "error" and "chunk" in err["error"]
    assert err["agent"] == "agent-bad-chunk" and err["client_ip"] == "127.0.0.1"
    assert upstream.hits_for(path) == []


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_cut_by_the_agent_is_recorded(proxy: Proxy, upstream: Upstream, tls: bool, framing: str) -> None:
    path = f"/allowed/cut-{framing}-{tls}"
    head, body = ((b"Content-Length: 100\r\n", b"only part") if framing == "length"
                  else (b"Transfer-Encoding: chunked\r\n", b"64\r\nonly part"))
    send_raw(proxy, upstream, tls, "agent-cut", path, head, body, cut=True)
    err = recorded_error(proxy, path)
    assert err["outcome"] == "error" and "peer closed connection" in err["error"]
    assert err["agent"] == "agent-cut" and err["client_ip"] == "127.0.0.1"
    assert upstream.hits_for(path) == []

