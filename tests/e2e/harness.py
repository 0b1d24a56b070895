"""Real parts for end-to-end tests: a local upstream (HTTP and HTTPS), a real `shield run
--headless` (mitmdump) on a free loopback port, a reviewer acting through mitmproxy's
commands, and readers of the real audit files."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHIELD = [sys.executable, "-m", "shield_addon.cli"]


def wait_for(predicate: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


# ---------------------------------------------------------------- upstream


@dataclass
class Hit:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Upstream:
    http_port: int
    https_port: int
    ca_file: Path
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sse_release: threading.Event = field(default_factory=threading.Event)  # /sse/ sends its 2nd event after this

    def hits_for(self, path_part: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if path_part in h.path]

    def url(self, path: str, tls: bool = False) -> str:
        return f"https://localhost:{self.https_port}{path}" if tls else f"http://127.0.0.1:{self.http_port}{path}"


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (the upstream's, and its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "upstream-cert.pem", directory / "upstream-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def start_upstream(directory: Path) -> tuple[Upstream, Callable[[], None]]:
    cert_file, key_file = make_cert(directory)
    up = Upstream(0, 0, cert_file)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def handle_any(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            with up.lock:
                up.hits.append(Hit(self.command, self.path, body, dict(self.headers)))
            if self.path.startswith("/sse/"):
                return self.server_sent_events()
            payload = json.dumps({"ok": True, "method": self.command, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Set-Cookie", "session=upstream-cookie-secret")
            self.end_headers()
            self.wfile.write(payload)

        def server_sent_events(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n, event in enumerate((b"data: first\n\n", b"data: second\n\n")):
                if n:
                    up.sse_release.wait(20)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    up.http_port, up.https_port = plain.server_address[1], tls.server_address[1]
    for s in (plain, tls):
        threading.Thread(target=s.serve_forever, daemon=True).start()

    def stop() -> None:
        for s in (plain, tls):
            s.shutdown()
            s.server_close()

    return up, stop


# ---------------------------------------------------------------- proxy


@dataclass
class Proxy:
    proc: subprocess.Popen
    port: int
    confdir: Path
    audit_dir: Path
    log: Path
    control_file: Path

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def url(self, user: str | None = None, password: str = "x") -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def command(self, cmd: str, flt: str = "~all", *args: str, held: bool = False) -> dict[str, Any]:
        """Run a real mitmproxy command (flow.resume, shield.approve, ...) on matching flows."""
        port = int(self.control_file.read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall((json.dumps({"cmd": cmd, "filter": flt, "args": list(args), "held": held}) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        result = json.loads(data)
        assert result["ok"], result
        return result

    def held(self, flt: str = "~all") -> int:
        return self.command("count", flt)["held"]

    def wait_held(self, flt: str, n: int = 1, timeout: float = 15) -> None:
        wait_for(lambda: self.held(flt) >= n, timeout, f"{n} held flow(s) matching {flt}")

    def shield(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cp = subprocess.run([*SHIELD, *args, "--dir", str(self.audit_dir)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "200"})  # wide enough that tables don't fold words
        if check and cp.returncode != 0:
            raise AssertionError(f"shield {' '.join(args)} exited {cp.returncode}: {cp.stderr}")
        return cp

    def events(self, where: str = "true") -> list[dict[str, Any]]:
        cp = self.shield("sql", f"SELECT * FROM events WHERE {where} ORDER BY seq", "--json")
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def shield_json(self, query: str) -> list[dict[str, Any]]:
        cp = self.shield("sql", query, "--json")
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def timeline(self, *filters: str) -> list[dict[str, Any]]:
        cp = self.shield("timeline", "--json", *filters)
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def flow_events(self, path_part: str, stage: str | None = None, n: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        """Wait until `n` events (of `stage`) exist for flows whose path contains path_part."""
        cond = f"path LIKE '%{path_part}%'" + (f" AND stage = '{stage}'" if stage else "")
        return wait_for(lambda: (lambda ev: ev if len(ev) >= n else None)(self.events(cond)), timeout,
                        f"{n} {stage or ''} event(s) for {path_part}")

    def stop(self) -> int:
        return stop_process(self.proc)


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> int:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def start_proxy(tmp: Path, *extra: str, upstream_ca: Path | None = None, env: dict[str, str] | None = None,
                control: bool = True, audit_dir: Path | None = None) -> Proxy:
    # mitmproxy keeps none of two --set of one addon option: pass each once.
    confdir, audit_dir = tmp / "conf", audit_dir or tmp / "audit"
    confdir.mkdir(parents=True, exist_ok=True)
    log, control_file = tmp / "proxy.log", tmp / "control-port"
    args = [*SHIELD, "run", "--headless", "--confdir", str(confdir), "--listen-port", "0",
            "--listen-host", "127.0.0.1", "--set", f"shield_dir={audit_dir}", "--set", "shield_reviewer=test-reviewer"]
    if control:
        args += ["-s", str(HERE / "control_addon.py")]
    if upstream_ca:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    args += list(extra)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SHIELD_TEST_CONTROL_FILE": str(control_file), **(env or {})}
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        full_env.pop(k, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)

    def port() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited {proc.returncode}:\n{log.read_text()}")
        m = re.search(r"proxy listening at .*?:(\d+)", log.read_text())
        ready = m and (not control or control_file.exists())
        return int(m.group(1)) if ready else None

    p = Proxy(proc, wait_for(port, 30, "the proxy to listen"), confdir, audit_dir, log, control_file)
    return p
