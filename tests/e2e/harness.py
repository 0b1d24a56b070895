"""Real parts for end-to-end tests: a local upstream (HTTP and HTTPS), a real `shield run
--headless` (mitmdump) on a free loopback port, a reviewer acting through mitmproxy's
commands, and readers of the real audit files. The process parts are scripts/harness.py,
shared with the benchmarks and reliability scripts; this module adds the tests' upstream and
their control addon."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

from scripts import harness
from scripts.harness import SHIELD, Proxy, free_port, make_cert, rss_mib, stop_process, wait_for
from tests.e2e.fake_server import FakeHandler

__all__ = ["HERE", "SHIELD", "Hit", "Proxy", "Upstream", "free_port", "make_cert", "rss_mib", "start_proxy", "start_upstream",
           "stop_process", "wait_for"]

HERE = Path(__file__).resolve().parent


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


def start_upstream(directory: Path) -> tuple[Upstream, Callable[[], None]]:
    cert_file, key_file = make_cert(directory)
    up = Upstream(0, 0, cert_file)

    class Handler(FakeHandler):
        def handle_any(self) -> None:
            body = self.body()
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


def start_proxy(tmp: Path, *extra: str, upstream_ca: Path | None = None, env: dict[str, str] | None = None,
                control: bool = True, audit_dir: Path | None = None) -> Proxy:
    """A real proxy; with `control`, the tests' control addon answers Proxy.command()."""
    return harness.start_proxy(tmp, *extra, upstream_ca=upstream_ca, env=env, audit_dir=audit_dir,
                               control_addon=HERE / "control_addon.py" if control else None)
