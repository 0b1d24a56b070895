"""Agent identity through mitmproxy's proxyauth with the htpasswd that `shield agents` writes."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import HERE, SHIELD, Proxy, Upstream, start_proxy


def shield(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SHIELD, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def agents_proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[tuple[Proxy, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("agents")
    tokens = {}
    for name in ("agent-a", "agent-b"):
        cp = shield("agents", "add", name, "--confdir", str(tmp / "conf"))
        assert cp.returncode == 0, cp.stderr
        tokens[name] = cp.stdout.strip().splitlines()[-1]
    # No proxyauth option given: `shield run` turns it on because agents exist.
    p = start_proxy(tmp, "--set", f"shield_rules={HERE / 'rules'}", upstream_ca=upstream.ca_file)
    yield p, tokens
    p.stop()


def get(proxy: Proxy, url: str, user: str | None, password: str = "") -> httpx.Response:
    with httpx.Client(proxy=proxy.url(user, password) if user else proxy.url(), trust_env=False, timeout=15,
                      verify=ssl.create_default_context(cafile=str(proxy.ca))) as c:
        return c.get(url)


def test_agents_are_listed_and_only_hashes_are_stored(agents_proxy: tuple[Proxy, dict[str, str]]) -> None:
    proxy, tokens = agents_proxy
    assert shield("agents", "list", "--confdir", str(proxy.confdir)).stdout.split() == ["agent-a", "agent-b"]
    htpasswd = (proxy.confdir / "shield-agents.htpasswd").read_text()
    assert all(tok not in htpasswd for tok in tokens.values())
    assert re.fullmatch(r"(agent-[ab]:\$2b\$10\$\S{53}\n){2}", htpasswd)


def test_two_agents_are_told_apart_by_their_proxy_credentials(agents_proxy, upstream: Upstream) -> None:
    proxy, tokens = agents_proxy
    for name in ("agent-a", "agent-b"):
        r = get(proxy, upstream.url(f"/allowed/{name}", tls=True), name, tokens[name])
        assert r.status_code == 200
    rows = {r["path"]: r["agent"] for r in proxy.timeline("--agent", "agent-*")}
    assert rows["/allowed/agent-a"] == "agent-a" and rows["/allowed/agent-b"] == "agent-b"


def test_unauthenticated_and_wrong_token_get_407_and_are_not_forwarded(agents_proxy, upstream: Upstream) -> None:
    proxy, tokens = agents_proxy
    assert get(proxy, upstream.url("/allowed/nobody"), None).status_code == 407
    assert get(proxy, upstream.url("/allowed/wrong"), "agent-a", "not-the-token").status_code == 407
    assert get(proxy, upstream.url("/allowed/swapped"), "agent-a", tokens["agent-b"]).status_code == 407
    assert upstream.hits_for("/allowed/nobody") == upstream.hits_for("/allowed/wrong") == []


def test_an_agent_cannot_name_itself_in_a_header(agents_proxy, upstream: Upstream) -> None:
    proxy, tokens = agents_proxy
    with httpx.Client(proxy=proxy.url("agent-a", tokens["agent-a"]), trust_env=False,
                      verify=ssl.create_default_context(cafile=str(proxy.ca))) as c:
        assert c.get(upstream.url("/allowed/spoof"), headers={"X-Agent": "agent-b", "X-Shield-Agent": "agent-b"}).status_code == 200
    [row] = [r for r in proxy.timeline() if r["path"] == "/allowed/spoof"]
    assert row["agent"] == "agent-a"


def test_credentials_inside_a_tunnel_do_not_change_who_the_agent_is(agents_proxy, upstream: Upstream) -> None:
    import base64

    proxy, tokens = agents_proxy
    other = base64.b64encode(f"agent-b:{tokens['agent-b']}".encode()).decode()
    with httpx.Client(proxy=proxy.url("agent-a", tokens["agent-a"]), trust_env=False,
                      verify=ssl.create_default_context(cafile=str(proxy.ca))) as c:
        r = c.get(upstream.url("/allowed/replay-b", tls=True), headers={"Proxy-Authorization": f"Basic {other}",
                                                                     "X-Agent-Id": "agent-b"})
    assert r.status_code == 200
    [ev] = proxy.events("path = '/allowed/replay-b' AND stage = 'request'")
    assert ev["agent"] == "agent-a"
    headers = dict((k.lower(), v) for k, v in json.loads(ev["request_headers"]))
    assert headers["x-agent-id"] == "agent-b"  # recorded as the agent's claim, never trusted
    assert headers["proxy-authorization"].startswith("[redacted:")


def test_tokens_and_secrets_are_nowhere_in_the_audit_directory(agents_proxy, upstream: Upstream) -> None:
    proxy, tokens = agents_proxy
    r = get(proxy, upstream.url("/allowed/secrets?api_key=query-secret-123", tls=True), "agent-a", tokens["agent-a"])
    assert r.status_code == 200
    proxy.flow_events("/allowed/secrets", "response")
    proxy.stop()  # flushes the last ingest batch into audit.duckdb
    files = [p for p in proxy.audit_dir.rglob("*") if p.is_file()]
    assert any(p.name == "audit.duckdb" for p in files)
    blob = b"".join(p.read_bytes() for p in files)
    for secret in (*tokens.values(), "query-secret-123", "upstream-cookie-secret"):
        assert secret.encode() not in blob, secret
    assert b"[redacted:" in blob
    assert not any(p.name == "shield-redaction.key" for p in files)


def test_removed_agent_is_gone(tmp_path: Path) -> None:
    conf = str(tmp_path / "conf")
    assert shield("agents", "add", "x", "--confdir", conf).returncode == 0
    assert shield("agents", "add", "x", "--confdir", conf).returncode == 2
    assert shield("agents", "remove", "x", "--confdir", conf).returncode == 0
    assert shield("agents", "list", "--confdir", conf).stdout == ""
    bad = shield("agents", "add", "bad name!", "--confdir", conf)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

