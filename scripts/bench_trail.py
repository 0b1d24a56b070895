#!/usr/bin/env python3
"""Journal bytes a few requests add, through a real `shield run --headless` and a real local
upstream: ordinary GETs (per flow), a huge path, many headers, one huge header, and a held
DELETE with a huge URL that its agent abandons. The figures of docs/performance.md's "A bounded
trail"; `--smoke` sends 64 KiB instead of 4 MiB (it only shows the script works).

    scripts/python scripts/bench_trail.py [--smoke]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts`, `tests` and shield_addon

import httpx  # noqa: E402

from tests.e2e.harness import HERE, Proxy, start_proxy, start_upstream, wait_for  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="64 KiB instead of 4 MiB: checks the script works")
    size = (64 << 10) if ap.parse_args().smoke else (4 << 20)
    tmp = Path(tempfile.mkdtemp(prefix="bench-trail-"))
    (tmp / "up").mkdir()
    (tmp / "proxy").mkdir()
    upstream, stop_upstream = start_upstream(tmp / "up")
    proxy = start_proxy(tmp / "proxy", "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any",
                        upstream_ca=upstream.ca_file)
    origin = b"http://127.0.0.1:%d" % upstream.http_port
    try:
        with httpx.Client(proxy=proxy.url("agent-m"), trust_env=False, timeout=60) as c:
            c.get(upstream.url("/warm"))
            before = settled(proxy)
            for i in range(100):
                c.get(upstream.url(f"/allowed/item/{i}?page=2"))
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
            proxy.wait_held("~m DELETE", 1, 30)
        wait_for(lambda: proxy.held("~m DELETE") == 0, 30, "the hold abandoned")
        after = settled(proxy)
        print(f"DELETE with a {size >> 10} KiB path, held, then abandoned: {(after - before) / 1024:.0f} KiB")
    finally:
        proxy.stop()
        stop_upstream()
    return 0


if __name__ == "__main__":
    sys.exit(main())
