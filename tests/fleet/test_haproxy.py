"""The scale-out recipe, tested as docs/fleet.md gives it: HAProxy in TCP mode in front of three
proxies that share one CA and one fleet database. Agents point at HAProxy; any proxy answers;
every proxy's chain ends up in the fleet, whole."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from shield_addon.journal import read_rows
from tests.e2e.harness import SHIELD, Upstream, start_upstream, wait_for
from tests.fleet.chains import assert_shipped_exactly, fleet_behind_haproxy, wait_shipped


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up, stop = start_upstream(tmp_path_factory.mktemp("upstream"))
    yield up
    stop()


def fresh_connection_each(proxy_url: str, ca: Path) -> httpx.Client:
    """A client that opens a new connection per request, so round robin spreads them."""
    return httpx.Client(proxy=proxy_url, verify=ssl.create_default_context(cafile=str(ca)), trust_env=False, timeout=15,
                        limits=httpx.Limits(max_keepalive_connections=0))


def test_three_proxies_behind_haproxy_answer_and_all_their_chains_reach_the_fleet(tmp_path: Path, fleet_url: str,
                                                                                  upstream: Upstream) -> None:
    front, proxies = fleet_behind_haproxy(tmp_path, fleet_url, 3, upstream_ca=upstream.ca_file)
    sent: dict[str, int] = {}
    try:
        with fresh_connection_each(front.url("agent-lb"), proxies[0].ca) as c:
            for i in range(12):
                for tls in (False, True):  # HTTPS: every proxy presents a certificate of the one CA
                    path = f"/{'deny' if i % 4 == 3 else 'ok'}/lb-{i}-{'s' if tls else 'p'}"
                    sent[path] = c.get(upstream.url(path, tls=tls)).status_code
        # A proxy stopped: HAProxy sends its connections to the others (health check, redispatch).
        proxies[2].stop()
        with fresh_connection_each(front.url("agent-lb"), proxies[0].ca) as c:
            for i in range(6):
                path = f"/ok/lb-after-{i}"
                sent[path] = c.get(upstream.url(path, tls=i % 2 == 1)).status_code
        marks = [wait_shipped(fleet_url, p.audit_dir) for p in proxies]
    finally:
        front.stop()
        for p in proxies:
            p.stop()
    assert {path: code for path, code in sent.items() if code != (403 if "/deny/" in path else 200)} == {}
    seen = {p.confdir.parent.name: {row["path"] for row in read_rows(p.audit_dir / "journal") if row["stage"] == "request"}
            for p in proxies}
    assert all(paths & set(sent) for paths in seen.values()), f"a proxy got no request: {seen}"
    assert all({p for p in paths if p.endswith("-s")} for paths in seen.values()), "a proxy got no HTTPS request"
    assert set().union(*seen.values()) == set(sent)
    assert not seen["proxy-c"] & {p for p in sent if "after" in p}
    for p, mark in zip(proxies, marks):
        assert assert_shipped_exactly(fleet_url, p.audit_dir) >= mark
    with psycopg.connect(fleet_url) as con:
        rows = con.execute("SELECT proxy, path FROM events WHERE stage = 'request' AND path LIKE '%/lb-%'").fetchall()
    assert {proxy for proxy, _ in rows} == {"a", "b", "c"}
    assert sorted(path for _, path in rows) == sorted(sent)  # each request once, from the proxy that took it


def test_proxies_on_one_machine_can_share_one_confdir_and_its_agents(tmp_path: Path, fleet_url: str,
                                                                     upstream: Upstream) -> None:
    confdir = tmp_path / "conf"
    cp = subprocess.run([*SHIELD, "agents", "add", "deploy-bot", "--confdir", str(confdir)], capture_output=True,
                        text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    token = cp.stdout.strip().splitlines()[-1]
    front, proxies = fleet_behind_haproxy(tmp_path, fleet_url, 2, upstream_ca=upstream.ca_file, confdir=confdir)
    try:
        with fresh_connection_each(front.url("deploy-bot", token), proxies[0].ca) as c:
            codes = [c.get(upstream.url(f"/ok/agent-{i}", tls=i % 2 == 1)).status_code for i in range(8)]
        with fresh_connection_each(front.url("deploy-bot", "wrong"), proxies[0].ca) as c:
            refused = [c.get(upstream.url(f"/ok/wrong-{i}")).status_code for i in range(4)]
        for p in proxies:
            wait_shipped(fleet_url, p.audit_dir)
    finally:
        front.stop()
        for p in proxies:
            p.stop()
    assert codes == [200] * 8 and refused == [407] * 4  # both proxies know the agent, and only it
    assert not upstream.hits_for("/wrong-")
    with psycopg.connect(fleet_url) as con:
        rows = con.execute("SELECT DISTINCT proxy, agent FROM events WHERE path LIKE '/ok/agent-%'").fetchall()
    assert sorted(rows) == [("a", "deploy-bot"), ("b", "deploy-bot")]


def test_a_retry_mode_approval_is_found_through_haproxy_whichever_proxy_the_retry_lands_on(
        tmp_path: Path, fleet_url: str, upstream: Upstream) -> None:
    """No stickiness: the agent's retries land on whichever proxy HAProxy picks, and the
    approval taken on one console is used once, fleet-wide."""
    front, proxies = fleet_behind_haproxy(tmp_path, fleet_url, 3, upstream_ca=upstream.ca_file, control=True)
    path = "/retry/lb-approve"
    try:
        with fresh_connection_each(front.url("deploy-bot"), proxies[0].ca) as c:
            def send() -> httpx.Response:
                return c.post(upstream.url(path, tls=True), content=b'{"replicas": 0}',
                              headers={"content-type": "application/json"})

            first = send()
            assert first.status_code == 409
            hold_id = first.json()["hold_id"]
            answers = [send() for _ in range(3)]  # round robin: each of the three proxies once
            assert [(r.status_code, r.json()["hold_id"]) for r in answers] == [(409, hold_id)] * 3
            with psycopg.connect(fleet_url) as con:
                [(owner,)] = con.execute("SELECT proxy FROM holds WHERE hold_id = %s", (hold_id,)).fetchall()
            other = next(p for p in proxies if p.confdir.parent.name != f"proxy-{owner}")
            wait_for(lambda: other.command("count", f"~u {path}")["held"], 15, "the hold on another proxy's console")
            other.command("shield.approve", f"~u {path}", held=True)
            with psycopg.connect(fleet_url) as con:
                wait_for(lambda: con.execute("SELECT 1 FROM holds WHERE hold_id = %s AND applied_at IS NOT NULL",
                                             (hold_id,)).fetchone(), 15, "the owner to apply the approval")
            after = [send().status_code for _ in range(4)]
    finally:
        front.stop()
        for p in proxies:
            p.stop()
    assert after.count(200) == 1 and after[0] == 200 and set(after[1:]) == {409}
    assert len(upstream.hits_for(path)) == 1
