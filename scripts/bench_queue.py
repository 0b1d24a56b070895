#!/usr/bin/env python3
"""The fleet's approval queue, timed: a wait-mode hold on proxy A until proxy B's console lists
it (hold-to-visible), and B's approval until A's agent has its answer (decision-to-applied).
Two real `shield run --headless` proxies, a real PostgreSQL (scripts/postgres.py), a local
upstream; B's reviewer is scripts/reviewer_addon.py (mitmproxy's real `shield.approve`),
polled every POLL seconds, which the figures include. The figures of docs/fleet.md.

    scripts/python scripts/bench_queue.py [--holds N] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts` and shield_addon

import httpx  # noqa: E402

from scripts import postgres  # noqa: E402
from scripts.harness import start_proxy, wait_for  # noqa: E402

POLL = 0.005
RULES = """version: 1
default: allow
rules:
  - id: hold-bench
    match: {path: "^/hold/"}
    action: hold
"""


class Answer(BaseHTTPRequestHandler):
    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: Any) -> None:
        pass


def percentiles(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{name}: p50 {statistics.median(ms):.0f} ms, p99 {p99:.0f} ms, max {ms[-1]:.0f} ms "
            f"({len(ms)} holds)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--holds", type=int, default=100)
    ap.add_argument("--smoke", action="store_true", help="3 holds: checks the script works")
    args = ap.parse_args()
    n = 3 if args.smoke else args.holds
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    (tmp / "rules.yaml").write_text(RULES)
    pg = postgres.start()
    if pg is None:
        print("no PostgreSQL server binaries here (Debian: apt-get install postgresql)", file=sys.stderr)
        return 2
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    url = pg.database()
    reviewer = Path(__file__).with_name("reviewer_addon.py")
    a, b = (start_proxy(tmp / name, "--set", f"shield_fleet={url}", "--set", f"shield_proxy_name={name}",
                        "--set", f"shield_rules={tmp / 'rules.yaml'}", "--set", "proxyauth=any",
                        control_addon=reviewer) for name in ("a", "b"))
    visible, applied = [], []
    try:
        with httpx.Client(proxy=a.url("bench-bot"), trust_env=False, timeout=30) as agent:
            for i in range(n):
                path = f"/hold/{i}"
                done = threading.Event()
                target = f"http://127.0.0.1:{upstream.server_address[1]}{path}"
                thread = threading.Thread(target=lambda t=target, d=done: (agent.delete(t), d.set()))
                t0 = time.monotonic()
                thread.start()
                wait_for(lambda p=path: b.command("count", f"~u {p}$")["held"], 10, f"{path} listed on B")
                t1 = time.monotonic()
                b.command("shield.approve", f"~u {path}$", held=True)
                done.wait(10)
                t2 = time.monotonic()
                thread.join()
                visible.append(t1 - t0)
                applied.append(t2 - t1)
        print(percentiles("hold on A to listed on B's console", visible))
        print(percentiles("approved on B to answered on A", applied))
    finally:
        a.stop()
        b.stop()
        upstream.shutdown()
        pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
