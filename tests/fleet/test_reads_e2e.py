"""Three real proxies in one fleet: their traffic in `shield timeline --fleet`, their chains
proven by `shield verify --fleet`, and an edit in PostgreSQL caught and named."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from scripts.harness import wait_for
from tests.e2e.conftest import client
from tests.e2e.harness import HERE, Proxy, Upstream, start_proxy, start_upstream

NAMES = ("edge-1", "edge-2", "edge-3")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up, stop = start_upstream(tmp_path_factory.mktemp("upstream"))
    yield up
    stop()


@pytest.fixture(scope="module")
def proxies(pg, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Proxy]]]:
    url = pg.database()
    started: list[Proxy] = []
    try:
        for name in NAMES:
            started.append(start_proxy(tmp_path_factory.mktemp(name), "--set", f"shield_rules={HERE / 'rules'}",
                                       "--set", "proxyauth=any", "--set", f"shield_fleet={url}",
                                       "--set", f"shield_proxy_name={name}", "--set", "shield_checkpoint_events=2",
                                       upstream_ca=upstream.ca_file))
        yield url, started
    finally:
        for p in started:
            p.stop()


def shield(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shield_addon.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200", "SHIELD_FLEET": ""})


def timeline(url: str, *filters: str) -> list[dict]:
    cp = shield("timeline", "--fleet", url, "--json", *filters)
    assert cp.returncode == 0, cp.stderr
    return [json.loads(x) for x in cp.stdout.splitlines()]


def keys(proxies: list[Proxy], tmp: Path) -> list[str]:
    out = []
    for p, name in zip(proxies, NAMES):
        pem = tmp / f"{name}.pub"
        cp = shield("key", "export", "--confdir", str(p.confdir), "--out", str(pem))
        assert cp.returncode == 0, cp.stderr
        out += ["--key", str(pem)]
    return out


def test_three_proxies_one_trail_one_proof(proxies: tuple[str, list[Proxy]], upstream: Upstream, tmp_path: Path) -> None:
    url, fleet = proxies
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
    for p, name in zip(fleet, NAMES):
        with client(p, f"agent-{name}") as c:
            assert c.get(upstream.url(f"/allowed/{name}", tls=True)).status_code == 200
            assert c.post(upstream.url(f"/deny/{name}"), json={"amount": 1}).status_code == 403
    held = pool.submit(lambda: client(fleet[1], "agent-edge-2").post(upstream.url("/v1/e2e-sql"),
                                                                      json={"query": "DROP TABLE orders"}))
    fleet[1].wait_held("~u /v1/e2e-sql")
    fleet[1].command("shield.deny", "~u /v1/e2e-sql", "not", "today")
    assert held.result(15).status_code == 403

    def shipped() -> list[dict] | None:
        rows = timeline(url)
        ends = [r for r in rows if r["outcome"]]
        return rows if len(ends) == 7 else None

    rows = wait_for(shipped, 30, "every proxy's flows in the fleet database")
    by_proxy = {name: sorted(r["path"] for r in rows if r["proxy"] == name) for name in NAMES}
    assert by_proxy == {"edge-1": ["/allowed/edge-1", "/deny/edge-1"],
                        "edge-2": ["/allowed/edge-2", "/deny/edge-2", "/v1/e2e-sql"],
                        "edge-3": ["/allowed/edge-3", "/deny/edge-3"]}
    assert {r["agent"] for r in timeline(url, "--agent", "agent-edge-3")} == {"agent-edge-3"}

    holds = json.loads(shield("sql", "--fleet", url, "SELECT * FROM holds", "--json").stdout.splitlines()[0])
    assert (holds["proxy"], holds["decision"], holds["reviewer_comment"]) == ("edge-2", "denied", "not today")

    sql_flow = next(r["flow_id"] for r in rows if r["path"] == "/v1/e2e-sql")
    shown = shield("show", sql_flow[:8], "--fleet", url)
    assert shown.returncode == 0, shown.stderr
    assert "on proxy edge-2" in shown.stdout and "every row hash and link verifies" in shown.stdout
    assert 'denied by test-reviewer' in shown.stdout and "not today" in shown.stdout

    status = [json.loads(x) for x in shield("fleet", "status", "--fleet", url, "--json").stdout.splitlines()]
    assert sorted(s["name"] for s in status) == list(NAMES) and all(s["shipped_seq"] > 0 for s in status)

    pubs = keys(fleet, tmp_path)
    ok = shield("verify", "--fleet", url, *pubs)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert all(f"OK     proxy {name} chain" in ok.stdout for name in NAMES) and "OK: 3 chains" in ok.stdout

    with psycopg.connect(url, autocommit=True) as con:
        chain, seq = con.execute("SELECT r.chain_id, min(r.seq) FROM chain_rows r JOIN proxies p USING (chain_id) "
                                 "WHERE p.name = 'edge-3' AND r.stage = 'request' GROUP BY 1").fetchone()
        con.execute("UPDATE chain_rows SET agent = 'someone-else' WHERE chain_id = %s AND seq = %s", (chain, seq))
    bad = shield("verify", "--fleet", url, *pubs)
    assert bad.returncode == 1
    assert f"BROKEN proxy edge-3 chain {chain}: seq {seq}: edited in PostgreSQL: column agent" in bad.stdout
