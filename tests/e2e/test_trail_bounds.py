"""A few huge requests cannot fill the disk: through a real proxy and a real upstream, a 4 MB
path, 1 MB of headers and a held-then-abandoned request with a huge URL each add a bounded
number of KiB to the journal, and an agent that floods the trail is refused 429."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import httpx

from tests.e2e.harness import HERE, Proxy, Upstream, start_proxy, wait_for

AUTH = b"Proxy-Authorization: Basic YWdlbnQtYm91bmQ6eA==\r\n"  # agent-bound:x
MARKER = re.compile(r"…\[cut at (\d+) of (\d+) bytes, sha256 ([0-9a-f]{64})\]")
KIB = 1024


def journal_bytes(proxy: Proxy) -> int:
    return sum(p.stat().st_size for p in (proxy.audit_dir / "journal").glob("*.jsonl"))


def send(proxy: Proxy, head: bytes, timeout: float = 30) -> bytes:
    """Send a raw request and return the status line of its answer (the client never hangs:
    the socket's timeout fails the test instead)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout) as s:
        s.sendall(head)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, "the proxy closed the connection without an answer"
            data += chunk
    return data.split(b"\r\n", 1)[0]


def target(upstream: Upstream, path: bytes) -> bytes:
    return b"http://127.0.0.1:%d%s" % (upstream.http_port, path)


def test_a_4_mb_path_adds_a_bounded_record(proxy: Proxy, upstream: Upstream) -> None:
    path = b"/allowed/huge-path-" + b"a" * (4 << 20)
    before = journal_bytes(proxy)
    status = send(proxy, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (target(upstream, path), AUTH))
    assert status.startswith(b"HTTP/1.1 414"), status  # the upstream's answer: the rules let it through
    [req] = proxy.flow_events("/allowed/huge-path-", "request")
    proxy.flow_events("/allowed/huge-path-", "response")
    grown = journal_bytes(proxy) - before
    assert grown < 48 * KIB, f"the journal grew by {grown} bytes"  # two events, each with path and URL cut at 8 KiB
    m = MARKER.search(req["path"])
    assert m and (int(m.group(2)), m.group(3)) == (len(path), hashlib.sha256(path).hexdigest())


def test_a_megabyte_of_headers_adds_a_bounded_record(proxy: Proxy, upstream: Upstream) -> None:
    many = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(1000))
    one = b"X-Big: " + b"w" * (1 << 20) + b"\r\n"
    for name, headers in ((b"many", many), (b"one", one)):
        before = journal_bytes(proxy)
        path = b"/allowed/huge-headers-" + name
        status = send(proxy, b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%sConnection: close\r\n\r\n"
                      % (target(upstream, path), AUTH, headers))
        assert status.startswith(b"HTTP/1.1 431"), status  # they reached the addon and the upstream
        [req] = proxy.flow_events(path.decode(), "request")
        proxy.flow_events(path.decode(), "response")
        grown = journal_bytes(proxy) - before
        assert grown < 96 * KIB, f"{name!r}: the journal grew by {grown} bytes"
        stored = json.loads(req["request_headers"])
        assert any(MARKER.search(n) or MARKER.search(v) for n, v in stored), stored[-1]


def test_a_held_then_abandoned_flow_with_a_huge_url_adds_a_bounded_record(proxy: Proxy, upstream: Upstream) -> None:
    path = b"/hold/huge-abandoned-" + b"d" * (4 << 20)
    before = journal_bytes(proxy)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    try:
        s.sendall(b"DELETE %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (target(upstream, path), AUTH))
        proxy.wait_held("~u huge-abandoned", 1, 30)
    finally:
        s.close()  # the agent gives up while its request is held
    [decision] = proxy.flow_events("/hold/huge-abandoned-", "decision")
    proxy.flow_events("/hold/huge-abandoned-", "error")
    assert decision["decision"] == "abandoned"
    grown = journal_bytes(proxy) - before
    assert grown < 64 * KIB, f"the journal grew by {grown} bytes"  # three events
    assert not upstream.hits_for("/hold/huge-abandoned-")


def test_an_agent_that_floods_the_trail_is_refused_429_and_others_are_not(tmp_path: Path, upstream: Upstream) -> None:
    proxy = start_proxy(tmp_path, "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any",
                        "--set", "shield_agent_budget=200000", upstream_ca=upstream.ca_file)
    try:
        with httpx.Client(proxy=proxy.url("agent-flood"), trust_env=False, timeout=30) as c:
            def refused() -> httpx.Response | None:
                r = c.get(upstream.url("/allowed/flood-" + "f" * 20_000))
                return r if r.status_code == 429 else None
            r = wait_for(refused, 30, "a 429 for the flooding agent")
        assert r.json()["rule"] == "builtin:trail-budget" and int(r.headers["retry-after"]) >= 1
        with httpx.Client(proxy=proxy.url("agent-calm"), trust_env=False, timeout=30) as c:
            assert c.get(upstream.url("/allowed/calm")).status_code == 200
        # its tunnels too: a CONNECT is refused before anything inside it could be written
        flood_auth = b"Proxy-Authorization: Basic YWdlbnQtZmxvb2Q6eA==\r\n"  # agent-flood:x
        status = send(proxy, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (upstream.https_port, flood_auth))
        assert status.startswith(b"HTTP/1.1 429"), status
        ev = proxy.events("rule_id = 'builtin:trail-budget' AND stage = 'request'")[0]
        assert ev["agent"] == "agent-flood" and ev["decision"] == "blocked" and ev["request_headers"] is None
        assert len(ev["url"]) < 512
    finally:
        proxy.stop()
