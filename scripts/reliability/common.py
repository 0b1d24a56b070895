"""Shared parts of the crash loop and the soak: a real `shield run --headless` with the e2e
rules and a reviewer, a local upstream, a load of agents, and readers of the audit files
(journal tail, audit.duckdb, sizes). Loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.harness import Proxy, rss_mib, start_proxy, wait_for
from shield_addon.journal import read_rows, segments

# The e2e tests' upstream server and lean agent client: fixtures of the tests, not their harness.
from tests.e2e.protocols.load import Agent, ProxyError, raise_nofile
from tests.e2e.protocols.servers import HTTPUpstream

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "tests" / "e2e" / "rules"  # /hold/..., /deny/..., sql DROP held; everything else allowed
REVIEWER = ROOT / "scripts" / "reviewer_addon.py"

__all__ = ["Agent", "HTTPUpstream", "Load", "Proxy", "Reviewer", "read_rows", "wait_for", "start", "rss_mib", "dir_mib",
           "journal_max_seq", "duckdb_max_seq", "open_read_only", "verify"]


def start(workdir: Path, *extra: str) -> Proxy:
    """A proxy on `workdir`'s confdir and audit dir (reused across restarts), with the
    reviewer addon; returns once it listens and the reviewer answers."""
    raise_nofile(16384)
    control = workdir / "control-port"
    control.unlink(missing_ok=True)  # a restart must not find the dead proxy's port
    proxy = start_proxy(workdir, "--set", f"shield_rules={RULES}", "--set", "proxyauth=any", "-s", str(REVIEWER), *extra)
    wait_for(lambda: control.exists() or proxy.proc.poll() is not None, 30, "the reviewer addon")
    if proxy.proc.poll() is not None:
        raise RuntimeError(f"the proxy exited {proxy.proc.returncode}: {proxy.log.read_text()[-2000:]}")
    return proxy


def verify(proxy: Proxy) -> tuple[bool, str]:
    # A 30-minute soak leaves ~1.7 M events (2.7 GB of journal): minutes of hashing, not 60 s.
    out = proxy.shield("verify", "--confdir", str(proxy.confdir), check=False, timeout=1800)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def dir_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20 if path.exists() else 0.0


def journal_max_seq(journal_dir: Path) -> int:
    """The newest complete line's seq, read from the end of the last segment only."""
    segs = segments(journal_dir)
    if not segs:
        return 0
    with open(segs[-1][1], "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    lines = tail.split(b"\n")
    for line in reversed(lines[:-1]):  # the part after the last newline may be torn
        try:
            return int(json.loads(line)["seq"])
        except (ValueError, KeyError):
            continue
    return 0


def open_read_only(db: Path, wait: float = 5) -> Any:
    """audit.duckdb opened read-only as an analyst would, between ingest batches; None if
    the ingester still held it after `wait` seconds (or the file cannot be opened)."""
    import duckdb

    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(db), read_only=True)
        except duckdb.Error:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)


def duckdb_max_seq(db: Path, wait: float = 5) -> int | None:
    """max(seq) in audit.duckdb, opened read-only between ingest batches (None: busy)."""
    import duckdb

    con = open_read_only(db, wait)
    if con is None:
        return None
    try:
        return con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
    except duckdb.Error:
        return 0
    finally:
        con.close()


# ---------------------------------------------------------------- load


EXPECTED = {"get": 200, "post": 200, "sql": 200, "deny": 403, "hold": 200}
DEFAULT_MIX = (("get", 60), ("post", 15), ("sql", 5), ("deny", 10), ("hold", 10))


def request_for(kind: str, tag: str, agent: int, i: int, rng: random.Random) -> tuple[str, str, bytes]:
    """(method, path, body) of one request of `kind`; every path is unique."""
    if kind == "get":
        return "GET", f"/allowed/{tag}{agent}-{i}?page={i % 7}", b""
    if kind == "post":
        doc = {"agent": agent, "n": i, "items": [{"id": k, "note": "x" * rng.randint(10, 200)} for k in range(rng.randint(1, 12))]}
        return "POST", f"/allowed/{tag}post-{agent}-{i}", json.dumps(doc).encode()
    if kind == "sql":
        return "POST", f"/v1/query/{tag}{agent}-{i}", json.dumps({"query": f"SELECT id, name FROM users WHERE id = {i}"}).encode()
    if kind == "deny":
        return "POST", f"/deny/{tag}{agent}-{i}", b'{"amount": 100}'
    if kind == "hold":
        return "DELETE", f"/hold/{tag}a-{agent}-{i}", b""
    raise ValueError(kind)


@dataclass
class Load:
    """`agents` agents (proxy users agent-<n>), each on a keep-alive connection, sending a
    mix of requests as fast as answers come, in a thread of their own, until stop()."""

    port: int
    upstream: HTTPUpstream
    agents: int
    tag: str
    mix: tuple[tuple[str, int], ...] = DEFAULT_MIX
    keep: bool = True  # keep every (kind, path, status); False: counters only
    timeout: float = 60
    sent: Counter = field(default_factory=Counter)  # kind -> requests answered or failed
    statuses: Counter = field(default_factory=Counter)  # (kind, status or error name) -> n
    outcomes: list[tuple[str, str, int | str]] = field(default_factory=list)

    def start(self) -> Load:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=f"load-{self.tag}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 90) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    @property
    def unexpected(self) -> int:
        return sum(n for (kind, status), n in self.statuses.items() if status != EXPECTED[kind])

    async def _main(self) -> None:
        await asyncio.gather(*(self._agent(n) for n in range(self.agents)))

    async def _agent(self, n: int) -> None:
        rng = random.Random(f"{self.tag}{n}")
        kinds, weights = zip(*self.mix)
        conn = Agent(self.port, f"agent-{n}", timeout=self.timeout)
        i = 0
        while not self._stop.is_set():
            i += 1
            kind = rng.choices(kinds, weights)[0]
            method, path, body = request_for(kind, self.tag, n, i, rng)
            try:
                status: int | str = (await conn.request(method, self.upstream.url(path), body))[0]
            except (TimeoutError, ProxyError, OSError) as e:
                status = type(e).__name__
                await asyncio.sleep(0.05)  # the proxy is gone or restarting: do not spin
            self.sent[kind] += 1
            self.statuses[(kind, status)] += 1
            if self.keep:
                self.outcomes.append((kind, path, status))
        conn.close()


class Reviewer(threading.Thread):
    """Approves what is held under `prefix`, a few times a second, through the reviewer
    addon (mitmproxy's `shield.approve`); survives the proxy dying under it."""

    def __init__(self, proxy: Proxy, prefix: str, every: float = 0.2):
        super().__init__(name="reviewer", daemon=True)
        self.proxy, self.prefix, self.every = proxy, prefix, every
        self.approved = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.approved += self.proxy.command("shield.approve", f"~u {self.prefix}", held=True)["n"]
            except (OSError, ValueError, AssertionError):
                pass  # the proxy is restarting or was killed
            self.halt.wait(self.every)

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def finish(failures: list[str], work: Path, keep: bool) -> int:
    """Print the failures, keep the work directory when asked or needed, and the exit code."""
    import shutil

    for f in failures:
        print(f"  FAILED {f}")
    if failures or keep:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0
