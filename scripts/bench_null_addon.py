"""A mitmproxy addon that does nothing, with the hooks agent-shield implements: for
scripts/bench_proxy.py, what mitmproxy charges for such an addon before shield does any work.

    mitmdump -q -s scripts/bench_null_addon.py                       # BENCH_NULL_MODE=hooks (default)
    BENCH_NULL_MODE=thread mitmdump -q -s scripts/bench_null_addon.py

hooks:  every hook shield has (http_connect, requestheaders, an async request, responseheaders,
        response, error, update, client_disconnected), each returning at once.
thread: the same, and the request hook waits for a future that another thread resolves in
        batches, like the journal's group commit (no fsync, no work): the cost of the hand-off.
writer: the same, and the request hook waits for shield's own audit writer process to have
        fsync'd a two-column event (BENCH_NULL_AUDIT, BENCH_NULL_CONF: its directories), the
        response hook sends one without waiting: the cost of "durable before forwarded" with
        the mechanism shield uses, and nothing else of shield.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

MODE = os.environ.get("BENCH_NULL_MODE", "hooks")


class NullShield:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.link: Any = None
        if MODE == "thread":
            threading.Thread(target=self._writer, name="null-writer", daemon=True).start()
        if MODE == "writer":
            from shield_addon.core.model import AuditDir
            from shield_addon.writer import process
            from shield_addon.writer.link import WriterLink

            audit = AuditDir(Path(os.environ["BENCH_NULL_AUDIT"]))
            self.link = WriterLink(audit.journal, process.arguments(audit.root, Path(os.environ["BENCH_NULL_CONF"]),
                                                                    process.FSYNC, 1.0, 1000, 60, 1))
            self.link.start()

    def _writer(self) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            for fut in batch:
                fut.set_result(None)

    def http_connect(self, f: Any) -> None:
        pass

    def requestheaders(self, f: Any) -> None:
        pass

    async def request(self, f: Any) -> None:
        if MODE == "thread":
            fut: Future = Future()
            self.queue.put(fut)
            await asyncio.wrap_future(fut)
        elif self.link:
            await self.link.submit_async({"stage": "request", "flow_id": f.id})

    def responseheaders(self, f: Any) -> None:
        pass

    def response(self, f: Any) -> None:
        if MODE == "thread":
            self.queue.put(Future())  # like shield's response event: submitted, not awaited
        elif self.link:
            self.link.submit({"stage": "response", "flow_id": f.id})

    def error(self, f: Any) -> None:
        pass

    def update(self, flows: Any) -> None:
        pass

    def client_disconnected(self, client: Any) -> None:
        pass

    def done(self) -> None:
        if self.link:
            self.link.close()


addons = [NullShield()]
