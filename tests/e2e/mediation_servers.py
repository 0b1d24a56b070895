"""Local servers for the complete-mediation tests: each counts what really reached it at
the TCP level (accepted connections, bytes), so a test can prove that the proxy did not
contact a server, not merely that no HTTP request arrived. Loopback only. Also the raw
clients those tests need: a bare CONNECT, and an HTTP/1.1 request in absolute form."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from tests.e2e.fake_server import FakeHandler
from tests.e2e.protocols.servers import WsEcho

BANNER = b"SSH-2.0-OpenSSH_9.6 shield-test-banner\r\n"


@dataclass
class Listener:
    """A loopback TCP listener on a free port; each connection goes to `connected`."""

    port: int = 0

    def start(self) -> Self:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.sock.close()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connected(conn)

    def connected(self, conn: socket.socket) -> None:
        raise NotImplementedError


@dataclass
class BannerServer(Listener):
    """A server-first TCP service, like ssh or a database: it greets every connection with
    BANNER and keeps whatever the peer sends."""

    accepted: int = 0
    received: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connected(self, conn: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
        threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(BANNER)
                while chunk := conn.recv(65536):
                    with self.lock:
                        self.received.extend(chunk)
            except OSError:
                return


class CountingHTTPServer(ThreadingHTTPServer):
    """Counts TCP connections as they are accepted, before any TLS handshake: a proxy that
    opens a connection and then gives up still counts."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None
    accepted = 0
    paths: list[str]

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        self.accepted += 1
        if self.tls:
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a peer that never finishes its handshake is part of these tests


def start_counting_https(cert: Path, key: Path) -> CountingHTTPServer:
    """An HTTPS server (for localhost) answering every request with 200 JSON."""

    class Handler(FakeHandler):
        def handle_any(self) -> None:
            self.body()
            self.server.paths.append(self.path)  # type: ignore[attr-defined]
            self.answer(200, json.dumps({"ok": True, "path": self.path}).encode(), "application/json")

        do_GET = do_POST = do_DELETE = handle_any

    server = CountingHTTPServer(("127.0.0.1", 0), Handler)
    server.paths = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.tls = ctx
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class WsEchoWithEnds(WsEcho):
    """WsEcho that also counts finished connections: once the proxy closed a stream,
    everything it delivered on it has arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = 0

    def serve(self, sock: socket.socket) -> None:
        try:
            super().serve(sock)
        finally:
            with self.lock:
                self.ended += 1

    def texts(self) -> list[str]:
        with self.lock:
            return [str(m) for kind, m in self.received if kind == "text"]


def refused_port() -> tuple[socket.socket, int]:
    """A loopback port that refuses connections and that nobody else can take while the
    returned socket (bound, never listening) stays open."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def read_until_closed(s: socket.socket, timeout: float) -> bytes:
    """Everything the peer sends until it closes, or until `timeout` passes (a bound on a
    negative: what must never arrive)."""
    out = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out


def raw_http(proxy_port: int, request: bytes, timeout: float = 15) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request to the proxy (absolute-form, as a plain-HTTP client sends it)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed without an answer: {data!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        while m and len(body) < int(m.group(1)):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split()[1]), body


@dataclass
class UpgradeServer(Listener):
    """An HTTP server that answers any request with `101 Switching Protocols` to a protocol
    that is not WebSocket, then greets with BANNER: after the 101, mitmproxy would relay the
    connection as a raw stream."""

    requests: int = 0

    def connected(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                head += chunk
            self.requests += 1
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw-db\r\nConnection: Upgrade\r\n\r\n" + BANNER)
            conn.settimeout(2)
            try:
                conn.recv(4096)
            except OSError:
                pass
