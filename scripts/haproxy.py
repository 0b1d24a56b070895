"""HAProxy in front of N proxies, for the fleet's tests and benchmark: TCP mode (the agents'
CONNECT tunnels and TLS pass through untouched to whichever proxy), round robin, a health
check so a dead proxy gets no new connections; a config file in a directory of its own, a free
loopback port, `haproxy -f cfg -db` in the foreground, stopped at the end.

    front = haproxy.start(work, [p.port for p in proxies])   # front.port: where agents point
    ...
    front.stop()
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from scripts.harness import free_port, stop_process, wait_port

CONFIG = """\
global
    maxconn 4096

defaults
    mode tcp
    retries 3
    option redispatch       # a connection refused by a stopped proxy is retried on another
    timeout connect 5s
    timeout client 10m
    timeout server 10m

frontend agents
    bind 127.0.0.1:{port}
    default_backend shield_proxies

backend shield_proxies
    balance {balance}
{servers}
"""


def binary() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")


def config(port: int, backends: list[int], balance: str = "roundrobin") -> str:
    """haproxy.cfg for agents on `port` spread over proxies on loopback `backends` ports."""
    servers = "\n".join(f"    server proxy{n} 127.0.0.1:{p} check inter 1s" for n, p in enumerate(backends, 1))
    return CONFIG.format(port=port, balance=balance, servers=servers)


@dataclass
class HAProxy:
    proc: subprocess.Popen
    port: int
    config: Path
    log: Path

    def url(self, user: str | None = None, password: str = "x") -> str:
        """The proxy URL agents are given (HTTP_PROXY / HTTPS_PROXY)."""
        auth = f"{user}:{password}@" if user else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def stop(self) -> int:
        return stop_process(self.proc)


def start(backends: list[int], work: Path | None = None, balance: str = "roundrobin") -> HAProxy:
    """HAProxy listening on a free loopback port, in front of the proxies on `backends`."""
    exe = binary()
    if exe is None:
        raise RuntimeError("haproxy not found: apt-get install haproxy")
    work = Path(work or tempfile.mkdtemp(prefix="shield-haproxy-"))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg, log = work / "haproxy.cfg", work / "haproxy.log"
    cfg.write_text(config(port, backends, balance))
    subprocess.run([exe, "-c", "-q", "-f", str(cfg)], check=True, capture_output=True)  # a bad config says why
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "-f", str(cfg), "-db"], stdout=out, stderr=subprocess.STDOUT, cwd=work)
    wait_port(port, proc, 10, log)
    return HAProxy(proc, port, cfg, log)


def share_ca(confdir: Path, into: Path) -> None:
    """Give a proxy that has not started yet the CA of another: its confdir's mitmproxy-ca.pem
    (key and certificate), the one file mitmproxy reads its CA from. The rest of a confdir (the
    checkpoint signing key, the redaction key) stays the proxy's own."""
    into.mkdir(parents=True, exist_ok=True)
    shutil.copy2(confdir / "mitmproxy-ca.pem", into / "mitmproxy-ca.pem")
