"""The fleet as a hostile agent and a careless operator would use it: each test is a way in
that was found open, run with real proxies on a real PostgreSQL, and stays as its guard."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from scripts import postgres
from scripts.harness import SHIELD, Proxy, child_env, free_port, stop_process, wait_for
from tests.e2e.conftest import client, upstream  # noqa: F401 - the fixture
from tests.e2e.harness import Upstream, start_proxy
from tests.e2e.protocols.clients import connect_tunnel, proxy_auth
from tests.fleet.fleet_harness import fleet_proxy, holds
from tests.fleet.test_queue import Held


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


def test_an_approval_the_fleet_knows_is_not_used_while_the_database_is_away(pair: Pair, pg: postgres.Postgres,
                                                                           upstream: Upstream) -> None:  # noqa: F811
    """A forwarded its own approval during an outage, as a proxy alone would, and never told
    the fleet: once it was back, the same request through B was forwarded a second time. (A
    could not have known either whether B had used it just before.) An approval the fleet
    has seen is used through the fleet only: kept during the outage, used once after."""
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
        r = retry(pair.a, url)
        assert r.status_code == 503 and r.json()["hold_id"] == hold_id and r.headers["retry-after"]
    finally:
        back(pg, pair.a, pair.b)
    assert upstream.hits_for(path) == []
    assert retry(pair.b, url).status_code == 200 and row_of(pair.url, hold_id)["used_by"] == "b"
    r = retry(pair.a, url)
    assert r.status_code == 409 and r.json()["hold_id"] != hold_id
    assert len(upstream.hits_for(path)) == 1
    # Both of A's attempts on the hold are in its trail, neither forwarded.
    attempts = wait_for(lambda: (ev := pair.a.events(f"hold_id = '{hold_id}' AND stage = 'request'")) and len(ev) == 2
                        and ev, 10, "A's two attempts in its trail")
    assert [e["decision"] for e in attempts] == [None, None]


def test_an_approval_of_a_hold_the_fleet_never_saw_is_used_during_an_outage(pair: Pair, pg: postgres.Postgres,
                                                                           upstream: Upstream) -> None:  # noqa: F811
    """A hold opened and approved while the database is away: only this proxy knows it, so
    its approval is used here as a proxy alone would."""
    path = "/retry/red-offline-alone"
    url = upstream.url(path, tls=True)
    outage(pg, pair.a)
    try:
        assert retry(pair.a, url).status_code == 409
        pair.a.command("shield.approve", f"~u {path} & ~marker hourglass")
        assert retry(pair.a, url).status_code == 200
    finally:
        back(pg, pair.a)
    assert len(upstream.hits_for(path)) == 1
    assert retry(pair.b, url).status_code == 409 and len(upstream.hits_for(path)) == 1

SECRET = "Hunter2-fleet-secret"


def everything_in(url: str) -> str:
    """Every row of every table of the fleet database, as text."""
    with psycopg.connect(url) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(row) for t in tables for row in con.execute(f"SELECT t::text FROM {t} t"))  # type: ignore[arg-type]


def test_the_fleet_password_is_nowhere_but_where_the_operator_put_it(pg: postgres.Postgres, tmp_path: Path,
                                                                      upstream: Upstream) -> None:  # noqa: F811
    """The password of the fleet URL (here a libpq `password` parameter; the test server
    trusts loopback, so it is accepted and ignored) must not reach the proxy's log, its
    trail, the writer's command line or the fleet's own tables; nor the log of a proxy whose
    database is down at start (the URL is then quoted in a warning)."""
    url = pg.database() + f"?password={SECRET}&application_name=x"
    a = fleet_proxy(tmp_path, url, "a", upstream_ca=upstream.ca_file)
    try:
        path = "/hold/red-password"
        held = Held(a, upstream.url(path))
        a.wait_held(f"~u {path}")
        a.command("shield.approve", f"~u {path}", held=True)
        assert held.answer().status_code == 200
        wait_for(lambda: holds(url, f"url LIKE '%{path}' AND decision = 'approved'"), 5, "the decision in the fleet")
        writer = a.writer_pid()
        assert writer is not None and SECRET not in " ".join(psutil.Process(writer).cmdline())
        assert SECRET not in everything_in(url)
        assert not [p for p in a.audit_dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    finally:
        a.stop()
    assert SECRET not in a.log.read_text()
    dead = postgres_free_url(pg)
    b = fleet_proxy(tmp_path, dead, "b", upstream_ca=upstream.ca_file)
    try:
        wait_for(lambda: "cannot reach the fleet database" in b.log.read_text(), 10, "the warning")
    finally:
        b.stop()
    assert SECRET not in b.log.read_text()


def postgres_free_url(pg: postgres.Postgres) -> str:
    """A fleet URL, with the password, on a port where nothing listens."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere?password={SECRET}"


LOCAL_TCP_RULES = """version: 1
default: allow
rules:
  - id: local-tcp
    match: {method: TCP, host: localhost}
    action: allow
"""
SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's first message: the server answers b'S' or b'N'


def loopback_name() -> str:
    """A name of this machine, other than 'localhost', that resolves to 127.0.0.1 (where the
    tests' PostgreSQL listens), as an operator may well write the fleet's URL."""
    name = socket.gethostname()
    try:
        if socket.gethostbyname(name) == "127.0.0.1" and name != "localhost":
            return name
    except OSError:
        pass
    pytest.skip(f"this machine's name {name!r} does not resolve to 127.0.0.1")


@pytest.mark.parametrize("spelling", ["localhost", "127.0.0.1"])
def test_a_fleet_url_naming_the_database_by_name_does_not_open_it_by_address(pg: postgres.Postgres, tmp_path: Path,
                                                                             spelling: str) -> None:
    """The operator names the database by this machine's name and lets agents open raw TCP
    tunnels to their own machine (a dev database). The guard knew only the name: through
    'localhost' or '127.0.0.1' an agent reached the fleet's PostgreSQL, and with it the holds."""
    url = pg.database().replace("@127.0.0.1:", f"@{loopback_name()}:")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.yaml").write_text(LOCAL_TCP_RULES)
    a = start_proxy(tmp_path, "--set", f"shield_fleet={url}", "--set", "shield_proxy_name=a",
                    "--set", f"shield_rules={rules}", "--set", "proxyauth=any")
    try:
        s, head = connect_tunnel(a.port, f"{spelling}:{pg.port}", "sneaky-bot")
        with s:
            if head.startswith(b"HTTP/1.1 200"):
                s.sendall(SSL_REQUEST)
                head += b" then the database answered " + s.recv(1)
            while b"builtin:proxy-itself" not in head and head.startswith(b"HTTP/1.1 403") and (chunk := s.recv(4096)):
                head += chunk
        assert head.startswith(b"HTTP/1.1 403") and b"builtin:proxy-itself" in head, head
    finally:
        a.stop()


ESCAPE_METHOD = "GE\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2JT"  # OSC 52 writes the reviewer's clipboard; then clears the screen


def test_an_escape_in_the_method_reaches_no_reviewers_terminal(pair: Pair, upstream: Upstream) -> None:  # noqa: F811
    """mitmproxy takes any bytes but whitespace as a method. Held on A, such a request is
    listed by `shield.pending` on A and on B (whose log is a terminal under --headless):
    neither may carry the agent's escape sequences."""
    target = upstream.url("/hold/red-escape")
    head = (f"{ESCAPE_METHOD} {target} HTTP/1.1\r\nHost: {target.split('/')[2]}\r\n"
            f"Proxy-Authorization: {proxy_auth('esc-bot')}\r\nContent-Length: 0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", pair.a.port), timeout=10) as s:
        s.sendall(head.encode("latin-1"))
        pair.a.wait_held("~u /hold/red-escape")
        wait_for(lambda: pair.b.held("~u /hold/red-escape"), 5, "B to list A's hold")
        [row] = holds(pair.url, "url LIKE '%/hold/red-escape'")
        assert row["method"] == ESCAPE_METHOD.upper()  # stored as the trail has it; shown escaped
        for p in (pair.a, pair.b):
            pending(p)
        wait_for(lambda: all("held flow(s) on other proxies" in p.log.read_text() or p is pair.a
                             for p in (pair.a, pair.b)), 5, "the pending lists")
        pair.a.command("shield.deny", "~u /hold/red-escape", held=True)
    for p in (pair.a, pair.b):
        text = p.log.read_text()
        assert "\x1b" not in text and "\x07" not in text, p.log
        assert "ge\\x1b]52" in text.lower()  # listed, visibly


def pending(proxy: Proxy) -> None:
    """Run `shield.pending` (a command without flows) on a proxy's console."""
    port = int(proxy.control_file.read_text())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(json.dumps({"cmd": "shield.pending", "flows": False}).encode() + b"\n")
        assert json.loads(s.makefile().readline())["ok"]


def send(proxy: Proxy, url: str, agent: str = "deploy-bot", body: bytes = b'{"replicas": 0}',
         headers: dict[str, str] | None = None) -> httpx.Response:
    with client(proxy, agent, timeout=10) as c:
        return c.post(url, content=body, headers={"content-type": "application/json", **(headers or {})})


def test_a_fleet_approval_covers_its_own_request_once_and_nothing_else(pair: Pair, upstream: Upstream) -> None:  # noqa: F811
    """An approval given on A is bound to its agent, credential and body on B too; and two
    retries racing through A and B at once forward it exactly once."""
    path = "/retry/red-bound"
    url = upstream.url(path, tls=True)
    token = {"authorization": "Bearer token-of-deploy-bot"}
    first = send(pair.a, url, headers=token)
    assert first.status_code == 409
    hold_id = first.json()["hold_id"]
    wait_for(lambda: holds(pair.url, f"hold_id = '{hold_id}'"), 5, "the hold published")
    pair.a.command("shield.approve", f"~u {path} & ~marker hourglass")
    wait_for(lambda: row_of(pair.url, hold_id)["decision"] == "approved", 5, "the approval in the fleet")
    for other in (dict(agent="other-bot", headers=token), dict(headers={"authorization": "Bearer another-token"}),
                  dict(headers=token, body=b'{"replicas": 0, "all": true}')):
        r = send(pair.b, url, **other)  # type: ignore[arg-type]
        assert r.status_code == 409 and r.json()["hold_id"] != hold_id, other
    assert upstream.hits_for(path) == [] and row_of(pair.url, hold_id)["used_at"] is None
    barrier = threading.Barrier(2)

    def race(proxy: Proxy) -> int:
        barrier.wait()
        return send(proxy, url, headers=token).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(race, (pair.a, pair.b)))
    assert codes == [200, 409] and len(upstream.hits_for(path)) == 1
    assert row_of(pair.url, hold_id)["used_by"] in ("a", "b")


def test_an_expired_fleet_approval_is_used_nowhere(pair: Pair, upstream: Upstream) -> None:  # noqa: F811
    path = "/retry-short/red-expired"
    url = upstream.url(path, tls=True)
    first = send(pair.a, url)
    hold_id = first.json()["hold_id"]
    wait_for(lambda: holds(pair.url, f"hold_id = '{hold_id}'"), 5, "the hold published")
    pair.a.command("shield.approve", f"~u {path} & ~marker hourglass")
    wait_for(lambda: holds(pair.url, f"hold_id = '{hold_id}' AND expires_at < now()"), 5, "the approval to expire")
    for proxy in (pair.b, pair.a):
        r = send(proxy, url)
        assert r.status_code == 409 and r.json()["hold_id"] != hold_id
    assert upstream.hits_for(path) == []


def test_the_fleet_stores_no_secret_the_local_trail_redacted(pair: Pair, upstream: Upstream) -> None:  # noqa: F811
    """A held request carrying secrets in its query, headers and body: the holds row (URL,
    summary) and the shipped chain rows hold none of them, as the local journal holds none."""
    secrets_ = ("QuerySecret0123456789abcdef", "HeaderSecret0123456789abcdef", "BodySecret0123456789abcdef",
                "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB")
    path = f"/hold/red-secrets/{secrets_[3]}"
    url = upstream.url(path + f"?access_token={secrets_[0]}&page=2")
    done = threading.Event()

    def held() -> None:
        try:
            with client(pair.a, "leaky-bot", timeout=30) as c:
                c.post(url, json={"password": secrets_[2]}, headers={"authorization": f"Bearer {secrets_[1]}",
                                                                    "x-api-key": secrets_[1]})
        finally:
            done.set()

    threading.Thread(target=held, daemon=True).start()
    pair.a.wait_held("~u /hold/red-secrets")
    [row] = wait_for(lambda: holds(pair.url, "url LIKE '%/hold/red-secrets%'"), 5, "the hold published")
    pair.a.command("shield.approve", "~u /hold/red-secrets", held=True)
    assert done.wait(20)
    journal = b"".join(p.read_bytes() for p in pair.a.audit_dir.rglob("*") if p.is_file() and "journal" in str(p))
    assert journal and not [s for s in secrets_ if s.encode() in journal], "the local trail itself keeps a secret"
    seq = max(e["seq"] for e in pair.a.events())
    wait_for(lambda: holds(pair.url, "true") and _shipped(pair.url, "a") >= seq, 10, "A's journal shipped")
    stored = everything_in(pair.url)
    assert not [s for s in secrets_ if s in stored], [s for s in secrets_ if s in stored]
    assert "red-secrets" in stored and row["url"].startswith("http://127.0.0.1")


def _shipped(url: str, name: str) -> int:
    with psycopg.connect(url) as con:
        r = con.execute("SELECT shipped_seq FROM proxies WHERE name = %s", (name,)).fetchone()
        return r[0] if r else 0


class Relay:
    """A TCP relay between one proxy and the database: cut, that proxy alone loses the fleet
    (a network partition), while the others keep it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.open = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def mend(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_a_partitioned_owner_does_not_forward_an_approval_another_proxy_used(pg: postgres.Postgres, tmp_path: Path,
                                                                              upstream: Upstream) -> None:  # noqa: F811
    """A loses the database (a partition), B keeps it. The agent's retry through B uses the
    fleet's approval of A's hold; the same retry through A must not be forwarded again,
    though A cannot ask the fleet."""
    url = pg.database()
    relay = Relay(pg.port)
    a = fleet_proxy(tmp_path, url.replace(f":{pg.port}/", f":{relay.port}/"), "a", upstream_ca=upstream.ca_file)
    b = fleet_proxy(tmp_path, url, "b", upstream_ca=upstream.ca_file)
    try:
        path = "/retry/red-partition"
        target = upstream.url(path, tls=True)
        first = retry(a, target)
        hold_id = first.json()["hold_id"]
        wait_for(lambda: holds(url, f"hold_id = '{hold_id}'"), 5, "the hold published")
        a.command("shield.approve", f"~u {path} & ~marker hourglass")
        wait_for(lambda: row_of(url, hold_id)["decision"] == "approved", 5, "the approval in the fleet")
        relay.cut()
        wait_for(lambda: "fleet approval queue unavailable" in a.log.read_text(), 10, "A to lose the fleet")
        assert retry(b, target).status_code == 200 and row_of(url, hold_id)["used_by"] == "b"
        r = retry(a, target)
        assert r.status_code != 200 and len(upstream.hits_for(path)) == 1, r.text
        relay.mend()
        wait_for(lambda: "fleet approval queue back" in a.log.read_text(), 15, "A to reconnect")
        # Back: A learns the approval was used, and the same request is a new hold there.
        r = wait_for(lambda: (r := retry(a, target)).status_code == 409 and r.json()["hold_id"] != hold_id and r, 10,
                     "a new hold on A")
        assert len(upstream.hits_for(path)) == 1
    finally:
        for p in (a, b):
            p.stop()
        relay.close()


def test_an_agent_cannot_reach_the_web_console_of_another_proxy_of_the_fleet(pg: postgres.Postgres, tmp_path: Path,
                                                                              upstream: Upstream) -> None:  # noqa: F811
    """Several proxies on one machine (one per core, as the fleet is meant to run): A guards
    its own mitmweb, but B's mitmweb lists, and decides, A's holds too. Through A, an agent
    must not reach it, as it must not reach A's own."""
    url = pg.database()
    a = fleet_proxy(tmp_path, url, "a", upstream_ca=upstream.ca_file)
    port, web = free_port(), free_port()
    d = tmp_path / "web"
    d.mkdir()
    log = d / "proxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*SHIELD, "run", "--web", "--confdir", str(d / "conf"), "--listen-port", str(port),
                                 "--listen-host", "127.0.0.1", "--set", f"web_port={web}",
                                 "--set", "web_open_browser=false", "--set", f"shield_dir={d / 'audit'}",
                                 "--set", f"shield_fleet={url}", "--set", "shield_proxy_name=b"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=d, env=child_env())
    try:
        wait_for(lambda: proc.poll() is None and holds(url, "false") == [] and _member(url, "b"), 30, "B in the fleet")
        wait_for(lambda: str(web) in (_member(url, "b") or ""), 10, "B's web console in its row")
        with client(a, "sneaky-bot", timeout=10) as c:
            wait_for(lambda: _refused(c, f"http://127.0.0.1:{web}/flows"), 5, "A to know B's console")
            for target in (f"http://127.0.0.1:{web}/flows", f"http://localhost:{web}/commands/flow.resume"):
                r = c.get(target)
                assert r.status_code == 403 and r.json()["rule"] == "builtin:proxy-itself", (target, r.text[:200])
    finally:
        stop_process(proc, 15)
        a.stop()


def _member(url: str, name: str) -> str | None:
    with psycopg.connect(url) as con:
        r = con.execute("SELECT listen FROM proxies WHERE name = %s", (name,)).fetchone()
        return r[0] if r else None


def _refused(c: httpx.Client, target: str) -> bool:
    r = c.get(target)
    return r.status_code == 403 and r.headers.get("content-type", "").startswith("application/json") \
        and r.json().get("rule") == "builtin:proxy-itself"
