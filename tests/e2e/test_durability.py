"""Crashes, full and read-only disks, and analysts holding the DuckDB file: nothing is lost,
nothing goes upstream unrecorded."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import random
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from shield_addon.journal import read_rows
from tests.e2e.harness import HERE, Proxy, Upstream, start_proxy, wait_for
from tests.e2e.mediation_servers import BANNER, BannerServer, read_until_closed
from tests.e2e.protocols.clients import connect_tunnel


def journal(proxy: Proxy) -> list[dict]:
    return list(read_rows(proxy.audit_dir / "journal"))


def verify(proxy: Proxy) -> subprocess.CompletedProcess:
    return proxy.shield("verify", "--confdir", str(proxy.confdir), check=False)


def hammer(proxy: Proxy, upstream: Upstream, tag: str, stop: threading.Event, workers: int = 8) -> list[str]:
    """Concurrent agents until `stop`: allowed, denied and held requests, each path unique."""
    sent: list[str] = []

    def agent(n: int) -> None:
        with httpx.Client(proxy=proxy.url(f"agent-{n}"), trust_env=False, timeout=3,
                          verify=ssl.create_default_context(cafile=str(proxy.ca))) as c:
            i = 0
            while not stop.is_set():
                i += 1
                kind = random.choice(["allowed", "allowed", "allowed", "deny", "hold"])
                path = f"/{kind}/{tag}{n}-{i}"
                sent.append(path)
                try:
                    c.request("DELETE" if kind == "hold" else "GET", upstream.url(path, tls=n % 2 == 0))
                except httpx.HTTPError:
                    pass  # the proxy died under us: that is the point

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for n in range(workers):
            pool.submit(agent, n)
    return sent


def _quiet_delete(proxy: Proxy, url: str) -> None:
    try:
        with httpx.Client(proxy=proxy.url("agent-pending"), trust_env=False, timeout=30) as c:
            c.delete(url)
    except httpx.HTTPError:
        pass  # the proxy is killed while this waits


@pytest.mark.timeout(180)
def test_kill_9_under_load_loses_no_request_event_and_forwards_nothing_unrecorded(tmp_path: Path, upstream: Upstream) -> None:
    args = ("--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any")
    for round_ in range(3):
        proxy = start_proxy(tmp_path, *args, upstream_ca=upstream.ca_file, control=False)
        before = len(journal(proxy))
        stop = threading.Event()
        tag, target = f"crash{round_}-", 20 + random.randint(0, 40)  # die at a random moment
        t = threading.Thread(target=hammer, args=(proxy, upstream, tag, stop))
        t.start()
        wait_for(lambda tag=tag, target=target: len(upstream.hits_for(tag)) >= target, 60, "traffic")
        # one hold certainly in progress at the moment of the crash
        pending = f"/hold/{tag}pending"
        threading.Thread(target=_quiet_delete, args=(proxy, upstream.url(pending)), daemon=True).start()
        wait_for(lambda p=pending, x=proxy: any(r["path"] == p for r in journal(x)), 10, "the pending hold's request event")
        os.kill(proxy.proc.pid, signal.SIGKILL)
        proxy.proc.wait(10)
        stop.set()
        t.join(30)
        rows = journal(proxy)
        recorded = {r["path"] for r in rows if r["stage"] == "request"}
        hit = {h.path for h in upstream.hits_for(tag)}
        assert hit, "the upstream saw traffic"
        assert hit <= recorded, f"forwarded without a request event: {sorted(hit - recorded)[:5]}"
        assert not any("/deny/" in p or "/hold/" in p for p in hit), "a denied or held request reached upstream"
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) > before
    # held at the moment of a crash: recorded as held, with no decision, and never forwarded by a restart
    [pending_request] = [r for r in rows if r["path"] == pending]
    assert pending_request["verdict"] == "hold" and pending_request["decision"] is None
    assert not [r for r in rows if r["flow_id"] == pending_request["flow_id"] and r["stage"] != "request"]
    proxy = start_proxy(tmp_path, *args, upstream_ca=upstream.ca_file, control=False)
    try:
        with httpx.Client(proxy=proxy.url("agent-after"), trust_env=False) as c:
            assert c.get(upstream.url("/allowed/after-crash")).status_code == 200
        after = wait_for(lambda: [r for r in journal(proxy) if r["path"] == "/allowed/after-crash" and r["stage"] == "response"],
                         10, "the first event after the crashes")
        assert after[0]["seq"] > rows[-1]["seq"]
        assert upstream.hits_for("/hold/crash") == [], "a restart must not forward what was held at a crash"
    finally:
        proxy.stop()
    out = verify(proxy)
    assert out.returncode == 0, out.stdout
    con = duckdb.connect(str(proxy.audit_dir / "audit.duckdb"), read_only=True)
    assert con.execute("SELECT count(*), max(seq) FROM events").fetchone() == (len(journal(proxy)), len(journal(proxy)))


@pytest.mark.timeout(180)
def test_kill_9_of_the_audit_writer_under_load_loses_nothing_and_the_proxy_goes_on(tmp_path: Path, upstream: Upstream) -> None:
    """The writer is a process of its own: killed mid-load, what it acknowledged is on disk,
    nothing goes upstream unrecorded meanwhile, and a new writer continues the same chain."""
    proxy = start_proxy(tmp_path, "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any",
                        upstream_ca=upstream.ca_file, control=False)
    try:
        first = wait_for(proxy.writer_pid, 10, "the audit writer")
        stop = threading.Event()
        t = threading.Thread(target=hammer, args=(proxy, upstream, "wkill-", stop))
        t.start()
        try:
            wait_for(lambda: len(upstream.hits_for("wkill-")) >= 20, 60, "traffic")
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: proxy.writer_pid() not in (None, first), 30, "a new audit writer")
            after_restart = len(upstream.hits_for("wkill-"))
            wait_for(lambda: len(upstream.hits_for("wkill-")) >= after_restart + 20, 60, "traffic through the new writer")
        finally:
            stop.set()
            t.join(30)
        rows = journal(proxy)
        recorded = {r["path"] for r in rows if r["stage"] == "request"}
        hit = {h.path for h in upstream.hits_for("wkill-")}
        assert hit <= recorded, f"forwarded without a request event: {sorted(hit - recorded)[:5]}"
        assert not any("/deny/" in p or "/hold/" in p for p in hit)
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    finally:
        proxy.stop()
    out = verify(proxy)
    assert out.returncode == 0, out.stdout
    assert "the audit writer is gone" in proxy.log.read_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the audit directory, so the disk can really fill up."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def fill(disk: Path) -> Path:
    """Take every last byte, so even a short journal line cannot fit."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 256, 16, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def get(proxy: Proxy, url: str) -> httpx.Response:
    with httpx.Client(proxy=proxy.url("agent-disk"), trust_env=False, timeout=10) as c:
        return c.get(url)


def test_a_full_disk_refuses_flows_with_503_and_recovers(tmp_path: Path, small_disk: Path, upstream: Upstream) -> None:
    proxy = start_proxy(tmp_path, "--set", "proxyauth=any", audit_dir=small_disk / "audit")
    try:
        assert get(proxy, upstream.url("/allowed/disk-ok")).status_code == 200
        filler = fill(small_disk)
        # The last partly used page of the segment still takes a line or two: go on until refused.
        answers = {}
        for i in range(50):
            answers[i] = get(proxy, upstream.url(f"/allowed/disk-full-{i}"))
            if answers[i].status_code == 503:
                break
        refused = [i for i, r in answers.items() if r.status_code == 503]
        assert refused, "a full disk must refuse flows"
        r = answers[refused[0]]
        assert r.json()["decision"] == "refused" and "audit journal unavailable" in r.json()["error"]
        assert upstream.hits_for(f"/allowed/disk-full-{refused[0]}") == []
        filler.unlink()
        assert get(proxy, upstream.url("/allowed/disk-back")).status_code == 200
        assert "No space left" in proxy.log.read_text()
        recorded = {r["path"] for r in journal(proxy) if r["stage"] == "request"}
        assert {h.path for h in upstream.hits_for("/allowed/disk-")} <= recorded  # nothing forwarded unrecorded

        def ingested() -> bool:
            try:
                con = duckdb.connect(str(proxy.audit_dir / "audit.duckdb"), read_only=True)
            except duckdb.Error:
                return False
            try:
                return con.execute("SELECT max(seq) FROM events").fetchone()[0] == len(journal(proxy))
            finally:
                con.close()

        wait_for(ingested, 20, "audit.duckdb to catch up once space returned")
    finally:
        proxy.stop()
    assert verify(proxy).returncode == 0


def test_an_unwritable_journal_refuses_flows_and_recovers(tmp_path: Path, upstream: Upstream) -> None:
    """`chattr +i` makes the segment unwritable even for root, like a lost permission."""
    proxy = start_proxy(tmp_path, "--set", "proxyauth=any")
    try:
        assert get(proxy, upstream.url("/allowed/ro-ok")).status_code == 200
        [segment] = list((proxy.audit_dir / "journal").iterdir())
        if subprocess.run(["chattr", "+i", str(segment)], capture_output=True).returncode:
            pytest.skip("this filesystem has no immutable flag (chattr)")
        try:
            r = get(proxy, upstream.url("/allowed/ro-refused"))
            assert r.status_code == 503 and "audit journal unavailable" in r.json()["error"]
        finally:
            subprocess.run(["chattr", "-i", str(segment)], check=True)
        assert upstream.hits_for("/allowed/ro-refused") == []
        assert get(proxy, upstream.url("/allowed/ro-back")).status_code == 200
        assert "Operation not permitted" in proxy.log.read_text()
    finally:
        proxy.stop()
    assert verify(proxy).returncode == 0


def test_fail_open_forwards_and_says_it_did_not_record(tmp_path: Path, small_disk: Path, upstream: Upstream) -> None:
    proxy = start_proxy(tmp_path, "--set", "proxyauth=any", "--set", "shield_fail=open", audit_dir=small_disk / "audit")
    try:
        fill(small_disk)
        for i in range(50):  # until the segment's last page is used up too
            assert get(proxy, upstream.url(f"/allowed/open-unrecorded-{i}")).status_code == 200
            assert len(upstream.hits_for(f"/allowed/open-unrecorded-{i}")) == 1
            if "NOT RECORDED" in proxy.log.read_text():
                break
        assert "forwarded NOT RECORDED (shield_fail=open)" in proxy.log.read_text()
    finally:
        proxy.stop()


def test_an_analyst_holding_the_file_delays_ingest_never_a_flow(tmp_path: Path, upstream: Upstream) -> None:
    proxy = start_proxy(tmp_path, "--set", "proxyauth=any")
    db = proxy.audit_dir / "audit.duckdb"
    try:
        assert get(proxy, upstream.url("/allowed/before-analyst")).status_code == 200
        wait_for(db.exists, 10, "the first ingest")

        def open_ro() -> duckdb.DuckDBPyConnection | None:
            try:
                return duckdb.connect(str(db), read_only=True)
            except duckdb.Error:
                return None  # the ingester is mid-batch

        analyst = wait_for(open_ro, 10, "a read-only connection")
        held_rows = analyst.execute("SELECT count(*) FROM events").fetchone()[0]
        t0 = time.monotonic()
        for i in range(20):
            assert get(proxy, upstream.url(f"/allowed/while-analyst-{i}")).status_code == 200
        assert time.monotonic() - t0 < 10, "flows must not wait for the analyst"
        assert analyst.execute("SELECT count(*) FROM events").fetchone()[0] == held_rows
        cp = proxy.shield("sql", "SELECT count(*) AS n FROM events WHERE path LIKE '/allowed/while-analyst-%'", "--json")
        assert json.loads(cp.stdout)["n"] == 40  # request + response each, read from the journal tail
        analyst.close()

        def caught_up() -> bool:
            con = open_ro()
            if con is None:
                return False
            try:
                n = con.execute("SELECT count(*) FROM events WHERE path LIKE '/allowed/while-analyst-%'").fetchone()[0]
            finally:
                con.close()
            return n == 40

        wait_for(caught_up, 15, "ingest to catch up once the analyst let go")
    finally:
        proxy.stop()


RAW_TCP_RULES = """\
version: 1
default: allow
rules:
  - id: allow-raw-tcp-by-name
    match: {method: TCP, host: localhost}
    action: allow
    message: The tests' banner server, by this name only
"""


@pytest.mark.timeout(120)
def test_raw_tcp_a_rule_allows_is_not_relayed_while_its_event_cannot_be_written(tmp_path: Path) -> None:
    """A raw stream is judged when its layer is chosen: that judgement is its request event,
    and like any request event it is on disk before a byte is relayed (shield_fail=closed)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RAW_TCP_RULES)
    proxy = start_proxy(tmp_path, "--set", f"shield_rules={rules}", "--set", "proxyauth=any", control=False)
    banner = BannerServer().start()
    try:
        writer = wait_for(proxy.writer_pid, 10, "the audit writer")
        lock = os.open(proxy.audit_dir / "writer.lock", os.O_RDWR)
        try:
            os.kill(writer, signal.SIGKILL)
            fcntl.flock(lock, fcntl.LOCK_EX)  # once the dead writer let go; its successor now waits for us
            s, head = connect_tunnel(proxy.port, f"localhost:{banner.port}", "raw-tcp-unrecorded")
            with s:
                if head.startswith(b"HTTP/1.1 200"):
                    s.sendall(b"SSH-2.0-OpenSSH_9.6 agent\r\n")
                relayed = read_until_closed(s, 5)
            assert BANNER not in relayed and banner.accepted == 0, "relayed with its event unwritten"
        finally:
            os.close(lock)  # the waiting writer takes over
        wait_for(lambda: "the audit writer is back" in proxy.log.read_text(), 30, "the writer back")
        s, head = connect_tunnel(proxy.port, f"localhost:{banner.port}", "raw-tcp-recorded")
        with s:
            s.sendall(b"SSH-2.0-OpenSSH_9.6 agent\r\n")
            assert BANNER in read_until_closed(s, 3)
        judged = [r for r in journal(proxy) if r["agent"] == "raw-tcp-recorded" and r.get("rule_id")]
        assert [(r["stage"], r["verdict"]) for r in judged] == [("tcp", "allow")]
    finally:
        banner.stop()
        proxy.stop()
    assert verify(proxy).returncode == 0
