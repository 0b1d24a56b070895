"""Which held requests their agent has withdrawn while a reviewer decides.

mitmproxy tells addons nothing when an HTTP/2 client resets a stream (RST_STREAM) whose
request hook is still running: it pauses that stream's layer for the hook and queues what
arrives for it, the reset included (a `RequestProtocolError`). Only when the hook returns
does its `HttpStream.check_killed` peek into that queue and drop the request. A wait-mode
hold is such a running hook, so without this the hold would stay pending, and a later
approval would be recorded for a request that was never sent.

So we peek as mitmproxy does, reaching the stream layers through the `next_layer` hook
(the one place mitmproxy hands addons its layers). The same queue holds a client's
HTTP/1 hang-up, but that one also ends the connection, which `client_disconnected` sees.
"""

from __future__ import annotations

from collections.abc import Iterator

from mitmproxy import http
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers.http import HttpLayer, HttpStream, RequestProtocolError


class Streams:
    def __init__(self) -> None:
        self.by_client: dict[str, list[layer.NextLayer]] = {}  # client connection id -> its NextLayers

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        # Kept, not read: the layer chosen for it is set later (by mitmproxy's own addon).
        seen = self.by_client.setdefault(nextlayer.context.client.id, [])
        if not any(n is nextlayer for n in seen):  # mitmproxy asks again while it lacks data
            seen.append(nextlayer)

    def client_disconnected(self, client_id: str) -> None:
        self.by_client.pop(client_id, None)

    def withdrawn(self, f: http.HTTPFlow) -> str | None:
        """Why the client gave up this flow's request while a hook held it (None: it did not)."""
        for stream in self.streams(f.client_conn.id):
            if getattr(stream, "flow", None) is f:
                for event in stream._paused_event_queue:
                    if isinstance(event, RequestProtocolError):
                        return event.message
        return None

    def streams(self, client_id: str) -> Iterator[HttpStream]:
        for nextlayer in self.by_client.get(client_id, ()):
            # Down the chain (TLS layers) to the HTTP layer; a deeper NextLayer is listed itself.
            node = nextlayer.layer
            while node is not None and not isinstance(node, (HttpLayer, layer.NextLayer)):
                node = getattr(node, "child_layer", None)
            if isinstance(node, HttpLayer):
                yield from list(node.streams.values())
