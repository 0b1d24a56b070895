"""Test-only: lets a test act as the reviewer of a headless mitmdump.

A headless proxy has no console, so this addon listens on its own loopback port (never
the proxy's) for one JSON line per call, `{"cmd": "flow.resume", "filter": "~u /hold/a",
"args": []}`, and runs that real mitmproxy command on the matching live flows. Loaded
only by the tests (`-s tests/e2e/control_addon.py`), never by `shield run`.
"""

import asyncio
import json
import os

from mitmproxy import ctx, flowfilter


class Control:
    def __init__(self):
        self.flows = {}
        self.server = None

    def requestheaders(self, flow):  # before shield's `request` hook holds the flow
        self.flows[flow.id] = flow

    def update(self, flows):  # a fleet's holds of other proxies appear as flows of their own
        for flow in flows:
            if "shield_fleet_hold" in flow.metadata:
                self.flows.setdefault(flow.id, flow)

    async def running(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        path = os.environ["SHIELD_TEST_CONTROL_FILE"]
        with open(path + ".tmp", "w") as f:
            f.write(str(port))
        os.replace(path + ".tmp", path)

    async def handle(self, reader, writer):
        line = await reader.readline()
        try:
            req = json.loads(line)
            flt = flowfilter.parse(req.get("filter") or "~all")
            flows = [f for f in self.flows.values() if flt(f) and (not req.get("held") or f.intercepted)]
            if req["cmd"] == "count":
                result = {"ok": True, "n": len(flows), "held": sum(f.intercepted for f in flows)}
            elif req["cmd"] == "comments":  # what the console shows the reviewer beside each flow
                result = {"ok": True, "comments": [f.comment for f in flows]}
            else:
                flows_arg = [flows] if req.get("flows", True) else []  # shield.pending takes none
                ctx.master.commands.call(req["cmd"], *flows_arg, *req.get("args", []))
                result = {"ok": True, "n": len(flows)}
        except Exception as e:  # the test wants to see the error, not a dead socket
            result = {"ok": False, "error": repr(e)}
        writer.write((json.dumps(result) + "\n").encode())
        await writer.drain()
        writer.close()

    def done(self):
        if self.server:
            self.server.close()


addons = [Control()]
