"""Shipping a proxy's journal into the fleet database, proven with real parts: a real
PostgreSQL (stopped and started again for an outage), real proxies (killed with SIGKILL), and
the Shipper driven directly for what a proxy cannot be made to do on purpose."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from scripts.postgres import Postgres
from shield_addon.core.model import AuditDir
from shield_addon.fleet.ship import Identity, Shipper
from shield_addon.journal import Cursor, Journal, read_rows
from tests.e2e.harness import Proxy, Upstream, free_port, start_proxy, start_upstream, wait_for
from tests.fleet.chains import (
    assert_shipped_exactly,
    chain_id,
    fleet_lines,
    fleet_proxy,
    journal_lines,
    proxy_row,
    shipped_seq,
    wait_shipped,
)

OUTAGE = 30  # seconds the database is away under load (the figure)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up, stop = start_upstream(tmp_path_factory.mktemp("upstream"))
    yield up
    stop()


def client(proxy: Proxy, agent: str, timeout: float = 10) -> httpx.Client:
    return httpx.Client(proxy=proxy.url(agent), verify=ssl.create_default_context(cafile=str(proxy.ca)),
                        trust_env=False, timeout=timeout)


def send(proxy: Proxy, upstream: Upstream, tag: str, n: int) -> list[int]:
    """n requests, allowed and denied, HTTP and HTTPS; their status codes."""
    with client(proxy, "agent-ship") as c:
        return [c.get(upstream.url(f"/{'deny' if i % 5 == 4 else 'ok'}/{tag}-{i}", tls=i % 2 == 1)).status_code
                for i in range(n)]


class Load:
    """Several agents sending requests until stopped; every answer (or failure) is kept."""

    def __init__(self, proxy: Proxy, upstream: Upstream, tag: str, workers: int = 4) -> None:
        self.proxy, self.upstream, self.tag, self.workers = proxy, upstream, tag, workers
        self.stop = threading.Event()
        self.answers: list[int] = []
        self.failures: list[str] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.futures = [self.pool.submit(self.agent, n) for n in range(workers)]

    def agent(self, n: int) -> None:
        with client(self.proxy, f"agent-{n}") as c:
            i = 0
            while not self.stop.is_set():
                i += 1
                path = f"/{'deny' if i % 5 == 0 else 'ok'}/{self.tag}-{n}-{i}"
                try:
                    self.answers.append(c.get(self.upstream.url(path, tls=n % 2 == 1)).status_code)
                except httpx.HTTPError as e:
                    self.failures.append(f"{path}: {e!r}")

    def finish(self) -> None:
        self.stop.set()
        for f in self.futures:
            f.result(60)
        self.pool.shutdown()


def assert_nothing_forwarded_unrecorded(proxy: Proxy, upstream: Upstream, tag: str) -> None:
    """Every request the upstream saw has its request event in the proxy's journal."""
    recorded = {row["path"] for row in read_rows(proxy.audit_dir / "journal") if row["stage"] == "request"}
    seen = {hit.path for hit in upstream.hits_for(f"/{tag}-")}
    assert seen, "the load never reached the upstream"
    assert seen <= recorded, f"forwarded unrecorded: {sorted(seen - recorded)[:5]}"


# ---------------------------------------------------------------- through real proxies


def test_events_arrive_in_order_exactly_once_with_their_checkpoints(tmp_path: Path, fleet_url: str,
                                                                    upstream: Upstream) -> None:
    p = fleet_proxy(tmp_path, fleet_url, "a", "--set", "shield_checkpoint_events=10", upstream_ca=upstream.ca_file)
    try:
        assert set(send(p, upstream, "order", 30)) == {200, 403}
        last = wait_shipped(fleet_url, p.audit_dir)
    finally:
        p.stop()
    assert last >= 60  # a request and a response event per allowed request
    assert assert_shipped_exactly(fleet_url, p.audit_dir) == len(journal_lines(p.audit_dir))
    row = proxy_row(fleet_url, chain_id(p.audit_dir))
    assert row is not None and row["name"] == "a" and row["journal_seq"] == row["shipped_seq"]
    assert row["ship_error"] is None
    # The clean stop signs the tail and ships it: every checkpoint line, verbatim, after its events.
    with psycopg.connect(fleet_url) as con:
        shipped = {line for (line,) in con.execute("SELECT line FROM checkpoints WHERE chain_id = %s",
                                                   (chain_id(p.audit_dir),))}
    written = set((p.audit_dir / "checkpoints.log").read_text().splitlines())
    assert len(written) >= 6 and shipped == written


def test_a_database_outage_under_load_loses_nothing_and_duplicates_nothing(tmp_path: Path, fleet_url: str, pg: Postgres,
                                                                           upstream: Upstream) -> None:
    p = fleet_proxy(tmp_path, fleet_url, "a", upstream_ca=upstream.ca_file)
    try:
        load = Load(p, upstream, "outage")
        try:
            wait_for(lambda: shipped_seq(fleet_url, chain_id(p.audit_dir)) > 20, 30, "shipping to start")
            pg.stop()
            before = len(load.answers)
            # Thirty seconds without the database, the agents still sending.
            assert not load.stop.wait(OUTAGE)
            during = len(load.answers) - before
            pg.start()
        finally:
            load.finish()
        assert "cannot ship the journal to the fleet" in p.log.read_text()
        last = wait_shipped(fleet_url, p.audit_dir, timeout=30)  # the lag back to zero
    finally:
        if pg.proc is None or pg.proc.poll() is not None:
            pg.start()  # the other tests need it, whatever happened here
        p.stop()
    # The proxy kept guarding all along: every request answered, allowed ones forwarded, denials refused.
    assert not load.failures, load.failures[:5]
    assert during > 50, f"only {during} requests answered while the database was away"
    assert set(load.answers) == {200, 403}
    assert_nothing_forwarded_unrecorded(p, upstream, "outage")
    assert last >= len(load.answers)
    assert assert_shipped_exactly(fleet_url, p.audit_dir) >= last
    assert "fleet database back; shipping resumed" in p.log.read_text()


def test_a_proxy_killed_with_sigkill_resumes_shipping_without_gap_or_duplicate(tmp_path: Path, fleet_url: str,
                                                                               upstream: Upstream) -> None:
    p = fleet_proxy(tmp_path, fleet_url, "a", upstream_ca=upstream.ca_file)
    load = Load(p, upstream, "killed")
    try:
        wait_for(lambda: shipped_seq(fleet_url, chain_id(p.audit_dir)) > 50, 30, "shipping under load")
        writer = wait_for(p.writer_pid, 10, "the writer process")
        for pid in (p.proc.pid, writer):  # the proxy and its writer at once, mid-shipping
            os.kill(pid, signal.SIGKILL)
        p.proc.wait(10)
        wait_for(lambda: not psutil.pid_exists(writer) or psutil.Process(writer).status() == psutil.STATUS_ZOMBIE,
                 10, "the writer to die")
    finally:
        load.finish()
    shipped_at_kill = shipped_seq(fleet_url, chain_id(p.audit_dir))
    again = fleet_proxy(tmp_path, fleet_url, "a", upstream_ca=upstream.ca_file, audit_dir=p.audit_dir)
    try:
        assert set(send(again, upstream, "after-kill", 10)) == {200, 403}
        last = wait_shipped(fleet_url, again.audit_dir)
    finally:
        again.stop()
    assert last > shipped_at_kill
    assert assert_shipped_exactly(fleet_url, again.audit_dir) == len(journal_lines(again.audit_dir))
    assert_nothing_forwarded_unrecorded(again, upstream, "killed")


def test_without_a_fleet_nothing_tries_to_reach_a_database(tmp_path: Path, upstream: Upstream) -> None:
    # A trap where libpq's defaults (PGHOST/PGPORT) would lead an empty connection string.
    trap = socket.create_server(("127.0.0.1", 0))
    trap.settimeout(0.5)
    env = {"SHIELD_FLEET": "", "PGHOST": "127.0.0.1", "PGPORT": str(trap.getsockname()[1])}
    p = start_proxy(tmp_path, "--set", "proxyauth=any", upstream_ca=upstream.ca_file, env=env, control=False)
    try:
        with client(p, "agent-alone") as c:
            assert c.get(upstream.url("/alone/1", tls=True)).status_code == 200
        wait_for(lambda: len(list(read_rows(p.audit_dir / "journal"))) >= 2, 10, "the events in the journal")
        proxy, writer = psutil.Process(p.proc.pid), psutil.Process(wait_for(p.writer_pid, 10, "the writer"))
        # The writer does not even load the driver (the proxy may: its fleet addon imports it).
        assert not [m.path for m in writer.memory_maps() if "psycopg" in m.path]
        for proc in (proxy, writer):
            ports = {c.raddr[1] for c in proc.net_connections() if c.raddr}
            assert not ports & {int(env["PGPORT"]), 5432}, f"{proc.cmdline()} is connected to a database"
    finally:
        p.stop()
    with pytest.raises(TimeoutError):
        trap.accept()
    trap.close()
    assert "fleet" not in p.log.read_text().lower()


def test_a_password_in_the_fleet_url_is_never_shown(tmp_path: Path, pg: Postgres, upstream: Upstream) -> None:
    secret = "s3cret-Passw0rd"
    with psycopg.connect(pg.url(), autocommit=True) as con:
        con.execute(f"DROP ROLE IF EXISTS shipper; CREATE ROLE shipper LOGIN SUPERUSER PASSWORD '{secret}'")
    url = pg.database().replace("postgresql://postgres@", f"postgresql://shipper:{secret}@")
    dead = f"postgresql://shipper:{secret}@127.0.0.1:{free_port()}/nowhere"
    p = fleet_proxy(tmp_path / "good", url, "a", upstream_ca=upstream.ca_file)
    q = fleet_proxy(tmp_path / "dead", dead, "b", upstream_ca=upstream.ca_file, env={"SHIELD_FLEET": dead})
    try:
        send(p, upstream, "secret", 4)
        send(q, upstream, "secret-dead", 4)
        wait_shipped(url, p.audit_dir)
        wait_for(lambda: "cannot ship the journal" in q.log.read_text(), 20, "the unreachable fleet to be reported")
        for proxy in (p, q):
            writer = psutil.Process(wait_for(proxy.writer_pid, 10, "the writer"))
            assert secret not in " ".join(writer.cmdline())
    finally:
        p.stop()
        q.stop()
    for proxy in (p, q):
        for path in [proxy.log, *proxy.audit_dir.rglob("*")]:
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), f"the password is in {path}"
    assert "shipper:***@" in q.log.read_text()
    with psycopg.connect(url) as con:
        assert secret not in str(con.execute("SELECT * FROM proxies").fetchall())


# ---------------------------------------------------------------- the Shipper driven directly


def journal_of(audit: Path, n: int, chain: str | None = None, tag: str = "e") -> Journal:
    """A journal of n events in `audit` (under `chain` if given, as a copied audit dir would be)."""
    audit.mkdir(parents=True, exist_ok=True)
    if chain:
        (audit / "chain_id").write_text(chain + "\n")
    j = Journal(AuditDir(audit).journal)
    j.open(thread=False)
    j.append([{"stage": "request", "flow_id": f"{tag}-{i}", "path": f"/{tag}/{i}"} for i in range(n)])
    return j


def shipper(url: str, audit: Path, j: Journal, name: str = "direct") -> Shipper:
    return Shipper(url, AuditDir(audit), j.chain_id, lambda: j.synced[0], Identity(name, "host", "", "test"))


def test_a_resent_batch_is_a_no_op(tmp_path: Path, fleet_url: str) -> None:
    j = journal_of(tmp_path / "a", 500)
    s = shipper(fleet_url, tmp_path / "a", j)
    assert s.attempt() and s.shipped == 500
    before = fleet_lines(fleet_url, j.chain_id)
    s.shipped, s.head, s.cursor = 0, "", Cursor()  # as if the batch's acknowledgement had been lost
    assert s.attempt() and s.shipped == 500
    s.shipped, s.head, s.cursor = 250, "", Cursor()  # half of it
    assert s.attempt() and s.shipped == 500
    assert fleet_lines(fleet_url, j.chain_id) == before and len(before) == 500
    j.append([{"stage": "request", "flow_id": "more"}])
    assert s.attempt() and s.shipped == 501
    assert assert_shipped_exactly(fleet_url, tmp_path / "a") == 501
    s.con.close()


@pytest.mark.parametrize("other_rows", [600, 500, 400])
def test_a_journal_that_does_not_continue_the_fleets_copy_is_refused(tmp_path: Path, fleet_url: str,
                                                                     other_rows: int) -> None:
    j = journal_of(tmp_path / "a", 500)
    s = shipper(fleet_url, tmp_path / "a", j)
    assert s.attempt()
    s.con.close()
    before = fleet_lines(fleet_url, j.chain_id)
    # Another journal under the same chain_id (an audit dir's chain_id file copied elsewhere):
    # longer, as long, or shorter than what the fleet holds.
    other = journal_of(tmp_path / "b", other_rows, chain=j.chain_id, tag="other")
    t = shipper(fleet_url, tmp_path / "b", other, name="impostor")
    assert not t.attempt()
    assert t.error and "does not continue" in t.error and j.chain_id in t.error
    assert fleet_lines(fleet_url, j.chain_id) == before
    row = proxy_row(fleet_url, j.chain_id)
    assert row is not None and row["shipped_seq"] == 500
    assert row["ship_error"] == t.error  # visible in the fleet, not only in one proxy's log
    assert row["name"] == "direct"  # the impostor did not take the chain's row over


def test_values_with_nul_are_shipped_as_pg_row_makes_them(tmp_path: Path, fleet_url: str) -> None:
    # PostgreSQL's text cannot hold NUL: the typed copy gets U+FFFD, `line` keeps the escape.
    j = journal_of(tmp_path / "a", 2)
    j.append([{"stage": "request", "flow_id": "nul", "path": "/a\x00b", "matched_rules": ["r\x00"]}])
    s = shipper(fleet_url, tmp_path / "a", j)
    assert s.attempt() and s.shipped == 3
    s.con.close()
    with psycopg.connect(fleet_url) as con:
        rows = con.execute("SELECT path, matched_rules, line FROM chain_rows ORDER BY seq").fetchall()
    assert rows[0][0] == "/e/0" and rows[2][:2] == ("/a\ufffdb", ["r\ufffd"])
    assert "\\u0000" in rows[2][2]
    assert assert_shipped_exactly(fleet_url, tmp_path / "a") == 3
