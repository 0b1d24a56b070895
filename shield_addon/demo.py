"""`shield demo`: a fake production API and a scripted agent, so a newcomer sees a hold, an
approval, a denial and the timeline within a minute.

Loaded as a second mitmproxy script beside the shield addon. It starts the fake API and
the agent once the proxy listens; with `--auto` it also plays the reviewer, through the
same commands a person's keys run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mitmproxy import ctx

log = logging.getLogger("shield.demo")

# (what the agent says it does, method, path, JSON body): a day in the life of an ops agent
SCRIPT: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("list pods in prod", "GET", "/api/v1/namespaces/prod/pods", None),
    ("read recent orders", "POST", "/sql", {"query": "SELECT id, total FROM orders ORDER BY id DESC LIMIT 5"}),
    ("delete the web deployment in prod", "DELETE", "/apis/apps/v1/namespaces/prod/deployments/web", None),
    ("drop the orders table", "POST", "/sql", {"query": "DROP TABLE orders"}),
    ("refund a customer", "POST", "/v1/refunds", {"charge": "ch_123", "amount": 4200}),
    ("list charges", "GET", "/v1/charges?limit=3", None),
)
# What the demo's reviewer does in --auto mode, by path.
AUTO = {"/apis/apps/v1/namespaces/prod/deployments/web": ("shield.approve",),
        "/sql": ("shield.deny", "demo: no schema changes on a Friday")}


class FakeAPI(BaseHTTPRequestHandler):
    """Kubernetes-, SQL- and payments-like answers; it believes whatever it is told."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/api/v1/namespaces/prod/pods"):
            doc: dict[str, Any] = {"kind": "PodList", "items": [{"metadata": {"name": f"web-{i}"}} for i in range(3)]}
        elif self.path == "/sql":
            doc = {"rows": [[1042, 99.5], [1041, 12.0]], "statement": json.loads(body or b"{}").get("query")}
        elif self.path.startswith("/apis/apps/"):
            doc = {"kind": "Status", "status": "Success", "details": {"name": "web", "kind": "deployments"}}
        else:
            doc = {"object": "list", "data": [{"id": "ch_123", "amount": 4200}]}
        payload = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = answer


class Demo:
    def __init__(self) -> None:
        self.api: ThreadingHTTPServer | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("shield_demo_auto", bool, False, "The demo decides the holds itself (for headless runs).")

    def running(self) -> None:
        self.api = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
        threading.Thread(target=self.api.serve_forever, daemon=True).start()
        proxy_port = ctx.master.addons.get("proxyserver").listen_addrs()[0][1]
        loop = asyncio.get_running_loop()
        threading.Thread(target=self.agent, args=(proxy_port, loop), daemon=True).start()
        if not ctx.options.shield_demo_auto:
            log.warning("demo: held requests are marked ⌛ — press y to approve, N to deny with a reason, X to kill")

    def update(self, flows: Any) -> None:
        """--auto: decide each new hold a moment after it appears, like a quick reviewer."""
        if not ctx.options.shield_demo_auto:
            return
        for f in flows:
            cmd = AUTO.get(f.request.path.split("?")[0])
            if f.intercepted and f.marked == ":hourglass:" and cmd and not f.metadata.get("demo_scheduled"):
                f.metadata["demo_scheduled"] = True
                asyncio.get_running_loop().call_later(1.0, self.decide, f, cmd)

    def decide(self, f: Any, cmd: tuple[str, ...]) -> None:
        log.warning("demo reviewer: %s %s", cmd[0], f.request.path)
        ctx.master.commands.call(cmd[0], [f], *cmd[1:])

    def agent(self, proxy_port: int, loop: Any) -> None:
        assert self.api is not None
        base = f"http://127.0.0.1:{self.api.server_address[1]}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://demo-agent:x@127.0.0.1:{proxy_port}"}))
        for what, method, path, body in SCRIPT:
            data = json.dumps(body).encode() if body is not None else None
            req = urllib.request.Request(base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
            log.warning("demo agent: %s (%s %s)", what, method, path)
            try:
                with opener.open(req, timeout=600) as r:
                    answer = f"{r.status} {r.read(80).decode(errors='replace')}"
            except urllib.error.HTTPError as e:
                answer = f"{e.code} {e.read(160).decode(errors='replace')}"
            except OSError as e:
                answer = f"failed: {e}"
            log.warning("demo agent: -> %s", answer)
        log.warning("demo: the agent is done. %s", "Shutting down." if ctx.options.shield_demo_auto
                    else "Quit (Q) to see the timeline.")
        if ctx.options.shield_demo_auto:
            loop.call_soon_threadsafe(ctx.master.shutdown)

    def done(self) -> None:
        if self.api:
            self.api.shutdown()


addons = [Demo()]
