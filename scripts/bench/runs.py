"""One measured run: a proxy process (bare mitmdump, mitmdump with the null addon, or
`shield run`), the load for a window, and what it cost: requests/s, latency, the proxy's CPU
per request by thread, its peak RSS, the machine's background load, fsync latency."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench import procstat
from scripts.bench.launch import Launcher
from scripts.bench.load import LoadSpec, Upstream, drive
from scripts.bench.stats import quantile
from scripts.harness import child_env, free_port, wait_port
from shield_addon import checkpoints, journal, store

BG_LIMIT = 0.15  # cores used by others during a run before the run is called unreliable
NULL_ADDON = Path(__file__).resolve().parent.parent / "bench_null_addon.py"


@dataclass
class Proxy:
    """A proxy under test; `kind` is bare, null-hooks, null-thread, null-writer (mitmdump) or shield."""

    kind: str
    proc: subprocess.Popen
    port: int
    log: Path
    audit_dir: Path | None
    confdir: Path
    sent: int = 0  # requests this process was sent (warm-up and probe included)
    thread_names: dict[int, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"


def start_proxy(launcher: Launcher, kind: str, work: Path, up: Upstream, rules_dir: Path | None, extra: list[str],
                tag: str) -> Proxy:
    """A proxy on a free loopback port with a confdir shared by all (one CA), trusting the
    upstream's certificate; returns once a probe request went through it."""
    conf = work / "conf"
    conf.mkdir(exist_ok=True)
    d = work / "runs" / tag
    d.mkdir(parents=True)
    port = free_port()
    common = ["--listen-host", "127.0.0.1", "--listen-port", str(port), "--set", f"ssl_verify_upstream_trusted_ca={up.cert}"]
    audit = None
    env = child_env()
    if kind == "bare" or kind.startswith("null-"):
        mitmdump = Path(sys.executable).parent / "mitmdump"
        args = [str(mitmdump if mitmdump.exists() else shutil.which("mitmdump") or "mitmdump"), "-q", "--set", f"confdir={conf}",
                *common]
        if kind.startswith("null-"):  # a do-nothing addon with shield's hooks (scripts/bench_null_addon.py)
            args += ["-s", str(NULL_ADDON)]
            env["BENCH_NULL_MODE"] = kind.removeprefix("null-")
            env["BENCH_NULL_AUDIT"], env["BENCH_NULL_CONF"] = str(d / "audit"), str(conf)
    else:
        audit = d / "audit"
        args = [sys.executable, "-m", "shield_addon.cli", "run", "--headless", "--confdir", str(conf), *common,
                "--set", f"shield_dir={audit}", "-q", *extra]
        if rules_dir is not None:
            args += ["--set", f"shield_rules={rules_dir}"]
    log = d / "proxy.log"
    proc = launcher.popen(args, log, env=env, cwd=d)
    wait_port(port, proc, 60, log)
    p = Proxy(kind, proc, port, log, audit, conf)
    probe(p, up)
    return p


def probe(p: Proxy, up: Upstream) -> None:
    """One request through the proxy: it must answer 200 from the upstream."""
    with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
        s.sendall(f"GET http://127.0.0.1:{up.http_port}/probe HTTP/1.1\r\nHost: 127.0.0.1:{up.http_port}\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    p.sent += 1
    if not data.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"{p.kind}: the probe request failed: {data[:300]!r}\n{p.log.read_text(errors='replace')[-2000:]}")


def name_threads(p: Proxy, py_spy: str | None) -> None:
    """Thread names by OS thread id, from `py-spy dump --json` (Python 3.12 does not name OS threads)."""
    if not py_spy:
        return
    try:
        cp = subprocess.run([py_spy, "dump", "--pid", str(p.pid), "--json", "--nonblocking"], capture_output=True, text=True,
                            timeout=30)
        for t in json.loads(cp.stdout):
            p.thread_names[int(t["os_thread_id"])] = str(t.get("thread_name") or "?")
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        pass


def journal_summary(audit_dir: Path) -> dict[str, Any]:
    stages: collections.Counter[str] = collections.Counter()
    decisions: collections.Counter[str] = collections.Counter()
    rows = 0
    for row in journal.read_rows(audit_dir / store.JOURNAL_DIR):
        rows += 1
        stages[row["stage"]] += 1
        if row["stage"] == "request":
            decisions[str(row["decision"])] += 1
    cp_log = audit_dir / checkpoints.LOG_FILE
    cps = cp_log.read_text().count("\n") if cp_log.exists() else 0
    ingested = None
    with contextlib.suppress(Exception):
        import duckdb

        con = duckdb.connect(str(audit_dir / store.DB_NAME), read_only=True)
        ingested = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
    return {"rows": rows, "stages": dict(stages), "decisions": dict(decisions), "checkpoints": cps, "ingested": ingested}


@dataclass
class Run:
    proxy: str
    scenario: str
    round: int
    requests: int = 0
    wall: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_ms: float = 0.0  # proxy CPU per request
    threads_ms: dict[str, float] = field(default_factory=dict)
    upstream_us: float = 0.0
    client_us: float = 0.0
    bg_cores: float = 0.0
    steal_cores: float = 0.0
    peak_rss_mib: float = 0.0
    errors: int = 0
    first_error: str = ""
    fsync_p50_ms: float = 0.0  # a 1 KB append + fdatasync every 20 ms next to the audit dir, during the run
    fsync_p99_ms: float = 0.0
    tids: dict[int, float] = field(default_factory=dict, repr=False)

    @property
    def unreliable(self) -> bool:
        return self.bg_cores > BG_LIMIT or self.steal_cores > 0.05 or self.errors > 0


class FsyncProbe:
    """How long an fdatasync takes on the audit dir's file system while a run goes on (other
    writers on the disk make the journal's group commits, and so every request, wait)."""

    dir: Path | None = None

    def __init__(self) -> None:
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.dir is not None:
            self._thread = threading.Thread(target=self._run, name="fsync-probe", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        assert self.dir is not None
        path = self.dir / f"fsync-probe-{threading.get_ident()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while not self._stop.wait(0.02):
                os.write(fd, b"x" * 1023 + b"\n")
                t = time.perf_counter()
                os.fdatasync(fd)
                self.times.append(time.perf_counter() - t)
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def quantile_ms(self, q: float) -> float:
        return quantile(self.times, q) * 1000


def snapshot(pid: int | None, up: Upstream) -> dict[str, Any]:
    busy, steal = procstat.system_cpu()
    return {"t": time.perf_counter(), "proxy": procstat.family_cpu(pid) if pid else 0.0,
            "threads": {**procstat.thread_cpu(pid), **procstat.children_cpu(pid)} if pid else {},
            "up": up.cpu(), "me": procstat.self_cpu(), "busy": busy,
            "steal": steal}


def measure(name: str, scenario: str, rnd: int, spec: LoadSpec, up: Upstream, proxy: Proxy | None, args: argparse.Namespace,
            duration: float, on_window: Callable[[], None] | None = None, on_window_end: Callable[[], None] | None = None) -> Run:
    """The load for args.warmup seconds unmeasured, then `duration` seconds measured
    (args.concurrency connections), through `proxy` or straight to the upstream."""
    pid = proxy.pid if proxy else None
    snaps: list[dict[str, Any]] = []
    peak = procstat.PeakRss(pid, every=0.25).start() if pid else None
    probe = FsyncProbe()

    def start() -> None:
        snaps.append(snapshot(pid, up))
        probe.start()
        if on_window:
            on_window()

    def end() -> None:
        snaps.append(snapshot(pid, up))
        probe.stop()
        if on_window_end:
            on_window_end()

    win = asyncio.run(drive(spec, up, proxy.port if proxy else None, proxy.ca if proxy else None, args.concurrency,
                            args.warmup, duration, start, end))
    if proxy:
        proxy.sent += win.sent
    r = Run(name, scenario, rnd, requests=len(win.latencies), wall=snaps[1]["t"] - snaps[0]["t"], errors=win.errors,
            first_error=win.first_error, fsync_p50_ms=probe.quantile_ms(0.5), fsync_p99_ms=probe.quantile_ms(0.99),
            peak_rss_mib=peak.stop() if peak else 0.0)
    if r.requests:
        costs(r, win.latencies, *snaps)
    return r


def costs(r: Run, latencies: list[float], a: dict[str, Any], b: dict[str, Any]) -> None:
    """A run's figures from its latencies and the snapshots at the window's ends."""
    n, wall = r.requests, r.wall
    r.rps = n / wall
    r.p50_ms = quantile(latencies, 0.5) * 1000
    r.p99_ms = quantile(latencies, 0.99) * 1000
    proxy_s = b["proxy"] - a["proxy"]
    r.cpu_ms = proxy_s / n * 1000
    r.upstream_us = (b["up"] - a["up"]) / n * 1e6
    r.client_us = (b["me"] - a["me"]) / n * 1e6
    ours = proxy_s + (b["up"] - a["up"]) + (b["me"] - a["me"])
    r.bg_cores = max(0.0, (b["busy"] - a["busy"] - ours) / wall)
    r.steal_cores = (b["steal"] - a["steal"]) / wall
    if b["threads"]:
        r.tids = {tid: b["threads"][tid] - a["threads"][tid] for tid in b["threads"] if tid in a["threads"]}
        r.tids[0] = proxy_s - sum(r.tids.values())  # threads that came and went during the window


def label_threads(r: Run, p: Proxy) -> None:
    groups: dict[str, float] = collections.defaultdict(float)
    for tid, s in r.tids.items():
        if tid == 0:
            name = "exited threads"
        elif tid == p.pid:
            name = "main (event loop)"
        elif tid < 0:
            name = "writer process"
        else:
            name = p.thread_names.get(tid, "other threads" if p.thread_names else "other threads (names need py-spy)")
            name = re.sub(r"_\d+$", "_*", name)  # asyncio_0, asyncio_1 -> asyncio_*
        groups[name] += s
    r.threads_ms = {k: v / r.requests * 1000 for k, v in sorted(groups.items(), key=lambda kv: -kv[1])} if r.requests else {}


def fmt_run(r: Run) -> str:
    flag = " UNRELIABLE" if r.unreliable else ""
    err = f" errors {r.errors} ({r.first_error})" if r.errors else ""
    return (f"    {r.proxy:12} {r.scenario:10} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
            f"cpu {r.cpu_ms:5.3f} ms/req  rss {r.peak_rss_mib:5.0f} MiB  bg {r.bg_cores:4.2f} cores  "
            f"fsync {r.fsync_p50_ms:4.1f}/{r.fsync_p99_ms:4.1f} ms{err}{flag}")

