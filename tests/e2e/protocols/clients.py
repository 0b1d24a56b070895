"""Clients the protocol tests need beyond httpx: raw bytes to the proxy, and a WebSocket
client (wsproto) that goes through the proxy with CONNECT as browsers and SDKs do."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from typing import Any


def proxy_auth(agent: str, password: str = "x") -> str:
    return "Basic " + base64.b64encode(f"{agent}:{password}".encode()).decode()


def connect_tunnel(proxy_port: int, target: str, agent: str, timeout: float = 10) -> tuple[socket.socket, bytes]:
    """A raw CONNECT through the proxy; the socket and the proxy's answer head."""
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {proxy_auth(agent)}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, head


def open_tunnel(proxy_port: int, host: str, port: int, agent: str, timeout: float = 10) -> socket.socket:
    """A CONNECT the proxy must allow: the socket, ready for what goes inside."""
    s, head = connect_tunnel(proxy_port, f"{host}:{port}", agent, timeout)
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        s.close()
        raise ConnectionError(f"CONNECT refused: {head!r}")
    return s


def raw_exchange(port: int, data: bytes, timeout: float = 10, responses_wanted: int | None = None) -> bytes:
    """Send `data` to the proxy on one connection; read until the proxy closes it, the
    wanted number of complete responses arrived, or `timeout` passes. Returns everything
    the proxy answered."""
    out = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if responses_wanted is not None and len(responses(out)) >= responses_wanted:
                break
    return out


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP/1.1 response in `data` (Content-Length bodies only)."""
    out = []
    while data.startswith(b"HTTP/1.") and b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if len(rest) < length:
            break
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def _header(headers: Any, name: bytes) -> str | None:
    for k, v in headers or ():
        if k.lower() == name:
            return v.decode()
    return None


class HTTP1Conn:
    """One raw HTTP/1.1 connection to the proxy: requests one after another (keep-alive)."""

    def __init__(self, proxy_port: int, agent: str, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
        self.auth = proxy_auth(agent)
        self.buf = b""

    def send(self, method: str, url: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()) -> None:
        host = url.split("/")[2]
        lines = [f"{method} {url} HTTP/1.1", f"Host: {host}", f"Proxy-Authorization: {self.auth}",
                 *(f"{k}: {v}" for k, v in headers)]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def read(self) -> tuple[int, dict[str, str], bytes]:
        """The next response (Content-Length bodies): status, headers (lower-case names), body."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(lines[0].split()[1]), headers, body

    def request(self, method: str, url: str, body: bytes = b"",
                headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, str], bytes]:
        self.send(method, url, body, headers)
        return self.read()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the proxy closed the connection; unread: {self.buf[:200]!r}")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


class WsClient:
    """A WebSocket client over a CONNECT tunnel through the proxy (plain ws:// inside)."""

    def __init__(self, proxy_port: int, host: str, port: int, path: str, agent: str, timeout: float = 10):
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import Request

        self.sock = open_tunnel(proxy_port, host, port, agent, timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"{host}:{port}", target=path)))
        self.pending: list[Any] = []
        self.accepted = None  # True (101) or the status of the refusal
        self.flow_id: str | None = None  # the proxy's X-Shield-Flow-Id on the answer
        self.rejected_body = b""
        self.rejected_done = False
        while self.accepted is None:
            for ev in self._events():
                self.pending.append(ev)

    def _events(self) -> list[Any]:
        from wsproto.events import AcceptConnection, RejectConnection, RejectData

        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        self.ws.receive_data(chunk)
        out = []
        for ev in self.ws.events():
            if isinstance(ev, AcceptConnection):
                self.accepted = True
                self.flow_id = _header(ev.extra_headers, b"x-shield-flow-id")
            elif isinstance(ev, RejectConnection):
                self.accepted = ev.status_code
                self.flow_id = _header(ev.headers, b"x-shield-flow-id")
            elif isinstance(ev, RejectData):
                self.rejected_body += ev.data
                self.rejected_done = ev.body_finished
            else:
                out.append(ev)
        return out

    def read_reject_body(self) -> bytes:
        """After a refused upgrade: the refusal's whole body."""
        while not self.rejected_done:
            self._events()
        self.sock.close()
        return self.rejected_body

    def send(self, message: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        ev = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        self.sock.sendall(self.ws.send(ev))

    def recv(self) -> str | bytes:
        """The next complete message."""
        from wsproto.events import BytesMessage, TextMessage

        parts: list[Any] = []
        while True:
            while self.pending:
                ev = self.pending.pop(0)
                if isinstance(ev, (TextMessage, BytesMessage)):
                    parts.append(ev.data)
                    if ev.message_finished:
                        return "".join(parts) if isinstance(ev, TextMessage) else b"".join(parts)
            self.pending.extend(self._events())

    def close(self) -> None:
        from wsproto.events import CloseConnection

        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if any(isinstance(ev, CloseConnection) for ev in self._events()):
                    break
        except (OSError, ConnectionError, Exception):  # noqa: BLE001 - closing is best effort
            pass
        finally:
            self.sock.close()


class H2Conn:
    """HTTP/2 through the proxy's CONNECT with every frame under the test's control: pseudo-headers
    no library client would send (`:path` in absolute form), resets of one stream."""

    def __init__(self, proxy_port: int, agent: str, host: str, port: int, ca: str, timeout: float = 10):
        import h2.config
        import h2.connection

        tls = ssl.create_default_context(cafile=ca)
        tls.set_alpn_protocols(["h2"])
        self.sock = tls.wrap_socket(open_tunnel(proxy_port, host, port, agent, timeout), server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.done: dict[int, tuple[int, bytes]] = {}
        self._open: dict[int, tuple[int, bytearray]] = {}

    def send(self, headers: list[tuple[str, str]], body: bytes = b"") -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, headers, end_stream=not body)
        if body:
            self.conn.send_data(stream, body, end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def reset(self, stream: int) -> None:
        import h2.errors

        self.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        self.sock.sendall(self.conn.data_to_send())

    def response(self, stream: int, timeout: float = 10) -> tuple[int, bytes]:
        import h2.events

        deadline = time.monotonic() + timeout
        while stream not in self.done:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the proxy closed the connection")
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    self._open[ev.stream_id] = (int(dict(ev.headers)[":status"]), bytearray())
                elif isinstance(ev, h2.events.DataReceived):
                    self._open[ev.stream_id][1].extend(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    status, body = self._open.pop(ev.stream_id)
                    self.done[ev.stream_id] = (status, bytes(body))
            self.sock.sendall(self.conn.data_to_send())
        return self.done[stream]

    def close(self) -> None:
        self.sock.close()
