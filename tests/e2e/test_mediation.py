"""Complete mediation (issue 14), black-box through a real `shield run --headless`: every way
out of the proxy passes the gate, and the trail records every attempt truthfully.

Each test starts real local servers and proves what reached them at the TCP level
(accepted connections, bytes), not only at the HTTP level.

Event shapes these tests expect:
- a tunnel (CONNECT) is an event of stage `connect` with the agent, the target's host and
  port, verdict and outcome; a raw TCP stream's chunks are events of stage `tcp`;
- built-in refusals are recorded like rules, with rule ids `builtin:<name>`
  (`builtin:raw-tcp`, `builtin:destination-mismatch`, `builtin:proxy-itself`,
  `builtin:unreadable`);
- a judged WebSocket message is one event of stage `message` that carries its verdict
  (`rule_id`, `verdict`, `decision`), like a request event does; a denied message is not
  delivered.

Tests marked xfail(strict) describe what is still missing: they flip (and fail as XPASS)
as soon as it is fixed, so the marker must then go.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import SHIELD, Proxy, Upstream, start_proxy, stop_process, wait_for
from tests.e2e.mediation_servers import (
    BANNER,
    BannerServer,
    UpgradeServer,
    WsEchoWithEnds,
    raw_http,
    read_until_closed,
    refused_port,
    start_counting_https,
)
from tests.e2e.protocols.clients import WsClient, connect_tunnel, proxy_auth

RULES = """\
version: 1
default: allow
rules:
  - id: deny-path
    match: {path: "^/deny/"}
    action: deny
    message: Denied for the tests
  - id: hold-path
    match: {path: "^/hold/"}
    action: hold
    message: Held for the tests
  - id: deny-sql-drop
    match:
      sql: {statement: [drop, truncate]}
    action: deny
    severity: critical
    message: DROP/TRUNCATE is never sent by agents
  - id: deny-graphql-delete
    match: {service: graphql, action_type: delete}
    action: deny
    message: Destructive GraphQL mutations are never sent by agents
  - id: deny-mcp-call
    match: {service: mcp, operation: "tools/call*"}
    action: deny
    message: MCP tool calls are never made over this link
  - id: allow-raw-tcp-by-name
    match: {method: TCP, host: localhost}
    action: allow
    message: The tests' banner server, by this name only
  - id: deny-mitm-it
    match: {host: mitm.it}
    action: deny
    message: The proxy's certificate page is not for agents
"""

DROP = json.dumps({"sql": "DROP TABLE users"}).encode()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("mediation")
    (tmp / "rules.yaml").write_text(RULES)
    p = start_proxy(tmp, "--set", f"shield_rules={tmp / 'rules.yaml'}", "--set", "proxyauth=any",
                    upstream_ca=upstream.ca_file)
    yield p
    p.stop()


def client(proxy: Proxy, agent: str, token: str = "x") -> httpx.Client:
    return httpx.Client(proxy=proxy.url(agent, token), verify=ssl.create_default_context(cafile=str(proxy.ca)),
                        trust_env=False, timeout=30)


def wait_events(proxy: Proxy, where: str, what: str, timeout: float = 15) -> list[dict[str, Any]]:
    return wait_for(lambda: proxy.events(where), timeout, what)


# ---------------------------------------------------------------- connections are attempts


def test_raw_tcp_to_a_banner_server_is_refused_and_recorded(proxy: Proxy) -> None:
    banner = BannerServer().start()
    try:
        s, head = connect_tunnel(proxy.port, f"127.0.0.1:{banner.port}", "raw-tcp")
        with s:
            if head.startswith(b"HTTP/1.1 200"):
                s.sendall(b"SSH-2.0-OpenSSH_9.6 agent\r\n")  # a client that also speaks first
            relayed = read_until_closed(s, 10)
        assert BANNER not in relayed, relayed
        assert not banner.received, bytes(banner.received)
        [ev, *_] = wait_events(proxy, f"agent = 'raw-tcp' AND port = {banner.port} AND stage IN ('connect', 'tcp') "
                                      "AND rule_id = 'builtin:raw-tcp'", "the raw TCP attempt")
        assert ev["host"] == "127.0.0.1" and ev["verdict"] == "deny"
    finally:
        banner.stop()


def test_raw_tcp_a_rule_allows_is_relayed_and_recorded_per_direction(proxy: Proxy) -> None:
    banner = BannerServer().start()
    try:
        s, head = connect_tunnel(proxy.port, f"localhost:{banner.port}", "raw-tcp-allowed")
        with s:
            assert head.startswith(b"HTTP/1.1 200"), head
            s.sendall(b"SSH-2.0-OpenSSH_9.6 agent\r\n")
            relayed = read_until_closed(s, 10)
        assert BANNER in relayed
        evs = wait_events(proxy, "agent = 'raw-tcp-allowed' AND stage = 'tcp' AND request_body_size IS NOT NULL",
                          "the allowed stream's record")
        assert evs[0]["request_body_size"] == len(b"SSH-2.0-OpenSSH_9.6 agent\r\n")
        [judged] = proxy.events("agent = 'raw-tcp-allowed' AND stage = 'tcp' AND rule_id IS NOT NULL")
        assert (judged["rule_id"], judged["verdict"]) == ("allow-raw-tcp-by-name", "allow")
    finally:
        banner.stop()


def test_an_upgrade_to_a_raw_stream_is_refused_like_raw_tcp(proxy: Proxy) -> None:
    """The twin of raw TCP through CONNECT: a 101 to anything but a WebSocket makes mitmproxy
    relay the connection byte for byte, past the rules."""
    server = UpgradeServer().start()
    try:
        status, body = raw_http(proxy.port, (f"GET http://127.0.0.1:{server.port}/upgrade HTTP/1.1\r\n"
                                             f"Host: 127.0.0.1:{server.port}\r\nUpgrade: raw-db\r\nConnection: Upgrade\r\n"
                                             f"Proxy-Authorization: {proxy_auth('upgrader')}\r\n\r\n").encode())
        assert status == 403 and BANNER not in body, body[:300]
        [ev] = wait_events(proxy, "agent = 'upgrader' AND stage = 'tcp'", "the judged upgrade")
        assert (ev["rule_id"], ev["verdict"], ev["decision"]) == ("builtin:raw-tcp", "deny", "blocked")
    finally:
        server.stop()


def test_connect_to_a_closed_port_is_recorded(proxy: Proxy) -> None:
    holder, port = refused_port()
    with holder, client(proxy, "closed-port") as c:
        try:
            got: int | str = c.get(f"https://localhost:{port}/closed/a").status_code
        except httpx.HTTPError as e:  # the CONNECT itself refused
            got = repr(e)
    assert got == 502 or isinstance(got, str), got
    evs = wait_events(proxy, f"agent = 'closed-port' AND port = {port}", "an event for the closed port")
    assert any(e["stage"] in ("connect", "request") for e in evs), evs
    assert any(e["error"] for e in evs), evs


def test_held_and_denied_https_requests_never_connect_to_their_server(proxy: Proxy, upstream: Upstream) -> None:
    server = start_counting_https(upstream.ca_file, upstream.ca_file.with_name("upstream-key.pem"))
    try:
        with client(proxy, "lazy-deny") as c:
            assert c.get(f"https://localhost:{server.server_address[1]}/deny/lazy").status_code == 403
        result: dict[str, Any] = {}

        def held() -> None:
            with client(proxy, "lazy-hold") as c:
                result["status"] = c.get(f"https://localhost:{server.server_address[1]}/hold/lazy").status_code

        t = threading.Thread(target=held)
        t.start()
        proxy.wait_held("~u /hold/lazy")
        accepted_while_held = server.accepted
        proxy.command("shield.deny", "~u /hold/lazy", "not", "today")
        t.join(30)
        assert result.get("status") == 403
        assert server.paths == []
        assert accepted_while_held == 0 and server.accepted == 0
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- one destination


def _sni_mismatch(proxy: Proxy, upstream: Upstream) -> None:
    """CONNECT to the IP, TLS with SNI api.github.com and Host api.github.com."""
    s, head = connect_tunnel(proxy.port, f"127.0.0.1:{upstream.https_port}", "mismatch-sni")
    with s:
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context(cafile=str(proxy.ca))
        try:
            with ctx.wrap_socket(s, server_hostname="api.github.com") as tls:
                tls.sendall(b"GET /mismatch/sni HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n")
                answer = read_until_closed(tls, 15)
        except (ssl.SSLError, OSError):
            return  # refused during the handshake: also a refusal
        assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]


def _host_mismatch_in_tunnel(proxy: Proxy, upstream: Upstream) -> None:
    """CONNECT localhost:port with SNI localhost, then Host: api.github.com inside."""
    s, head = connect_tunnel(proxy.port, f"localhost:{upstream.https_port}", "mismatch-host")
    with s:
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context(cafile=str(proxy.ca))
        with ctx.wrap_socket(s, server_hostname="localhost") as tls:
            tls.sendall(b"GET /mismatch/host HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n")
            answer = read_until_closed(tls, 15)
        assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def _absolute_form_to_ip(proxy: Proxy, upstream: Upstream) -> None:
    """Plain HTTP, absolute-form to the IP, with another Host."""
    status, _ = raw_http(proxy.port, (f"GET http://127.0.0.1:{upstream.http_port}/mismatch/absolute HTTP/1.1\r\n"
                                 f"Host: api.github.com\r\nProxy-Authorization: {proxy_auth('mismatch-absolute')}\r\n"
                                 "Connection: close\r\n\r\n").encode())
    assert status == 403


@pytest.mark.parametrize("case, agent", [(_sni_mismatch, "mismatch-sni"), (_host_mismatch_in_tunnel, "mismatch-host"),
                                         (_absolute_form_to_ip, "mismatch-absolute")], ids=["sni", "host", "absolute"])
def test_host_sni_and_target_must_name_one_server(proxy: Proxy, upstream: Upstream, case: Any, agent: str) -> None:
    case(proxy, upstream)
    assert upstream.hits_for("/mismatch/") == []
    [ev, *_] = wait_events(proxy, f"agent = '{agent}' AND rule_id = 'builtin:destination-mismatch'",
                           f"the mismatch refusal for {agent}")
    assert ev["verdict"] == "deny"


# ---------------------------------------------------------------- the proxy never reaches itself


def hosts_file_name() -> str | None:
    """A name /etc/hosts maps to a loopback address, other than localhost itself; the
    machine's own host name only when there is no other (it is the easy case)."""
    try:
        lines = Path("/etc/hosts").read_text().splitlines()
    except OSError:
        return None
    names = [name for line in lines if len(fields := line.split("#", 1)[0].split()) >= 2
             and (fields[0] == "::1" or fields[0].startswith("127."))
             for name in fields[1:] if name.lower() not in ("localhost", "localhost.localdomain")]
    others = [n for n in names if n.lower() != socket.gethostname().lower()]
    return (others or names or [None])[0]


# Every spelling a resolver accepts, and a name /etc/hosts maps to loopback.
LOOPBACK_SPELLINGS = ["127.0.0.1", "localhost", "127.1", "0177.0.0.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]",
                      "localhost.", "hosts-file"]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_loopback_spellings_of_the_proxy_are_refused_once(proxy: Proxy, spelling: str) -> None:
    if spelling == "hosts-file":
        name = hosts_file_name()
        if name is None:
            pytest.skip("/etc/hosts names no loopback address besides localhost")
        spelling = name
    tag = re.sub(r"[^a-z0-9]", "-", spelling.lower())
    path = f"/loop/{tag}"
    try:
        status, _ = raw_http(proxy.port, (f"GET http://{spelling}:{proxy.port}{path} HTTP/1.1\r\nHost: {spelling}:{proxy.port}\r\n"
                                     f"Proxy-Authorization: {proxy_auth('loop')}\r\nConnection: close\r\n\r\n").encode(), 30)
    except (ConnectionError, OSError) as e:
        pytest.fail(f"no answer for {spelling}: {e}")
    assert status == 403
    # the sent request's story is complete (its answer recorded) before it is counted
    wait_events(proxy, f"path = '{path}' AND stage IN ('response', 'error')", f"the answer to {path}")
    requests = proxy.events(f"path = '{path}' AND stage = 'request'")
    assert len(requests) == 1, [(e["agent"], e["host"], e["rule_id"]) for e in requests]
    assert requests[0]["rule_id"] == "builtin:proxy-itself"


# ---------------------------------------------------------------- WebSocket messages are judged


GRAPHQL_DELETE = json.dumps({"id": "1", "type": "subscribe", "payload": {
    "query": 'mutation { deleteRepository(input: {repositoryId: "R_1"}) { clientMutationId } }'}})
MCP_CALL = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "delete_branch", "arguments": {"branch": "main"}}})


@pytest.fixture(scope="module")
def ws_echo() -> Iterator[WsEchoWithEnds]:
    echo = WsEchoWithEnds().start()
    yield echo
    echo.stop()


@pytest.mark.parametrize("path, message, rule", [
    ("/graphql", GRAPHQL_DELETE, "deny-graphql-delete"),
    ("/mcp", MCP_CALL, "deny-mcp-call"),
    ("/ws/sql", DROP.decode(), "deny-sql-drop"),
], ids=["graphql-mutation", "mcp-tools-call", "sql-drop"])
def test_websocket_messages_are_judged_and_denied_ones_not_delivered(proxy: Proxy, ws_echo: WsEchoWithEnds, path: str,
                                                                     message: str, rule: str) -> None:
    ended = ws_echo.ended
    ws = WsClient(proxy.port, "127.0.0.1", ws_echo.port, path, "ws-agent")
    assert ws.accepted is True
    canary = f"canary {path}"
    try:
        ws.send(message)
        ws.send(canary)  # after it on the same stream: once the canary arrived, so had the message
        echoed = ws.recv()
        while echoed != f"echo:{canary}":
            echoed = ws.recv()
    except (ConnectionError, OSError):
        # the proxy closed the stream: once the server's side ended too, nothing more can arrive
        wait_for(lambda: ws_echo.ended > ended, 15, "the server's side of the closed stream to end")
    finally:
        ws.close()
    assert message not in ws_echo.texts()
    [ev, *_] = wait_events(proxy, f"path = '{path}' AND stage = 'message' AND rule_id = '{rule}'",
                           f"the judged message on {path}")
    assert ev["verdict"] == "deny" and ev["agent"] == "ws-agent"


# ---------------------------------------------------------------- what cannot be read is not passed


def post(proxy: Proxy, upstream: Upstream, path: str, body: bytes, agent: str, encoding: str | None = None) -> int:
    headers = f"Content-Encoding: {encoding}\r\n" if encoding else ""
    status, _ = raw_http(proxy.port, (f"POST http://127.0.0.1:{upstream.http_port}{path} HTTP/1.1\r\n"
                                 f"Host: 127.0.0.1:{upstream.http_port}\r\nProxy-Authorization: {proxy_auth(agent)}\r\n"
                                 f"Content-Type: application/json\r\n{headers}Content-Length: {len(body)}\r\n"
                                 "Connection: close\r\n\r\n").encode() + body)
    return status


def test_stacked_gzip_is_undone_and_judged_like_the_plain_body(proxy: Proxy, upstream: Upstream) -> None:
    assert post(proxy, upstream, "/enc/plain", DROP, "enc") == 403
    [plain] = proxy.flow_events("/enc/plain", "request")
    assert plain["rule_id"] == "deny-sql-drop"
    assert post(proxy, upstream, "/enc/gzip2", gzip.compress(gzip.compress(DROP)), "enc", "gzip, gzip") == 403
    [stacked] = proxy.flow_events("/enc/gzip2", "request")
    assert stacked["rule_id"] == "deny-sql-drop" and stacked["verdict"] == plain["verdict"]
    assert upstream.hits_for("/enc/") == []


def test_an_encoding_the_proxy_cannot_undo_is_refused(proxy: Proxy, upstream: Upstream) -> None:
    status = post(proxy, upstream, "/enc/compress", b"\x1f\x9d\x90" + DROP, "enc", "compress")
    assert status == 403
    [ev] = proxy.flow_events("/enc/compress", "request")
    assert ev["rule_id"] == "builtin:unreadable"
    assert upstream.hits_for("/enc/compress") == []


# ---------------------------------------------------------------- redaction keeps what is not secret


def test_lookalike_header_names_stay_in_clear(proxy: Proxy, upstream: Upstream) -> None:
    with client(proxy, "lookalike") as c:
        r = c.get(upstream.url("/lookalike/a"), headers={
            "X-Author": "ada-lovelace", "X-Monkey": "banana-42", "Authorization": "Bearer sk-live-not-for-the-trail"})
    assert r.status_code == 200
    [ev] = proxy.flow_events("/lookalike/a", "request")
    headers = {k.lower(): v for k, v in json.loads(ev["request_headers"])}
    assert headers["authorization"].startswith("[redacted:")  # a real credential still is
    assert headers["x-author"] == "ada-lovelace"
    assert headers["x-monkey"] == "banana-42"


# ---------------------------------------------------------------- safe defaults


def test_mitm_it_is_refused_and_the_record_says_what_the_agent_got(proxy: Proxy) -> None:
    status, body = raw_http(proxy.port, (f"GET http://mitm.it/ HTTP/1.1\r\nHost: mitm.it\r\n"
                                    f"Proxy-Authorization: {proxy_auth('onboarding')}\r\nConnection: close\r\n\r\n").encode())
    assert status == 403, body[:200]
    evs = wait_events(proxy, "agent = 'onboarding' AND host = 'mitm.it' AND stage IN ('response', 'error')",
                      "the end of the mitm.it request")
    assert all(e["status_code"] in (status, None) for e in evs), evs
    [req] = proxy.events("agent = 'onboarding' AND host = 'mitm.it' AND stage = 'request'")
    assert req["rule_id"] == "deny-mitm-it" and req["decision"] == "blocked"


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_without_agents_the_proxy_listens_on_loopback_only(tmp_path: Path) -> None:
    log = tmp_path / "proxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*SHIELD, "run", "--headless", "--confdir", str(tmp_path / "conf"), "--listen-port", "0",
                                 "--set", f"shield_dir={tmp_path / 'audit'}"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=tmp_path, env=_env())
    try:
        m = wait_for(lambda: re.search(r"proxy listening at (\S+):(\d+)", log.read_text()) or proc.poll() is not None,
                     30, "the proxy to listen")
        assert m is not True, log.read_text()
        host, port = m.group(1), int(m.group(2))
        assert host in ("127.0.0.1", "[::1]", "localhost"), log.read_text()
        if addr := non_loopback_address():
            with pytest.raises(OSError):
                socket.create_connection((addr, port), timeout=5).close()
    finally:
        stop_process(proc)


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def test_a_bad_rule_file_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: a\n    match: {methd: DELETE}\n    action: hold\n")
    holder, port = refused_port()  # a port nobody listens on; the proxy must not start listening on it
    holder.close()
    cp = subprocess.run([*SHIELD, "run", "--headless", "--confdir", str(tmp_path / "conf"), "--listen-host", "127.0.0.1",
                         "--listen-port", str(port), "--set", f"shield_rules={bad}",
                         "--set", f"shield_dir={tmp_path / 'audit'}"],
                        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_env())
    out = cp.stdout + cp.stderr
    assert cp.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "listening" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{bad}:4:13" in lines[0], lines
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# ---------------------------------------------------------------- identity changes apply at once


def shield_agents(confdir: Path, *args: str) -> str:
    cp = subprocess.run([*SHIELD, "agents", *args, "--confdir", str(confdir)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip().splitlines()[-1]


def status_with(proxy: Proxy, url: str, agent: str, token: str) -> int:
    """The status a new connection gets; a CONNECT refused with 407 counts as 407."""
    with client(proxy, agent, token) as c:
        try:
            return c.get(url).status_code
        except httpx.ProxyError as e:
            if "407" in str(e):
                return 407
            raise


def test_agents_added_rotated_and_removed_count_on_a_running_proxy(tmp_path: Path, upstream: Upstream) -> None:
    """`shield agents` edits the htpasswd file; the running proxy follows within a second
    (the deadlines below are looser only because the test machine is shared)."""
    confdir = tmp_path / "conf"
    alice = shield_agents(confdir, "add", "alice")
    p = start_proxy(tmp_path, upstream_ca=upstream.ca_file)  # proxyauth from the agents file, as `shield run` does
    try:
        url = upstream.url("/identity/a", tls=True)
        assert status_with(p, url, "alice", alice) == 200
        assert status_with(p, url, "bob", "no-token-yet") == 407

        bob = shield_agents(confdir, "add", "bob")
        wait_for(lambda: status_with(p, url, "bob", bob) == 200, 5, "bob's new token to work")

        with client(p, "alice", alice) as open_tunnel:  # one tunnel, opened with the token about to be rotated
            assert open_tunnel.get(url).status_code == 200
            new_alice = shield_agents(confdir, "rotate", "alice")
            wait_for(lambda: status_with(p, url, "alice", alice) == 407, 5, "alice's old token to be refused")
            assert status_with(p, url, "alice", new_alice) == 200
            assert open_tunnel.get(url).status_code == 407  # the tunnel opened with the old token is signed out

        shield_agents(confdir, "remove", "bob")
        wait_for(lambda: status_with(p, url, "bob", bob) == 407, 5, "bob's token to be refused")
        assert status_with(p, url, "alice", new_alice) == 200
    finally:
        p.stop()


def test_the_first_agent_added_to_a_proxy_started_without_any_turns_credentials_on(tmp_path: Path,
                                                                                    upstream: Upstream) -> None:
    confdir = tmp_path / "conf"
    p = start_proxy(tmp_path)  # no agents yet in tmp_path/conf: loopback, no credentials
    try:
        with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False, timeout=30) as c:
            assert c.get(upstream.url("/first-agent/before")).status_code == 200
        token = shield_agents(confdir, "add", "carol")

        def anonymous_refused() -> bool:
            with httpx.Client(proxy=f"http://127.0.0.1:{p.port}", trust_env=False, timeout=30) as c:
                return c.get(upstream.url("/first-agent/anonymous")).status_code == 407

        wait_for(anonymous_refused, 10, "the proxy to require credentials")
        with httpx.Client(proxy=f"http://carol:{token}@127.0.0.1:{p.port}", trust_env=False, timeout=30) as c:
            assert c.get(upstream.url("/first-agent/carol")).status_code == 200
        [ev] = p.flow_events("/first-agent/carol", "request")
        assert ev["agent"] == "carol"
    finally:
        p.stop()
