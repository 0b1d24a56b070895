"""A mitmproxy addon that does nothing, with the hooks agent-shield implements: for
scripts/bench_proxy.py, what mitmproxy charges for such an addon before shield does any work.

    mitmdump -q -s scripts/bench_null_addon.py                       # BENCH_NULL_MODE=hooks (default)
    BENCH_NULL_MODE=thread mitmdump -q -s scripts/bench_null_addon.py

hooks:  every hook shield has (http_connect, requestheaders, an async request, responseheaders,
        response, error, update, client_disconnected), each returning at once.
thread: the same, and the request hook waits for a future that another thread resolves in
        batches, like the journal's group commit (no fsync, no work): the cost of the hand-off.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any

MODE = os.environ.get("BENCH_NULL_MODE", "hooks")


class NullShield:
    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Future] = queue.SimpleQueue()
        if MODE == "thread":
            threading.Thread(target=self._writer, name="null-writer", daemon=True).start()

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

    def responseheaders(self, f: Any) -> None:
        pass

    def response(self, f: Any) -> None:
        if MODE == "thread":
            self.queue.put(Future())  # like shield's response event: submitted, not awaited

    def error(self, f: Any) -> None:
        pass

    def update(self, flows: Any) -> None:
        pass

    def client_disconnected(self, client: Any) -> None:
        pass


addons = [NullShield()]
