#!/usr/bin/env python3
"""Throughput and overhead of agent-shield against bare mitmproxy (not a timed test).

    python scripts/bench_proxy.py [--quick] [--rounds 5] [--duration 5] [--concurrency 10]
                                  [--py-spy PATH] [--nice -5] [--json OUT] [--micro-only]
                                  [--variant 'NAME=--set shield_x=y' ...] [--soak 60]

What it does, in one run (about 9 minutes with the defaults on 2 cores; --quick: about 2.5):

1. Starts nginx (system package, one worker, `return 200` with a small JSON body) on two free
   loopback ports, HTTP and HTTPS (a self-signed certificate made here), and measures the load
   generator against it directly: the ceiling of client + upstream, printed first.
2. Rounds (default 5); in each, one process after the other is started, loaded and stopped
   (the order is reversed every other round so drift cancels out):
     bare        `mitmdump -q`: mitmproxy alone, the ceiling
     shield      `shield run --headless -q` with the bundled rules and the full audit store
                 (journal with fsync'd group commit, DuckDB ingest every second, signed checkpoints)
     shield-500  the same with the bundled rules plus 500 generated rules (hosts, path regexes with
                 named groups, methods, SQL and Kubernetes matchers, headers, queries, JSON, filters)
   each on a free loopback port, with a temporary confdir (shared: one CA), trusting the upstream's
   certificate through `ssl_verify_upstream_trusted_ca` (both alike). shield gets `-q` too, so
   neither proxy prints a line per flow (--shield-arg adds arguments), and a copy of the bundled
   rules (an edit of the checkout cannot reload them mid-run).
   Scenarios, against each proxy: `http` and `https` (CONNECT, then TLS to the proxy's
   certificate) at fixed concurrency, keep-alive, a mix of 8 small allowed GETs with an
   Authorization header; `http-body`: the same with every 10th request a POST of a 256 KiB JSON
   document; `http-paced`: a fixed request rate (--rate) on the same connections, for latency
   without queueing. Each run: --warmup seconds unmeasured, then --duration seconds measured.
   Every request is checked to be allowed by both rule sets before the first run, and after each
   shield process the journal must hold one allowed `request` event per request sent.
3. Per run: requests/s, p50/p99 latency, CPU ms per request of the proxy process (utime+stime of
   all its threads from /proc/PID/stat, with reaped children; shield starts no helper process,
   its threads are in the process and are listed), peak RSS (VmHWM, reset before each run), and
   the background: CPU used on the machine by anything but the proxy, nginx and this client, from
   /proc/stat. A run with more than 0.15 cores of background (or steal time, or errors) is flagged
   UNRELIABLE and the medians are also given without its round.
4. Summary: per scenario the medians, shield/bare ratios per round and their median, added CPU
   per request and added p50, then the targets of the issue with pass/fail.
5. Micro-figures, in this process, in CPU time: rule evaluation with 10/100/500 generated rules
   (and the bundled set, and bundled+500); action parsing per parser; the cost of each step the
   addon runs per request (its own functions, on mitmproxy test flows); journal commits/s with the
   chain and checkpoints on; DuckDB ingest rows/s and the cost of one ingest batch.
   Calibration: bare against mitmdump with scripts/bench_null_addon.py, a do-nothing addon with
   shield's hooks, and one whose request hook also waits for another thread (like the journal).
   Every run also times a 1 KB append + fdatasync every 20 ms next to the audit dir ("fsync"):
   a busy disk makes every group commit, and so every shield request, wait.
6. With py-spy (--py-spy PATH, or on PATH; `pip install py-spy`): bare and shield once more,
   sampled by `py-spy record --nonblocking` during the measured window; each thread's /proc CPU is
   split by its share of samples: per shield hook, mitmproxy, asyncio, the journal writer, ingest.

--variant NAME=ARGS adds, in every round, a shield process with more `shield run` arguments (an
ablation: e.g. 'ingest5=--set shield_ingest_interval=5'), compared with bare and with shield.
--soak N runs one shield process for N seconds in 10 s slices (cost drift as the journal grows).

The machine should be otherwise idle. On a shared one, --nice -5 (as root) raises the priority of
this run's processes (and of its scheduler autogroup). Everything lives in one temporary
directory, removed at the end unless --keep. The proxies run with this Python
(`python -m shield_addon.cli`, and the `mitmdump` beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import functools
import gc
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the checkout: shield_addon if not installed, and the tests' helpers
    sys.path.insert(0, str(ROOT))

from mitmproxy import http  # noqa: E402
from mitmproxy import version as mitm_version  # noqa: E402
from mitmproxy.test import tflow  # noqa: E402

from shield_addon import __version__ as shield_version  # noqa: E402
from shield_addon import actions, checkpoints, flows, journal, paths, record, rules, store  # noqa: E402
from shield_addon.actions import common as actions_common  # noqa: E402
from tests.e2e.harness import make_cert  # noqa: E402  the same self-signed upstream certificate as the tests

TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
BG_LIMIT = 0.15  # cores used by others during a run before the run is called unreliable
BODY_SIZE = 256 * 1024
UPSTREAM_BODY = '{"ok":true,"id":42,"items":[{"id":1,"name":"alpha"},{"id":2,"name":"beta"}]}'
TOKEN = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXBsb3ktYm90In0.c2lnbmF0dXJlLW9mLXRoZS1ib3Q"
HEADERS = (  # what an agent's HTTP client typically sends
    ("User-Agent", "python-httpx/0.27.0 agent-bench"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "identity"),
    ("Authorization", TOKEN),
    ("X-Request-Id", "bench-{n}"),
)
PATHS = (  # allowed by the bundled and the generated rules (checked before any run)
    "/api/v1/users/{n}",
    "/v1/orders?limit=50&status=open&cursor=c{n}",
    "/repos/acme/api/pulls?state=open&per_page=30",
    "/api/v1/namespaces/default/pods?limit=100",
    "/apis/apps/v1/namespaces/staging/deployments/web-{n}",
    "/v1/customers/cus_{n}/invoices",
    "/search?q=incident+postmortem+{n}",
    "/api/v2/metrics/query?from=now-1h&query=avg%3Acpu",
)
BODY_PATH = "/v1/documents/bulk"
NICE: list[str] = []  # a `nice -n N` prefix for the processes we start (--nice)
STARTED: list[subprocess.Popen] = []  # every proxy we started, stopped at the end whatever happens


def out(*a: Any) -> None:
    print(*a, flush=True)


def warn(text: str) -> None:
    out(f"  !! {text}")


# ================================================================ /proc


def _stat_fields(path: str) -> list[str]:
    with open(path) as f:
        data = f.read()
    return data[data.rfind(")") + 2:].split()  # fields from 3 (state) on


def proc_cpu(pid: int) -> float:
    """Seconds of CPU of a process: every thread, dead ones included, plus reaped children."""
    try:
        f = _stat_fields(f"/proc/{pid}/stat")
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / TICK


def thread_cpu(pid: int) -> dict[int, float]:
    """Seconds of CPU of each live thread."""
    res = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return res
    for tid in tids:
        try:
            f = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        res[int(tid)] = (int(f[11]) + int(f[12])) / TICK
    return res


def status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def system_cpu() -> tuple[float, float]:
    """(busy, steal) seconds of the whole machine, all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICK, steal / TICK


def children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(_stat_fields(f"/proc/{d}/stat")[1]) == pid:
                    kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def loadavg() -> float:
    return os.getloadavg()[0]


def background_cores(seconds: float = 1.0) -> float:
    """CPU the machine uses while we do nothing (nginx idle, no proxy)."""
    b0, me0 = system_cpu()[0], self_cpu()
    time.sleep(seconds)
    return max(0.0, (system_cpu()[0] - b0 - (self_cpu() - me0)) / seconds)


def fs_type(path: Path) -> str:
    best, kind, dev = "", "?", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1]
            if str(path).startswith(mnt) and len(mnt) > len(best):
                best, kind, dev = mnt, parts[2], parts[0]
    return f"{kind} ({dev} on {best})"


def code_fingerprint() -> str:
    """SHA-256 of the addon's sources and bundled rules, and the newest file's time: the checkout
    moves while people work, so the figures say which state they measured."""
    import hashlib

    root = Path(paths.__file__).resolve().parent
    files = sorted([*root.rglob("*.py"), *paths.bundled_rules().glob("*.yaml")])
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    newest = max(files, key=lambda f: f.stat().st_mtime)
    stamp = datetime.datetime.fromtimestamp(newest.stat().st_mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"shield_addon + rules sha256 {h.hexdigest()[:16]} ({len(files)} files, newest {newest.name} {stamp})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ================================================================ upstream (nginx)


@dataclass
class Upstream:
    proc: subprocess.Popen
    http_port: int
    https_port: int
    cert: Path
    version: str

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def cpu(self) -> float:
        return sum(proc_cpu(p) for p in self.pids)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_max_body_size 8m;
    client_body_buffer_size 1m;
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def start_nginx(work: Path) -> Upstream:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        raise SystemExit("nginx not found: apt-get install -y nginx-light (or nginx)")
    d = work / "nginx"
    d.mkdir()
    cert, key = make_cert(d)
    hp, sp = free_port(), free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=d, http=hp, https=sp, cert=cert, key=key, body=UPSTREAM_BODY))
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    log = d / "stderr.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*NICE, nginx, "-p", str(d), "-c", str(conf)], stdout=fh, stderr=subprocess.STDOUT)
    wait_port(hp, proc, 10, log)
    wait_port(sp, proc, 10, log)
    return Upstream(proc, hp, sp, cert, version)


# ================================================================ proxies


@dataclass
class Proxy:
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


def start_proxy(kind: str, work: Path, up: Upstream, rules_dir: Path | None, extra: list[str], tag: str) -> Proxy:
    conf = work / "conf"
    conf.mkdir(exist_ok=True)
    d = work / "runs" / tag
    d.mkdir(parents=True)
    port = free_port()
    common = ["--listen-host", "127.0.0.1", "--listen-port", str(port), "--set", f"ssl_verify_upstream_trusted_ca={up.cert}"]
    audit = None
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    if kind == "bare" or kind.startswith("null-"):
        mitmdump = Path(sys.executable).parent / "mitmdump"
        args = [str(mitmdump if mitmdump.exists() else shutil.which("mitmdump") or "mitmdump"), "-q", "--set", f"confdir={conf}",
                *common]
        if kind.startswith("null-"):  # a do-nothing addon with shield's hooks (scripts/bench_null_addon.py)
            args += ["-s", str(Path(__file__).resolve().parent / "bench_null_addon.py")]
            env["BENCH_NULL_MODE"] = kind.removeprefix("null-")
    else:
        audit = d / "audit"
        args = [sys.executable, "-m", "shield_addon.cli", "run", "--headless", "--confdir", str(conf), *common,
                "--set", f"shield_dir={audit}", "-q", *extra]
        if rules_dir is not None:
            args += ["--set", f"shield_rules={rules_dir}"]
    log = d / "proxy.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([*NICE, *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=d)
    STARTED.append(proc)
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


# ================================================================ load generator


@dataclass
class LoadSpec:
    tls: bool
    body: bool = False  # every 10th request a 256 KiB JSON POST
    rate: float | None = None  # paced: total requests/s; None: closed loop, as fast as answered


@dataclass
class Window:
    phase: str = "warmup"
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    first_error: str = ""


def body_document(size: int = BODY_SIZE) -> bytes:
    """A realistic JSON document of exactly `size` bytes: a bulk upload of text records."""
    rnd = random.Random(1)
    words = ("incident deploy rollback latency cache region primary replica customer invoice shipment "
             "forecast anomaly threshold pipeline artifact release canary budget quota alert").split()
    docs, n, total = [], 0, 40
    while total < size - 400:
        text = " ".join(rnd.choice(words) for _ in range(40))
        d = {"id": f"doc-{n:06d}", "title": f"Report {n}", "tags": rnd.sample(words, 3), "score": round(rnd.random(), 4),
             "text": text}
        docs.append(d)
        total += len(json.dumps(d)) + 1
        n += 1
    doc = {"index": "knowledge-base", "documents": docs, "pad": ""}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    doc["pad"] = "x" * (size - len(raw))
    raw = json.dumps(doc, separators=(",", ":")).encode()
    assert len(raw) == size, len(raw)
    return raw


@functools.lru_cache(maxsize=1)
def body_bytes() -> bytes:
    return body_document()


def request_bytes(host: str, port: int, absolute: bool, n: int, body: bool = False) -> bytes:
    authority = f"{host}:{port}"
    path = BODY_PATH if body else PATHS[n % len(PATHS)].format(n=n)
    target = f"http://{authority}{path}" if absolute else path
    lines = [f"{'POST' if body else 'GET'} {target} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{k}: {v.format(n=n)}" for k, v in HEADERS]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {BODY_SIZE}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + body_bytes() if body else head


_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = _CL.search(head)
    if m:
        await reader.readexactly(int(m.group(1)))
    elif b"chunked" in head.lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def open_conn(proxy_port: int | None, up: Upstream, tls: bool, ca: Path | None):
    host = "127.0.0.1"
    port = up.https_port if tls else up.http_port
    if proxy_port is None:  # straight to the upstream (the ceiling)
        ctx = ssl.create_default_context(cafile=str(up.cert)) if tls else None
        return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if tls else None)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    if tls:
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise OSError(f"CONNECT refused: {head[:100]!r}")
        await writer.start_tls(ssl.create_default_context(cafile=str(ca)), server_hostname=host)
    return reader, writer


async def drive(spec: LoadSpec, up: Upstream, proxy_port: int | None, ca: Path | None, concurrency: int,
                warmup: float, duration: float, on_start: Callable[[], None], on_end: Callable[[], None]) -> Window:
    win = Window()
    port = up.https_port if spec.tls else up.http_port
    absolute = proxy_port is not None and not spec.tls
    pool = [request_bytes("127.0.0.1", port, absolute, n) for n in range(64)]
    heavy = request_bytes("127.0.0.1", port, absolute, 0, body=True) if spec.body else b""

    async def worker(k: int) -> None:
        i = k * 7
        interval = concurrency / spec.rate if spec.rate else 0.0
        due = time.perf_counter() + (k / spec.rate if spec.rate else 0.0)
        conn = None
        while win.phase != "done":
            try:
                if conn is None:
                    conn = await open_conn(proxy_port, up, spec.tls, ca)
                reader, writer = conn
                if spec.rate:
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    due += interval
                req = heavy if spec.body and i % 10 == 9 else pool[i % len(pool)]
                i += 1
                t = time.perf_counter()
                writer.write(req)
                if len(req) > 65536:
                    await writer.drain()
                win.sent += 1
                status = await read_response(reader)
                if win.phase == "measure":
                    win.latencies.append(time.perf_counter() - t)
                    if status != 200:
                        win.errors += 1
                        win.first_error = win.first_error or f"HTTP {status}"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ssl.SSLError) as e:
                if win.phase == "measure":
                    win.errors += 1
                    win.first_error = win.first_error or repr(e)
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.05)
        if conn is not None:
            conn[1].close()

    tasks = [asyncio.create_task(worker(k)) for k in range(concurrency)]
    await asyncio.sleep(warmup)
    on_start()
    win.phase = "measure"
    await asyncio.sleep(duration)
    win.phase = "done"
    on_end()
    _, pending = await asyncio.wait(tasks, timeout=15)
    for t in pending:
        t.cancel()
    return win


# ================================================================ one measured run


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

    def quantile(self, q: float) -> float:
        t = sorted(self.times)
        return t[min(len(t) - 1, int(len(t) * q))] * 1000 if t else float("nan")


def snapshot(pid: int | None, up: Upstream) -> dict[str, Any]:
    busy, steal = system_cpu()
    return {"t": time.perf_counter(), "proxy": proc_cpu(pid) if pid else 0.0, "threads": thread_cpu(pid) if pid else {},
            "up": up.cpu(), "me": self_cpu(), "busy": busy, "steal": steal}


def measure(name: str, scenario: str, rnd: int, spec: LoadSpec, up: Upstream, proxy: Proxy | None, args: argparse.Namespace,
            duration: float, on_window: Callable[[], None] | None = None, on_window_end: Callable[[], None] | None = None) -> Run:
    pid = proxy.pid if proxy else None
    snaps: list[dict[str, Any]] = []
    if pid:
        reset_peak_rss(pid)

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
    a, b = snaps
    wall = b["t"] - a["t"]
    lat = sorted(win.latencies)
    n = len(lat)
    r = Run(name, scenario, rnd, requests=n, wall=wall, errors=win.errors, first_error=win.first_error,
            fsync_p50_ms=probe.quantile(0.5), fsync_p99_ms=probe.quantile(0.99))
    if not n:
        return r
    r.rps = n / wall
    r.p50_ms = lat[n // 2] * 1000
    r.p99_ms = lat[min(n - 1, int(n * 0.99))] * 1000
    proxy_s = b["proxy"] - a["proxy"]
    r.cpu_ms = proxy_s / n * 1000
    r.upstream_us = (b["up"] - a["up"]) / n * 1e6
    r.client_us = (b["me"] - a["me"]) / n * 1e6
    ours = proxy_s + (b["up"] - a["up"]) + (b["me"] - a["me"])
    r.bg_cores = max(0.0, (b["busy"] - a["busy"] - ours) / wall)
    r.steal_cores = (b["steal"] - a["steal"]) / wall
    if pid:
        r.peak_rss_mib = status_kib(pid, "VmHWM") / 1024
        r.tids = {tid: b["threads"][tid] - a["threads"][tid] for tid in b["threads"] if tid in a["threads"]}
        r.tids[0] = proxy_s - sum(r.tids.values())  # threads that came and went during the window
    return r


def label_threads(r: Run, p: Proxy) -> None:
    groups: dict[str, float] = collections.defaultdict(float)
    for tid, s in r.tids.items():
        if tid == 0:
            name = "exited threads"
        elif tid == p.pid:
            name = "main (event loop)"
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


# ================================================================ the generated 500 rules


def _q(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def generated_rules(n: int, seed: int = 20261127) -> str:
    """A realistic rule file of n rules: hosts, path regexes with named groups, methods, SQL,
    Kubernetes, headers, queries, JSON, agents, filters, bodies, `not`; some in shadow mode."""
    rnd = random.Random(seed)
    kinds = [("host_tag", 10), ("host_method", 14), ("host_path", 20), ("path_only", 4), ("sql", 12), ("k8s", 15),
             ("header", 8), ("query", 4), ("json", 4), ("agent", 4), ("filter", 2), ("body", 1), ("not", 2)]
    names, weights = zip(*kinds)
    teams = ["payments", "search", "growth", "infra", "data", "identity", "billing", "ml", "mobile", "support"]
    lines = [
        "version: 1",
        "default: allow",
        "services:",
        "  kubernetes: [\"k8s-*.acme.internal\", \"*.eks.amazonaws.com\", \"kube-api.*.acme.cloud\"]",
        "  sql: [\"db-proxy-*.acme.internal\", \"warehouse.acme.internal\"]",
        "  graphql: [\"graphql.partner*.com\"]",
        "rules:",
    ]
    for i in range(n):
        kind = rnd.choices(names, weights)[0]
        team = teams[i % len(teams)]
        m: dict[str, Any] = {}
        action, sev = rnd.choice([("hold", "high"), ("hold", "medium"), ("deny", "critical"), ("hold", "low")])
        if kind == "host_tag":
            m["host"] = [f"api.vendor{i}.com", f"*.vendor{i}.io"]
            action, sev = "allow", "info"
        elif kind == "host_method":
            m["host"] = f"{team}-svc-{i}.acme.internal"
            m["method"] = rnd.choice([["POST", "PUT", "PATCH", "DELETE"], ["DELETE"], ["PUT", "PATCH"]])
        elif kind == "host_path":
            m["host"] = [f"*.{team}{i}.acme.internal", f"{team}-{i}.acme.cloud"]
            m["method"] = rnd.choice([["DELETE"], ["POST", "DELETE"], ["PUT", "PATCH", "DELETE"]])
            m["path"] = rnd.choice([
                r"^/api/v[0-9]+/projects/(?P<namespace>[a-z0-9-]+)/(?P<resource>builds|deploys|artifacts)/(?P<name>[^/]+)$",
                r"^/v1/tenants/(?P<namespace>[^/]+)/(?P<resource>users|keys|webhooks)(/(?P<name>[^/]+))?$",
                rf"^/admin/{team}/(?P<resource>[a-z]+)/(?P<name>[0-9]+)",
                r"^/db/(?P<table>[a-z_]+)/rows/[0-9]+$",
            ])
        elif kind == "path_only":
            m["path"] = rf"^/internal/{team}-{i}/(?P<resource>[a-z]+)/(?P<name>[^/]+)/(purge|wipe|reset)$"
            m["method"] = ["POST", "DELETE"]
        elif kind == "sql":
            m["service"] = "sql"
            m["sql"] = {"statement": rnd.choice([["drop", "truncate"], ["delete_without_where"], ["update_without_where"],
                                                 ["alter", "grant", "revoke"]])}
            m["table"] = [f"{team}_{i}_*", f"ledger_{i}"]
        elif kind == "k8s":
            m["service"] = "kubernetes"
            m["namespace"] = f"{team}-{i}-prod*"
            m["action_type"] = rnd.choice([["delete"], ["update", "delete"], ["execute"]])
            m["resource"] = rnd.choice([["deployments", "statefulsets"], ["pods", "pods/exec"], ["configmaps", "secrets"]])
        elif kind == "header":
            m["host"] = f"api.partner{i}.com"
            m["method"] = ["POST", "PUT", "DELETE"]
            m["header"] = {"x-tenant-id": f"^tenant-{i}$"}
        elif kind == "query":
            m["host"] = f"ops-{i}.acme.internal"
            m["query"] = {"dry_run": "^(false|0)$"}
        elif kind == "json":
            m["host"] = f"payments-{i}.acme.internal"
            m["method"] = "POST"
            m["json"] = {"$.action": "^(refund|void|chargeback)$"}
        elif kind == "agent":
            m["agent"] = [f"contractor-bot-{i}*"]
            m["method"] = ["DELETE", "PUT"]
        elif kind == "filter":
            m["filter"] = f"~m DELETE & ~d billing-{i}.acme.internal"
        elif kind == "body":
            m["host"] = f"db-console-{i}.acme.internal"
            m["body"] = rf"(?i)drop\s+database\s+tenant_{i}"
        elif kind == "not":
            m["host"] = f"*.corp-{i}.com"
            m["method"] = "DELETE"
            m["not"] = {"path": "^/sandbox/"}
        lines.append(f"  - id: gen-{i:04d}-{kind.replace('_', '-')}")
        lines.append(f"    description: {_q(f'generated {kind} rule for {team}')}")
        lines.append("    match:")
        for k, v in m.items():
            lines.append(f"      {k}: {_q(v)}")
        lines.append(f"    action: {action}")
        lines.append(f"    severity: {sev}")
        lines.append(f"    message: {_q(f'{team} guard {i}')}")
        if rnd.random() < 0.05:
            lines.append("    mode: shadow")
    return "\n".join(lines) + "\n"


def make_rules_dir(work: Path, n: int) -> Path:
    """A copy of the bundled rules (so an edit of the checkout cannot reload them mid-run),
    plus n generated rules when n > 0."""
    d = work / (f"rules-bundled+{n}" if n else "rules-bundled")
    d.mkdir()
    for f in sorted(paths.bundled_rules().glob("*.yaml")):
        shutil.copy(f, d / f.name)
    if n:
        (d / "80-generated.yaml").write_text(generated_rules(n))
    return d


# ================================================================ flows and subjects for the in-process figures


def make_flow(method: str, url: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
              response: bool = True) -> http.HTTPFlow:
    req = http.Request.make(method, url, body, [(k.encode(), v.encode()) for k, v in headers])
    resp = http.Response.make(200, UPSTREAM_BODY.encode(), {
        "Server": "nginx/1.22.1", "Date": "Fri, 27 Nov 2026 10:00:00 GMT", "Content-Type": "application/json",
        "Connection": "keep-alive"}) if response else False
    f = tflow.tflow(req=req, resp=resp)
    f.client_conn.peername = ("127.0.0.1", 51234)
    return f


def load_flows(port: int = 8080) -> list[http.HTTPFlow]:
    """The requests of the load, as mitmproxy flows (plain HTTP, through the proxy)."""
    res = []
    for n in range(len(PATHS)):
        raw = request_bytes("127.0.0.1", port, True, n).decode()
        first, *hdrs = raw.strip().split("\r\n")
        method, url, _ = first.split(" ")
        res.append(make_flow(method, url, [tuple(h.split(": ", 1)) for h in hdrs]))  # type: ignore[misc]
    return res


def body_flow(port: int = 8080) -> http.HTTPFlow:
    hdrs = [("Host", f"127.0.0.1:{port}"), *[(k, v.format(n=0)) for k, v in HEADERS], ("Content-Type", "application/json")]
    return make_flow("POST", f"http://127.0.0.1:{port}{BODY_PATH}", hdrs, body_bytes())


def realistic_flows() -> list[tuple[str, http.HTTPFlow]]:
    """Allowed requests of an agent's day, one per service, for the rule and parser figures."""
    auth = [("Authorization", TOKEN), ("User-Agent", "python-httpx/0.27.0"), ("Accept", "application/json")]
    js = [*auth, ("Content-Type", "application/json")]
    chat = json.dumps({"model": "gpt-4o", "messages": [{"role": "system", "content": "You are an SRE assistant."},
                                                        {"role": "user", "content": "Summarise the last incident " * 20}],
                       "temperature": 0.2}).encode()
    mcp = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "search_docs", "arguments": {"query": "rollback runbook"}}}).encode()
    items = [
        ("rest github", make_flow("GET", "https://api.github.com/repos/acme/api/pulls?state=open&per_page=30", auth)),
        ("llm openai", make_flow("POST", "https://api.openai.com/v1/chat/completions", js, chat)),
        ("kubernetes", make_flow("GET", "https://k8s.acme.internal/api/v1/namespaces/prod-a/pods?limit=100", auth)),
        ("rest stripe", make_flow("GET", "https://api.stripe.com/v1/charges?limit=10", auth)),
        ("sql", make_flow("POST", "https://db-proxy.acme.internal/query", js,
                          b'{"sql": "SELECT id, total FROM orders WHERE customer_id = 42 ORDER BY id LIMIT 10"}')),
        ("aws", make_flow("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", auth)),
        ("mcp", make_flow("POST", "https://mcp.acme.internal/mcp", js, mcp)),
        ("graphql", make_flow("POST", "https://api.github.com/graphql", js, b'{"query": "query { viewer { login name } }"}')),
        ("postgrest", make_flow("GET", "https://acme.supabase.co/rest/v1/orders?select=*&limit=10", auth)),
    ]
    return items + [(f"load {i}", f) for i, f in enumerate(load_flows())]


def subject_of(f: http.HTTPFlow, rs: rules.RuleSet) -> rules.Subject:
    view = flows.view_of(f)
    actions_common._decode_json.cache_clear()
    return rules.Subject(view, actions.parse(view, rs.services), f, flows.agent_of(f))


def check_allowed(rule_sets: dict[str, rules.RuleSet], port: int) -> None:
    for name, rs in rule_sets.items():
        for f in [*load_flows(port), body_flow(port)]:
            v = rules.evaluate(rs, subject_of(f, rs))
            if v.enforced != "allow" or v.verdict != "allow":
                raise SystemExit(f"the load is not on the allow path with {name}: {f.request.method} {f.request.url} -> "
                                 f"{v.verdict} ({v.rule.id if v.rule else 'default'})")


# ================================================================ micro-figures


def ns_median(fn: Callable[[], Any], budget: float = 0.3, min_n: int = 30, setup: Callable[[], Any] | None = None) -> float:
    """ns of CPU per call, this thread's CPU time (time the scheduler gives to other processes does
    not count): calls run in batches of about 1 ms; the median batch, less the setup's own cost."""
    def per_call(f: Callable[[], Any]) -> float:
        def batch(k: int) -> float:
            t = time.thread_time_ns()
            for _ in range(k):
                if setup:
                    setup()
                f()
            return time.thread_time_ns() - t

        k = 1
        while (dt := batch(k)) < 1_000_000 and k < 1 << 16:
            k = max(k * 2, int(k * 1_200_000 / max(dt, 1)))
        per = [dt / k]
        end = time.perf_counter() + budget
        while len(per) < max(5, min_n // k) or time.perf_counter() < end:
            per.append(batch(k) / k)
        return statistics.median(per)

    t = per_call(fn)
    return max(0.0, t - per_call(lambda: None)) if setup else t


def bench_rules(sets: dict[str, rules.RuleSet], budget: float) -> dict[str, dict[str, float]]:
    res = {}
    items = realistic_flows()
    for name, rs in sets.items():
        subjects = [subject_of(f, rs) for _, f in items]
        per = [ns_median(lambda s=s, rs=rs: rules.evaluate(rs, s), budget / len(subjects)) for s in subjects]
        res[name] = {"rules": len(rs.rules), "median_us": statistics.median(per) / 1000, "max_us": max(per) / 1000,
                     "per_rule_ns": statistics.median(per) / max(1, len(rs.rules))}
    return res


def rule_cost_by_check(rs: rules.RuleSet, budget: float) -> list[tuple[str, int, float, float]]:
    """Per rule, the cost of rejecting an allowed request, grouped by its first check:
    (first check, rules, median ns per rule, share of the set's time)."""
    subjects = [subject_of(f, rs) for _, f in realistic_flows()]
    by: dict[str, list[float]] = collections.defaultdict(list)
    for rule in rs.rules:
        first = rule.predicate.checks[0][0] if rule.predicate.checks else "(empty)"
        t = statistics.median(ns_median(lambda s=s, r=rule: r.matches(s), budget, min_n=20) for s in subjects[:6])
        by[first].append(t)
    total = sum(sum(v) for v in by.values())
    return sorted(((k, len(v), statistics.median(v), sum(v) / total) for k, v in by.items()), key=lambda x: -x[3])


def index_potential(rs: rules.RuleSet) -> tuple[float, float]:
    """How many rules a host/method/service index would leave to evaluate for the realistic
    requests (median and max): rules with none of those fields, plus those whose fields match."""
    left = []
    for _, f in realistic_flows():
        s = subject_of(f, rs)
        n = 0
        for rule in rs.rules:
            keyed = [(k, p) for k, p in rule.predicate.checks if k in ("method", "host", "service")]
            if not keyed or all(p(s, {}) for _, p in keyed):
                n += 1
        left.append(n)
    return statistics.median(left), max(left)


def bench_parsers(budget: float) -> list[tuple[str, float, float, float]]:
    """(parser, µs on its own request, µs declining a plain GET, µs declining the 256 KiB JSON POST)."""
    own = {"kubernetes": "kubernetes", "mcp": "mcp", "graphql": "graphql", "sql": "sql", "aws": "aws", "postgrest": "postgrest",
           "rest": "rest github"}
    flows_by = dict(realistic_flows())
    plain = [flows.view_of(f) for f in load_flows()]
    heavy = flows.view_of(body_flow())
    clear = actions_common._decode_json.cache_clear
    res = []
    for name, parser in [*actions.PARSERS.items(), ("rest", actions.rest.parse)]:
        mine = flows.view_of(flows_by[own[name]])
        t_own = ns_median(lambda p=parser, v=mine: p(v, False), budget, setup=clear)
        t_plain = statistics.median(ns_median(lambda p=parser, v=v: p(v, False), budget / len(plain), setup=clear) for v in plain)
        t_heavy = ns_median(lambda p=parser: p(heavy, False), budget, min_n=10, setup=clear)
        res.append((name, t_own / 1000, t_plain / 1000, t_heavy / 1000))
    return res


def bench_parse_total(rs: rules.RuleSet, budget: float) -> tuple[float, float, float]:
    plain = [flows.view_of(f) for f in load_flows()]
    real = [flows.view_of(f) for _, f in realistic_flows()]
    heavy = flows.view_of(body_flow())
    clear = actions_common._decode_json.cache_clear
    t_plain = statistics.median(ns_median(lambda v=v: actions.parse(v, rs.services), budget / 8, setup=clear) for v in plain)
    t_real = statistics.median(ns_median(lambda v=v: actions.parse(v, rs.services), budget / len(real), setup=clear) for v in real)
    t_heavy = ns_median(lambda: actions.parse(heavy, rs.services), budget, min_n=10, setup=clear)
    return t_plain / 1000, t_real / 1000, t_heavy / 1000


def gate_steps(f: http.HTTPFlow, rs: rules.RuleSet, redactor: record.Redactor, budget: float, listen_port: int = 8080
               ) -> list[tuple[str, float]]:
    """The addon's per-request work, step by step, with its own functions (µs, median)."""
    limit = 65536
    clear = actions_common._decode_json.cache_clear
    agent = flows.agent_of(f)
    base = flows.base_columns(f, agent, redactor)
    view = flows.view_of(f)
    clear()
    action = actions.parse(view, rs.services)
    subject = rules.Subject(view, action, f, agent)
    verdict = rules.evaluate(rs, subject)
    req_cols = flows.request_columns(f.request, redactor, limit)
    act_cols = flows.action_columns(action, verdict, "enforce", rs.sha256)
    event = {**base, "stage": "request", "decision": "allowed", **req_cols, **act_cols}
    now = record.utc_text(time.time())
    row = record.seal({**event, "ts": now}, 1, "5f0c2d1e-7a3b-4c9d-8e1f-2a3b4c5d6e7f", record.GENESIS)
    resp_cols = flows.response_columns(f, redactor, limit)
    resp_event = {**base, "stage": "response", "outcome": "forwarded", **resp_cols}
    resp_row = record.seal({**resp_event, "ts": now}, 2, "5f0c2d1e-7a3b-4c9d-8e1f-2a3b4c5d6e7f", row["row_hash"])
    req = f.request
    path = req.path.split("?", 1)[0]
    headers = list(req.headers.items(multi=True))
    body = flows.request_body(req)
    ct = req.headers.get("content-type", "").lower()
    steps: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
        ("request: agent_of", lambda: flows.agent_of(f), None),
        ("request: base_columns (url+path redaction)", lambda: flows.base_columns(f, agent, redactor), None),
        ("  of which redact_url", lambda: record.redact_url(redactor, req.scheme, req.host, req.port, redactor.text(path),
                                                             req.query.items(multi=True)), None),
        ("request: view_of", lambda: flows.view_of(f), None),
        ("request: actions.parse (all parsers)", lambda: actions.parse(view, rs.services), clear),
        ("request: rules.evaluate", lambda: rules.evaluate(rs, subject), None),
        ("request: targets_proxy", lambda: _targets_proxy(view.host, view.port, [("127.0.0.1", listen_port)]), None),
        ("request: request_columns", lambda: flows.request_columns(req, redactor, limit), None),
        ("  of which header redaction", lambda: redactor.headers(headers), None),
        ("  of which body redaction", lambda: redactor.body(body, ct, limit), None),
        ("  of which sha256 of the body", lambda: record.sha256(req.raw_content), None),
        *([("    body: json.loads + json.dumps only", lambda: json.dumps(json.loads(body), ensure_ascii=False,
                                                                          separators=(",", ":")), None),
           ("    body: _SECRET_VALUE regex over the whole text", lambda: record.redaction._SECRET_VALUE.sub("", text), None),
           ("    body: _SECRET_PAIR regex over the whole text", lambda: record.redaction._SECRET_PAIR.sub("", text), None)]
          if (text := (body or b"").decode("utf-8", "replace")) and len(text) > 65536 else []),
        ("request: action_columns + event dict", lambda: {**base, "stage": "request", "decision": "allowed", **req_cols,
                                                          **flows.action_columns(action, verdict, "enforce", rs.sha256)}, None),
        ("journal: seal request event (canonical + sha256)", lambda: record.seal({**event, "ts": now}, 1, "c", record.GENESIS), None),
        ("journal: json.dumps request row", lambda: json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode(), None),
        ("update hook x4 (after each flow hook): reviewer() lookup", lambda: [_default_reviewer() for _ in range(4)], None),
        ("response: responseheaders (header + should_stream)", lambda: _responseheaders(f), None),
        ("response: response_columns", lambda: flows.response_columns(f, redactor, limit), None),
        ("journal: seal response event", lambda: record.seal({**resp_event, "ts": now}, 2, "c", row["row_hash"]), None),
        ("journal: json.dumps response row", lambda: json.dumps(resp_row, ensure_ascii=False, separators=(",", ":")).encode(), None),
    ]
    res = []
    for name, fn, setup in steps:
        try:
            res.append((name, ns_median(fn, budget, setup=setup) / 1000))
        except Exception as e:  # noqa: BLE001 - the addon's internals move; say so and go on
            res.append((f"{name} (failed: {e!r:.60})", float("nan")))
    return res


def _targets_proxy(host: str, port: int, listen: list[tuple[str, int]]) -> bool:
    from shield_addon.core import hosts

    return hosts.is_own_address(host, port, listen)


def _default_reviewer() -> str:
    from shield_addon.addons import review

    return review.default_reviewer()


def _responseheaders(f: http.HTTPFlow) -> None:
    assert f.response is not None
    f.response.headers["X-Shield-Flow-Id"] = f.id
    flows.should_stream(f.response)


def pair_events(req_event: dict[str, Any], resp_event: dict[str, Any], n: int, tag: str = "b") -> list[dict[str, Any]]:
    """n events: a request and its response per flow, each flow its own id (as the addon writes them)."""
    return [{**(req_event if i % 2 == 0 else resp_event), "flow_id": f"{tag}-{i // 2}"} for i in range(n)]


def bench_journal(work: Path, burst: int, seconds: float) -> dict[str, float]:
    """Journal throughput with the chain and signed checkpoints on, as the addon runs it."""
    audit = work / "micro-journal"
    conf = work / "micro-conf"
    redactor = record.Redactor(b"k" * 32)
    f = load_flows()[0]
    agent = flows.agent_of(f)
    base = flows.base_columns(f, agent, redactor)
    rs = rules.load_path(paths.bundled_rules())
    view = flows.view_of(f)
    action = actions.parse(view, rs.services)
    verdict = rules.evaluate(rs, rules.Subject(view, action, f, agent))
    req_event = {**base, "stage": "request", "decision": "allowed", **flows.request_columns(f.request, redactor, 65536),
                 **flows.action_columns(action, verdict, "enforce", rs.sha256)}
    resp_event = {**base, "stage": "response", "outcome": "forwarded", **flows.response_columns(f, redactor, 65536)}
    j = journal.Journal(audit / store.JOURNAL_DIR)
    j.open()
    cp = checkpoints.Checkpointer(audit / checkpoints.LOG_FILE, checkpoints.load_or_create_key(conf), j.chain_id)
    batches = []

    def on_commit(seq: int, head: str) -> None:
        batches.append(seq)
        cp.on_commit(seq, head)

    j.on_commit = on_commit
    res: dict[str, float] = {}
    # 1. burst: everything queued at once (the writer batches up to journal.MAX_BATCH)
    c0, t0 = time.process_time(), time.perf_counter()
    load = pair_events(req_event, resp_event, burst)
    futs = [j.submit(ev) for ev in load]
    for fut in futs:
        fut.result()
    dt = time.perf_counter() - t0
    res["burst_events_s"] = burst / dt
    res["burst_cpu_us"] = (time.process_time() - c0) / burst * 1e6
    # 2. closed loop: 10 flows each awaiting its request event, then submitting its response
    #    event without waiting (what the addon does), on an asyncio loop.
    batches.clear()
    counts = {"req": 0}

    async def flow_loop(stop: float) -> None:
        while time.perf_counter() < stop:
            flow_id = f"c10-{counts['req']}-{id(stop)}"
            counts["req"] += 1
            await asyncio.wrap_future(j.submit({**req_event, "flow_id": flow_id}))
            j.submit({**resp_event, "flow_id": flow_id})

    async def main() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(flow_loop(stop) for _ in range(10)))

    seq0 = j.seq
    c0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(main())
    j.write({"stage": "ruleset"})  # drain
    dt = time.perf_counter() - t0
    events = j.seq - seq0
    res["c10_flows_s"] = counts["req"] / dt
    res["c10_events_s"] = events / dt
    res["c10_cpu_us_per_event"] = (time.process_time() - c0) / events * 1e6
    res["c10_mean_batch"] = events / max(1, len(batches))
    res["c10_wait_ms"] = 1000 * 10 / (counts["req"] / dt)  # mean time a flow waits for its commit
    j.close()
    res["rows"] = j.seq
    # 3. ingest into DuckDB, as the ingester does (open, insert the new journal rows, close)
    c0, t0 = time.process_time(), time.perf_counter()
    n = store.ingest(audit)
    dt = time.perf_counter() - t0
    res["ingest_rows"] = n
    res["ingest_rows_s"] = n / dt
    res["ingest_cpu_us_per_row"] = (time.process_time() - c0) / n * 1e6
    # 4. the per-second batch: ~1000 new rows (a busy proxy) and 2 rows (a quiet one), with the
    #    current segment holding ~1k rows and (the main journal) all the rows written above; the
    #    ingester's cursor makes it read only the new lines (the first batch after a start reads
    #    the current segment once to find its place: done here before measuring).
    small = work / "micro-journal-small"
    js = journal.Journal(small / store.JOURNAL_DIR)
    js.open()
    for fut in [js.submit(ev) for ev in pair_events(req_event, resp_event, 1000, "small")]:
        fut.result()
    js.close()
    store.ingest(small)
    for audit_dir, tag in ((small, "small"), (audit, "big")):
        jj = journal.Journal(audit_dir / store.JOURNAL_DIR)
        jj.open()
        cursor = store.Cursor()
        jj.write({"stage": "ruleset"})
        store.ingest(audit_dir, cursor=cursor)
        res[f"segment_{tag}_rows"] = jj.seq
        res[f"segment_{tag}_mib"] = sum(p.stat().st_size for _, p in journal.segments(audit_dir / store.JOURNAL_DIR)) / 2**20
        for size in (2, 1000):
            walls, cpus = [], []
            for _ in range(3):
                for fut in [jj.submit(ev) for ev in pair_events(req_event, resp_event, size, f"{tag}{size}-{len(walls)}")]:
                    fut.result()
                c0, t0 = time.process_time(), time.perf_counter()
                store.ingest(audit_dir, cursor=cursor)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            res[f"batch_{size}_{tag}_wall_ms"] = statistics.median(walls) * 1000
            res[f"batch_{size}_{tag}_cpu_ms"] = statistics.median(cpus) * 1000
        jj.close()
    # 5. fdatasync of a small append on this file system
    path = audit / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    for _ in range(100):
        os.write(fd, b"x" * 1200 + b"\n")
        t = time.perf_counter()
        os.fdatasync(fd)
        times.append(time.perf_counter() - t)
    os.close(fd)
    res["fdatasync_ms"] = statistics.median(times) * 1000
    return res


# ================================================================ py-spy


def profile_run(args: argparse.Namespace, work: Path, up: Upstream, py_spy: str, rules_dir: Path) -> dict[str, Any]:
    """bare and shield, http, each sampled by py-spy during its measured window. py-spy's share
    of samples within a thread, times the thread's CPU from /proc, gives µs per request."""
    out("\n== Profile: bare and shield (bundled rules), http, sampled by py-spy (non-blocking, 250 Hz) ==")
    prof = {}
    for kind in ("bare", "shield"):
        p = start_proxy(kind, work, up, rules_dir if kind == "shield" else None, args.shield_arg, f"profile-{kind}")
        name_threads(p, py_spy)
        raw = work / f"py-spy-{kind}.txt"
        spy: list[subprocess.Popen] = []

        def on_start(p: Proxy = p, raw: Path = raw, spy: list = spy) -> None:
            spy.append(subprocess.Popen([py_spy, "record", "--pid", str(p.pid), "--rate", "250", "--duration", "600",
                                         "--format", "raw", "--nonblocking", "--threads", "--full-filenames", "-o", str(raw)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def on_end(spy: list = spy) -> None:
            spy[0].send_signal(signal.SIGINT)  # py-spy writes its file and exits

        r = measure(kind, "http+py-spy", 0, LoadSpec(tls=False), up, p, args, args.duration, on_start, on_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy[0].wait(60)
        name_threads(p, py_spy)
        label_threads(r, p)
        stop_process(p.proc)
        out(fmt_run(r) + "   (py-spy's own CPU shows as background)")
        if not raw.exists():
            warn("py-spy wrote nothing (ptrace not permitted?)")
            return {}
        prof[kind] = (r, parse_profile(raw))
    report_profile(prof)
    return {k: {"cpu_ms": r.cpu_ms, "threads_ms": r.threads_ms} for k, (r, _) in prof.items()}


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>.*):(?P<line>\d+)\)$")
Frame = tuple[str, str, int]


def parse_profile(raw: Path) -> dict[str, list[tuple[list[Frame], int]]]:
    """py-spy raw output -> {thread name: [(frames outermost first, samples)]}."""
    res: dict[str, list[tuple[list[Frame], int]]] = collections.defaultdict(list)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        thread = re.sub(r"_\d+$", "_*", re.sub(r"^thread \(\d+\):?\s*", "", frames[0]).strip() or "?")
        parsed = [(m.group("fn"), m.group("file"), int(m.group("line"))) if (m := _FRAME.match(fr)) else (fr, "", 0)
                  for fr in frames[1:]]
        res[thread].append(([f for f in parsed if "/shield_addon/cli/" not in f[1]], int(count)))
    return res


def _main_category(frames: list[Frame]) -> str:
    for fn, f, _ in frames:
        if "/shield_addon/addons/" in f and "." in fn:
            return f"shield hook {fn}()"
    f = frames[-1][1] if frames else ""
    if "/mitmproxy/" in f:
        if f.endswith(("addonmanager.py", "hooks.py")):
            return "mitmproxy: hook dispatch (addonmanager)"
        if "/mitmproxy/addons/" in f:
            return "mitmproxy: built-in addons"
        if "/mitmproxy/proxy/" in f or "/mitmproxy/net/" in f:
            return "mitmproxy: proxy layers (HTTP/1, TLS, server)"
        return "mitmproxy: other (flows, headers, certs, options)"
    if f.endswith("/ssl.py") or "sslproto" in f:
        return "TLS (ssl module)"
    if any(x in f for x in ("/asyncio/", "selectors.py", "socket.py")):
        return "asyncio event loop and socket I/O"
    return "other (stdlib, GC, contextlib, ...)"


def _journal_category(frames: list[Frame], fsync_line: int) -> str:
    names = [(fn, Path(f).name, ln) for fn, f, ln in frames]
    fn, file, ln = names[-1] if names else ("", "", 0)
    if file == "journal.py" and fn == "Journal._commit" and ln == fsync_line:
        return "fdatasync (mostly waiting on the disk: not CPU)"
    if any(n[0] in ("seal", "row_hash", "canonical", "_clean", "_text") for n in names):
        return "record.seal: canonical form + SHA-256"
    if any(n[1] in ("encoder.py", "__init__.py") and "dump" in n[0] or n[0].startswith("JSONEncoder") for n in names):
        return "json.dumps of the rows"
    if any(n[0] == "Checkpointer.on_commit" or n[1] == "checkpoints.py" for n in names):
        return "checkpoint signing"
    if any(n[0].startswith("Future.set_result") or "call_soon_threadsafe" in n[0] or n[1] == "_base.py" for n in names):
        return "waking the flows (futures, call_soon_threadsafe)"
    if fn == "Journal._write_all" or "write" in fn:
        return "os.write"
    if fn == "Journal._run":
        return "Journal._run: queue.get + taking the GIL back (mostly waiting)"
    return f"other ({file}:{fn})"


def _line_text(file: str, line: int) -> str:
    try:
        return Path(file).read_text().splitlines()[line - 1].strip()[:70]
    except (OSError, IndexError):
        return "?"


def report_profile(prof: dict[str, tuple[Run, dict[str, list[tuple[list[Frame], int]]]]]) -> None:
    if "shield" not in prof:
        return
    fsync_line = next((i for i, ln in enumerate(Path(journal.__file__).read_text().splitlines(), 1) if "os.fdatasync(" in ln), 0)
    per_kind: dict[str, dict[str, float]] = {}
    for kind, (r, threads) in prof.items():
        main = threads.get("MainThread", [])
        n = sum(c for _, c in main) or 1
        main_us = r.threads_ms.get("main (event loop)", 0.0) * 1000
        cats: collections.Counter[str] = collections.Counter()
        for frames, c in main:
            cats[_main_category(frames)] += c
        per_kind[kind] = {k: main_us * v / n for k, v in cats.items()}
    out("  main thread (the event loop: what bounds throughput), µs of CPU per request "
        "(its /proc CPU split by py-spy's share of samples):")
    keys = sorted(set(per_kind.get("bare", {})) | set(per_kind["shield"]), key=lambda k: -per_kind["shield"].get(k, 0.0))
    out(f"    {'':52} {'bare':>8} {'shield':>8} {'added':>8}")
    for k in keys:
        b, sh = per_kind.get("bare", {}).get(k, 0.0), per_kind["shield"].get(k, 0.0)
        out(f"    {k:52} {b:8.0f} {sh:8.0f} {sh - b:+8.0f}")
    tb, ts = sum(per_kind.get("bare", {}).values()), sum(per_kind["shield"].values())
    out(f"    {'total main thread':52} {tb:8.0f} {ts:8.0f} {ts - tb:+8.0f}")

    r, threads = prof["shield"]
    main = threads.get("MainThread", [])
    n = sum(c for _, c in main) or 1
    main_us = r.threads_ms.get("main (event loop)", 0.0) * 1000
    funcs: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    for frames, c in main:
        if not any("/shield_addon/addons/" in f for _, f, _ in frames):
            continue
        for key in {f"{Path(f).name}:{fn}" for fn, f, _ in frames if "/shield_addon/" in f}:
            funcs[key] += c
        fn, f, ln = frames[-1]
        leaf[f"{Path(f).name}:{fn}"] += c
    out("  shield's hooks on the main thread, by function (inclusive), µs per request:")
    for k, v in funcs.most_common(22):
        out(f"    {k:60} {main_us * v / n:7.0f}")
    out("  ... and by innermost frame (where that CPU goes; C code is charged to its Python caller):")
    for k, v in leaf.most_common(16):
        out(f"    {k:60} {main_us * v / n:7.0f}")

    for tname, label in (("shield-journal", "journal writer thread"), ("shield-ingest", "ingest thread")):
        samples = threads.get(tname, [])
        n = sum(c for _, c in samples)
        cpu_us = r.threads_ms.get(tname, 0.0) * 1000
        if not n:
            continue
        cats = collections.Counter()
        for frames, c in samples:
            if tname == "shield-journal":
                cats[_journal_category(frames, fsync_line)] += c
            else:
                fr = next((x for x in reversed(frames) if "/shield_addon/" in x[1]), frames[-1] if frames else ("?", "", 0))
                cats[f"{Path(fr[1]).name}:{fr[2]} {_line_text(fr[1], fr[2])}"] += c
        waiting = ("fdatasync", "Journal._run")
        wait = sum(v for k, v in cats.items() if k.startswith(waiting))
        busy = (n - wait) or 1
        out(f"  {label}: {cpu_us:.0f} µs CPU per request (/proc); py-spy samples: {n} "
            f"({100 * wait / n:.0f} % of them waiting in fdatasync or for work/the GIL: not counted as CPU below)")
        for k, v in cats.most_common(10):
            share = "" if k.startswith(waiting) else f"{cpu_us * v / busy:7.0f}"
            out(f"    {k:84} {100 * v / n:5.1f} % of samples {share}")


# ================================================================ the whole run


@dataclass
class ProcPlan:
    name: str
    kind: str
    rules: Path | None
    scenarios: list[str]
    extra: list[str] = field(default_factory=list)  # more `shield run` arguments (variants)


SCENARIOS = {
    "http": lambda a: LoadSpec(tls=False),
    "https": lambda a: LoadSpec(tls=True),
    "http-body": lambda a: LoadSpec(tls=False, body=True),
    "http-paced": lambda a: LoadSpec(tls=False, rate=a.rate),
}


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_rounds(args: argparse.Namespace, work: Path, up: Upstream, bundled: Path, rules500: Path, py_spy: str | None) -> list[Run]:
    wanted = args.scenarios.split(",")
    plans = [
        ProcPlan("bare", "bare", None, [s for s in SCENARIOS if s in wanted]),
        ProcPlan("shield", "shield", bundled, [s for s in SCENARIOS if s in wanted]),
        ProcPlan("shield-500", "shield", rules500, [s for s in ("http", "https") if s in wanted]),
    ]
    for v in args.variant:
        name, _, argstr = v.partition("=")
        plans.append(ProcPlan(f"v:{name}", "shield", bundled, [s for s in args.variant_scenarios.split(",") if s in SCENARIOS],
                              argstr.split()))
    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        order = plans if rnd % 2 else list(reversed(plans))
        bg = background_cores(0.5)
        la = loadavg()
        note = "  (busy machine: the round may be unreliable)" if bg > BG_LIMIT or la > 0.75 * NCPU and rnd == 1 else ""
        out(f"\n-- round {rnd}/{args.rounds}: load average {la:.2f}, background before the round {bg:.2f} cores{note}")
        for plan in order:
            p = start_proxy(plan.kind, work, up, plan.rules, [*args.shield_arg, *plan.extra], f"r{rnd}-{plan.name.replace(':', '-')}")
            if py_spy:
                name_threads(p, py_spy)
            got = []
            for sc in plan.scenarios:
                dur = min(args.duration, 3.0) if sc == "http-paced" else args.duration
                r = measure(plan.name, sc, rnd, SCENARIOS[sc](args), up, p, args, dur)
                got.append(r)
                out(fmt_run(r))
            if py_spy:
                name_threads(p, py_spy)  # threads started late (the executor) get their names too
            for r in got:
                label_threads(r, p)
            stop_process(p.proc)
            if p.audit_dir is not None:
                s = journal_summary(p.audit_dir)
                bad = {k: v for k, v in s["decisions"].items() if k != "allowed"}
                ok = s["stages"].get("request", 0) == p.sent and not bad
                out(f"    {'':10} journal: {s['rows']} rows {s['stages']}, request decisions {s['decisions']}, "
                    f"{s['checkpoints']} checkpoints, {s['ingested']} rows in audit.duckdb; client sent {p.sent}"
                    + ("" if ok else "   <-- MISMATCH"))
            errors = [ln for ln in p.log.read_text(errors="replace").splitlines() if "Traceback" in ln or " error" in ln.lower()]
            if errors:
                warn(f"{plan.name} log: {errors[:3]}")
            runs.extend(got)
    return runs


def calibration(args: argparse.Namespace, work: Path, up: Upstream) -> dict[str, Any]:
    """bare mitmdump against mitmdump with a do-nothing addon that has shield's hooks (null-hooks),
    and one whose request hook also waits for another thread, like the journal (null-thread)."""
    out("\n== Calibration: what mitmproxy charges for an addon with shield's hooks, before any work (http) ==")
    runs: list[Run] = []
    kinds = ("bare", "null-hooks", "null-thread")
    for rnd in range(1, args.calibration_rounds + 1):
        for kind in kinds if rnd % 2 else tuple(reversed(kinds)):
            p = start_proxy(kind, work, up, None, [], f"cal{rnd}-{kind}")
            r = measure(kind, "http", rnd, LoadSpec(tls=False), up, p, args, args.duration)
            stop_process(p.proc)
            out(fmt_run(r))
            runs.append(r)
    res = {}
    bare = {r.round: r for r in runs if r.proxy == "bare"}
    for kind in kinds[1:]:
        rs = [r for r in runs if r.proxy == kind]
        ratio = median([r.rps / bare[r.round].rps for r in rs])
        added = median([(r.cpu_ms - bare[r.round].cpu_ms) * 1000 for r in rs])
        res[kind] = {"ratio": ratio, "added_cpu_us": added}
        out(f"    {kind:12} throughput {ratio:.3f} x bare, added CPU {added:+.0f} µs per request (median of rounds)")
    return res


def soak(args: argparse.Namespace, work: Path, up: Upstream, rules_dir: Path, py_spy: str | None) -> list[dict[str, Any]]:
    """One shield process under the http load for --soak seconds, in 10 s slices: does the cost per
    request drift as the journal segment grows (the ingester re-reads the current segment)?"""
    out(f"\n== Soak: shield (bundled rules), http, {args.soak:.0f} s in 10 s slices ==")
    p = start_proxy("shield", work, up, rules_dir, args.shield_arg, "soak")
    name_threads(p, py_spy)
    warmup, args.warmup = args.warmup, 0.0
    res = []
    try:
        for i in range(max(1, int(args.soak // 10))):
            r = measure("shield", f"soak{i + 1}", 0, LoadSpec(tls=False), up, p, args, 10.0)
            label_threads(r, p)
            assert p.audit_dir is not None
            mib = sum(f.stat().st_size for _, f in journal.segments(p.audit_dir / store.JOURNAL_DIR)) / 2**20
            tt = ", ".join(f"{k} {v:.3f}" for k, v in r.threads_ms.items())
            out(f"{fmt_run(r)}\n      journal {mib:6.1f} MiB; CPU by thread, ms/req: {tt}")
            res.append({"slice": i + 1, "rps": r.rps, "cpu_ms": r.cpu_ms, "journal_mib": mib, "threads_ms": r.threads_ms})
    finally:
        args.warmup = warmup
        stop_process(p.proc)
    return res


def ceiling(args: argparse.Namespace, up: Upstream) -> None:
    out("\n== Ceiling: this client straight to nginx (no proxy) ==")
    for sc in ("http", "https", "http-body"):
        if sc not in args.scenarios.split(","):
            continue
        r = measure("direct", sc, 0, SCENARIOS[sc](args), up, None, args, min(args.duration, 3.0))
        out(f"    {sc:10} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  client CPU {r.client_us:5.0f} µs/req  "
            f"nginx CPU {r.upstream_us:5.0f} µs/req  errors {r.errors}")


def summarize(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    out("\n== Summary (medians over rounds; ratios are shield/bare within each round) ==")
    by: dict[tuple[str, str], list[Run]] = collections.defaultdict(list)
    for r in runs:
        by[(r.proxy, r.scenario)].append(r)
    unreliable = sorted({r.round for r in runs if r.unreliable})
    if unreliable:
        warn(f"rounds {unreliable} had background load > {BG_LIMIT} cores, steal time or errors in some run: "
             "their figures are shown but the medians are also given without them")
    figures: dict[str, Any] = {}
    for sc in SCENARIOS:
        names = list(dict.fromkeys(["bare", "shield", "shield-500", *(r.proxy for r in runs)]))
        rows = [(name, by.get((name, sc), [])) for name in names]
        rows = [(n, rs) for n, rs in rows if rs]
        if not rows:
            continue
        out(f"\n  {sc}  (concurrency {args.concurrency}" + (f", paced at {args.rate:.0f} req/s" if sc == "http-paced" else "") + ")")
        out(f"    {'':12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'peak RSS MiB':>13} {'fsync p50':>10}   "
            "CPU by thread, ms/req")
        for name, rs in rows:
            threads: dict[str, list[float]] = collections.defaultdict(list)
            for r in rs:
                for k, v in r.threads_ms.items():
                    threads[k].append(v)
            tt = ", ".join(f"{k} {median(v):.3f}" for k, v in sorted(threads.items(), key=lambda kv: -median(kv[1])) if median(v) >= 0.0005)
            out(f"    {name:12} {median([r.rps for r in rs]):8.0f} {median([r.p50_ms for r in rs]):8.2f} "
                f"{median([r.p99_ms for r in rs]):8.2f} {median([r.cpu_ms for r in rs]):11.3f} "
                f"{median([r.peak_rss_mib for r in rs]):13.0f} {median([r.fsync_p50_ms for r in rs]):10.2f}   {tt}")
        bare = {r.round: r for r in by.get(("bare", sc), [])}
        for name in names[1:]:
            rs = [r for r in by.get((name, sc), []) if r.round in bare]
            if not rs:
                continue
            ratio = [r.rps / bare[r.round].rps for r in rs]
            added_cpu = [(r.cpu_ms - bare[r.round].cpu_ms) * 1000 for r in rs]
            added_p50 = [r.p50_ms - bare[r.round].p50_ms for r in rs]
            good = [i for i, r in enumerate(rs) if not (r.unreliable or bare[r.round].unreliable)]
            key = f"{name}/{sc}"
            figures[key] = {"ratio": median(ratio), "added_cpu_us": median(added_cpu), "added_p50_ms": median(added_p50),
                            "ratio_reliable": median([ratio[i] for i in good]),
                            "added_cpu_us_reliable": median([added_cpu[i] for i in good]),
                            "added_p50_ms_reliable": median([added_p50[i] for i in good])}
            out(f"    {name}/bare throughput per round: {' '.join(f'{x:.3f}' for x in ratio)}  -> median {median(ratio):.3f}"
                + ((f" (reliable rounds only: {figures[key]['ratio_reliable']:.3f})" if good else " (no reliable round)")
                   if len(good) != len(rs) else ""))
            cpu_ratio = [bare[r.round].cpu_ms / r.cpu_ms for r in rs]
            figures[key]["cpu_ratio"] = median(cpu_ratio)
            out(f"    {name}/bare CPU per request, inverted (what the throughput ratio would be if the proxy's CPU were "
                f"the only limit; robust to background load): {median(cpu_ratio):.3f}")
            out(f"    {name} added CPU per request (µs): {' '.join(f'{x:.0f}' for x in added_cpu)}  -> median {median(added_cpu):.0f}")
            out(f"    {name} added p50 (ms): {' '.join(f'{x:+.2f}' for x in added_p50)}  -> median {median(added_p50):+.2f}")
            base = {r.round: r for r in by.get(("shield", sc), [])}
            if name.startswith("v:") and base:
                d = [(r.cpu_ms - base[r.round].cpu_ms) * 1000 for r in rs if r.round in base]
                out(f"    {name} CPU per request against shield (µs): {' '.join(f'{x:+.0f}' for x in d)}  -> median {median(d):+.0f}")
    return figures


def targets(figures: dict[str, Any], micro: dict[str, Any], args: argparse.Namespace) -> None:
    out("\n== Targets ==")

    def line(what: str, value: float | None, limit: float, higher_is_better: bool, unit: str, note: str = "") -> None:
        if value is None or value != value:
            out(f"  {what:58} {'n/a':>10}")
            return
        ok = value >= limit if higher_is_better else value <= limit
        gap = (value / limit - 1) * 100
        out(f"  {what:58} {value:10.3f} {unit:5} target {'>=' if higher_is_better else '<='} {limit:g}  "
            f"{'PASS' if ok else 'FAIL'} ({gap:+.0f} % of the target){note}")

    def implied(key: str) -> str:
        v = fig(key, "cpu_ratio")
        return f"   [CPU-implied {v:.3f}]" if v is not None and v == v else ""

    def fig(key: str, k: str) -> float | None:
        return figures.get(key, {}).get(k)

    line("throughput shield/bare, http (median of rounds)", fig("shield/http", "ratio"), 0.90, True, "x", implied("shield/http"))
    line("throughput shield/bare, https", fig("shield/https", "ratio"), 0.90, True, "x", implied("shield/https"))
    line("throughput shield-500/bare, http", fig("shield-500/http", "ratio"), 0.85, True, "x", implied("shield-500/http"))
    line("throughput shield-500/bare, https", fig("shield-500/https", "ratio"), 0.85, True, "x", implied("shield-500/https"))
    line("added CPU per allowed request, http (µs)", fig("shield/http", "added_cpu_us"), 150, False, "µs")
    line("added CPU per allowed request, https (µs)", fig("shield/https", "added_cpu_us"), 150, False, "µs")
    line(f"added p50 at concurrency {args.concurrency}, saturated, http (ms)", fig("shield/http", "added_p50_ms"), 1.0, False, "ms")
    line(f"added p50 at concurrency {args.concurrency}, paced {args.rate:.0f}/s, http (ms)", fig("shield/http-paced", "added_p50_ms"),
         1.0, False, "ms")
    r500 = micro.get("rules", {}).get("500 generated", {}).get("median_us")
    line("rule evaluation, 500 rules, median per request (µs)", r500, 20, False, "µs")


def micro_figures(args: argparse.Namespace, work: Path, rules500: Path) -> dict[str, Any]:
    budget = 0.15 if args.quick else 0.6
    res: dict[str, Any] = {}
    bundled = rules.load_path(paths.bundled_rules())
    # parsed from text, so whatever rules.parse_texts builds (an index, ...) is there; the first n
    # rules of generated_rules(500) are generated_rules(n)
    sets = {f"{n} generated": rules.parse_text(generated_rules(n), "generated.yaml") for n in (10, 100, 500)}
    sets["bundled"] = bundled
    sets["bundled + 500 generated"] = rules.load_path(rules500)
    out("\n== Rule evaluation per request (median over the realistic mix of 17 allowed requests; max = the slowest request) ==")
    res["rules"] = bench_rules(sets, budget * 2)
    for name, v in res["rules"].items():
        out(f"  {name:26} {v['rules']:4d} rules  median {v['median_us']:8.1f} µs  max {v['max_us']:8.1f} µs  "
            f"({v['per_rule_ns']:.0f} ns per rule)")
    out("  the 500 generated rules by their first check (path is always checked first), rejecting allowed requests:")
    for k, n, ns, share in rule_cost_by_check(sets["500 generated"], 0.004 if args.quick else 0.01):
        out(f"    {k:12} {n:4d} rules  {ns:6.0f} ns per rule  {100 * share:5.1f} % of the time")
    big = sets["bundled + 500 generated"]
    med, mx = index_potential(big)
    out(f"  a perfect index on method/host/service would leave {med:.0f} (max {mx}) of {len(big.rules)} rules to evaluate "
        "per request of the mix")
    if getattr(big, "index", None) is not None:
        got = [len(big.index.candidates(s.request.method, s.request.host, s.action))
               for s in (subject_of(f, big) for _, f in realistic_flows())]
        out(f"  rules.RuleSet.index (present in this checkout) leaves {statistics.median(got):.0f} (max {max(got)}) candidates")
    else:
        out("  (this checkout's RuleSet has no index: evaluate() tries every rule)")

    out("\n== Action parsing per request, per parser (µs, median; the JSON decode cache is cleared before each call) ==")
    out(f"  {'parser':12} {'its own request':>16} {'declining a GET':>16} {'declining a 256 KiB JSON POST':>30}")
    res["parsers"] = bench_parsers(budget / 2)
    for name, own, plain, heavy in res["parsers"]:
        out(f"  {name:12} {own:16.1f} {plain:16.2f} {heavy:30.1f}")
    t_plain, t_real, t_heavy = bench_parse_total(bundled, budget)
    res["parse_total"] = {"plain_get": t_plain, "realistic": t_real, "body_post": t_heavy}
    out(f"  actions.parse with the bundled pins: load GET {t_plain:.1f} µs, realistic mix median {t_real:.1f} µs, "
        f"256 KiB JSON POST {t_heavy:.0f} µs")

    out("\n== The addon's work per allowed request, step by step (its own functions on mitmproxy test flows; µs, median) ==")
    redactor = record.Redactor(b"k" * 32, bundled.redactions)
    big = rules.load_path(rules500)
    res["steps"] = {}
    for label, f, rs in (("GET, bundled rules", load_flows()[0], bundled), ("GET, bundled + 500", load_flows()[0], big),
                         ("256 KiB JSON POST, bundled", body_flow(), bundled)):
        steps = gate_steps(f, rs, redactor, budget / 6)
        res["steps"][label] = steps
        total = sum(t for name, t in steps if not name.startswith("  ") and t == t)
        out(f"  {label}: total {total:.0f} µs")
        for name, t in steps:
            out(f"    {name:52} {t:9.1f}")

    out("\n== Journal and DuckDB ingest (chain hashing and signed checkpoints on; "
        f"audit dir on {fs_type(work)}) ==")
    j = bench_journal(work, 4000 if args.quick else 20000, 1.0 if args.quick else 3.0)
    res["journal"] = j
    out(f"  fdatasync of a 1.2 KB append: median {j['fdatasync_ms']:.2f} ms")
    out(f"  burst (all queued at once): {j['burst_events_s']:8.0f} events/s committed, {j['burst_cpu_us']:.0f} µs CPU per event")
    out(f"  10 flows (await request event, response event not awaited): {j['c10_flows_s']:.0f} flows/s = "
        f"{j['c10_events_s']:.0f} events/s, mean batch {j['c10_mean_batch']:.1f} events, "
        f"{j['c10_cpu_us_per_event']:.0f} µs CPU per event")
    out(f"  DuckDB ingest of {j['ingest_rows']} rows: {j['ingest_rows_s']:.0f} rows/s, {j['ingest_cpu_us_per_row']:.1f} µs CPU per row")
    for tag in ("small", "big"):
        out(f"  one ingest batch, the current segment holding ~{j[f'segment_{tag}_rows']} rows ({j[f'segment_{tag}_mib']:.1f} MiB): "
            f"2 new rows {j[f'batch_2_{tag}_wall_ms']:.0f} ms wall / {j[f'batch_2_{tag}_cpu_ms']:.0f} ms CPU, "
            f"1000 new rows {j[f'batch_1000_{tag}_wall_ms']:.0f} ms wall / {j[f'batch_1000_{tag}_cpu_ms']:.0f} ms CPU")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5; paced runs: at most 3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run (default 1)")
    ap.add_argument("--concurrency", type=int, default=10, help="connections of the load generator (default 10)")
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s of the paced run (default 200)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 s, short micro-figures, no profile")
    ap.add_argument("--no-micro", action="store_true", help="skip the in-process micro-figures")
    ap.add_argument("--no-calibration", action="store_true", help="skip the null-addon calibration runs")
    ap.add_argument("--calibration-rounds", type=int, default=2, help="rounds of the calibration (default 2)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                    help="also run shield with these extra arguments in every round, e.g. "
                         "'ingest5=--set shield_ingest_interval=5' (repeatable)")
    ap.add_argument("--variant-scenarios", default="http", help="scenarios of the variants (default http)")
    ap.add_argument("--soak", type=float, default=0.0, help="also one long shield http run of this many seconds, in 10 s slices")
    ap.add_argument("--micro-only", action="store_true", help="only the in-process micro-figures (no proxy, no nginx)")
    ap.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary for the profile (default: on PATH)")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile run")
    ap.add_argument("--shield-arg", action="append", default=[], help="extra argument for `shield run` (repeatable)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the proxies, nginx and this client at this nice value (e.g. -10 as root on a shared machine)")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = min(args.rounds, 2), min(args.duration, 2.0), min(args.warmup, 0.5)
        args.calibration_rounds = min(args.calibration_rounds, 1)
        args.no_profile = True
    py_spy = args.py_spy if args.py_spy and os.path.exists(args.py_spy) else None
    global NICE
    NICE = ["nice", "-n", str(args.nice)] if args.nice else []
    autogroup_nice = None
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        # With autogroup scheduling (one group per session), nice only ranks processes within the
        # group; the group's own nice is what competes with other sessions. Restored at the end.
        with contextlib.suppress(OSError, ValueError, IndexError):
            autogroup_nice = int(Path("/proc/self/autogroup").read_text().split()[-1])
            Path("/proc/self/autogroup").write_text(str(args.nice))

    work = Path(tempfile.mkdtemp(prefix="shield-bench-"))
    FsyncProbe.dir = work
    out("== agent-shield proxy benchmark ==")
    out(f"  Python {platform.python_version()} ({sys.executable}), mitmproxy {mitm_version.VERSION}, agent-shield {shield_version}, "
        f"{ssl.OPENSSL_VERSION}")
    cpu_model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    out(f"  {platform.system()} {platform.release()}, {NCPU} CPUs ({cpu_model}), load average {loadavg():.2f}; "
        f"work dir {work} on {fs_type(work)}")
    out(f"  code measured: {code_fingerprint()}")
    out(f"  rounds {args.rounds}, {args.warmup:g} s warm-up + {args.duration:g} s measured per run, concurrency {args.concurrency}, "
        f"keep-alive; py-spy: {py_spy or 'not found'}" + (f"; proxies, nginx and client at nice {args.nice}" if args.nice else ""))
    if loadavg() > 0.75 * NCPU:
        warn(f"the machine is busy before we start (load average {loadavg():.2f} on {NCPU} CPUs): figures will be noisy")
    up = None
    results: dict[str, Any] = {"env": {"python": platform.python_version(), "mitmproxy": mitm_version.VERSION, "cpus": NCPU}}
    try:
        if args.micro_only:
            results["micro"] = micro_figures(args, work, make_rules_dir(work, 500))
            return 0
        up = start_nginx(work)
        out(f"  upstream: nginx {up.version}, 1 worker, http 127.0.0.1:{up.http_port}, https 127.0.0.1:{up.https_port}, "
            f"{len(UPSTREAM_BODY)} B JSON answer")
        rules500 = make_rules_dir(work, 500)
        bundled_copy = make_rules_dir(work, 0)
        sets = {"bundled rules": rules.load_path(bundled_copy), "bundled + 500": rules.load_path(rules500)}
        check_allowed(sets, up.http_port)
        n500 = len(sets["bundled + 500"].rules)
        out(f"  rules: bundled {len(sets['bundled rules'].rules)}; the 500 set is the bundled ones + 500 generated = {n500} "
            f"(in {rules500}); every request of the load is allowed by both (checked)")
        out(f"  load: {len(PATHS)} GET paths, ~{len(request_bytes('127.0.0.1', up.http_port, True, 1))} B requests "
            f"with an Authorization header; http-body: every 10th request a {BODY_SIZE // 1024} KiB JSON POST")
        ceiling(args, up)
        if args.soak:
            results["soak"] = soak(args, work, up, bundled_copy, py_spy)
        runs = run_rounds(args, work, up, bundled_copy, rules500, py_spy)
        results["runs"] = [{k: v for k, v in r.__dict__.items() if k != "tids"} for r in runs]
        results["figures"] = summarize(runs, args)
        if not args.no_calibration:
            results["calibration"] = calibration(args, work, up)
        micro: dict[str, Any] = {}
        if not args.no_micro:
            gc.collect()
            micro = micro_figures(args, work, rules500)
            results["micro"] = micro
        targets(results["figures"], micro, args)
        if py_spy and not args.no_profile:
            results["profile"] = profile_run(args, work, up, py_spy, bundled_copy)
        elif not args.no_profile:
            out("\n(no py-spy: `pip install py-spy` and pass --py-spy PATH for the profile)")
    finally:
        for proc in STARTED:
            stop_process(proc, signal.SIGTERM, 20)
        if up is not None:
            stop_process(up.proc, signal.SIGTERM, 10)
        if autogroup_nice is not None:
            with contextlib.suppress(OSError):
                Path("/proc/self/autogroup").write_text(str(autogroup_nice))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        if args.keep:
            out(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
