"""A reviewer for long runs of a headless proxy (scripts/soak.py, scripts/crash_loop.py).

The same protocol as tests/e2e/control_addon.py (one JSON line per call on its own
loopback port, written to $SHIELD_TEST_CONTROL_FILE), so harness.Proxy.command() drives
it and the reviewer's decisions go through mitmproxy's real command path
(`shield.approve`, `flow.resume`, ...). Unlike the test addon it forgets a flow once the
flow has ended, so a run of hours measures the proxy's memory, not this addon's.
Never loaded by `shield run`.
"""

import asyncio
import json
import os

from mitmproxy import ctx, flowfilter


class Reviewer:
    def __init__(self):
        self.flows = {}
        self.server = None

    def requestheaders(self, flow):  # before shield's `request` hook holds the flow
        self.flows[flow.id] = flow

    def update(self, flows):  # a fleet's holds of other proxies appear as flows of their own
        for flow in flows:
            if "shield_fleet_hold" in flow.metadata and flow.intercepted:
                self.flows[flow.id] = flow
            elif "shield_fleet_hold" in flow.metadata:
                self.flows.pop(flow.id, None)

    def response(self, flow):
        if flow.websocket is None:
            self.flows.pop(flow.id, None)

    def error(self, flow):
        self.flows.pop(flow.id, None)

    def websocket_end(self, flow):
        self.flows.pop(flow.id, None)

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
            flows = [f for f in list(self.flows.values()) if flt(f) and (not req.get("held") or f.intercepted)]
            if req["cmd"] == "count":
                result = {"ok": True, "n": len(flows), "held": sum(f.intercepted for f in flows), "tracked": len(self.flows)}
            else:
                if flows:
                    ctx.master.commands.call(req["cmd"], flows, *req.get("args", []))
                result = {"ok": True, "n": len(flows)}
        except Exception as e:  # the caller wants to see the error, not a dead socket
            result = {"ok": False, "error": repr(e)}
        writer.write((json.dumps(result) + "\n").encode())
        await writer.drain()
        writer.close()

    def done(self):
        if self.server:
            self.server.close()


addons = [Reviewer()]
