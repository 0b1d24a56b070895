#!/usr/bin/env python3
"""kill -9 the proxy at random moments under load, restart it on the same confdir and audit
directory, and check after every crash that nothing was lost and nothing went upstream
unrecorded.

    python scripts/crash_loop.py [--rounds 20] [--agents 16] [--victim both|proxy|writer] [--seed N] [--dir DIR]
                                 [--keep] [--smoke]

Each round starts (or restarts) `shield run --headless` on the same confdir and audit dir.
AGENTS agents send a mix (allowed GET/POST/SQL, denied, held and approved by a reviewer
through mitmproxy's `shield.approve`); one to three more requests are held and never
decided. At a random moment, 0.2-3 s after those are journaled, the proxy gets SIGKILL; in
writer rounds (--victim writer, or every other round with the default `both`) its audit writer
process gets SIGKILL first, and the proxy only once a new writer has let 20 more requests
through. Then, from the files on disk:
  - every request the upstream received has its `request` event (nothing forwarded unrecorded);
  - no denied or undecided request reached upstream, and none reached it twice;
  - seq is gapless from 1 and no request was journaled twice;
  - `shield verify` passes on the crashed state, before any restart;
  - the requests held at the crash are recorded held, with no decision.
After each restart, the requests held at earlier crashes are never forwarded and never get a
decision. After the last round: one more restart, a few requests, a clean stop, `shield
verify`, and audit.duckdb holding exactly the journal's rows.

Prints a line per round and a summary; exits 1 on any failure. (tests/e2e/test_durability.py
runs a 3-round version in CI.) --smoke: 2 rounds (the proxy, then the writer), 4 agents, the kill 0.2-0.5 s after the holds,
every check as above: that the tool works, in seconds (tests/scripts/ runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scripts.reliability.common import (
    Agent,
    HTTPUpstream,
    Load,
    Proxy,
    Reviewer,
    duckdb_max_seq,
    finish,
    read_rows,
    start,
    verify,
    wait_for,
)


def hold_forever(port: int, url: str, agent: str) -> None:
    """One request that is held and never decided: the agent waits until the proxy dies."""
    auth = base64.b64encode(f"{agent}:x".encode()).decode()
    host = url.split("/")[2]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
            s.sendall(f"DELETE {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
            while s.recv(65536):
                pass
    except OSError:
        pass


def journal(proxy: Proxy) -> list[dict]:
    return list(read_rows(proxy.audit_dir / "journal"))


def check_round(proxy: Proxy, upstream: HTTPUpstream, tag: str, pending: list[str]) -> tuple[list[str], dict]:
    """Every check that can be made on the files the killed proxy left."""
    problems: list[str] = []
    rows = journal(proxy)
    seqs = [r["seq"] for r in rows]
    if seqs != list(range(1, len(rows) + 1)):
        gap = next((i + 1 for i, s in enumerate(seqs) if s != i + 1), None)
        problems.append(f"seq is not gapless from 1 (first wrong position {gap})")
    mine = [r for r in rows if r["path"] and f"/{tag}" in r["path"]]
    requests = Counter(r["path"] for r in mine if r["stage"] == "request")
    twice = [p for p, n in requests.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} request(s) journaled twice, e.g. {twice[:3]}")
    hits: Counter = Counter()
    with upstream.lock:
        for p, n in upstream.counts.items():
            if f"/{tag}" in p:
                hits[p.split("?")[0]] += n  # the trail's `path` has no query string
    unrecorded = sorted(p for p in hits if p not in requests)
    if unrecorded:
        problems.append(f"{len(unrecorded)} forwarded without a request event, e.g. {unrecorded[:3]}")
    doubled = [p for p, n in hits.items() if n > 1]
    if doubled:
        problems.append(f"{len(doubled)} forwarded more than once, e.g. {doubled[:3]}")
    wrong = [p for p in hits if p.startswith("/deny/") or "pending" in p]
    if wrong:
        problems.append(f"denied or undecided requests reached upstream: {wrong[:3]}")
    held_at_crash = {}
    for path in pending:
        reqs = [r for r in mine if r["path"] == path and r["stage"] == "request"]
        if not reqs:
            continue  # its request event had not been written: it was never held
        req = reqs[0]
        later = [r["stage"] for r in mine if r["flow_id"] == req["flow_id"] and r["stage"] != "request"]
        if req["verdict"] != "hold" or req["decision"] is not None or later:
            problems.append(f"{path}: held at the crash but recorded verdict={req['verdict']} decision={req['decision']} "
                            f"then {later}")
        held_at_crash[req["flow_id"]] = path
    if not held_at_crash:
        problems.append("no request was recorded as held at the crash (the round proved nothing about holds)")
    ok, text = verify(proxy)
    if not ok:
        problems.append(f"shield verify failed: {text[-300:]}")
    stats = {"events": len(rows), "first": (mine[0]["seq"] if mine else None), "last": seqs[-1] if seqs else 0,
             "forwarded": len(hits), "held_at_crash": held_at_crash}
    return problems, stats


def check_held_stay_undecided(proxy: Proxy, upstream: HTTPUpstream, held: dict[str, str]) -> list[str]:
    """After a restart: what was held at any earlier crash is never forwarded or decided."""
    problems = []
    with upstream.lock:
        forwarded = [p for p in upstream.counts if "pending" in p]
    if forwarded:
        problems.append(f"requests held at a crash were forwarded after a restart: {forwarded[:3]}")
    later = [(r["flow_id"], r["stage"]) for r in journal(proxy) if r["flow_id"] in held and r["stage"] != "request"]
    if later:
        problems.append(f"requests held at a crash got events after a restart: {later[:3]}")
    return problems


def stop_cleanly(proxy: Proxy) -> str | None:
    proxy.proc.send_signal(signal.SIGTERM)
    try:
        rc = proxy.proc.wait(20)
    except subprocess.TimeoutExpired:
        proxy.proc.kill()
        proxy.proc.wait(5)
        return "the proxy ignored SIGTERM for 20 s and was killed"
    return None if rc == 0 else f"the proxy exited {rc} on SIGTERM"


@dataclass
class Loop:
    work: Path
    upstream: HTTPUpstream
    rng: random.Random
    agents: int
    latest_kill: float  # seconds after the holds are journaled
    victim: str = "both"  # proxy, writer, or both (writer in even rounds)
    held: dict[str, str] = field(default_factory=dict)  # flow_id -> path, of everything held at any crash
    totals: Counter = field(default_factory=Counter)

    def crash_round(self, r: int, rounds: int) -> list[str]:
        """Start (or restart) the proxy, load it, hold a few requests, kill -9 it, check the files."""
        t0 = time.monotonic()
        tag = f"r{r}-"
        proxy = start(self.work)
        restart_s = time.monotonic() - t0
        problems = check_held_stay_undecided(proxy, self.upstream, self.held) if self.held else []
        load = Load(proxy.port, self.upstream, self.agents, tag, timeout=30).start()
        reviewer = Reviewer(proxy, f"/hold/{tag}a-")
        reviewer.start()
        pending = [f"/hold/{tag}pending-{k}" for k in range(self.rng.randint(1, 3))]
        for k, path in enumerate(pending):
            threading.Thread(target=hold_forever, args=(proxy.port, self.upstream.url(path), f"agent-held-{k}"), daemon=True).start()
        try:
            wait_for(lambda: sum(n for p, n in self.upstream.counts.items() if f"/{tag}" in p) >= 20, 60, "traffic")
            wait_for(lambda: set(pending) <= {r["path"] for r in read_rows(proxy.audit_dir / "journal")}, 30, "the held requests")
        except AssertionError as e:
            problems.append(str(e))
        moment = self.rng.uniform(0.2, self.latest_kill)
        time.sleep(moment)  # the random moment of the crash, not a synchronisation
        writer_round = self.victim == "writer" or self.victim == "both" and r % 2 == 0
        if writer_round:
            problems += kill_the_writer(proxy, self.upstream, tag)
        os.kill(proxy.proc.pid, signal.SIGKILL)
        proxy.proc.wait(10)
        reviewer.stop()
        load.stop()
        more, stats = check_round(proxy, self.upstream, tag, pending)
        problems += more
        self.held.update(stats["held_at_crash"])
        self.totals.update({"requests": load.total, "forwarded": stats["forwarded"], "held_at_crash": len(stats["held_at_crash"]),
                            "approved": reviewer.approved, "denied": load.statuses[("deny", 403)]})
        verdict = "OK" if not problems else "FAILED: " + "; ".join(problems)
        print(f"round {r:>2}/{rounds}: killed {'the writer, then the proxy' if writer_round else 'the proxy'} "
              f"{moment:.2f}s after the holds, {load.total} requests "
              f"({stats['forwarded']} forwarded, {load.statuses[('deny', 403)]} denied, {reviewer.approved} approved, "
              f"{len(stats['held_at_crash'])} held at the crash); journal {stats['events']} events, seq ..{stats['last']}; "
              f"restart {restart_s:.1f}s; {verdict}", flush=True)
        return [f"round {r}: {p}" for p in problems]

    def final_restart(self, rounds: int) -> list[str]:
        """The trail goes on, nothing held comes back, a clean stop signs the tail."""
        proxy = start(self.work)
        problems = check_held_stay_undecided(proxy, self.upstream, self.held)
        before = journal(proxy)[-1]["seq"]
        statuses = asyncio.run(three_requests(proxy, self.upstream))
        if statuses != [200, 200, 200]:
            problems.append(f"requests after the crashes answered {statuses}")
        wait_for(lambda: sum(r["stage"] == "response" and "after-crashes" in (r["path"] or "") for r in journal(proxy)) == 3,
                 15, "the last responses")
        problems += check_held_stay_undecided(proxy, self.upstream, self.held)
        stopped = stop_cleanly(proxy)
        if stopped:
            problems.append(stopped)
        rows = journal(proxy)
        if rows[0]["seq"] != 1 or [r["seq"] for r in rows] != list(range(1, len(rows) + 1)) or rows[-1]["seq"] <= before:
            problems.append("seq is not gapless across the restarts")
        ok, text = verify(proxy)
        if not ok:
            problems.append(f"shield verify after a clean stop failed: {text[-300:]}")
        in_db = duckdb_max_seq(proxy.audit_dir / "audit.duckdb", 20)
        if in_db != len(rows):
            problems.append(f"audit.duckdb holds seq ..{in_db}, the journal ..{len(rows)}")
        print(f"final restart: 3 requests after {rounds} crashes, clean stop, journal {len(rows)} events, "
              f"audit.duckdb ..{in_db}, verify {'OK' if ok else 'FAILED'}; {'OK' if not problems else '; '.join(problems)}",
              flush=True)
        return [f"final: {p}" for p in problems]


def kill_the_writer(proxy: Proxy, upstream: HTTPUpstream, tag: str) -> list[str]:
    """SIGKILL the audit writer under load; the proxy must start another and go on."""
    first = proxy.writer_pid()
    if first is None:
        return ["no audit writer process to kill"]
    os.kill(first, signal.SIGKILL)
    try:
        wait_for(lambda: proxy.writer_pid() not in (None, first), 30, "a new audit writer")
        before = sum(n for p, n in upstream.counts.items() if f"/{tag}" in p)
        wait_for(lambda: sum(n for p, n in upstream.counts.items() if f"/{tag}" in p) >= before + 20, 60,
                 "traffic through the new writer")
    except AssertionError as e:
        return [str(e)]
    return []


async def three_requests(proxy: Proxy, upstream: HTTPUpstream) -> list[int]:
    agent = Agent(proxy.port, "agent-after-crashes")
    try:
        return [(await agent.request("GET", upstream.url(f"/allowed/after-crashes-{i}")))[0] for i in range(3)]
    finally:
        agent.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="crash_loop.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--agents", type=int, default=16)
    ap.add_argument("--victim", choices=["both", "proxy", "writer"], default="both",
                    help="what gets SIGKILL: the proxy, its audit writer then the proxy, or each in turn (default)")
    ap.add_argument("--seed", type=int, default=None, help="for a reproducible choice of moments")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (always kept on failure)")
    ap.add_argument("--smoke", action="store_true", help="2 rounds, 4 agents, early kills: checks the tool works, in seconds")
    args = ap.parse_args(argv)
    args.latest_kill = 3.0
    if args.smoke:
        args.rounds, args.agents, args.latest_kill = 2, 4, 0.5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    work = args.dir or Path(tempfile.mkdtemp(prefix="shield-crash-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"crash loop: {args.rounds} rounds, {args.agents} agents, seed {seed}, work dir {work}", flush=True)
    loop = Loop(work, HTTPUpstream(keep=False).start(), random.Random(seed), args.agents, args.latest_kill,
                args.victim)
    failures: list[str] = []
    t_all = time.monotonic()
    try:
        for r in range(1, args.rounds + 1):
            failures += loop.crash_round(r, args.rounds)
        failures += loop.final_restart(args.rounds)
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        loop.upstream.stop()
    totals = loop.totals
    print(f"summary: {args.rounds} rounds in {time.monotonic() - t_all:.0f}s, {len(failures)} failure(s); {totals['requests']} "
          f"requests, {totals['forwarded']} forwarded, {totals['denied']} denied, {totals['approved']} approved, "
          f"{totals['held_at_crash']} held at a crash (none forwarded or decided after restart: "
          f"{'yes' if not any('held at a crash' in f for f in failures) else 'NO'})")
    return finish(failures, work, bool(args.keep or args.dir))


if __name__ == "__main__":
    sys.exit(main())
