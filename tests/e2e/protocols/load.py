"""A lean asyncio HTTP/1.1 client for load through the proxy: hundreds or thousands of
agents in one process cost little CPU, so the proxy, not the client, is what is measured.
Used by tests/e2e/test_concurrency.py and scripts/soak.py, scripts/crash_loop.py."""

from __future__ import annotations

import asyncio
import base64
import resource


def raise_nofile(want: int = 16384) -> int:
    """Raise this process's open-file limit toward `want` (children such as the proxy
    inherit it). Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class ProxyError(Exception):
    """The proxy closed the connection without an answer (killed, crashed, reset)."""


class Agent:
    """One agent: one keep-alive connection to the proxy as proxy user `name`."""

    def __init__(self, proxy_port: int, name: str, timeout: float = 30):
        self.port, self.name, self.timeout = proxy_port, name, timeout
        self.auth = "Basic " + base64.b64encode(f"{name}:x".encode()).decode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), self.timeout)

    async def request(self, method: str, url: str, body: bytes = b"",
                      headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, str], bytes]:
        """Send one request, return (status, headers with lower-case names, body). Raises
        ProxyError (connection lost) or asyncio.TimeoutError."""
        if self.writer is None or self.writer.is_closing():
            await self.connect()
        assert self.reader is not None and self.writer is not None
        host = url.split("/")[2]
        head = [f"{method} {url} HTTP/1.1", f"Host: {host}", f"Proxy-Authorization: {self.auth}",
                *(f"{k}: {v}" for k, v in headers)]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        try:
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await self.writer.drain()
            return await asyncio.wait_for(self._read(), self.timeout)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            self.close()
            raise ProxyError(f"{type(e).__name__}: {e}") from e
        except TimeoutError:
            self.close()
            raise

    async def _read(self) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
