"""The fleet as a hostile agent and a careless operator would use it: each test is a way in
that was found open, run with real proxies on a real PostgreSQL, and stays as its guard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts import postgres
from scripts.harness import Proxy, wait_for
from tests.e2e.conftest import client, upstream  # noqa: F401 - the fixture
from tests.e2e.harness import Upstream
from tests.fleet.fleet_harness import fleet_proxy, holds


@dataclass
class Pair:
    url: str
    a: Proxy
    b: Proxy


@pytest.fixture
def pair(pg: postgres.Postgres, tmp_path: Path, upstream: Upstream) -> Iterator[Pair]:  # noqa: F811
    """Two proxies of a fresh fleet (a test of its own: these tests stop the database)."""
    url = pg.database()
    a, b = (fleet_proxy(tmp_path, url, name, upstream_ca=upstream.ca_file) for name in "ab")
    yield Pair(url, a, b)
    for p in (a, b):
        p.stop()


def retry(proxy: Proxy, url: str, agent: str = "deploy-bot") -> httpx.Response:
    with client(proxy, agent, timeout=10) as c:
        return c.post(url, content=b'{"replicas": 0}', headers={"content-type": "application/json"})


def row_of(url: str, hold_id: str) -> dict:
    [row] = holds(url, f"hold_id = '{hold_id}'")
    return row


def outage(pg: postgres.Postgres, *members: Proxy) -> None:
    """Stop the database and wait until every member has noticed."""
    pg.stop()
    for m in members:
        wait_for(lambda m=m: "fleet approval queue unavailable" in m.log.read_text(), 10, f"{m.log} to notice")


def back(pg: postgres.Postgres, *members: Proxy) -> None:
    """Start the database again and wait until every member is connected to it again."""
    pg.start()
    for m in members:
        wait_for(lambda m=m: "fleet approval queue back" in m.log.read_text(), 15, f"{m.log} to reconnect")


def test_a_denial_taken_while_the_database_is_away_reaches_the_fleet(pair: Pair, pg: postgres.Postgres,
                                                                     upstream: Upstream) -> None:  # noqa: F811
    """A's reviewer denies A's published retry hold during an outage. Lost, the row stays
    pending in the fleet: B's reviewer approves it later and B forwards what A denied."""
    path = "/retry/red-offline-deny"
    url = upstream.url(path, tls=True)
    first = retry(pair.a, url)
    assert first.status_code == 409
    hold_id = first.json()["hold_id"]
    wait_for(lambda: holds(pair.url, f"hold_id = '{hold_id}'"), 5, "the hold published")
    outage(pg, pair.a, pair.b)
    try:
        pair.a.command("shield.deny", f"~u {path} & ~marker hourglass", "not", "this", "one")
        assert retry(pair.a, url).status_code == 403  # delivered to the agent here, alone
    finally:
        back(pg, pair.a, pair.b)
    row = wait_for(lambda: (r := row_of(pair.url, hold_id))["decision"] and r, 10, "A to tell the fleet its denial")
    assert (row["decision"], row["reason"], row["decided_on"]) == ("denied", "not this one", "a")
    # The agent tries B now: the fleet's answer is A's denial, and nothing is forwarded.
    r = retry(pair.b, url)
    assert r.status_code != 200 and upstream.hits_for(path) == []


def test_an_approval_used_while_the_database_is_away_is_not_used_again_elsewhere(pair: Pair, pg: postgres.Postgres,
                                                                                 upstream: Upstream) -> None:  # noqa: F811
    """A forwards its own approval during an outage (as a proxy alone would). Once the
    database is back, the same request through B must not be forwarded a second time."""
    path = "/retry/red-offline-use"
    url = upstream.url(path, tls=True)
    first = retry(pair.a, url)
    assert first.status_code == 409
    hold_id = first.json()["hold_id"]
    wait_for(lambda: holds(pair.url, f"hold_id = '{hold_id}'"), 5, "the hold published")
    pair.a.command("shield.approve", f"~u {path} & ~marker hourglass")
    wait_for(lambda: row_of(pair.url, hold_id)["decision"] == "approved", 5, "the approval in the fleet")
    outage(pg, pair.a, pair.b)
    try:
        assert retry(pair.a, url).status_code == 200
    finally:
        back(pg, pair.a, pair.b)
    assert len(upstream.hits_for(path)) == 1
    wait_for(lambda: row_of(pair.url, hold_id)["used_by"] == "a", 10, "A to tell the fleet it used the approval")
    r = retry(pair.b, url)
    assert r.status_code == 409 and r.json()["hold_id"] != hold_id
    assert len(upstream.hits_for(path)) == 1
