"""The load: nginx as the upstream, and an asyncio load generator that sends an agent's small
keep-alive requests (and, in `http-body`, a 256 KiB JSON POST every 10th) as fast as answered
or at a fixed rate, measuring latency only in the measured window."""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench import procstat
from scripts.bench.launch import Launcher
from scripts.harness import free_port, make_cert, wait_port

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


# ---------------------------------------------------------------- upstream (nginx)


@dataclass
class Upstream:
    proc: subprocess.Popen
    http_port: int
    https_port: int
    cert: Path
    version: str

    def cpu(self) -> float:
        return sum(procstat.cpu_seconds(p) for p in procstat.family(self.proc.pid))


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


def nginx_path() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def start_nginx(work: Path, launcher: Launcher) -> Upstream:
    """nginx with one worker answering `return 200` on two free loopback ports, HTTP and HTTPS."""
    nginx = nginx_path()
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
    proc = launcher.popen([nginx, "-p", str(d), "-c", str(conf)], log)
    wait_port(hp, proc, 10, log)
    wait_port(sp, proc, 10, log)
    return Upstream(proc, hp, sp, cert, version)


# ---------------------------------------------------------------- load generator


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



SCENARIOS: dict[str, Callable[[float], LoadSpec]] = {  # name -> the load, given the paced rate (--rate)
    "http": lambda rate: LoadSpec(tls=False),
    "https": lambda rate: LoadSpec(tls=True),
    "http-body": lambda rate: LoadSpec(tls=False, body=True),
    "http-paced": lambda rate: LoadSpec(tls=False, rate=rate),
}
