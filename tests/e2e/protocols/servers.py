"""Local upstreams for the protocol tests, beyond harness.start_upstream: an HTTP/1.1 server
that reads chunked bodies and misbehaves on request (huge downloads, resets, silence), an
HTTP/2-only TLS server (h2, which mitmproxy already depends on) and a WebSocket echo server
(wsproto, likewise). Each records what really reached it, so a test can prove what the
proxy forwarded. Loopback only; every server stops with its test."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
PATTERN = bytes(range(256)) * 4096  # 1 MiB, every byte value: a download is binary
BINARY = bytes(range(255, -1, -1)) * 4 + b"\xff\xfe\xc3\x28\x00"  # not UTF-8 anywhere


def pattern(n: int) -> Iterator[bytes]:
    """The first n bytes of PATTERN repeated, in 1 MiB chunks."""
    while n > 0:
        chunk = PATTERN[: min(n, len(PATTERN))]
        n -= len(chunk)
        yield chunk


def pattern_sha256(n: int) -> str:
    h = hashlib.sha256()
    for chunk in pattern(n):
        h.update(chunk)
    return h.hexdigest()


def tls_context(cert: Path, key: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


@dataclass
class Hit:
    method: str
    path: str
    body: bytes
    headers: list[tuple[str, str]]
    chunked: bool = False
    conn: Any = None  # identifies the upstream connection it came on


# ---------------------------------------------------------------- HTTP/1.1


@dataclass
class HTTPUpstream:
    """A threaded HTTP/1.1 server (optionally TLS, optionally IPv6).

    /big/<n>    200 with n bytes of PATTERN, Content-Length set (a large download)
    /binary/    200 with BINARY as application/octet-stream
    /reset/     200 headers promising 100000 bytes, 10 bytes, then a TCP RST
    /silent/    reads the request and never answers (until released or 60 s)
    anything    200 JSON: method, path, size and sha256 of the body it received
    """

    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    keep: bool = True  # False: count paths only (long runs), no Hit kept
    hits: list[Hit] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    server: ThreadingHTTPServer | None = None

    def start(self) -> HTTPUpstream:
        up = self

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client (the proxy) that resets or goes away is part of the tests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle and the
            # proxy's delayed ACK add ~40 ms to every response, and a load test measures that
            disable_nagle_algorithm = True

            def log_message(self, *a: Any) -> None:
                pass

            def handle_any(self) -> None:
                chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
                if chunked:
                    body = read_chunked(self.rfile)
                else:
                    n = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(n) if n else b""
                with up.lock:
                    up.counts[self.path] += 1
                    if up.keep:
                        up.hits.append(Hit(self.command, self.path, body, list(self.headers.items()), chunked,
                                           self.client_address))
                if self.path.startswith("/big/"):
                    n = int(self.path.split("/")[2])
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    for chunk in pattern(n):
                        self.wfile.write(chunk)
                    return
                if self.path.startswith("/reset/"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"0123456789")
                    self.wfile.flush()
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()  # linger 0: the peer sees a reset, not a clean close
                    self.close_connection = True
                    return
                if self.path.startswith("/silent/"):
                    up.release.wait(60)
                    self.close_connection = True
                    return
                if self.path.startswith("/binary/"):
                    payload, ctype = BINARY, "application/octet-stream"
                else:
                    payload = json.dumps({"ok": True, "method": self.command, "path": self.path, "size": len(body),
                                          "sha256": hashlib.sha256(body).hexdigest()}).encode()
                    ctype = "application/json"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.server = Server((self.host, 0), Handler)
        if self.tls:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def hits_for(self, part: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if part in h.path]


def read_chunked(rfile: Any) -> bytes:
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body
        body += rfile.read(size)
        rfile.readline()


# ---------------------------------------------------------------- HTTP/2


@dataclass
class H2Upstream:
    """An HTTP/2-only TLS server (ALPN h2) on an asyncio loop in a thread. Answers every
    stream with JSON (path, size, sha256 of the body) and records which connection it
    came on."""

    tls: ssl.SSLContext
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0
    connections: int = 0

    def start(self) -> H2Upstream:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main() -> None:
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(main(), self.loop)
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def hits_for(self, part: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if part in h.path]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.events

        self.connections += 1
        conn_no = self.connections
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        try:
            while data := await reader.read(65536):
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = (list(ev.headers), bytearray())
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id][1].extend(ev.data)
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        headers, body = streams.pop(ev.stream_id)
                        h = dict(headers)
                        with self.lock:
                            self.hits.append(Hit(h[":method"], h[":path"], bytes(body), headers, conn=conn_no))
                        payload = json.dumps({"ok": True, "path": h[":path"], "size": len(body),
                                              "sha256": hashlib.sha256(body).hexdigest(), "conn": conn_no}).encode()
                        conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/json"),
                                                         ("content-length", str(len(payload)))])
                        conn.send_data(ev.stream_id, payload, end_stream=True)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        return
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


# ---------------------------------------------------------------- WebSocket


@dataclass
class WsEcho:
    """A WebSocket echo server (wsproto) over plain TCP: text comes back as 'echo:<text>',
    bytes come back reversed. Records every handshake path and message it received."""

    handshakes: list[str] = field(default_factory=list)
    received: list[tuple[str, bytes | str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def start(self) -> WsEcho:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()

    def accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, sock: socket.socket) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Request, TextMessage

        ws = WSConnection(ConnectionType.SERVER)
        text, data = "", b""
        with sock:
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                ws.receive_data(chunk)
                out = b""
                for ev in ws.events():
                    if isinstance(ev, Request):
                        with self.lock:
                            self.handshakes.append(ev.target)
                        out += ws.send(AcceptConnection())
                    elif isinstance(ev, TextMessage):
                        text += ev.data
                        if ev.message_finished:
                            with self.lock:
                                self.received.append(("text", text))
                            out += ws.send(TextMessage(data="echo:" + text))
                            text = ""
                    elif isinstance(ev, BytesMessage):
                        data += ev.data
                        if ev.message_finished:
                            with self.lock:
                                self.received.append(("bytes", data))
                            out += ws.send(BytesMessage(data=data[::-1]))
                            data = b""
                    elif isinstance(ev, Ping):
                        out += ws.send(ev.response())
                    elif isinstance(ev, CloseConnection):
                        out += ws.send(ev.response())
                        sock.sendall(out)
                        return
                if out:
                    sock.sendall(out)
