"""Many flows at once through a real proxy: 1,000 flows held together and approved
together, then 200 agents mixing allowed, held and denied traffic. Nothing is lost,
nothing is forwarded or recorded twice, the chain stays whole.

Sizes and duration are parameters, so a longer run can reuse this file:
SHIELD_CONCURRENCY_HELD (1000), SHIELD_CONCURRENCY_AGENTS (200), SHIELD_CONCURRENCY_SECONDS (20).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shield_addon.journal import read_rows
from tests.e2e.harness import HERE, Proxy, rss_mib, start_proxy, wait_for
from tests.e2e.protocols.load import Agent, ProxyError, raise_nofile
from tests.e2e.protocols.servers import HTTPUpstream

HELD = int(os.environ.get("SHIELD_CONCURRENCY_HELD", "1000"))
AGENTS = int(os.environ.get("SHIELD_CONCURRENCY_AGENTS", "200"))
SECONDS = float(os.environ.get("SHIELD_CONCURRENCY_SECONDS", "20"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[HTTPUpstream]:
    up = HTTPUpstream().start()  # a listen backlog of 1024: a thousand approvals arrive together
    yield up
    up.stop()


def start(tmp: Path) -> Proxy:
    raise_nofile(4 * max(HELD, AGENTS) + 1024)  # the proxy inherits it: a client and a server socket per flow
    return start_proxy(tmp, "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any")


def journal(proxy: Proxy) -> list[dict[str, Any]]:
    return list(read_rows(proxy.audit_dir / "journal"))


def assert_gapless_and_verified(proxy: Proxy, rows: list[dict[str, Any]]) -> None:
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "seq has a gap or a repeat"
    out = proxy.shield("verify", "--confdir", str(proxy.confdir), check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def stop_cleanly(proxy: Proxy, timeout: float = 15) -> None:
    """SIGTERM, as systemd or Ctrl-C would; the proxy must be gone well before a supervisor
    gives up and sends SIGKILL."""
    proxy.proc.send_signal(signal.SIGTERM)
    try:
        rc = proxy.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    if rc is None:
        proxy.proc.kill()
        proxy.proc.wait(5)
        lost = "Exception ignored when trying to write to the signal wakeup fd" in proxy.log.read_text()
        pytest.fail(f"BUG: the proxy ignored SIGTERM for {timeout:.0f}s after a burst of flows "
                    f"(signal wakeup fd full: {lost}); it had to be killed")
    assert rc == 0, f"the proxy exited {rc}"


# ---------------------------------------------------------------- 1,000 held at once


async def hold_all_then_decide(proxy: Proxy, upstream: HTTPUpstream, prefix: str, command: str,
                               check: Callable[[list[int | str]], None]) -> None:
    """HELD agents each send one request that is held; once all are held, one command
    decides them all; `check` runs on the answers while the agents are still connected;
    then the agents all leave at once."""
    connecting = asyncio.Semaphore(100)  # connect in waves; the thousand stay open together
    agents = [Agent(proxy.port, f"agent-{i % 100}", timeout=120) for i in range(HELD)]

    async def one(i: int) -> int | str:
        try:
            async with connecting:
                await agents[i].connect()
            status, _, _ = await agents[i].request("DELETE", upstream.url(f"{prefix}{i}"))
            return status
        except (TimeoutError, ProxyError, OSError) as e:
            return repr(e)

    rss_before = rss_kib(proxy.proc.pid)
    try:
        tasks = [asyncio.create_task(one(i)) for i in range(HELD)]
        await asyncio.to_thread(proxy.wait_held, f"~u {prefix}", HELD, 120)
        per_flow = (rss_kib(proxy.proc.pid) - rss_before) / HELD
        print(f"proxy RSS {rss_before / 1024:.0f} MiB before, +{per_flow:.0f} KiB per held flow with {HELD} held")
        assert per_flow < 256, "a held flow must cost kilobytes, not a copy of something big"
        assert upstream.hits_for(prefix) == [], "a held flow reached upstream"
        assert not [t for t in tasks if t.done()], "an agent was answered while held"
        await asyncio.to_thread(proxy.command, command, f"~u {prefix}")
        await asyncio.to_thread(check, await asyncio.gather(*tasks))
    finally:
        before = proxy.log.read_text().count("client disconnect")
        for a in agents:
            a.close()
    # the proxy is now logging a thousand disconnections: the moment an operator's Ctrl-C
    # or systemd's SIGTERM must still work
    await asyncio.to_thread(wait_for, lambda: proxy.log.read_text().count("client disconnect") >= before + HELD // 2,
                            30, "the agents' disconnections to be under way")


def rss_kib(pid: int) -> float:
    return rss_mib(pid) * 1024


@pytest.mark.timeout(240)
@pytest.mark.parametrize("command", ["shield.approve", "flow.resume"])
def test_a_thousand_held_flows_approved_at_once_are_each_forwarded_exactly_once(
        tmp_path: Path, upstream: HTTPUpstream, command: str) -> None:
    """Memory stays bounded while they are held. Then the agents leave together and the proxy
    gets SIGTERM, which asyncio used to lose in such a burst: it delivers signals through the
    loop's self-pipe, which a thousand log lines and journal wake-ups fill. The addon now
    installs a plain handler and wakes the loop once per journal batch."""
    proxy = start(tmp_path)
    prefix = f"/hold/thousand-{command.replace('.', '-')}-"
    t0 = time.monotonic()

    def check(statuses: list[int | str]) -> None:
        print(f"{HELD} held and approved with {command} in {time.monotonic() - t0:.1f}s")
        assert Counter(statuses) == {200: HELD}
        hits = Counter(h.path for h in upstream.hits_for(prefix))
        assert len(hits) == HELD and set(hits.values()) == {1}, "each approved flow is forwarded exactly once"
        rows = wait_for(lambda: (lambda rs: rs if sum(r["stage"] == "response" and prefix in (r["path"] or "")
                                                      for r in rs) == HELD else None)(journal(proxy)),
                        30, "every response event")
        flows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["path"] and r["path"].startswith(prefix):
                flows[r["flow_id"]].append(r)
        assert len(flows) == HELD
        assert Counter(evs[0]["path"] for evs in flows.values()) == Counter(hits), "one flow per request"
        for evs in flows.values():
            request, decision, response = evs  # exactly three events, in this order
            assert (request["stage"], request["verdict"], request["decision"]) == ("request", "hold", None)
            assert (decision["stage"], decision["decision"], decision["operation"]) == ("decision", "approved", command)
            assert decision["reviewer"] == "test-reviewer" and decision["decided_at"]
            assert (response["stage"], response["status_code"], response["outcome"]) == ("response", 200, "forwarded")
        assert_gapless_and_verified(proxy, rows)

    try:
        asyncio.run(hold_all_then_decide(proxy, upstream, prefix, command, check))
    except BaseException:
        proxy.stop()
        raise
    stop_cleanly(proxy)  # last: a lost SIGTERM must not hide the checks above


# ---------------------------------------------------------------- 200 agents, mixed traffic


KINDS = ["allowed"] * 14 + ["post"] * 2 + ["deny"] * 2 + ["hold"] * 2  # 80 % allowed, 10 % denied, 10 % held


async def agents_at_work(proxy: Proxy, upstream: HTTPUpstream, seconds: float) -> list[tuple[str, str, str, int | str]]:
    """AGENTS agents, each on its own keep-alive connection and proxy user, for `seconds`.
    Returns (agent, kind, path, status or error) for every request sent."""
    deadline = time.monotonic() + seconds
    sent: list[tuple[str, str, str, int | str]] = []

    async def agent(n: int) -> None:
        name, rng = f"agent-mix-{n}", random.Random(n)
        conn = Agent(proxy.port, name, timeout=60)
        i = 0
        while time.monotonic() < deadline:
            i += 1
            kind = rng.choice(KINDS)
            path = {"allowed": f"/allowed/mix-{n}-{i}", "post": f"/allowed/mix-post-{n}-{i}",
                    "deny": f"/deny/mix-{n}-{i}", "hold": f"/hold/mix-{n}-{i}"}[kind]
            method, body = {"allowed": ("GET", b""), "post": ("POST", b'{"n": %d}' % i),
                            "deny": ("POST", b"{}"), "hold": ("DELETE", b"")}[kind]
            try:
                status: int | str = (await conn.request(method, upstream.url(path), body))[0]
            except (TimeoutError, ProxyError, OSError) as e:
                status = repr(e)
            sent.append((name, kind, path, status))
        conn.close()

    await asyncio.gather(*(agent(n) for n in range(AGENTS)))
    return sent


def reviewer(proxy: Proxy, stop: threading.Event, decided: list[int]) -> None:
    """Approves whatever is held, a few times a second, through mitmproxy's command path."""
    while not stop.is_set():
        decided.append(proxy.command("shield.approve", "~u /hold/mix-", held=True)["n"])
        stop.wait(0.1)


def ingested_seq(audit_dir: Path) -> int | None:
    try:  # between ingest batches only
        con = duckdb.connect(str(audit_dir / "audit.duckdb"), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute("SELECT max(seq) FROM events").fetchone()[0]
    except duckdb.Error:
        return None
    finally:
        con.close()


@pytest.mark.timeout(SECONDS + 180)
def test_200_agents_mixing_allowed_held_and_denied_traffic_lose_and_double_nothing(
        tmp_path: Path, upstream: HTTPUpstream) -> None:
    proxy = start(tmp_path)
    stop, decided = threading.Event(), []
    rev = threading.Thread(target=reviewer, args=(proxy, stop, decided))
    rev.start()
    try:
        t0 = time.monotonic()
        sent = asyncio.run(agents_at_work(proxy, upstream, SECONDS))
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        rev.join(30)
    try:
        kinds = Counter(k for _, k, _, _ in sent)
        print(f"{len(sent)} requests from {AGENTS} agents in {elapsed:.1f}s ({len(sent) / elapsed:.0f}/s): {dict(kinds)}; "
              f"{sum(decided)} approvals")
        assert kinds["hold"] and kinds["deny"] and kinds["allowed"], "the mix must hold all three kinds"
        expected = {"allowed": 200, "post": 200, "deny": 403, "hold": 200}
        wrong = [(p, s) for _, k, p, s in sent if s != expected[k]]
        assert not wrong, f"{len(wrong)} unexpected answers, e.g. {wrong[:5]}"

        # upstream: every allowed or approved request exactly once, never a denied one
        hits = Counter(h.path for h in upstream.hits_for("/mix-"))
        forwarded = {p for _, k, p, _ in sent if k != "deny"}
        assert set(hits) == forwarded and set(hits.values()) == {1}

        # the trail: one request event per request sent, by the agent that sent it; one
        # decision per hold; one outcome per flow
        rows = wait_for(lambda: (lambda rs: rs if sum(r["stage"] in ("response", "error") and "/mix-" in (r["path"] or "")
                                                      for r in rs) >= len(sent) else None)(journal(proxy)),
                        60, "an outcome event for every request")
        mine = [r for r in rows if r["path"] and "/mix-" in r["path"]]
        requests = Counter(r["path"] for r in mine if r["stage"] == "request")
        assert set(requests) == {p for _, _, p, _ in sent} and set(requests.values()) == {1}, "lost or doubled request events"
        agent_of = {p: a for a, _, p, _ in sent}
        assert all(r["agent"] == agent_of[r["path"]] for r in mine), "an event carries the wrong agent"
        by_flow: dict[str, list[str]] = defaultdict(list)
        for r in mine:
            by_flow[r["flow_id"]].append(r["stage"])
        kind_of = {p: k for _, k, p, _ in sent}
        path_of = {r["flow_id"]: r["path"] for r in mine if r["stage"] == "request"}
        for fid, stages in by_flow.items():
            want = ["request", "decision", "response"] if kind_of[path_of[fid]] == "hold" else ["request", "response"]
            assert stages == want, f"{path_of[fid]}: {stages}"
        assert_gapless_and_verified(proxy, rows)
        last = rows[-1]["seq"]
        wait_for(lambda: (ingested_seq(proxy.audit_dir) or 0) >= last, 30, "audit.duckdb to catch up with the journal")
    finally:
        proxy.stop()
