"""Real processes on loopback, shared by the end-to-end tests (tests/e2e/harness.py re-exports
this) and the scripts: free ports, waiting, stopping a process, its memory (psutil), a
self-signed upstream certificate, and a real `shield run --headless` (mitmdump) to drive."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

SHIELD = [sys.executable, "-m", "shield_addon.cli"]
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")  # a child proxy must not proxy itself


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


def free_port() -> int:
    """A loopback port free right now (for programs that cannot be told `--listen-port 0`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until something listens on `port`; fail with the end of `log` if `proc` exits first."""

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        return listening(port)

    wait_for(up, timeout, f"something to listen on {port}")


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


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB; ProcessLookupError once it is gone."""
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess as e:
        raise ProcessLookupError(f"no process {pid}") from e


def child_env(**extra: str) -> dict[str, str]:
    """This environment without proxy variables (in either case), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in PROXY_ENV}
    return {**env, **extra}


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


# ---------------------------------------------------------------- a real shield proxy


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
        """Run a real mitmproxy command (flow.resume, shield.approve, ...) on matching flows,
        through the control addon whose port is in `control_file`."""
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

    def writer_pid(self) -> int | None:
        """The proxy's audit writer process, if one is running now."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return None
        for child in children:
            try:
                if "shield_addon.writer" in child.cmdline():
                    return child.pid
            except psutil.Error:
                continue
        return None

    def wait_held(self, flt: str, n: int = 1, timeout: float = 15) -> None:
        wait_for(lambda: self.held(flt) >= n, timeout, f"{n} held flow(s) matching {flt}")

    def shield(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cp = subprocess.run([*SHIELD, *args, "--dir", str(self.audit_dir)], capture_output=True, text=True, timeout=timeout,
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


def start_proxy(tmp: Path, *extra: str, upstream_ca: Path | None = None, env: dict[str, str] | None = None,
                control_addon: Path | None = None, audit_dir: Path | None = None) -> Proxy:
    """`shield run --headless` on a port of its choosing, confdir and audit dir under `tmp`;
    with `control_addon`, returns once that addon has written its port to tmp/control-port."""
    # mitmproxy keeps none of two --set of one addon option: pass each once.
    confdir, audit_dir = tmp / "conf", audit_dir or tmp / "audit"
    confdir.mkdir(parents=True, exist_ok=True)
    log, control_file = tmp / "proxy.log", tmp / "control-port"
    args = [*SHIELD, "run", "--headless", "--confdir", str(confdir), "--listen-port", "0",
            "--listen-host", "127.0.0.1", "--set", f"shield_dir={audit_dir}", "--set", "shield_reviewer=test-reviewer"]
    if control_addon:
        args += ["-s", str(control_addon)]
    if upstream_ca:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    args += list(extra)
    full_env = child_env(PYTHONUNBUFFERED="1", SHIELD_TEST_CONTROL_FILE=str(control_file), **(env or {}))
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)

    def port() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"proxy exited {proc.returncode}:\n{log.read_text()}")
        m = re.search(r"proxy listening at .*?:(\d+)", log.read_text())
        ready = m and (not control_addon or control_file.exists())
        return int(m.group(1)) if ready else None

    return Proxy(proc, wait_for(port, 30, "the proxy to listen"), confdir, audit_dir, log, control_file)
