"""One approval queue for three real proxies and a `shield review --fleet` console, on a real
PostgreSQL: a hold anywhere is seen everywhere, the first decision wins, the holder applies it."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts import postgres
from scripts.harness import Proxy, wait_for
from tests.e2e.conftest import client, upstream  # noqa: F401 - the fixture
from tests.e2e.harness import Upstream
from tests.e2e.protocols.clients import connect_tunnel
from tests.fleet.fleet_harness import fleet_proxy, holds, review_console


@dataclass
class Fleet:
    url: str
    a: Proxy
    b: Proxy
    c: Proxy
    review: Proxy


@pytest.fixture(scope="module")
def fleet(pg: postgres.Postgres, tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Fleet]:  # noqa: F811
    tmp, url = tmp_path_factory.mktemp("fleet"), pg.database()
    members = [fleet_proxy(tmp, url, name, upstream_ca=upstream.ca_file) for name in "abc"]
    review = review_console(tmp, url, "rita")
    yield Fleet(url, *members, review)
    for p in (*members, review):
        p.stop()


class Held:
    """A wait-mode request held on a proxy, answered on a thread of its own."""

    def __init__(self, proxy: Proxy, url: str, agent: str = "deploy-bot") -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self.send, args=(proxy, url, agent), daemon=True)
        self.thread.start()

    def send(self, proxy: Proxy, url: str, agent: str) -> None:
        try:
            with client(proxy, agent, timeout=30) as c:
                self.response = c.delete(url)
        except httpx.HTTPError as e:
            self.error = e

    def answer(self) -> httpx.Response | Exception:
        self.thread.join(20)
        assert not self.thread.is_alive(), "the held request was never answered"
        return self.response or self.error  # type: ignore[return-value]


def visible(member: Proxy, path: str) -> float:
    """Seconds until `member`'s console lists another proxy's hold of `path` as held."""
    t0 = time.monotonic()
    wait_for(lambda: member.command("count", f"~u {path}")["held"] >= 1, 5, f"{path} held on {member.control_file}")
    return time.monotonic() - t0


def decision_of(proxy: Proxy, path: str) -> dict:
    return proxy.flow_events(path, "decision")[0]


def test_a_hold_is_seen_on_every_console_approved_from_review_and_forwarded_once(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/hold/fleet-approve"
    held = Held(fleet.a, upstream.url(path))
    fleet.a.wait_held(f"~u {path}")
    assert visible(fleet.review, path) < 2 and visible(fleet.b, path) < 2
    [line] = fleet.b.command("comments", f"~u {path}")["comments"]
    assert line.startswith("on proxy a, held ") and "agent deploy-bot" in line and "rule hold-path" in line
    fleet.review.command("shield.approve", f"~u {path}", held=True)
    r = held.answer()
    assert isinstance(r, httpx.Response) and r.status_code == 200
    assert len(upstream.hits_for(path)) == 1
    d = decision_of(fleet.a, path)
    assert (d["decision"], d["reviewer"], d["agent"]) == ("approved", "rita", "deploy-bot")
    assert d["operation"].startswith("fleet:review console")
    # B's reviewer presses y later: ignored, and B's log says so; nothing more is forwarded.
    fleet.b.command("shield.approve", f"~u {path}")
    wait_for(lambda: "already approved by rita" in fleet.b.log.read_text(), 5, "B to say the hold was decided")
    [row] = holds(fleet.url, f"url LIKE '%{path}'")
    assert (row["decision"], row["reviewer"], row["proxy"]) == ("approved", "rita", "a") and row["applied_at"]
    assert len(upstream.hits_for(path)) == 1 and len(fleet.a.events(f"path = '{path}' AND stage = 'decision'")) == 1


def test_a_denial_with_a_reason_from_another_proxys_console(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/hold/fleet-deny"
    held = Held(fleet.a, upstream.url(path))
    fleet.a.wait_held(f"~u {path}")
    visible(fleet.b, path)
    fleet.b.command("shield.deny", f"~u {path}", "wrong", "cluster", held=True)
    r = held.answer()
    assert isinstance(r, httpx.Response) and r.status_code == 403
    assert r.json()["decision"] == "denied" and "wrong cluster" in r.text
    assert upstream.hits_for(path) == []
    d = decision_of(fleet.a, path)
    assert (d["decision"], d["reviewer_comment"], d["operation"]) == ("denied", "wrong cluster", "fleet:b")


def test_two_consoles_deciding_at_once_one_decision_wins_everywhere(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/hold/fleet-race"
    held = Held(fleet.a, upstream.url(path))
    fleet.a.wait_held(f"~u {path}")
    visible(fleet.b, path)
    visible(fleet.c, path)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda job: job(), [lambda: fleet.b.command("shield.approve", f"~u {path}", held=True),
                                          lambda: fleet.c.command("shield.deny", f"~u {path}", "no", held=True)]))
    r = held.answer()
    [row] = holds(fleet.url, f"url LIKE '%{path}'")
    assert isinstance(r, httpx.Response) and r.status_code == (200 if row["decision"] == "approved" else 403)
    assert len(upstream.hits_for(path)) == (1 if row["decision"] == "approved" else 0)
    [d] = fleet.a.flow_events(path, "decision")
    assert (d["decision"], d["operation"]) == (row["decision"], f"fleet:{row['decided_on']}")
    loser = fleet.c if row["decided_on"] == "b" else fleet.b
    wait_for(lambda: f"already {row['decision']}" in loser.log.read_text(), 5, "the losing console to say so")


def test_x_on_another_console_kills_the_hold(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/hold/fleet-kill"
    held = Held(fleet.a, upstream.url(path))
    fleet.a.wait_held(f"~u {path}")
    visible(fleet.c, path)
    fleet.c.command("flow.kill", f"~u {path}", held=True)
    assert isinstance(held.answer(), httpx.HTTPError)
    assert upstream.hits_for(path) == []
    d = decision_of(fleet.a, path)
    assert (d["decision"], d["operation"]) == ("killed", "fleet:c")


def test_a_retry_mode_approval_is_used_through_another_proxy_once(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/retry/fleet-1"
    url = upstream.url(path, tls=True)

    def send(proxy: Proxy) -> httpx.Response:
        with client(proxy, "deploy-bot", timeout=5) as c:
            return c.post(url, content=b'{"replicas": 0}', headers={"content-type": "application/json"})

    first = send(fleet.a)
    assert first.status_code == 409
    hold_id = first.json()["hold_id"]
    # Still pending: a retry through B is told to wait on the same hold, not given one of its own.
    again = send(fleet.b)
    assert again.status_code == 409 and again.json()["hold_id"] == hold_id
    visible(fleet.c, path)
    fleet.c.command("shield.approve", f"~u {path}", held=True)
    wait_for(lambda: holds(fleet.url, f"hold_id = '{hold_id}' AND applied_at IS NOT NULL"), 5, "A to apply it")
    used = send(fleet.b)
    assert used.status_code == 200 and len(upstream.hits_for(path)) == 1
    [ev] = [e for e in fleet.b.flow_events(path, "request", n=2) if e["decision"] == "approved"]
    assert ev["hold_id"] == hold_id
    # Used once, fleet-wide: the same request through A or B is a new hold now.
    for proxy in (fleet.a, fleet.b):
        r = send(proxy)
        assert r.status_code == 409 and r.json()["hold_id"] != hold_id
    assert len(upstream.hits_for(path)) == 1
    [row] = holds(fleet.url, f"hold_id = '{hold_id}'")
    assert (row["decision"], row["decided_on"], row["used_by"]) == ("approved", "c", "b")
    d = decision_of(fleet.a, path)
    assert (d["decision"], d["hold_id"], d["operation"]) == ("approved", hold_id, "fleet:c")


def test_without_the_database_a_proxy_still_decides_its_own_holds(pg: postgres.Postgres, tmp_path: Path,
                                                                  upstream: Upstream) -> None:  # noqa: F811
    url = pg.database()
    a = fleet_proxy(tmp_path, url, "alone", upstream_ca=upstream.ca_file)
    pg.stop()  # the whole server: its sessions are cut, new ones refused
    try:
        path = "/hold/fleet-offline"
        held = Held(a, upstream.url(path))
        a.wait_held(f"~u {path}")
        a.command("shield.approve", f"~u {path}", held=True)
        r = held.answer()
        assert isinstance(r, httpx.Response) and r.status_code == 200
        assert decision_of(a, path)["operation"] == "shield.approve"
        # A hold opened while the database is away reaches the fleet's queue once it is back.
        later = Held(a, upstream.url(path + "-later"))
        a.wait_held(f"~u {path}-later")
    finally:
        pg.start()
    try:
        [row] = wait_for(lambda: holds(url, f"url LIKE '%{path}-later'"), 15, "the hold published after the outage")
        assert (row["proxy"], row["decision"]) == ("alone", None)
        a.command("shield.deny", f"~u {path}-later", "after", "the", "outage", held=True)
        r = later.answer()
        assert isinstance(r, httpx.Response) and r.status_code == 403
        [row] = holds(url, f"url LIKE '%{path}-later'")
        assert (row["decision"], row["reason"], row["decided_on"]) == ("denied", "after the outage", "alone")
    finally:
        a.stop()


@pytest.mark.parametrize("spelling", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_agents_cannot_reach_the_fleet_database(fleet: Fleet, pg: postgres.Postgres, spelling: str) -> None:
    """Through the database an agent could approve its own holds: a tunnel to it, or a
    request to it, is refused like one to the proxy itself, however the address is spelled."""
    target = f"{spelling}:{pg.port}"
    s, answer = connect_tunnel(fleet.a.port, target, "sneaky-bot")
    with s:
        while b"builtin:proxy-itself" not in answer and (chunk := s.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and b"builtin:proxy-itself" in answer
    if spelling.startswith("["):
        return  # mitmproxy itself answers 400 to a request for a mapped address: nothing reaches the database
    with client(fleet.a, "sneaky-bot", timeout=10) as c:
        r = c.get(f"http://{target}/")
    assert r.status_code == 403 and r.json()["rule"] == "builtin:proxy-itself"


def test_a_two_person_hold_needs_two_distinct_reviewers_of_the_fleet(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/two/fleet-1"
    held = Held(fleet.a, upstream.url(path))
    fleet.a.wait_held(f"~u {path}")
    visible(fleet.review, path)
    fleet.review.command("shield.approve", f"~u {path}", held=True)  # rita: 1 of 2
    wait_for(lambda: fleet.a.flow_events(path, "decision"), 5, "the first approval in A's chain")
    fleet.review.command("shield.approve", f"~u {path}", held=True)  # rita again: counted once, and told so
    wait_for(lambda: "rita approved hold" in fleet.review.log.read_text(), 5, "rita to be told she approved already")
    assert held.thread.is_alive() and upstream.hits_for(path) == []
    [row] = holds(fleet.url, f"url LIKE '%{path}'")
    assert (row["decision"], row["approvers"], row["approvals_needed"]) == (None, ["rita"], 2)
    fleet.b.command("shield.approve", f"~u {path}", held=True)  # test-reviewer on B: the second, the last
    r = held.answer()
    assert isinstance(r, httpx.Response) and r.status_code == 200 and len(upstream.hits_for(path)) == 1
    decisions = [(d["decision"], d["reviewer"], d["reviewer_comment"]) for d in fleet.a.events(
        f"path = '{path}' AND stage = 'decision'")]
    assert decisions == [("approved", "rita", "approval 1 of 2"), ("approved", "test-reviewer", None)]


def test_one_denial_ends_a_two_person_hold_of_the_fleet(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/two/fleet-2"
    held = Held(fleet.a, upstream.url(path))
    fleet.a.wait_held(f"~u {path}")
    visible(fleet.review, path)
    fleet.review.command("shield.approve", f"~u {path}", held=True)
    wait_for(lambda: holds(fleet.url, f"url LIKE '%{path}' AND cardinality(approvers) = 1"), 5, "one approval")
    fleet.a.command("shield.deny", f"~u {path}", "not", "today", held=True)
    r = held.answer()
    assert isinstance(r, httpx.Response) and r.status_code == 403 and upstream.hits_for(path) == []
    [row] = holds(fleet.url, f"url LIKE '%{path}'")
    assert (row["decision"], row["reason"]) == ("denied", "not today")


def test_a_two_person_retry_hold_is_forwarded_once_after_the_second_approval(fleet: Fleet, upstream: Upstream) -> None:  # noqa: F811
    path = "/two-retry/fleet-3"
    url = upstream.url(path)

    def send(proxy: Proxy) -> httpx.Response:
        with client(proxy, "deploy-bot", timeout=5) as c:
            return c.post(url, content=b"{}", headers={"content-type": "application/json"})

    hold_id = send(fleet.a).json()["hold_id"]
    visible(fleet.c, path)
    fleet.c.command("shield.approve", f"~u {path}", held=True)
    wait_for(lambda: holds(fleet.url, f"hold_id = '{hold_id}' AND cardinality(approvers) = 1"), 5, "one approval")
    assert send(fleet.b).status_code == 409 and upstream.hits_for(path) == []
    fleet.review.command("shield.approve", f"~u {path}", held=True)
    wait_for(lambda: holds(fleet.url, f"hold_id = '{hold_id}' AND decision = 'approved'"), 5, "the second approval")
    assert send(fleet.b).status_code == 200 and send(fleet.a).status_code == 409
    assert len(upstream.hits_for(path)) == 1


def test_a_hold_of_a_proxy_that_stopped_beating_says_so_and_is_abandoned_when_it_restarts(
        fleet: Fleet, tmp_path: Path, upstream: Upstream) -> None:  # noqa: F811
    """kill -9 takes a wait-mode hold's request with it: the other consoles must not show it as
    if it were still there to approve."""
    path = "/hold/fleet-silent"
    doomed = fleet_proxy(tmp_path, fleet.url, "doomed", upstream_ca=upstream.ca_file)
    held = Held(doomed, upstream.url(path))
    doomed.wait_held(f"~u {path}")
    visible(fleet.review, path)
    [line] = fleet.review.command("comments", f"~u {path}")["comments"]
    assert line.startswith("on proxy doomed, held ") and "silent" not in line
    writer = wait_for(doomed.writer_pid, 10, "the writer process")
    for pid in (doomed.proc.pid, writer):
        os.kill(pid, signal.SIGKILL)
    doomed.proc.wait(10)
    assert isinstance(held.answer(), Exception)  # the agent's request died with the proxy
    said = wait_for(lambda: next((c for c in fleet.review.command("comments", f"~u {path}")["comments"]
                                  if "silent for" in c), None), 30, "the console to say the proxy is silent")
    assert "| proxy doomed silent for " in said and "the agent's request may be gone" in said
    again = fleet_proxy(tmp_path, fleet.url, "doomed", upstream_ca=upstream.ca_file, audit_dir=doomed.audit_dir)
    try:
        [row] = wait_for(lambda: holds(fleet.url, f"url LIKE '%{path}' AND decision IS NOT NULL"), 15,
                         "the restarted proxy to abandon its old hold")
        assert (row["decision"], row["reason"]) == ("abandoned", "the proxy restarted while held")
        wait_for(lambda: fleet.review.command("count", f"~u {path}")["held"] == 0, 10, "the console to let it go")
    finally:
        again.stop()
