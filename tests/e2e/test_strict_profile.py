"""`shield run --profile strict` through a real mitmdump: a host an agent never reached is held
once, remembered for that agent once approved and forwarded, and remembered across a restart."""

from __future__ import annotations

import json
import ssl
import threading
from pathlib import Path

import httpx

from shield_addon.core import contacts
from tests.e2e.harness import Proxy, Upstream, start_proxy


def client(proxy: Proxy, agent: str) -> httpx.Client:
    return httpx.Client(proxy=proxy.url(agent), verify=ssl.create_default_context(cafile=str(proxy.ca)),
                        trust_env=False, timeout=30)


def strict_proxy(tmp: Path, upstream: Upstream) -> Proxy:
    (tmp / "control-port").unlink(missing_ok=True)  # a restart must wait for the new control addon
    return start_proxy(tmp, "--profile", "strict", "--set", "proxyauth=any", upstream_ca=upstream.ca_file)


def get_held(proxy: Proxy, upstream: Upstream, agent: str, path: str, decide: tuple[str, ...]) -> int:
    """GET `path` as `agent`, which must be held; decide it with a shield.* command; the status."""
    result: dict[str, int] = {}

    def send() -> None:
        with client(proxy, agent) as c:
            result["status"] = c.get(upstream.url(path)).status_code

    t = threading.Thread(target=send)
    t.start()
    proxy.wait_held(f"~u {path}")
    proxy.command(decide[0], f"~u {path}", *decide[1:])
    t.join(30)
    return result["status"]


def get(proxy: Proxy, upstream: Upstream, agent: str, path: str) -> int:
    with client(proxy, agent) as c:
        return c.get(upstream.url(path)).status_code


def test_first_contact_is_held_once_per_agent_and_remembered_across_a_restart(
        tmp_path: Path, upstream: Upstream) -> None:
    proxy = strict_proxy(tmp_path, upstream)
    try:
        assert get_held(proxy, upstream, "alice", "/strict/denied", ("shield.deny", "not", "yet")) == 403
        assert upstream.hits_for("/strict/denied") == []
        # The denial taught nothing: held again, approved this time, forwarded.
        assert get_held(proxy, upstream, "alice", "/strict/first", ("shield.approve",)) == 200
        assert len(upstream.hits_for("/strict/first")) == 1
        assert get(proxy, upstream, "alice", "/strict/second") == 200  # not held: would wait for a reviewer
        assert get_held(proxy, upstream, "bob", "/strict/bob", ("shield.deny", "no")) == 403
        assert upstream.hits_for("/strict/bob") == []
    finally:
        assert proxy.stop() == 0

    lines = (proxy.audit_dir / contacts.FILE).read_text().splitlines()
    assert [(d["agent"], d["host"]) for d in map(json.loads, lines)] == [("alice", "127.0.0.1")]

    proxy = strict_proxy(tmp_path, upstream)
    try:
        assert get(proxy, upstream, "alice", "/strict/after-restart") == 200
        assert get_held(proxy, upstream, "bob", "/strict/bob-again", ("shield.deny", "still", "no")) == 403
        proxy.flow_events("/strict/bob-again", "request")  # ingested into audit.duckdb
        rules = {e["path"]: e["rule_id"] for e in proxy.events("stage = 'request'")}
        assert rules["/strict/first"] == "strict-first-contact"
        assert rules["/strict/second"] == rules["/strict/after-restart"] == "strict-known-host-read"
        assert rules["/strict/bob-again"] == "strict-first-contact"
    finally:
        proxy.stop()

