#!/usr/bin/env python3
"""Journal bytes a few requests add, through a real `shield run --headless` with the bundled
rules and a real local upstream (Python's http.server, which answers huge heads 414/431):
ordinary GETs (per flow), a huge path, many headers, one huge header, and a held DELETE with
a huge URL that its agent abandons. The figures of docs/performance.md's "A bounded trail";
`--smoke` sends 64 KiB instead of 4 MiB (it only shows the script works).

    scripts/python scripts/bench_trail.py [--smoke]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts`, `tests` and shield_addon

import httpx  # noqa: E402

from scripts.harness import Proxy, start_proxy, wait_for  # noqa: E402

AUTH = b"Proxy-Authorization: Basic YWdlbnQtbTp4\r\n"  # agent-m:x


def journal_bytes(proxy: Proxy) -> int:
    return sum(f.stat().st_size for f in (proxy.audit_dir / "journal").glob("*.jsonl"))


def settled(proxy: Proxy) -> int:
    """The journal's size once it stopped growing (the writer has caught up)."""
    last = -1
    deadline = time.monotonic() + 30
    while (now := journal_bytes(proxy)) != last and time.monotonic() < deadline:
        last = now
        time.sleep(0.3)
    return now


def send(proxy: Proxy, head: bytes) -> bytes:
    """A raw request; the status line of its answer."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as s:
        s.sendall(head)
        out = b""
        while b"\r\n" not in out and (chunk := s.recv(65536)):
            out += chunk
    return out.split(b"\r\n", 1)[0]


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: Any) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="64 KiB instead of 4 MiB: checks the script works")
    size = (64 << 10) if ap.parse_args().smoke else (4 << 20)
    tmp = Path(tempfile.mkdtemp(prefix="bench-trail-"))
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = start_proxy(tmp, "--set", "proxyauth=any")
    origin = b"http://127.0.0.1:%d" % upstream.server_address[1]
    try:
        with httpx.Client(proxy=proxy.url("agent-m"), trust_env=False, timeout=60) as c:
            c.get(origin.decode() + "/warm")
            before = settled(proxy)
            for i in range(100):
                c.get(f"{origin.decode()}/allowed/item/{i}?page=2")
        after = settled(proxy)
        print(f"ordinary GET with a query: {(after - before) / 100:.0f} B per flow")
        headers, header = size * 1000 // (4 << 20), size // 4  # 1000 headers of 1 KB and one of 1 MiB, beside 4 MiB
        cases = {
            f"GET with a {size >> 10} KiB path": b"GET %s/allowed/%s HTTP/1.1\r\n" % (origin, b"a" * size),
            f"{headers} headers of 1 KB": b"GET %s/allowed/h HTTP/1.1\r\n" % origin
            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(headers)),
            f"one {header >> 10} KiB header": b"GET %s/allowed/h1 HTTP/1.1\r\nX-Big: %s\r\n" % (origin, b"w" * header),
        }
        for name, head in cases.items():
            before = after
            status = send(proxy, head + b"Host: 127.0.0.1\r\n" + AUTH + b"Connection: close\r\n\r\n")
            after = settled(proxy)
            print(f"{name}: {(after - before) / 1024:.0f} KiB ({status.decode(errors='replace')})")
        before = after
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as s:  # held, then the agent hangs up
            s.sendall(b"DELETE %s/hold/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (origin, b"d" * size, AUTH))
            wait_for(lambda: proxy.events("stage = 'request' AND method = 'DELETE' AND verdict = 'hold'"), 30, "the hold")
        wait_for(lambda: proxy.events("stage = 'decision' AND decision = 'abandoned'"), 30, "the hold abandoned")
        after = settled(proxy)
        print(f"DELETE with a {size >> 10} KiB path, held, then abandoned: {(after - before) / 1024:.0f} KiB")
    finally:
        proxy.stop()
        upstream.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
